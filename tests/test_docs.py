"""The documentation site builds in strict mode, renders cleanly, and the package's types check.

``mkdocs build --strict`` fails on any warning: a broken link, a missing page, a
cross-reference to an object no page renders, a docstring whose parameters lack
types or do not match the signature, a generated benchmark page that cannot be
built from the committed JSON. The rendered HTML is then read as a browser gets
it: no raw Sphinx role (``:func:`` and the like, which mkdocstrings does not
understand), no named constant where a signature's default value belongs, no
private name on the API reference.
"""

from __future__ import annotations

import dataclasses
import html
import inspect
import os
import pathlib
import re
import subprocess
import sys

import griffe
import pytest

import explicit_softmax as es
from explicit_softmax import _objective, adapters, fitting, solvers
from explicit_softmax.adapters import _common, _fit, _layerwise, _tokens
from explicit_softmax.sklearn import ExplicitSoftmaxClassifier

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj):(?:`|<code>)")
CONSTANT_DEFAULT = re.compile(r"=\s*[\w.]*DEFAULT_[A-Z_]+")
CONSTANT_NAME = re.compile(r"\bDEFAULT_[A-Z_]+")
PRIVATE = re.compile(r"(?<![\w.])(?:[\w.]*\.)?_[a-z][\w.]*")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
  out = tmp_path_factory.mktemp("site")
  env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
  run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                        str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stdout + run.stderr
  return out


def _pages(site):
  """``{"api/fitting": html, ...}`` for every page of the site."""
  return {str(p.parent.relative_to(site)): p.read_text() for p in site.rglob("index.html")}


def _text(page: str) -> str:
  """The page without its tags (a signature's spans joined)."""
  return html.unescape(re.sub(r"<[^>]+>", "", page))


def _article(page: str) -> str:
  """The text a reader sees in the page's main column (no navigation, no anchors' pilcrows)."""
  article = re.search(r"<article.*?</article>", page, re.S).group(0)
  article = re.sub(r'<a[^>]*class="headerlink"[^>]*>.*?</a>', "", article)
  return html.unescape(re.sub(r"<[^>]+>", "", article))


def test_the_documentation_builds_in_strict_mode(site):
  # The generated pages hold the committed results and their plots: the verdicts first,
  # each linking to the page of its benchmark.
  verdicts = (site / "benchmarks" / "index.html").read_text()
  for page in ("real", "mnist", "lm", "ngram", "deep", "cost", "claims"):
    assert f'href="{page}/"' in verdicts
    text = (site / "benchmarks" / page / "index.html").read_text()
    assert "<table" in text or "<img" in text, page
  assert len(_article(verdicts).split()) < 1500
  assert 'src="../../results/mnist.png"' in (site / "benchmarks" / "mnist" / "index.html").read_text()
  assert (site / "results" / "real.png").exists()
  assert "LogisticRegression" in (site / "choosing" / "index.html").read_text()
  assert "fit_optimum" in (site / "api" / "fitting" / "index.html").read_text()


def test_no_page_shows_a_raw_sphinx_role(site):
  pages = _pages(site)
  raw = {name: len(ROLE.findall(text)) for name, text in pages.items() if ROLE.search(text)}
  assert raw == {}


def test_signatures_show_default_values_not_constants(site):
  # In a signature (``smoothing=DEFAULT_SMOOTHING``) or a parameter table's Default column.
  named = {}
  for name, page in _pages(site).items():
    found = CONSTANT_DEFAULT.findall(_text(page))
    if name.startswith("api/"):
      found += CONSTANT_NAME.findall(_article(page))
    if found:
      named[name] = sorted(set(found))
  assert named == {}


def test_the_api_reference_names_no_private_object(site):
  pages = {name: _article(text) for name, text in _pages(site).items()
           if name.startswith("api/")}
  assert len(pages) >= 10
  private = {name: sorted(set(PRIVATE.findall(text))) for name, text in pages.items()
             if PRIVATE.search(text)}
  assert private == {}


# Public signatures spell their defaults as values (the site shows them as written); each
# value is the named constant that the rest of the code uses.
LITERAL_DEFAULTS = [
    (solvers.cooccurrence_weights, "smoothing", solvers.DEFAULT_SMOOTHING),
    (solvers.newton_weights, "ridge", solvers.DEFAULT_RIDGE),
    (solvers.solve, "smoothing", solvers.DEFAULT_SMOOTHING),
    (solvers.solve, "ridge", solvers.DEFAULT_RIDGE),
    (es.fit, "smoothing", solvers.DEFAULT_SMOOTHING),
    (es.fit, "ridge", solvers.DEFAULT_RIDGE),
    (es.fit, "tol", fitting.DEFAULT_TOL),
    (es.fit_optimum, "tol", fitting.DEFAULT_TOL),
    (ExplicitSoftmaxClassifier, "smoothing", solvers.DEFAULT_SMOOTHING),
    (ExplicitSoftmaxClassifier, "ridge", solvers.DEFAULT_RIDGE),
    (ExplicitSoftmaxClassifier, "tol", fitting.DEFAULT_TOL),
    (es.SparseCountModel, "smoothing", solvers.DEFAULT_SMOOTHING),
    (es.SparseCountModel.fit, "smoothing", solvers.DEFAULT_SMOOTHING),
    (es.SparseCountModel.from_batches, "smoothing", solvers.DEFAULT_SMOOTHING),
    (es.NgramModel, "pseudo_count", solvers.DEFAULT_SMOOTHING),
    (es.NgramModel.fit, "pseudo_count", solvers.DEFAULT_SMOOTHING),
    (es.NgramModel.with_smoothing, "pseudo_count", solvers.DEFAULT_SMOOTHING),
    (es.refine, "tol", _objective.DEFAULT_TOL),
    (adapters.fit_explicit, "method", _fit.DEFAULT_METHOD),
    (adapters.fit_explicit, "smoothing", solvers.DEFAULT_SMOOTHING),
    (adapters.fit_explicit, "ridge", solvers.DEFAULT_RIDGE),
    (adapters.layerwise_init, "method", _fit.DEFAULT_METHOD),
    (adapters.layerwise_init, "smoothing", solvers.DEFAULT_SMOOTHING),
    (adapters.layerwise_init, "ridge", solvers.DEFAULT_RIDGE),
    (adapters.layerwise_init, "rms", _layerwise.DEFAULT_HIDDEN_RMS),
    (adapters.layerwise_init, "n_cluster_samples", _layerwise.DEFAULT_CLUSTER_SAMPLES),
    (adapters.class_clusters, "iterations", _layerwise.DEFAULT_KMEANS_ITERATIONS),
    (adapters.hidden_weights, "rms", _layerwise.DEFAULT_HIDDEN_RMS),
    (adapters.svd_factors, "smoothing", solvers.DEFAULT_SMOOTHING),
    (adapters.svd_factors, "ridge", solvers.DEFAULT_RIDGE),
    (adapters.context_bag_weights, "smoothing", solvers.DEFAULT_SMOOTHING),
    (adapters.context_bag_weights, "max_positions", _tokens.DEFAULT_CONTEXT_POSITIONS),
    (adapters.ridge_map, "ridge", solvers.DEFAULT_RIDGE),
    (adapters.value_output_weights, "ridge", solvers.DEFAULT_RIDGE),
]
# The same for the framework adapters, which import their framework: (module, function,
# parameter, constant).
_FIT = {"method": _fit.DEFAULT_METHOD, "smoothing": solvers.DEFAULT_SMOOTHING,
        "ridge": solvers.DEFAULT_RIDGE}
_SOLVE = {"smoothing": solvers.DEFAULT_SMOOTHING, "ridge": solvers.DEFAULT_RIDGE}
_LAYERWISE = {**_FIT, "rms": _layerwise.DEFAULT_HIDDEN_RMS,
              "n_cluster_samples": _layerwise.DEFAULT_CLUSTER_SAMPLES}
ADAPTER_LITERAL_DEFAULTS = [
    (module, function, name, constant)
    for module, functions in [
        ("torch", {"init_head": _FIT, "new_head": _FIT, "init_layerwise": _LAYERWISE,
                   "ResidualHead": _SOLVE, "init_value_output": {"ridge": solvers.DEFAULT_RIDGE}}),
        ("flax", {"init_head": _FIT, "new_head": _FIT, "init_layerwise": _LAYERWISE,
                  "ResidualHead": _SOLVE, "explicit_init": _SOLVE, "init_linen_head": _FIT})]
    for function, defaults in functions.items()
    for name, constant in defaults.items()]


@pytest.mark.parametrize("fn, name, constant", LITERAL_DEFAULTS,
                         ids=[f"{f.__qualname__}-{n}" for f, n, _ in LITERAL_DEFAULTS])
def test_each_literal_default_equals_its_constant(fn, name, constant):
  assert inspect.signature(fn).parameters[name].default == constant


@pytest.mark.parametrize("module, function, name, constant", ADAPTER_LITERAL_DEFAULTS,
                         ids=[f"{m}.{f}-{n}" for m, f, n, _ in ADAPTER_LITERAL_DEFAULTS])
def test_each_adapter_literal_default_equals_its_constant(module, function, name, constant):
  adapter = pytest.importorskip(f"explicit_softmax.adapters.{module}")
  fn = getattr(adapter, function)
  fn = fn.__init__ if inspect.isclass(fn) else fn  # an nnx.Module's class signature is (*args)
  assert inspect.signature(fn).parameters[name].default == constant


# -- the adapters document every argument ---------------------------------------------
# Arguments whose entry names the framework's own classes (``nn.Linear``, ``nnx.Sequential``)
# and so differs from the shared implementation's wording.
FRAMEWORK_ARGUMENTS = {"model", "x", "head", "layer", "embed", "pairs"}


def _documented(obj) -> dict[str, str]:
  """``{parameter: its Args entry}`` of a function's (a class's ``__init__``'s) docstring,
  or ``{field: entry}`` of a dataclass's Attributes, whitespace normalised."""
  if dataclasses.is_dataclass(obj):
    kind = "attributes"
  else:
    kind = "parameters"
    obj = obj.__init__ if inspect.isclass(obj) else obj
  sections = griffe.Docstring(inspect.getdoc(obj) or "").parse(
      "google", warn_missing_types=False, warn_unknown_params=False)
  return {item.name.lstrip("*"): " ".join(item.description.split())
          for section in sections if section.kind.value == kind for item in section.value}


def _arguments(obj) -> list[str]:
  if dataclasses.is_dataclass(obj):
    return [field.name for field in dataclasses.fields(obj)]
  obj = obj.__init__ if inspect.isclass(obj) else obj  # an nnx.Module's class takes (*args)
  return [name for name in inspect.signature(obj).parameters if name != "self"]


def _public(module) -> list:
  """The functions and classes (with their own ``__init__``) that a module defines publicly."""
  names = getattr(module, "__all__", None) or [
      name for name, obj in vars(module).items() if not name.startswith("_")
      and (inspect.isfunction(obj) or inspect.isclass(obj))
      and obj.__module__ == module.__name__]
  objs = [getattr(module, name) for name in names]
  return [obj for obj in objs if inspect.isfunction(obj) or dataclasses.is_dataclass(obj)
          or "__init__" in vars(obj)]


def _adapter_module(name: str):
  if name == "adapters":
    return adapters
  return pytest.importorskip(f"explicit_softmax.adapters.{name}")


@pytest.mark.parametrize("module", ["adapters", "torch", "flax"])
def test_every_public_adapter_documents_each_argument(module):
  mod = _adapter_module(module)
  objs = _public(mod)
  assert len(objs) >= 8
  undocumented = {}
  for obj in objs:
    documented, arguments = _documented(obj), _arguments(obj)
    missing = [a for a in arguments if not documented.get(a)]
    extra = sorted(set(documented) - set(arguments))
    if missing or extra:
      undocumented[obj.__qualname__] = (missing, extra)
  assert undocumented == {}


@pytest.mark.parametrize("module", ["adapters", "torch", "flax"])
def test_the_adapters_docstrings_name_no_private_object(module):
  # What help() shows, as the API page does.
  mod = _adapter_module(module)
  docs = {mod.__name__: inspect.getdoc(mod)}
  for obj in _public(mod):
    docs[obj.__qualname__] = inspect.getdoc(obj)
    if inspect.isclass(obj):
      docs.update({f"{obj.__qualname__}.{name}": inspect.getdoc(member)
                   for name, member in vars(obj).items() if inspect.isfunction(member)})
  named = {name: sorted(set(PRIVATE.findall(doc or "") + CONSTANT_NAME.findall(doc or "")))
           for name, doc in docs.items()}
  assert {name: found for name, found in named.items() if found} == {}


@pytest.mark.parametrize("module", ["torch", "flax"])
def test_the_adapters_describe_shared_arguments_as_their_implementation(module):
  # Each framework function runs the function of the same name in the shared implementation
  # (init_layerwise then layerwise_init): an argument they share, unless its wording names
  # the framework's classes, reads the same in both.
  mod = _adapter_module(module)
  pairs = [(obj, getattr(_common, obj.__name__)) for obj in _public(mod)
           if hasattr(_common, obj.__name__)]
  pairs.append((mod.init_layerwise, adapters.layerwise_init))
  assert len(pairs) >= 6
  differ = {}
  for public, wrapped in pairs:
    mine, theirs = _documented(public), _documented(wrapped)
    for name in sorted((set(mine) & set(theirs)) - FRAMEWORK_ARGUMENTS):
      if mine[name] != theirs[name]:
        differ[f"{public.__name__}({name})"] = (mine[name], theirs[name])
  assert differ == {}


def test_the_package_type_checks():
  run = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", os.devnull],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert run.returncode == 0, run.stdout + run.stderr
