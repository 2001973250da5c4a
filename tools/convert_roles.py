"""Rewrites Sphinx roles in docstrings as mkdocstrings cross-references.

``:func:`fit_optimum``` in ``explicit_softmax/fitting.py`` becomes
``[`fit_optimum`][explicit_softmax.fitting.fit_optimum]`` (an autorefs link) where the
documentation site renders that object, and a plain code span ````fit_optimum```` where
it does not (private or external objects, which have no page to link to). Names are
resolved as Python would from the docstring's scope (griffe, the library mkdocstrings
uses), then followed to the module that defines them; ``~a.b.c`` shows ``c``, and
``explicit_softmax.x`` shows ``es.x``.
A paragraph whose line grows past ``WIDTH`` characters is re-wrapped.

Usage: ``python tools/convert_roles.py [PATH ...]`` (files or folders; default: the
package). The set of rendered objects comes from building the site once.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import subprocess
import sys
import tempfile
import textwrap

import griffe

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "explicit_softmax"
WIDTH = 100
ROLE = re.compile(r":(?:py:)?(func|class|meth|mod|data|attr|exc|obj):`(~?)\.?([^`\n]+)`")
# Google-style entry ("name: text", "name (type): text") or a bullet: its text continues
# on lines indented two spaces further.
CODE = re.compile(r"``.+?``")
ITEM = re.compile(r"^\s*(?:[\w*.]+(?: \([^)]*\))?: |[-*] )")


def rendered_ids() -> set[str]:
  """The identifiers of every object the site renders (the ids of its headings)."""
  with tempfile.TemporaryDirectory() as site:
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q", "--site-dir", site],
                   cwd=ROOT, check=True)
    ids: set[str] = set()
    for page in pathlib.Path(site).rglob("*.html"):
      ids |= set(re.findall(rf'id="({PACKAGE}\.[\w.]+)"', page.read_text()))
  return ids


def _objects(obj, path: pathlib.Path):
  """``obj`` and every object defined inside it in the file ``path``."""
  yield obj
  for member in obj.members.values():
    if not member.is_alias and member.filepath == path:
      yield from _objects(member, path)


def _scope(module, path: pathlib.Path, line: int):
  """The innermost object of ``module`` whose source spans ``line``."""
  best = module
  for obj in _objects(module, path):
    if obj.lineno and obj.endlineno and obj.lineno <= line <= obj.endlineno:
      if best is module or obj.lineno >= best.lineno:
        best = obj
  return best


def _canonical(collection, scope, target: str) -> str | None:
  """The path of the object that defines ``target`` seen from ``scope``, or None."""
  head, _, rest = target.partition(".")
  try:
    path = target if head == PACKAGE else scope.resolve(head) + ("." + rest if rest else "")
    obj = collection[path]
    return obj.final_target.path if obj.is_alias else obj.path
  except Exception:  # griffe's name, alias and key errors: not resolvable, a plain span
    return None


def _indent(line: str) -> int:
  return len(line) - len(line.lstrip())


def _plain(line: str) -> bool:
  """A line of running text: not blank, not a fence, a prompt or a section header."""
  s = line.strip()
  return bool(s) and not s.startswith(("```", '"""', "::", ">>>")) and not s.endswith(":")


def _rewrap(lines: list[str], i: int) -> int:
  """Re-wraps, in place, the paragraph or Args entry that holds line ``i``; returns its
  first line."""
  start = i
  while (start > 0 and not ITEM.match(lines[start]) and _plain(lines[start - 1])
         and not lines[start].lstrip().startswith(('"""', 'r"""'))
         and not lines[start - 1].rstrip().endswith('"""')):
    above = _indent(lines[start - 1])
    if above == _indent(lines[start]):
      start -= 1
    elif above == _indent(lines[start]) - 2 and ITEM.match(lines[start - 1]):
      start -= 1
      break
    else:
      break
  head = _indent(lines[start])
  body = head + 2 if ITEM.match(lines[start]) else head
  stop = start + 1
  while (stop < len(lines) and _plain(lines[stop]) and not ITEM.match(lines[stop])
         and _indent(lines[stop]) == body and not lines[stop - 1].rstrip().endswith('"""')):
    stop += 1
  text = " ".join(line.strip() for line in lines[start:stop])
  # A code span is never split: its spaces are hidden from the wrap.
  text = CODE.sub(lambda m: m.group(0).replace(" ", "\0"), text)
  wrapped = textwrap.wrap(text, WIDTH, initial_indent=" " * head, subsequent_indent=" " * body,
                          break_long_words=False, break_on_hyphens=False)
  lines[start:stop] = [line.replace("\0", " ") for line in wrapped]
  return start


def link_targets(collection, ids: set[str]) -> dict[str, str]:
  """Each rendered object's defining path (and its rendered id) -> its rendered id.

  An object rendered under a public alias (``explicit_softmax.TokenFeatures``) is
  linked under that name, never under the private module that defines it.
  """
  out = {}
  for rendered in sorted(ids, key=len, reverse=True):  # the shortest id wins
    out[rendered] = rendered
    where = _canonical(collection, collection[PACKAGE], rendered)
    if where:
      out[where] = rendered
  return out


def convert(path: pathlib.Path, collection, links: dict[str, str]) -> int:
  """Rewrites the roles of one file; returns how many it replaced."""
  module_path = ".".join(path.resolve().relative_to(ROOT).with_suffix("").parts)
  module_path = module_path.removesuffix(".__init__")
  module = collection[module_path]
  lines = path.read_text().splitlines(keepends=False)
  count, grown = 0, []
  for i, line in enumerate(lines):
    def replace(match, i=i):
      short, target = match.group(2), match.group(3)
      text = target.rsplit(".", 1)[-1] if short else target
      if text.startswith(PACKAGE + "."):  # as users write it: es.sharding.sharded_sums
        text = "es." + text[len(PACKAGE) + 1:]
      where = _canonical(collection, _scope(module, path.resolve(), i + 1), target)
      return f"[`{text}`][{links[where]}]" if where in links else f"``{text}``"
    new, n = ROLE.subn(replace, line)
    if n:
      count += n
      lines[i] = new
      if len(new) > WIDTH:
        grown.append(i)
  first = len(lines)
  for i in reversed(grown):  # bottom up, so that earlier indices stay valid
    if i < first:  # not in a paragraph already re-wrapped
      first = _rewrap(lines, i)
  if count:
    path.write_text("\n".join(lines) + "\n")
  return count


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("paths", nargs="*", default=[str(ROOT / PACKAGE)])
  args = parser.parse_args(argv)
  loader = griffe.GriffeLoader(search_paths=[str(ROOT)])
  loader.load(PACKAGE)
  loader.resolve_aliases(implicit=True, external=False)
  links = link_targets(loader.modules_collection, rendered_ids())
  files = []
  for arg in args.paths:
    p = pathlib.Path(arg)
    files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
  for f in files:
    n = convert(f, loader.modules_collection, links)
    if n:
      print(f"{f}: {n} role(s)")


if __name__ == "__main__":
  main()
