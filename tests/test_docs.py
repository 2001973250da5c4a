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

import html
import inspect
import os
import pathlib
import re
import subprocess
import sys

import pytest

import explicit_softmax as es
from explicit_softmax import _objective, fitting, solvers
from explicit_softmax.sklearn import ExplicitSoftmaxClassifier

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj):(?:`|<code>)")
CONSTANT_DEFAULT = re.compile(r"=\s*[\w.]*DEFAULT_[A-Z_]+")
CONSTANT_NAME = re.compile(r"\bDEFAULT_[A-Z_]+")
PRIVATE = re.compile(r"(?<![\w.])(?:[\w.]*\.)?_[a-z][\w.]*")
# The adapters' docstrings still use Sphinx roles and named defaults and document their
# shared logic in a private module: another branch is changing them. Once it has merged,
# `python tools/convert_roles.py explicit_softmax/adapters` converts the roles; its
# defaults and page follow the rules of the other pages, and this set becomes empty
# (the strict xfail below fails until it is).
AWAITING_CONVERSION = {"api/adapters"}


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
  raw = {name: len(ROLE.findall(text)) for name, text in pages.items()
         if name not in AWAITING_CONVERSION and ROLE.search(text)}
  assert raw == {}


def test_signatures_show_default_values_not_constants(site):
  # In a signature (``smoothing=DEFAULT_SMOOTHING``) or a parameter table's Default column.
  named = {}
  for name, page in _pages(site).items():
    found = CONSTANT_DEFAULT.findall(_text(page))
    if name.startswith("api/"):
      found += CONSTANT_NAME.findall(_article(page))
    if found and name not in AWAITING_CONVERSION:
      named[name] = sorted(set(found))
  assert named == {}


def test_the_api_reference_names_no_private_object(site):
  pages = {name: _article(text) for name, text in _pages(site).items()
           if name.startswith("api/") and name not in AWAITING_CONVERSION}
  assert len(pages) >= 10
  private = {name: sorted(set(PRIVATE.findall(text))) for name, text in pages.items()
             if PRIVATE.search(text)}
  assert private == {}


@pytest.mark.xfail(strict=True, reason="the adapters' docstrings await tools/convert_roles.py "
                   "after the adapters branch merges (AWAITING_CONVERSION)")
def test_the_pages_awaiting_conversion_are_clean(site):
  pages = _pages(site)
  for name in AWAITING_CONVERSION:
    text = pages[name]
    assert not ROLE.search(text) and not CONSTANT_NAME.search(_article(text))
    assert not PRIVATE.search(_article(text))


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
]


@pytest.mark.parametrize("fn, name, constant", LITERAL_DEFAULTS,
                         ids=[f"{f.__qualname__}-{n}" for f, n, _ in LITERAL_DEFAULTS])
def test_each_literal_default_equals_its_constant(fn, name, constant):
  assert inspect.signature(fn).parameters[name].default == constant


def test_the_package_type_checks():
  run = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", os.devnull],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert run.returncode == 0, run.stdout + run.stderr
