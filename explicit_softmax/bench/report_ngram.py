"""The n-gram benchmark's section (``explicit-softmax bench ngram``): Kneser-Ney perplexities."""

from __future__ import annotations

from explicit_softmax.bench.ngram import markdown, verdict
from explicit_softmax.bench.report_common import _machine


def ngram_section(d: dict) -> str:
  """Every order and smoothing on tiny Shakespeare words and characters, the fit cost
  against a bare ``np.unique``, the softmax models of ``bench lm`` and the verdicts."""
  words = d["corpora"]["words"]
  chars = d["corpora"]["characters"]
  out = [f"**n-gram language models** (`explicit-softmax bench ngram`, {_machine(d)}): held-out "
         f"perplexity of `es.NgramModel` on tiny Shakespeare words (V = {words['vocab_size']:,}, "
         f"{words['n_train']:,} training tokens, {words['n_scored']:,} scored) and characters "
         f"(V = {chars['vocab_size']}, {chars['n_train']:,} training tokens); additive smoothing "
         "at its best pseudo-count on the held-out data. Fit: `NgramModel.fit` against encoding "
         "the n-grams and `np.unique` on them (the counting floor), medians of "
         f"{d['config']['repeats']} interleaved runs (the ratios: medians of each run's ratio); "
         "\"ready\" adds the per-n-gram "
         "probabilities the first query computes.\n",
         markdown(d)]
  out += [f"- {line}" for line in verdict(d)]
  out.append("\n![n-gram models](benchmarks/results/ngram.png)\n")
  return "\n".join(out)


def ngram_readme(d: dict) -> list[str]:
  """The README's lines: perplexity per order on words and characters, and the verdicts."""
  lines = [f"`es.NgramModel` on tiny Shakespeare, held-out perplexity ({_machine(d)}; "
           "`explicit-softmax bench ngram`; additive at its best pseudo-count):\n",
           "| corpus | order | modified Kneser-Ney | Kneser-Ney, D = 0.75 | additive | fit / np.unique |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]
  for corpus, block in d["corpora"].items():
    for order, r in block["orders"].items():
      lines.append(f"| {corpus} | {order} | {r['kneser-ney']:.2f} | {r['kneser-ney-fixed']:.2f} | "
                   f"{r['additive']:.2f} | {r['ratio_fit']:.2f}x |")
  return lines + [""] + [f"- {v[0].upper() + v[1:]}." for v in verdict(d)] + [""]
