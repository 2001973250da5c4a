"""n-gram language models: Kneser-Ney against additive smoothing and SGD, and fit cost.

Two corpora from tiny Shakespeare:

* words (issue 25's protocol): ``re.findall(r"[a-z']+|[.,!?;:]", text.lower())``,
  the first 90% for training, words seen once in training mapped to one unknown
  id (V = 6,482), the last 10% held out;
* characters: the tokens and split of ``explicit-softmax bench lm``
  (``data.load_text(level="char")``, last 10% held out, V = 65).

For orders 2 to 5 and each smoothing (modified Kneser-Ney, fixed-discount
Kneser-Ney with D = 0.75, additive with the best pseudo-count of a grid, chosen
on the held-out data, which flatters it): held-out perplexity over the same
targets for every order (every held-out token from the fifth on, each with its
``n - 1`` previous held-out tokens); the fit time against a bare ``np.unique``
of the encoded n-grams (the counting floor), medians of interleaved repeats;
the model's bytes against the bare counts' and the peak allocation of each
(``tracemalloc``). The SGD/Adam-trained softmax rows are the committed
``benchmarks/results/lm.json`` (``explicit-softmax bench lm``, tiny Shakespeare
characters, K = 1..4 positional context tokens), not re-run here.

Writes ``ngram.json``, ``ngram.md`` and ``ngram.png``.

Usage: ``explicit-softmax bench ngram [--quick] [--out DIR] [-- --text PATH]``
"""

from __future__ import annotations

import json
import re
import time
import tracemalloc
from collections import Counter

import numpy as np

import explicit_softmax as es
from explicit_softmax.bench import _harness

ORDERS = (2, 3, 4, 5)
PSEUDO_COUNTS = (0.001, 0.003, 0.01, 0.03, 0.1)
FIXED_DISCOUNT = 0.75
# Held-out targets start here, so that every order scores the same tokens.
FIRST_TARGET = max(ORDERS) - 1
# The fixed-discount reference on the word protocol (bigram, trigram).
TARGETS = {2: 164.0, 3: 162.0}
TARGET_FIT_RATIO, STRETCH_FIT_RATIO = 5.0, 2.0
WORD_PATTERN = r"[a-z']+|[.,!?;:]"


def word_corpus(path) -> tuple[np.ndarray, np.ndarray, int]:
  """``(train, test, V)`` of the word protocol (see the module docstring)."""
  with open(path, encoding="utf-8") as fh:
    words = re.findall(WORD_PATTERN, fh.read().lower())
  n_train = int(0.9 * len(words))
  counts = Counter(words[:n_train])
  vocab = sorted(w for w, c in counts.items() if c > 1)
  index = {w: i for i, w in enumerate(vocab)}
  unknown = len(vocab)
  ids = np.array([index.get(w, unknown) for w in words], np.int64)
  return ids[:n_train], ids[n_train:], len(vocab) + 1


def char_corpus(path) -> tuple[np.ndarray, np.ndarray, int]:
  """``(train, test, V)`` of ``bench lm``'s tiny Shakespeare characters."""
  tokens, vocab = es.data.load_text(path, level="char")
  train, test = es.data.train_test_split_tokens(tokens, test_fraction=0.1)
  return train.astype(np.int64), test.astype(np.int64), len(vocab)


def heldout_perplexity(model: es.NgramModel, test: np.ndarray) -> float:
  """Perplexity of ``test[FIRST_TARGET:]``, each token given its n - 1 previous ones."""
  n = model.order
  windows = np.lib.stride_tricks.sliding_window_view(test, n)[FIRST_TARGET - (n - 1):]
  return float(np.exp(-model.log_prob(windows[:, :n - 1], windows[:, n - 1]).mean()))


def bare_unique(tokens: np.ndarray, order: int, vocab: int):
  """The counting floor: encode the n-grams as base-(V+1) integers, ``np.unique`` them."""
  windows = np.lib.stride_tricks.sliding_window_view(tokens, order).astype(np.uint64)
  key = windows[:, 0].copy()
  for i in range(1, order):
    key = key * np.uint64(vocab + 1) + windows[:, i]
  return np.unique(key, return_counts=True)


def _ready(tokens, order, vocab):
  """A fitted model with its per-n-gram probabilities computed (ready to query)."""
  model = es.NgramModel.fit(tokens, order=order, vocab_size=vocab)
  model.predict_proba(np.zeros((1, order - 1), np.int64))
  return model


def _peak_bytes(fn) -> int:
  tracemalloc.start()
  try:
    fn()
    return tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()


def measure_cost(train, order, vocab, repeats: int) -> dict:
  """Fit seconds (count only, and ready to query) against the bare count, interleaved."""
  fns = {"bare": lambda: bare_unique(train, order, vocab),
         "fit": lambda: es.NgramModel.fit(train, order=order, vocab_size=vocab),
         "ready": lambda: _ready(train, order, vocab)}
  for fn in fns.values():
    fn()  # warm-up
  seconds: dict = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      seconds[name].append(time.perf_counter() - start)
  med = {name: float(np.median(v)) for name, v in seconds.items()}
  # Ratios of the runs made one after the other (the load of a shared machine drifts).
  bare = np.array(seconds["bare"])
  keys, counts = bare_unique(train, order, vocab)
  model = _ready(train, order, vocab)
  return {
      "bare_unique_seconds": med["bare"], "fit_seconds": med["fit"],
      "ready_seconds": med["ready"],
      "ratio_fit": float(np.median(np.array(seconds["fit"]) / bare)),
      "ratio_ready": float(np.median(np.array(seconds["ready"]) / bare)),
      "runs": seconds,
      "bare_count_bytes": int(keys.nbytes + counts.nbytes), "model_bytes": model.nbytes,
      "bare_peak_bytes": _peak_bytes(lambda: bare_unique(train, order, vocab)),
      "fit_peak_bytes": _peak_bytes(lambda: _ready(train, order, vocab)),
      "n_types": list(model.info["n_types"]),
  }


def run_corpus(name, train, test, vocab, repeats: int) -> dict:
  out = {"vocab_size": vocab, "n_train": int(len(train)),
         "n_scored": int(len(test) - FIRST_TARGET), "orders": {}}
  for order in ORDERS:
    kn = es.NgramModel.fit(train, order=order, vocab_size=vocab)
    start = time.perf_counter()
    kn_ppl = heldout_perplexity(kn, test)
    eval_seconds = time.perf_counter() - start
    fixed = kn.with_smoothing("kneser-ney-fixed", discount=FIXED_DISCOUNT)
    additive = {s: heldout_perplexity(kn.with_smoothing("additive", pseudo_count=s), test)
                for s in PSEUDO_COUNTS}
    best = min(additive, key=additive.get)
    row = {"kneser-ney": kn_ppl, "kneser-ney-fixed": heldout_perplexity(fixed, test),
           "additive": additive[best], "additive_pseudo_count": best,
           "additive_grid": {str(s): p for s, p in additive.items()},
           "discounts": kn.discounts.tolist(),
           "discount_fallback_orders": list(kn.info["discount_fallback_orders"]),
           "log_prob_seconds": eval_seconds, **measure_cost(train, order, vocab, repeats)}
    out["orders"][str(order)] = row
    print(f"{name} order {order}: perplexity KN {kn_ppl:.2f}, fixed "
          f"{row['kneser-ney-fixed']:.2f}, additive {additive[best]:.2f} (s={best}); fit "
          f"{row['fit_seconds'] * 1e3:.1f} ms = {row['ratio_fit']:.2f}x np.unique "
          f"({row['bare_unique_seconds'] * 1e3:.1f} ms), ready {row['ratio_ready']:.2f}x", flush=True)
  return out


def sgd_rows() -> dict:
  """Held-out perplexities of ``bench lm``'s tiny Shakespeare characters (committed JSON)."""
  path = _harness.COMMITTED / "lm.json"
  if not path.exists():
    return {}
  lm = json.loads(path.read_text())
  rows = {}
  for k in (1, 2, 3, 4):
    d = lm["datasets"].get(f"shakespeare-K{k}")
    if d is None:
      continue
    methods = d["methods"]
    rows[str(k + 1)] = {name: {"perplexity": float(np.exp(methods[name]["ce"])),
                               "seconds": methods[name]["seconds"],
                               "notes": methods[name].get("notes", "")}
                        for name in ("explicit", "sgd from zero", "adam from zero",
                                     "explicit+adam") if name in methods}
  return {"source": "benchmarks/results/lm.json (explicit-softmax bench lm), "
                    f"{lm['machine'].get('date', '?')}", "orders": rows}


def markdown(result: dict) -> str:
  lines = ["| corpus | order | modified KN | fixed KN (D = 0.75) | additive (best s) | fit ms | "
           "np.unique ms | fit / np.unique | ready / np.unique | model MiB | counts MiB | "
           "peak alloc. MiB: fit / np.unique |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for corpus, d in result["corpora"].items():
    for order, r in d["orders"].items():
      lines.append(
          f"| {corpus} | {order} | {r['kneser-ney']:.2f} | {r['kneser-ney-fixed']:.2f} | "
          f"{r['additive']:.2f} ({r['additive_pseudo_count']:g}) | {r['fit_seconds'] * 1e3:.1f} | "
          f"{r['bare_unique_seconds'] * 1e3:.1f} | {r['ratio_fit']:.2f} | {r['ratio_ready']:.2f} | "
          f"{r['model_bytes'] / 2**20:.2f} | {r['bare_count_bytes'] / 2**20:.2f} | "
          f"{r['fit_peak_bytes'] / 2**20:.0f} / {r['bare_peak_bytes'] / 2**20:.0f} |")
  sgd = result.get("sgd_softmax", {}).get("orders", {})
  chars = result["corpora"].get("characters", {}).get("orders", {})
  if sgd and chars:
    lines += ["", "Characters, beside the softmax models of `explicit-softmax bench lm` (K = order "
              "- 1 positional context tokens; perplexity = exp(held-out CE); "
              f"{result['sgd_softmax']['source']}):", "",
              "| order | modified KN | softmax: explicit (additive, s = 0.1) | softmax: SGD from "
              "zero | softmax: Adam from zero | softmax: explicit + Adam |",
              "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for order, rows in sgd.items():
      cells = [f"{rows[m]['perplexity']:.3f}" if m in rows else "" for m in (
          "explicit", "sgd from zero", "adam from zero", "explicit+adam")]
      lines.append(f"| {order} | {chars[order]['kneser-ney']:.3f} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def verdict(result: dict) -> list[str]:
  """One line per target of issue 25, with the measured numbers."""
  words = result["corpora"]["words"]["orders"]
  out = []
  for order, target in TARGETS.items():
    r = words[str(order)]
    met = r["kneser-ney"] <= target and r["kneser-ney"] < r["kneser-ney-fixed"]
    out.append(f"order {order} words: modified KN {r['kneser-ney']:.2f}, fixed-discount "
               f"{r['kneser-ney-fixed']:.2f} (target <= {target:g} and below fixed: "
               f"{'met' if met else 'NOT met'})")
  rows = {(corpus, order): r for corpus, d in result["corpora"].items()
          for order, r in d["orders"].items()}
  worst = max(rows, key=lambda key: rows[key]["ratio_fit"])
  ratio = rows[worst]["ratio_fit"]
  over = [f"{c} {o}" for (c, o), r in rows.items() if r["ratio_fit"] > STRETCH_FIT_RATIO]
  out.append(f"fit / bare np.unique: worst {ratio:.2f}x ({worst[0]}, order {worst[1]}; target "
             f"{TARGET_FIT_RATIO:g}x: {'met' if ratio <= TARGET_FIT_RATIO else 'NOT met'}; "
             f"stretch {STRETCH_FIT_RATIO:g}x: "
             + ("met" if not over else f"not met for {', '.join(over)}") + "); ready to query "
             f"(with the per-n-gram probabilities) worst "
             f"{max(r['ratio_ready'] for r in rows.values()):.2f}x")
  trigram = rows[("words", "3")]
  out.append(f"tiny Shakespeare word trigram fit: {trigram['fit_seconds'] * 1e3:.0f} ms "
             f"(ready {trigram['ready_seconds'] * 1e3:.0f} ms; target well under a second)")
  return out


def plot(result: dict, path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(result["corpora"]), figsize=(12, 4.5))
  for ax, (corpus, d) in zip(np.atleast_1d(axes), result["corpora"].items()):
    orders = [int(o) for o in d["orders"]]
    for key, label in (("kneser-ney", "modified Kneser-Ney"),
                       ("kneser-ney-fixed", f"Kneser-Ney, D = {FIXED_DISCOUNT}"),
                       ("additive", "additive (best s, chosen on held-out)")):
      ax.plot(orders, [d["orders"][str(o)][key] for o in orders], marker="o", label=label)
    if corpus == "characters":
      sgd = result.get("sgd_softmax", {}).get("orders", {})
      pts = [(int(o), r["sgd from zero"]["perplexity"]) for o, r in sgd.items()
             if "sgd from zero" in r]
      if pts:
        ax.plot(*zip(*pts), marker="s", ls="--", label="softmax, SGD from zero (bench lm)")
    ax.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter  # plain 6, 10, 200, not 6 x 10^0
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_xticks(orders)
    ax.set_xlabel("order n")
    ax.set_ylabel("held-out perplexity (log scale)")
    ax.set_title(f"tiny Shakespeare {corpus} (V = {d['vocab_size']:,})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
  _harness.save_figure(fig, path)


def main(argv=None):
  parser = _harness.parser(__doc__, quick="3 timed repeats")
  parser.add_argument("--text", default=None, help="tiny Shakespeare (default: searched)")
  parser.add_argument("--repeats", type=int, default=15, help="timed repeats per order")
  args = parser.parse_args(argv)
  repeats = 3 if args.quick else args.repeats
  path = _harness.tiny_shakespeare(args.text)
  start = time.perf_counter()
  corpora = {"words": word_corpus(path), "characters": char_corpus(path)}
  result = {"config": {"orders": list(ORDERS), "pseudo_counts": list(PSEUDO_COUNTS),
                       "fixed_discount": FIXED_DISCOUNT, "first_target": FIRST_TARGET,
                       "repeats": repeats, "word_pattern": WORD_PATTERN, "quick": args.quick},
            "corpora": {name: run_corpus(name, *data, repeats) for name, data in corpora.items()},
            "sgd_softmax": sgd_rows(), "targets": {str(k): v for k, v in TARGETS.items()},
            "target_fit_ratio": TARGET_FIT_RATIO, "stretch_fit_ratio": STRETCH_FIT_RATIO}
  result["verdict"] = verdict(result)
  result["wall_seconds"] = time.perf_counter() - start
  out = _harness.output_dir(args.out)
  json_path = _harness.write_json("ngram.json", result, out)
  table = markdown(result)
  (out / "ngram.md").write_text("# n-gram language models (`explicit-softmax bench ngram`)\n\n"
                                + table + "\n" + "\n".join(f"- {v}" for v in result["verdict"])
                                + "\n")
  plot(result, out / "ngram.png")
  print(table)
  print("\n".join(result["verdict"]))
  print(f"wrote {json_path}")
  return result


if __name__ == "__main__":
  _harness.run(main)
