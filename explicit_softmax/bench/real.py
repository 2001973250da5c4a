"""Real data: the default classifier against scikit-learn peers, cold and warm.

Data sets nobody here wrote, each in a fresh Python process (this script
re-invoked with ``--one NAME``, which prints one JSON line):

* scikit-learn's bundled ``iris``, ``wine``, ``breast_cancer`` and ``digits``:
  stratified 75/25 split (``random_state=0``), ``StandardScaler`` fitted on the
  training part (so the features have negative values);
* ``mnist``: ``explicit_softmax.data.load_mnist`` train (the first
  ``--mnist-rows`` images, default all 60,000) and test (10,000), pixels / 255
  as float32. Skipped with a one-line note if the files are not found (searched
  in ``$EXPLICIT_SOFTMAX_DATA``, set to ``../shared/data`` next to the repository
  when unset and that directory exists, then the user cache);
* ``shakespeare``: bag of words of the speeches of the ten most frequent
  speakers of tiny Shakespeare (``--text``, default
  ``../shared/data/tinyshakespeare.txt`` next to the repository, then
  ``$EXPLICIT_SOFTMAX_DATA/tinyshakespeare.txt``): the corpus is blocks
  ``"NAME:\\nline\\nline\\n\\n"``, each block (its lines joined) is a document
  labelled by its speaker; stratified 75/25 split (seed 0), ``CountVectorizer()``
  fitted on the training part. Skipped with a one-line note if the file is absent.

Arms, all fitted on the same split, in this order in each process:

* ``ExplicitSoftmaxClassifier()`` with its defaults (the headline arm; its
  ``get_params()`` are recorded), then the raw closed forms ``method="newton"``
  and ``method="cooccurrence"``. An arm that raises a ``ValueError`` (e.g. the
  co-occurrence form on negative features) is recorded as not applicable, with
  the message; the Newton form is not applicable above ``--newton-max-features``
  features (its Gram matrix is N^2);
* ``LogisticRegression()`` (defaults, as users run it; its warnings are
  suppressed and recorded), ``LogisticRegressionCV`` over
  ``C in logspace(-3, 3, 7)`` with 3 stratified folds, ``max_iter=1000``,
  scored by held-out log loss (the default scoring from scikit-learn 1.11),
  ``MultinomialNB()`` (nonnegative features only: MNIST and the bag of words),
  ``RidgeClassifier()`` (no ``predict_proba``: log loss null) and
  ``SGDClassifier(loss="log_loss", random_state=0)``.

Per arm: held-out accuracy and log loss (``sklearn.metrics.log_loss`` with
``labels=clf.classes_``), the cold fit (the first construct + fit in the process,
after data loading: the library's first arm includes JAX's compilation) and the
warm fit (median of ``--warm-repeats`` further fits; none, and warm null, when the
cold fit took more than ``--warm-cap`` seconds: on all of MNIST the tuned
``LogisticRegressionCV`` takes minutes per fit on two cores). Imports are timed
separately, scikit-learn first, then the library on top of it (``import_seconds``:
JAX and the library).

Which explicit start pays (``starts`` in each data set's record; ``--no-starts``
skips it): after the arms, in the same process (compilation already paid),
``es.fit_optimum(X, codes, l2=l2, start=START, tol=1e-6)`` at the ``l2`` that the
default arm chose there, from each start: ``zero``; ``newton`` and
``newton+calibrate`` (``es.calibrate(..., l2=1/T)``; skipped above
``--starts-newton-max-features`` features, default 5,000: its Gram matrix is
(N+1)^2); on nonnegative features only (MNIST, the bag of words) also
``cooccurrence``, ``cooccurrence+calibrate`` and ``class_normalised`` (multinomial
naive Bayes weights ``log((F + 1) / (F^T 1 + N))`` and the log class prior, from the
same co-occurrence statistics). Per start: the cost of computing it from scratch
and of the refinement (one untimed run, then medians of 3 timed runs, or 1 where a
run takes over 20 s), the start's own held-out log loss and accuracy, the final
fit's L-BFGS steps, convergence and held-out log loss (all starts should reach the
same optimum: the largest weight difference from the zero start's fit is
recorded). Once ``--starts-budget`` seconds (default 600) have gone on a data set,
its remaining starts are skipped. ``report.start_section`` renders it.

Targets (``report.real_targets``; per data set and overall): the default
estimator's held-out log loss at most 2% above ``LogisticRegression()``'s, its
accuracy at most one point below, and its total cold fit time over all data sets
below ``LogisticRegression()``'s (ratio LR / ours > 1).

Writes ``real.json``, ``real.md`` and ``real.png`` to ``--out`` (default
``benchmarks/results``).

MNIST (all 60,000 rows by default) takes most of the default run's time, above all
the tuned ``LogisticRegressionCV``; ``--mnist-rows 10000`` shortens it (the rows
used are recorded). Each data set's process is stopped after ``--timeout`` seconds
(recorded as an error).

Usage: python benchmarks/bench_real.py [--quick] [--mnist-rows N] [--text PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from explicit_softmax.bench import report  # noqa: E402
from explicit_softmax.bench._harness import write_json  # noqa: E402

from explicit_softmax.bench import _harness  # noqa: E402
# The data sets, the arms, the starts study and the output, one module each; re-exported
# here (``dask_cluster`` loads its data sets through ``real.load``).
from explicit_softmax.bench.real_arms import ARMS, CS, run_one  # noqa: F401
from explicit_softmax.bench.real_data import (DATASETS, N_SPEAKERS, QUICK, Skip,  # noqa: F401
                                              _plain, load)
from explicit_softmax.bench.real_output import _summary, markdown, plot
from explicit_softmax.bench.real_starts import STARTS, run_starts  # noqa: F401


# -- the parent: one process per data set, then the outputs ---------------------------------

def _child(name: str, args) -> dict:
  cmd = [sys.executable, "-m", "explicit_softmax.bench.real", "--one", name,
         "--warm-repeats", str(args.warm_repeats), "--warm-cap", str(args.warm_cap),
         "--newton-max-features", str(args.newton_max_features),
         "--starts-newton-max-features", str(args.starts_newton_max_features),
         "--starts-budget", str(args.starts_budget)]
  if args.no_starts:
    cmd.append("--no-starts")
  if args.mnist_rows:
    cmd += ["--mnist-rows", str(args.mnist_rows)]
  if args.text:
    cmd += ["--text", str(args.text)]
  start = time.perf_counter()
  try:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=args.timeout)
  except subprocess.TimeoutExpired:
    return {"name": name, "status": "error", "reason": f"timed out after {args.timeout} s"}
  wall = time.perf_counter() - start
  lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
  if proc.returncode != 0 or not lines:
    return {"name": name, "status": "error", "process_seconds": wall,
            "reason": f"child exited with status {proc.returncode} and no result "
                      "(its stderr is above)"}
  return {**json.loads(lines[-1]), "process_seconds": wall}


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
  parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=None,
                      help="run these data sets (default: all, or the --quick ones)")
  parser.add_argument("--mnist-rows", type=int, default=None,
                      help="MNIST training rows used (the first ones; default all 60,000)")
  parser.add_argument("--text", default=None, help="tiny Shakespeare (default "
                      "../shared/data/tinyshakespeare.txt next to the repository)")
  parser.add_argument("--warm-repeats", type=int, default=3)
  parser.add_argument("--warm-cap", type=float, default=30.0,
                      help="an arm whose cold fit took longer (seconds) gets no warm fits")
  parser.add_argument("--newton-max-features", type=int, default=20_000)
  parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per data set")
  parser.add_argument("--no-starts", action="store_true",
                      help="skip the study of explicit starts for fit_optimum")
  parser.add_argument("--starts-newton-max-features", type=int, default=5000,
                      help="the starts study skips the Newton starts above this many features")
  parser.add_argument("--starts-budget", type=float, default=600.0,
                      help="seconds per data set after which the remaining starts are skipped")
  parser.add_argument("--out", default=None, help="output directory (default benchmarks/results)")
  parser.add_argument("--one", choices=DATASETS, default=None,
                      help="(internal) run one data set here and print one JSON line")
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  if args.one:
    print(json.dumps(run_one(args.one, args), default=_plain), flush=True)
    return None
  names = args.datasets or (QUICK if args.quick else DATASETS)
  start = time.perf_counter()
  results = {}
  for name in names:
    results[name] = _child(name, args)
    print(_summary(results[name]), flush=True)
  default_params = next((d["arms"]["explicit_default"].get("params") for d in results.values()
                         if d["status"] == "ok"
                         and d["arms"]["explicit_default"]["status"] == "ok"), None)
  if default_params is None:  # the default arm failed everywhere: its parameters all the same
    from explicit_softmax.sklearn import ExplicitSoftmaxClassifier
    default_params = {k: _plain(v) for k, v in ExplicitSoftmaxClassifier().get_params().items()}
  payload = {
      "config": {"datasets": list(names), "quick": args.quick, "mnist_rows": args.mnist_rows,
                 "warm_repeats": args.warm_repeats, "warm_cap_seconds": args.warm_cap,
                 "newton_max_features": args.newton_max_features, "n_speakers": N_SPEAKERS,
                 "logreg_cv_Cs": CS.tolist()},
      "default_params": default_params,
      "datasets": results,
      "targets": report.real_targets(results),
      "total_seconds": time.perf_counter() - start,
  }
  path = write_json("real.json", payload, args.out)
  payload = json.loads(path.read_text())  # with the machine facts
  (path.parent / "real.md").write_text(markdown(payload))
  plot(payload, path.parent / "real.png")
  for sentence in report.real_verdicts(payload["targets"]):
    print(sentence)
  print(f"wrote {path}, real.md and real.png ({payload['total_seconds']:.0f} s)")
  return payload


if __name__ == "__main__":
  _harness.run(main)
