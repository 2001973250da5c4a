"""The documentation's benchmark pages: the verdicts first, one line each, then a page per
benchmark.

``docs/benchmarks.md`` holds the verdicts (``verdicts``), each with a link to the
page under ``docs/benchmarks/`` that holds its evidence (``page``): tables, plots
and the full sentences of the report, all from the committed ``benchmarks/results/*.json``.
The documentation's hook (``docs/_hooks/results.py``) puts them where a page asks for
them with a ``<!-- generated:NAME -->`` marker.
"""

from __future__ import annotations

from explicit_softmax.bench import report
from explicit_softmax.bench import report_common as common
from explicit_softmax.bench.report_common import _fmt, _load
from explicit_softmax.bench.report_deep import deep_section, deep_verdict
from explicit_softmax.bench.report_ngram import ngram_section
from explicit_softmax.bench.report_real import LRCV_SPEEDUP, peer_targets, real_section
from explicit_softmax.bench.report_tabular import tabular_section
from explicit_softmax.bench.report_verdicts import (_init_verdicts, _lm_verdicts, _mnist_verdicts,
                                                    claims_section)

# Sub-page -> its title (the link text of the verdicts) and the report's sections on it,
# each a (JSON file, section function) pair; a missing JSON file leaves its section out.
PAGES = {
    "real": ("The default against scikit-learn",
             [("real.json", real_section), ("tabular.json", tabular_section)]),
    "mnist": ("MNIST", [("mnist.json", lambda d: _verdict_text(_mnist_verdicts(d))),
                        ("mnist.json", report.mnist_section)]),
    "lm": ("Toy language models", [("lm.json", lambda d: _verdict_text(_lm_verdicts(d))),
                                   ("lm.json", report.lm_section)]),
    "ngram": ("n-gram language models", [("ngram.json", ngram_section)]),
    "deep": ("Initialising deeper models",
             [("init.json", lambda d: _verdict_text(_init_verdicts(d))),
              ("deep.json", lambda d: _verdict_text([deep_verdict(d)])),
              ("init.json", lambda d: report.init_section(d) + _plot("init", "MLP initialisers")),
              ("deep.json", deep_section)]),
    "cost": ("Cost and scale", [("fit.json", report.fit_section)]),
    "claims": ("The paper's claims", []),
}


def _plot(name: str, alt: str) -> str:
  """A committed plot, if there is one."""
  exists = (common.RESULTS / f"{name}.png").exists()
  return f"\n![{alt}](benchmarks/results/{name}.png)\n" if exists else ""


def _verdict_text(bullets: list[str]) -> str:
  """The report's verdict bullets, in full, at the top of their page."""
  return "\n".join(b for b in bullets if b) + "\n"


def page(name: str) -> str:
  """The generated part of the benchmark page ``docs/benchmarks/NAME.md``."""
  parts = [fn(d) for file, fn in PAGES[name][1] if (d := _load(file)) is not None]
  if name == "cost":
    parts.append(report.scale_section(_load("large_vocab.json"), _load("memory.json"),
                                      _load("scaling.json")))
    parts += [_plot(plot, plot.replace("_", " ")) for plot in ("large_vocab", "memory", "scaling")]
  if name == "claims":
    # The section's own heading is the page's title.
    parts.append(claims_section(_load("mnist.json"), _load("lm.json")).split("\n", 2)[2])
  text = "\n".join(parts) if parts else "(no committed results)"
  # Plots: the README links them as benchmarks/results/NAME.png; the site serves them at
  # results/, one level above the sub-pages.
  return text.replace("benchmarks/results/", "../results/")


def _link(name: str) -> str:
  return f"[{PAGES[name][0]}](benchmarks/{name}.md)"


def _met(ok: bool) -> str:
  return "met" if ok else "**not met**"


def _lm_lines(lm) -> list[str]:
  out = []
  t = lm.get("target")
  if t:
    at_least = "at least " if t["lower_bound"] else ""
    out.append(f"**Wins** on one-hot contexts (a bigram model): the exact training optimum in "
               f"{t['fit_seconds']:.2f} s; best-tuned SGD/Adam took {at_least}"
               f"{t['ratio']:.0f}x as long to reach its held-out loss.")
  for name in ("additive-K2", "additive-K3"):
    d = lm.get("datasets", {}).get(name)
    if not d:
      continue
    t, ce = d["target"], d["methods"]["explicit"]["ce"]
    gd = (f"never matched it within {t['ratio']:.0f}x the fit's time" if t["lower_bound"]
          else f"matched it after {t['gd_seconds']:.2f} s (the fit: {t['fit_seconds']:.2f} s), "
               "then went lower")
    out.append(f"**Only a rough start** with {d['n_context']} context tokens ({name}): "
               f"{ce - d['entropy_rate']:.2f} nats above the entropy rate; SGD/Adam {gd}.")
  return out


def _mnist_lines(mnist) -> list[str]:
  r, c = mnist["ratios"], mnist["curves"]
  cal = c["cooccurrence+calibrate"][0]
  line = (f"**Only a warm start** on dense pixels (MNIST): the calibrated co-occurrence solution "
          f"reaches {100 * cal['acc']:.1f}% accuracy; the best explicit pipeline reached held-out "
          f"CE {mnist['target_ce']} {_fmt(r['sklearn_over_pipeline'], '.0f')}x sooner than "
          "scikit-learn's lbfgs")
  adam = r.get("adam_over_pipeline")
  if adam is not None and adam < 1:
    line += f", but a tuned Adam from zero {1 / adam:.1f}x sooner still (**not met**)."
  elif adam is not None:
    line += f", and {adam:.2f}x sooner than a tuned Adam from zero."
  else:
    line += "."
  return [line]


def _init_lines(init) -> list[str]:
  tor = init["mnist"]["torch"]
  a = tor["explicit_head"]["by_step"]["100"]["accuracy"]["mean"]
  b = tor["default"]["by_step"]["100"]["accuracy"]["mean"]
  return [f"**Wins as an initialiser** of an MLP's output layer: {100 * a:.1f}% against "
          f"{100 * b:.1f}% accuracy after 100 Adam steps (PyTorch)."]


def _deep_lines(deep) -> list[str]:
  targets = {k: v for k, v in deep.get("targets", {}).items() if v}
  if not targets:
    return []
  met = sum(bool(v["met"]) for v in targets.values())
  return [f"**As an initialiser of real deep models** (a CNN, a new head, a transformer): "
          f"default's final validation loss in half the steps and seconds in every seed on "
          f"{met} of {len(targets)} tasks and frameworks "
          f"({_met(met == len(targets))} on the others)."]


def _peer_line(label: str, d: dict) -> str:
  t = peer_targets(d["datasets"])
  keys = ("log_loss", "accuracy", "fit_time", "lrcv")

  def count(key):
    return f"{len(t[key]['sets']) - len(t[key]['failed'])}/{len(t[key]['sets'])}"

  total = t["total"]
  met = all(t[key]["met"] for key in keys) and total["met"] and not t["missing"]
  return (f"**{label}**: {_met(met)}; data sets within the targets: log loss "
          f"{count('log_loss')}, accuracy {count('accuracy')}, as fast as "
          f"`LogisticRegression()` {count('fit_time')}, {LRCV_SPEEDUP:g}x below "
          f"`LogisticRegressionCV()` {count('lrcv')}; total fit time "
          f"{total['ours_seconds']:.1f} s against {total['logreg_seconds']:.1f} s.")


def _cost_line(fit) -> str:
  ok = fit["ratio_fit_to_matmul"] <= fit["target_ratio"]
  return (f"**One pass**: the statistics and closed form of `es.fit` cost "
          f"{fit['ratio_fit_to_matmul']:.2f}x a bare numpy `X.T @ Y` on MNIST-sized data "
          f"(target {fit['target_ratio']:g}x: {_met(ok)}).")


def _ngram_line(ngram) -> str:
  words = ngram["corpora"]["words"]["orders"]
  r = words.get("3") or next(iter(words.values()))
  return (f"**n-gram models**: modified Kneser-Ney perplexity {r['kneser-ney']:.1f} on tiny "
          f"Shakespeare word trigrams, against {r['kneser-ney-fixed']:.1f} with one fixed "
          f"discount and {r['additive']:.1f} additive.")


def verdicts() -> str:
  """The verdicts page's list: one line per finding, each linking to its evidence."""
  lines = []
  real, tabular = _load("real.json"), _load("tabular.json")
  if real:
    lines.append((_peer_line("Against scikit-learn on real data", real), "real"))
  if tabular:
    lines.append((_peer_line("On the KEEL collection", tabular), "real"))
  lm, mnist, init, deep = (_load(f) for f in ("lm.json", "mnist.json", "init.json", "deep.json"))
  if lm:
    lines += [(line, "lm") for line in _lm_lines(lm)]
  ngram = _load("ngram.json")
  if ngram:
    lines.append((_ngram_line(ngram), "ngram"))
  if mnist:
    lines += [(line, "mnist") for line in _mnist_lines(mnist)]
  if init:
    lines += [(line, "deep") for line in _init_lines(init)]
  if deep:
    lines += [(line, "deep") for line in _deep_lines(deep)]
  fit = _load("fit.json")
  if fit:
    lines.append((_cost_line(fit), "cost"))
  if mnist or lm:
    lines.append(("**The paper's three claims**, each as the tests assert it on small data and "
                  "as the benchmarks measure it at full scale.", "claims"))
  return "\n".join(f"- {text} ({_link(name)})" for text, name in lines) + "\n"
