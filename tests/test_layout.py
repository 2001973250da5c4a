"""The module graph has no cycle, and modules stay readable.

Every import between the package's modules counts, also one inside a function
(a "lazy" import hides a cycle from the interpreter, not from a reader).
"""

from __future__ import annotations

import ast
import pathlib

import explicit_softmax

PACKAGE = pathlib.Path(explicit_softmax.__file__).parent


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path, modules: set[str]) -> set[str]:
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    else:
      continue
    found |= {name for name in names if name in modules}
  return found


def _graph() -> dict[str, set[str]]:
  paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
  modules = set(paths)
  graph = {}
  for name, path in paths.items():
    # A package's own __init__ re-exports its modules: importing it is not a cycle.
    graph[name] = {m for m in _imports(path, modules) if m != name and not name.startswith(m + ".")
                   and m != "explicit_softmax"}
  return graph


def test_the_module_graph_has_no_cycle():
  graph = _graph()
  state: dict[str, int] = {}
  cycles = []

  def visit(node, stack):
    state[node] = 1
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 1:
        cycles.append(stack[stack.index(nxt):] + [nxt])
      elif nxt not in state:
        visit(nxt, stack + [nxt])
    state[node] = 2

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
  assert cycles == []
