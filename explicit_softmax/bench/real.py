"""Real data: the default classifier against scikit-learn's peers, cold, as users run them.

Data sets, each split once (every arm sees the same split):

* scikit-learn's bundled ``iris``, ``wine``, ``breast_cancer`` and ``digits``:
  stratified 75/25 split (``random_state=0``), ``StandardScaler`` fitted on the
  training part; ``breast_cancer_raw`` and ``digits_raw``: the same without the
  scaler (raw units, as a user loads them);
* ``badly_scaled``: 20,000 training rows of 200 correlated Gaussian features from a
  seeded log-linear source, 10 classes, each feature then scaled by 10^U(-3,3) and
  offset (raw; ``real_data.badly_scaled``; stratified 75/25);
* ``mnist``: ``explicit_softmax.data.load_mnist`` train (the first ``--mnist-rows``
  images, default all 60,000) and test (10,000), pixels / 255 as float32. Skipped
  with a one-line note if the files are not found (searched in
  ``$EXPLICIT_SOFTMAX_DATA``, set to ``../shared/data`` next to the repository when
  unset and that directory exists, then the user cache);
* ``shakespeare``: bag of words of the speeches of the ten most frequent speakers of
  tiny Shakespeare (``--text``, default ``../shared/data/tinyshakespeare.txt`` next to
  the repository, then ``$EXPLICIT_SOFTMAX_DATA/tinyshakespeare.txt``), each speech a
  document labelled by its speaker; stratified 75/25 split (seed 0),
  ``CountVectorizer()`` fitted on the training part. Skipped if the file is absent;
* ``wide_bow``: a 200,000-word bag of words, 3 Zipf-distributed words a row (CSR
  counts), 20 classes from a seeded log-linear source, 200,000 training rows
  (``real_data.wide_bag_of_words``; stratified 75/25).

Arms. The headline arms each run in a fresh Python process of their own (this script
re-invoked with ``--one NAME --arms KEY``), so that each one's cold fit is the first
fit in its process, as a user's first call is:

* ``ExplicitSoftmaxClassifier()`` with its defaults (its ``get_params()`` and its
  fit's record: seconds for the statistics, choosing ``l2`` and the final fit, the
  ``C`` it chose, the search's fits and steps, the final fit's steps and relative
  gradient norm); the library sets its own threads;
* ``LogisticRegression()`` and ``LogisticRegressionCV()`` (its defaults: 5 folds, 10
  Cs; see ``real_arms.LRCV_FUTURE_DEFAULTS`` for the three announced defaults spelled
  out). Each peer is timed cold with the default threads, then (threadpoolctl) at 1
  BLAS thread and at all cores; its *best* time is the smallest of the three.

Then, in one more process, the other arms: the raw closed forms
``ExplicitSoftmaxClassifier(method="newton")`` (not above ``--newton-max-features``
features) and ``method="cooccurrence"``, ``MultinomialNB()`` (nonnegative features
only), ``RidgeClassifier()`` (no ``predict_proba``: log loss null) and
``SGDClassifier(loss="log_loss", random_state=0)`` (``--no-others`` skips them).
An arm that raises a ``ValueError`` is recorded as not applicable, with the message.

Per arm: held-out accuracy and log loss (``sklearn.metrics.log_loss`` with
``labels=clf.classes_``), the cold fit (after data loading; imports excluded) and the
median of ``--warm-repeats`` further fits (none when the cold fit took over
``--warm-cap`` seconds; a peer's thread settings then get one fit each, and none
when its cold fit took over ``--thread-cap`` seconds).

Targets (issue 22; ``report.peer_targets``, per data set and overall): held-out log
loss at most ``1.02 min(LR(), LRCV()) + 0.005``; accuracy at most one point below the
better peer; the default's cold fit no slower than ``LogisticRegression()``'s best
on every set with at least 1,000 training rows; its total over all sets below
``LogisticRegression()``'s total (stretch: half); at least 5x below
``LogisticRegressionCV()``'s best on every set.

Which explicit start pays (``--starts``; off by default, it doubles the run): after
the default arm's fit, in its process, ``es.fit_optimum`` at the ``l2`` it chose from
each explicit start (``real_starts``; ``report.start_section`` renders it).

Each process is stopped after ``--timeout`` seconds: a headline arm stopped in its
cold fit is recorded as a timeout, with the seconds it ran (a lower bound on its fit
time). Writes ``real.json``, ``real.md`` and ``real.png`` to ``--out``.

Usage: explicit-softmax bench real [--quick] [-- --datasets iris,wine --mnist-rows N]
"""

from __future__ import annotations

import functools
import time

from explicit_softmax.bench import report  # noqa: E402

from explicit_softmax.bench import _harness  # noqa: E402
# The data sets, the arms, the starts study and the output, one module each; re-exported
# here (``dask_cluster`` loads its data sets through ``real.load``).
from explicit_softmax.bench.real_arms import (ARMS, COLD_PROCESSES, HEADLINE,  # noqa: F401
                                              OTHERS, child_main, lrcv_params, run_dataset)
from explicit_softmax.bench.real_data import (DATASETS, N_SPEAKERS, QUICK, Skip,  # noqa: F401
                                              _plain, load)
from explicit_softmax.bench.real_output import _summary, markdown, write_outputs  # noqa: F401
from explicit_softmax.bench.real_starts import STARTS, run_starts  # noqa: F401


def _names(values, allowed) -> list[str]:
  """Names given as ``a b`` or ``a,b``, each checked against ``allowed``."""
  names = [n for v in values for n in v.split(",") if n]
  unknown = [n for n in names if n not in allowed]
  if unknown:
    raise ValueError(f"unknown name{'s' * (len(unknown) > 1)} {', '.join(unknown)}; choose "
                     f"from {', '.join(allowed)}.")
  return names


def child_args(args) -> list[str]:
  """The options a data set's child processes get from the parent's (the results
  folder included, though a child only prints its results)."""
  out = ["--out", str(args.out), "--warm-repeats", str(args.warm_repeats),
         "--warm-cap", str(args.warm_cap), "--thread-cap", str(args.thread_cap),
         "--newton-max-features", str(args.newton_max_features)]
  if getattr(args, "starts", False):
    out += ["--starts", "--starts-newton-max-features", str(args.starts_newton_max_features),
            "--starts-budget", str(args.starts_budget)]
  if getattr(args, "mnist_rows", None):
    out += ["--mnist-rows", str(args.mnist_rows)]
  if getattr(args, "text", None):
    out += ["--text", str(args.text)]
  return out


def add_arm_options(parser) -> None:
  """The options of the arms' timing, shared with ``bench tabular``."""
  parser.add_argument("--warm-repeats", type=int, default=3,
                      help="further fits after the cold one (median reported)")
  parser.add_argument("--warm-cap", type=float, default=30.0,
                      help="an arm whose cold fit took longer (seconds) gets no warm fits, "
                           "and one fit per thread setting")
  parser.add_argument("--thread-cap", type=float, default=120.0,
                      help="a peer whose cold fit took longer (seconds) is not timed at "
                           "other thread settings")
  parser.add_argument("--newton-max-features", type=int, default=20_000)
  parser.add_argument("--timeout", type=float, default=1800.0,
                      help="seconds per process (each headline arm of a data set has one)")
  parser.add_argument("--no-others", action="store_true",
                      help="only the default and the two LogisticRegression peers")
  parser.add_argument("--arms", default=None, help="(internal) the arms of a child process")


def parse_args(argv=None):
  parser = _harness.parser(__doc__, quick=f"only {', '.join(QUICK)}")
  parser.add_argument("--datasets", nargs="+", default=None,
                      help=f"run these data sets (default: all, or the --quick ones; "
                           f"from {', '.join(DATASETS)})")
  parser.add_argument("--mnist-rows", type=int, default=None,
                      help="MNIST training rows used (the first ones; default all 60,000)")
  parser.add_argument("--text", default=None, help="tiny Shakespeare (default "
                      "../shared/data/tinyshakespeare.txt next to the repository)")
  add_arm_options(parser)
  parser.add_argument("--starts", action="store_true",
                      help="study which explicit start pays for fit_optimum (doubles the run)")
  parser.add_argument("--starts-newton-max-features", type=int, default=5000,
                      help="the starts study skips the Newton starts above this many features")
  parser.add_argument("--starts-budget", type=float, default=600.0,
                      help="seconds per data set after which the remaining starts are skipped")
  parser.add_argument("--one", choices=DATASETS, default=None,
                      help="(internal) run one data set's --arms here, printing JSON lines")
  args = parser.parse_args(argv)
  args.datasets = _names(args.datasets, DATASETS) if args.datasets else None
  return args


def config(args, names) -> dict:
  """What the run measured and how (stored in the JSON)."""
  return {"datasets": list(names), "quick": getattr(args, "quick", False),
          "warm_repeats": args.warm_repeats, "warm_cap_seconds": args.warm_cap,
          "thread_cap_seconds": args.thread_cap, "timeout_seconds": args.timeout,
          "newton_max_features": args.newton_max_features, "others": not args.no_others,
          "cold_processes": COLD_PROCESSES,
          "logreg_cv_params": {k: _plain(v) if not isinstance(v, tuple) else list(v)
                               for k, v in lrcv_params().items()}}


def default_params(results: dict) -> dict:
  """The default estimator's ``get_params()`` as recorded (or as constructed here)."""
  found = next((d["arms"]["explicit_default"].get("params") for d in results.values()
                if d.get("status") == "ok"
                and d["arms"].get("explicit_default", {}).get("status") == "ok"), None)
  if found is None:  # the default arm failed everywhere: its parameters all the same
    from explicit_softmax.sklearn import ExplicitSoftmaxClassifier
    found = {k: _plain(v) for k, v in ExplicitSoftmaxClassifier().get_params().items()}
  return found


def process_groups(args) -> list[list[str]]:
  """The arms of a data set's processes: each headline arm alone, then the others."""
  return [[k] for k in HEADLINE] + ([] if args.no_others else [list(OTHERS)])


def main(argv=None):
  args = parse_args(argv)
  if args.one:
    starts = None
    if args.starts:
      starts = functools.partial(run_starts, newton_max_features=args.starts_newton_max_features,
                                 budget=args.starts_budget)
    child_main(load, args.one, _names([args.arms], ARMS), args, starts=starts)
    return None
  names = args.datasets or (QUICK if args.quick else DATASETS)
  start = time.perf_counter()
  results = {}
  for name in names:
    results[name] = run_dataset("explicit_softmax.bench.real", name, process_groups(args),
                                child_args(args), args.timeout)
    print(_summary(results[name]), flush=True)
  payload = {
      "config": {**config(args, names), "mnist_rows": args.mnist_rows,
                 "n_speakers": N_SPEAKERS, "starts": args.starts},
      "default_params": default_params(results),
      "datasets": results,
      "targets": report.peer_targets(results),
      "total_seconds": time.perf_counter() - start,
  }
  return write_outputs("real", payload, args.out, markdown)


if __name__ == "__main__":
  _harness.run(main)
