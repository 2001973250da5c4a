"""Language models: explicit softmax fits against gradient descent, same data, same process.

Next-token prediction from ``K`` previous tokens (positional one-hot blocks,
[`es.TokenFeatures`][explicit_softmax.TokenFeatures]), on three kinds of data:

* ``markov1-K1``: a synthetic order-1 Markov source (``V = 2,000``, Zipf
  profile, exponent 1.1), 1,000,000 training tokens and an independently drawn
  held-out sequence of 100,000 tokens. With ``K = 1`` the model class contains
  the source and the co-occurrence solution is the exact training optimum.
* ``markov2-K2``, ``markov2-K3``: an order-2 source with ``K = 2`` and ``K = 3``
  context tokens, with ``V = 200`` by default (``--order2-vocab``): every
  gradient-descent step costs ``batch x V`` logits, and at ``V = 2,000`` the
  grid would take hours on a small machine. The source's successors are a hash
  of the whole context, which a sum of per-position logits cannot represent, so
  every model of this class stays far above the entropy rate (reported).
* ``additive-K2``, ``additive-K3``: a
  [`es.data.LogLinearSource`][explicit_softmax.data.sources.LogLinearSource] of order ``K`` (``V``
  as above), whose log-probabilities add up over the ``K`` context tokens: the model class contains
  the source, so the entropy rate (estimated, its standard error in the description) is reachable,
  and the co-occurrence solution is an approximation (``K > 1``) that refinement can improve on.
* ``shakespeare-K1`` .. ``shakespeare-K4``: tiny Shakespeare at character level
  (``V = 65``), a contiguous 90/10 train/held-out split. Skipped with a note if
  the file is absent (``--text``, default ``$EXPLICIT_SOFTMAX_DATA/tinyshakespeare.txt``,
  else ``../shared/data/tinyshakespeare.txt`` next to the repository).

Methods, all on the same split:

* explicit ``cooccurrence`` (``es.fit``, statistics included, median of 3);
  with ``calibrate`` (the fit on all training rows but a seeded tenth, at most
  ``2^25 / V`` and ``2^34 / V^2`` rows, then temperature and class biases, with
  ``l2 = 1/n``, fitted on those ``n`` held-out rows: ``calibrate`` keeps several
  ``rows x V`` float64 arrays and each of its Newton steps costs
  ``rows V^2 + V^3``; 4,294 rows at ``V = 2,000``); explicit
  ``newton`` where ``K V + 1 <= --newton-max-features`` (its Gram matrix is
  ``(K V + 1)^2`` and the solve ``O((K V)^3)``);
* explicit followed by ``refine``: minibatch Adam and SGD (the two smaller
  learning rates of each grid, at most ``--refine-epochs`` epochs), and full-batch
  L-BFGS where the ``T x V`` float32 logits fit in ``--full-batch-mib`` (1 GiB:
  characters and ``V = 200``, not the ``1M x 2,000`` bigram, 8 GB per
  evaluation). For ``K = 1`` also one epoch of Adam and SGD from the unsmoothed
  co-occurrence solution, the training optimum (claim 1 below);
* gradient descent from zero and from a random init ``N(0, 0.01^2)``: minibatch
  (``--batch-size``) SGD and Adam through ``es.refine``, each over a learning
  rate grid, until ``--epochs`` epochs or ``--budget`` seconds. Adam's grid is
  absolute; SGD's is in units of ``1 / (K max_i f_i / T)``, the inverse of a
  Gershgorin bound on the curvature of the one-hot design (``f_i / T`` the
  frequency of feature ``i``), which makes one grid fit every vocabulary;
* scikit-learn ``MultinomialNB`` (``alpha`` = the explicit smoothing, fitted with
  ``partial_fit`` in chunks: ``fit`` builds a dense ``T x V`` float64 label
  matrix) and ``LogisticRegression(lbfgs)`` where ``T x V`` float64 fit in
  ``--full-batch-mib`` (character level only by default).

Times exclude JAX compilation (every jitted step is compiled first on the same
shapes) and evaluation (``refine`` stops its clock during callbacks). Held-out
cross-entropy is in nats per token; for the synthetic sources the entropy rate
is the floor. The headline target: on ``markov1-K1`` the explicit fit reaches
its held-out cross-entropy at least 100x faster than the best-tuned SGD/Adam
reaches the same value (if none does within its run, the ratio is reported as
a lower bound: the shortest run's length over the fit time).

The "claims" of the JSON measure, at full scale, the quantities that
``tests/test_claims_lm.py`` asserts on a toy LM: (1) the relative change of the
training loss after SGD/Adam steps from the explicit solution, (2) the mean KL
divergence from the explicit solution's predictions to those of SGD/Adam from
a random init along training, (3) the training loss from explicit vs random
init at equal step counts. Training loss and KL are exact for ``K = 1`` (from
the co-occurrence counts) and over a seeded subsample of training positions
for ``K > 1``.

Usage:
  explicit-softmax bench lm [--quick] [--out DIR] [-- --text PATH
      --datasets markov1-K1,shakespeare-K2,... --budget S --epochs E]

Writes ``lm.json``, ``lm.md`` and ``lm.png`` into ``--out``. The full run takes
about two hours on 2 cores (``markov1-K1`` alone about one: 12 gradient-descent runs
of ``--budget`` 240 s); ``--datasets`` runs a subset. ``--quick`` (V = 500 / 50, 100,000
tokens, 100,000 characters, 2 s per run) takes about three minutes.

The committed results come from three runs with different time budgets, merged:
  explicit-softmax bench lm --out /tmp/lm_a -- --datasets markov1-K1 --budget 45
  explicit-softmax bench lm --out /tmp/lm_b -- --datasets markov2-K2,markov2-K3,\
      shakespeare-K1,shakespeare-K2,shakespeare-K3,shakespeare-K4 --budget 8
  explicit-softmax bench lm --out /tmp/lm_c -- --datasets additive-K2,additive-K3 --budget 8
  explicit-softmax bench lm --update-committed -- --merge /tmp/lm_a/lm.json \
      /tmp/lm_b/lm.json /tmp/lm_c/lm.json
"""

from __future__ import annotations

import pathlib
import time

from explicit_softmax.bench import _harness
from explicit_softmax.bench._harness import write_json
# The data sets, the curves, the arms and the summaries, one module each; re-exported here.
from explicit_softmax.bench.lm_arms import run_dataset
from explicit_softmax.bench.lm_curves import TrainProbe, run_curve, score, tqdm  # noqa: F401
from explicit_softmax.bench.lm_data import (ADAM_GRID, INIT_SCALE, SGD_GRID,  # noqa: F401
                                            SMOOTHING, Spec, default_specs, make_tokens)
from explicit_softmax.bench.lm_summary import claims, markdown, plot, summarize_runs  # noqa: F401


# -- main ------------------------------------------------------------------------

def _default_text() -> str | None:
  try:
    return str(_harness.tiny_shakespeare())
  except FileNotFoundError:
    return None  # the Shakespeare data sets are skipped, saying why


def parse_args(argv=None):
  parser = _harness.parser(__doc__, quick="reduced sizes, to check the script")
  parser.add_argument("--text", default=_default_text(), help="tiny Shakespeare text file")
  parser.add_argument("--datasets", default=None,
                      help="comma-separated subset of data set names (default: all)")
  parser.add_argument("--budget", type=float, default=None,
                      help="seconds (compile excluded) per iterative run (default 240; quick 2)")
  parser.add_argument("--epochs", type=int, default=None,
                      help="maximum epochs per gradient-descent run (default 20; quick 2)")
  parser.add_argument("--refine-epochs", type=int, default=None,
                      help="maximum epochs of adam/sgd from the explicit solution (default 2)")
  parser.add_argument("--batch-size", type=int, default=4096)
  parser.add_argument("--lbfgs-steps", type=int, default=100)
  parser.add_argument("--order2-vocab", type=int, default=200)
  parser.add_argument("--newton-max-features", type=int, default=2048)
  parser.add_argument("--full-batch-mib", type=float, default=1024,
                      help="largest T x V logit array for full-batch L-BFGS (float32) and "
                           "sklearn LogisticRegression (float64)")
  parser.add_argument("--sklearn-max-iter", type=int, default=100)
  parser.add_argument("--quick-text-chars", type=int, default=100_000)
  parser.add_argument("--probe-rows", type=int, default=None,
                      help="training positions for loss/KL when K > 1 (default 200,000; "
                           "quick 20,000)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--merge", nargs="+", default=None, metavar="LM.json",
                      help="combine these lm.json files of runs over disjoint data sets "
                           "into --out")
  args = parser.parse_args(argv)
  if args.budget is None:
    args.budget = 2.0 if args.quick else 240.0
  if args.epochs is None:
    args.epochs = 2 if args.quick else 20
  if args.refine_epochs is None:
    args.refine_epochs = 1 if args.quick else 2
  args.adam_grid = ADAM_GRID[1:] if args.quick else ADAM_GRID
  args.sgd_grid = SGD_GRID[:2] if args.quick else SGD_GRID
  args.refine_grid = 1 if args.quick else 2
  if args.probe_rows is None:
    args.probe_rows = 20_000 if args.quick else 200_000
  return args


def merge(paths, out_dir) -> dict:
  """Combines lm.json files of runs over disjoint data sets (e.g. run with
  different ``--budget``) into one lm.json, lm.md and lm.png in ``out_dir``."""
  import json
  parts = [json.loads(pathlib.Path(p).read_text()) for p in paths]
  payload = {"config": {"merged_from": [str(p) for p in paths],
                        "quick": any(p["config"].get("quick") for p in parts),
                        "configs": [p["config"] for p in parts]},
             "datasets": {}, "claims": {},
             "wall_seconds": sum(p["wall_seconds"] for p in parts)}
  for part in parts:
    payload["datasets"].update(part["datasets"])
    payload["claims"].update(part["claims"])
    if "target" in part:
      payload["target"] = part["target"]
  path = write_json("lm.json", payload, out_dir)
  out = path.parent
  result = {"machine": json.loads(path.read_text())["machine"], **payload}
  (out / "lm.md").write_text(markdown(result))
  plot(result, out / "lm.png")
  print(markdown(result))
  return result


def main(argv=None):
  args = parse_args(argv)
  if args.merge:
    return merge(args.merge, args.out)
  specs = default_specs(args)
  if args.datasets:
    wanted = set(args.datasets.split(","))
    unknown = wanted - {s.name for s in specs}
    if unknown:
      raise SystemExit(f"unknown data sets {sorted(unknown)}; choose from "
                       f"{[s.name for s in specs]}")
    specs = [s for s in specs if s.name in wanted]
  config = {k: str(v) if k == "out" else v for k, v in vars(args).items() if k != "merge"}
  config.update({"init_scale": INIT_SCALE, "smoothing": SMOOTHING,
                 "sgd_grid_note": "sgd learning rates are sgd_grid x 1/(K max_i f_i/T)"})
  cache, datasets = {}, {}
  wall = time.perf_counter()
  specs_iter = tqdm(specs, desc="data sets", position=0) if tqdm is not None else specs
  for spec in specs_iter:
    result = run_dataset(spec, args, cache)
    if result is not None:
      datasets[spec.name] = result
  payload = {"config": config, "datasets": datasets,
             "wall_seconds": time.perf_counter() - wall}
  if "markov1-K1" in datasets:
    payload["target"] = {"dataset": "markov1-K1", **datasets["markov1-K1"]["target"]}
  payload["claims"] = {name: d.pop("claims") for name, d in datasets.items()}
  path = write_json("lm.json", payload, args.out)
  out_dir = path.parent
  result = {"machine": __import__("json").loads(path.read_text())["machine"], **payload}
  (out_dir / "lm.md").write_text(markdown(result))
  if datasets:
    plot(result, out_dir / "lm.png")
  print(markdown(result))
  print(f"wrote {path}, {out_dir / 'lm.md'}, {out_dir / 'lm.png'} "
        f"({payload['wall_seconds']:.0f} s)")
  return result


if __name__ == "__main__":
  _harness.run(main)
