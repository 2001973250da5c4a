"""A 50,000-token bigram model from 5 million tokens, fitted sparsely within 2 GB.

``SparseCountModel`` keeps the co-occurrence solution as sparse counts (a dense
``W`` would be 50,000 x 50,000 float32 = 10 GB). Tokens come from
``explicit_softmax.data.MarkovSource`` (order 1, Zipf profile), whose entropy
rate is known exactly: the lowest held-out cross-entropy any model can reach.
For each successor support size, one subprocess samples training, validation
and test sequences (independent seeds), fits, picks the smoothing on the
validation sequence, reports the test cross-entropy, and records its own peak
resident memory (``VmHWM``, Linux's per-process high-water mark). Writes
``large_vocab.json`` and ``large_vocab.png`` into ``--out``.

Usage: explicit-softmax bench large-vocab [--quick] [--out DIR] [-- --vocab 50000
       --train-tokens 5000000 --supports 64,1024,50000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from explicit_softmax.bench._harness import write_json  # noqa: E402
from explicit_softmax.bench import _harness  # noqa: E402

SMOOTHINGS = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)
MEMORY_BUDGET = 2 * 2**30


def child(vocab: int, support: int, train_tokens: int, test_tokens: int, seed: int) -> dict:
  """One configuration, in its own process so that its peak memory is its own."""
  from explicit_softmax.data import MarkovSource, context_tokens
  from explicit_softmax.sparse_model import SparseCountModel

  rss_imports = _harness.current_rss()
  source = MarkovSource(vocab, order=1, zipf_exponent=1.1, support=support, seed=seed)
  start = time.perf_counter()
  train = source.sample(train_tokens, seed=seed + 1)
  valid = source.sample(test_tokens // 2, seed=seed + 2)
  test = source.sample(test_tokens, seed=seed + 3)
  sample_seconds = time.perf_counter() - start

  x_train, y_train = context_tokens(train, 1, vocab)
  del train
  start = time.perf_counter()
  model = SparseCountModel.fit(x_train, y_train, n_classes=vocab, smoothing=SMOOTHINGS[0])
  _ = model.log_prob(x_train[:1], y_train[:1])  # builds the derived sparse weights
  fit_seconds = time.perf_counter() - start
  n_train = len(y_train)
  del x_train, y_train

  x_valid, y_valid = context_tokens(valid, 1, vocab)
  x_test, y_test = context_tokens(test, 1, vocab)
  valid_ce, test_ce = {}, {}
  start = time.perf_counter()
  for s in SMOOTHINGS:
    m = model.with_smoothing(s)
    valid_ce[s] = m.log_loss(x_valid, y_valid)
    test_ce[s] = m.log_loss(x_test, y_test)
  eval_seconds = (time.perf_counter() - start) / (2 * len(SMOOTHINGS))
  best = min(SMOOTHINGS, key=valid_ce.get)
  chosen = model.with_smoothing(best)

  # A unigram baseline (add-one smoothed next-token frequencies).
  freq = np.asarray(chosen.counts.sum(axis=0)).ravel() + 1.0
  unigram_ce = float(-np.log(freq[y_test] / freq.sum()).mean())

  start = time.perf_counter()
  generated = chosen.sample(test[:1], 2000, seed=0)
  sample_tokens_per_s = 2000 / (time.perf_counter() - start)
  top1 = float((chosen.predict(x_test) == y_test).mean())

  peak = _harness.peak_rss()
  return {
      "vocab_size": vocab, "support": support, "train_samples": n_train,
      "test_samples": len(y_test), "valid_samples": len(y_valid),
      "entropy_rate_nats": source.entropy_rate(),
      "chosen_smoothing": best,
      "test_cross_entropy_nats": test_ce[best],
      "excess_over_entropy_rate_nats": test_ce[best] - source.entropy_rate(),
      "unigram_cross_entropy_nats": unigram_ce,
      "valid_cross_entropy_by_smoothing": {str(k): v for k, v in valid_ce.items()},
      "test_cross_entropy_by_smoothing": {str(k): v for k, v in test_ce.items()},
      "test_top1_accuracy": top1,
      "observed_pairs": int(model.counts.nnz),
      "model_bytes": chosen.nbytes,
      "dense_weight_bytes_float32": 4 * vocab * vocab,
      "source_sampling_seconds": sample_seconds,
      "fit_seconds": fit_seconds,
      "fit_tokens_per_second": n_train / fit_seconds,
      "log_loss_seconds": eval_seconds,
      "generated_tokens_per_second": sample_tokens_per_s,
      "generated_distinct": int(np.unique(generated).size),
      "rss_after_imports_bytes": rss_imports,
      "peak_rss_bytes": peak,
      "within_2GB": peak <= MEMORY_BUDGET,
  }


def _plot(runs: list[dict], path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for i, run in enumerate(runs):
    s = [float(k) for k in run["test_cross_entropy_by_smoothing"]]
    ce = list(run["test_cross_entropy_by_smoothing"].values())
    line, = ax.plot(s, ce, "o-", label=f"support {run['support']}: test CE")
    ax.axhline(run["entropy_rate_nats"], color=line.get_color(), ls="--", lw=1,
               label="entropy rate" if i == 0 else None)
  ax.set_xscale("log")
  ax.set_xlabel("smoothing s")
  ax.set_ylabel("held-out cross-entropy (nats/token)")
  ax.set_title(f"Sparse bigram, V = {runs[0]['vocab_size']:,}, "
               f"{runs[0]['train_samples'] / 1e6:.1f}M training tokens")
  ax.legend(fontsize=8)
  _harness.save_figure(fig, path, dpi=120)


def main(argv=None):
  parser = _harness.parser(__doc__, quick="V=5,000 and 500k tokens")
  parser.add_argument("--vocab", type=int, default=50_000)
  parser.add_argument("--train-tokens", type=int, default=5_000_000)
  parser.add_argument("--test-tokens", type=int, default=500_000)
  parser.add_argument("--supports", default="64,1024,50000",
                      help="comma-separated successor counts per context")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--support", type=int, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)

  if args.child:
    print(json.dumps(child(args.vocab, args.support, args.train_tokens, args.test_tokens,
                           args.seed)))
    return None
  if args.quick:
    args.vocab, args.train_tokens, args.test_tokens = 5_000, 500_000, 50_000
  supports = [min(int(s), args.vocab) for s in args.supports.split(",")]
  runs = []
  for support in supports:
    cmd = [sys.executable, "-m", "explicit_softmax.bench.large_vocab", "--child", "--vocab", str(args.vocab),
           "--support", str(support), "--train-tokens", str(args.train_tokens),
           "--test-tokens", str(args.test_tokens), "--seed", str(args.seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
      raise RuntimeError(f"child failed:\n{proc.stderr[-3000:]}")
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    runs.append(run)
    print(f"support {support:>6}: test CE {run['test_cross_entropy_nats']:.4f} nats "
          f"(entropy rate {run['entropy_rate_nats']:.4f}, unigram "
          f"{run['unigram_cross_entropy_nats']:.4f}; s={run['chosen_smoothing']}), fit "
          f"{run['fit_seconds']:.1f} s, peak RSS {run['peak_rss_bytes'] / 2**20:.0f} MiB, "
          f"{run['observed_pairs']:,} pairs")
  png = str(_harness.output_dir(args.out) / "large_vocab.png")
  _plot(runs, png)
  result = {
      "description": "SparseCountModel bigram fit on MarkovSource tokens; peak RSS per "
                     "configuration measured in a fresh subprocess (includes the Python, "
                     "numpy, scipy and JAX imports and the sampled token arrays).",
      "memory_budget_bytes": MEMORY_BUDGET,
      "smoothing_grid": list(SMOOTHINGS),
      "smoothing_selection": "lowest cross-entropy on an independent validation sequence",
      "runs": runs,
      "plot": os.path.basename(png),
  }
  path = write_json("large_vocab.json", result, args.out)
  print(f"wrote {path} and {png}")
  return result


if __name__ == "__main__":
  _harness.run(main)
