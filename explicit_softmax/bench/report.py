"""Writes the README's results section from the benchmark JSON files.

Every figure in the README between the ``results`` markers, and on the
documentation's benchmark pages, comes from the committed
``benchmarks/results/*.json`` through this module, never typed by hand.

Usage: ``python -m explicit_softmax.bench.report [--readme README.md] [--results DIR]``
"""

from __future__ import annotations

import argparse
import pathlib
import re
from explicit_softmax.bench import _harness  # noqa: E402
from explicit_softmax.bench import report_common as common
# The sections, one module each; re-exported here, where the docs' hook and the tests
# find them.
from explicit_softmax.bench.report_common import (RESULTS, _fmt, _load,  # noqa: F401
                                                  _machine, _sentence)
from explicit_softmax.bench.report_dask import dask_section  # noqa: F401
from explicit_softmax.bench.report_deep import (DEEP_TASKS, deep_section,  # noqa: F401
                                                deep_verdict, deep_verdicts)
from explicit_softmax.bench.report_ngram import ngram_readme, ngram_section  # noqa: F401
from explicit_softmax.bench.report_mnist import (_seed_sentence, _worth_sentence,  # noqa: F401
                                                 mnist_section)
from explicit_softmax.bench.report_real import (ACCURACY_POINTS, LOG_LOSS_RATIO,  # noqa: F401
                                                LOG_LOSS_SLACK, LRCV_SPEEDUP, dataset_targets,
                                                peer_targets, peer_verdicts, real_readme,
                                                real_section, start_section, start_sentence)
from explicit_softmax.bench.report_tabular import tabular_readme, tabular_section  # noqa: F401
from explicit_softmax.bench.report_verdicts import verdict_section

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _use_results(folder: pathlib.Path) -> None:
  """Reads results from ``folder`` from now on (``--results``), in every section."""
  global RESULTS
  common._use_results(folder)
  RESULTS = common.RESULTS


def fit_section(d):
  met = d["ratio_fit_to_matmul"] <= d["target_ratio"]
  return (f"**One-pass fit cost** (`explicit-softmax bench fit`, {_machine(d)}): `es.fit` on "
          f"{d['shape'][0]:,} x {d['shape'][1]} float32 with {d['shape'][2]} classes took "
          f"{d['fit_seconds'] * 1e3:.1f} ms against {d['numpy_matmul_seconds'] * 1e3:.1f} ms for a "
          f"bare numpy `X.T @ Y`: **{d['ratio_fit_to_matmul']:.2f}x** (target "
          f"{d['target_ratio']}x, {'met' if met else '**not met**'}; uint8 input "
          f"{d['ratio_uint8_fit_to_matmul']:.2f}x), each call timed after a "
          f"{d['pause_seconds']} s pause"
          + (f"; timed in blocks of consecutive calls (as `timeit` would) "
             f"{d['ratio_blocks']:.2f}x" if "ratio_blocks" in d else "")
          + ". Right after another BLAS call the fit takes "
          f"{d['ratio_back_to_back']:.2f}x: OpenBLAS's threads spin for about 0.1 s after each "
          "call and share the two cores with the fit's own threads. The fit sums in float64 "
          "(results do not depend on how the data is split): each chunk is converted, then "
          "summed per class by scipy's sparse kernel, on one thread per core. "
          + (f"The jitted JAX pass that GPU/TPU and multi-device `jax.Array`s take instead "
             f"(`es.sharding`) needs {d['device_pass_seconds'] * 1e3:.1f} ms for the same "
             "statistics on this CPU, so CPU-resident arrays take the host pass. "
             if "device_pass_seconds" in d else "")
          + "Timings on this VM vary by tens of percent between runs.\n"
          + gpu_fit_sentence(_load("gpu/fit.json")))


def gpu_fit_sentence(g) -> str:
  """One run of the same benchmark on a lent GPU machine (not CI), if recorded."""
  if g is None or g.get("device_platform") != "gpu":
    return ""
  return (f"\nOn a GPU machine ({g['device']}, {g['machine']['cores']} CPU cores; "
          f"`benchmarks/results/gpu/fit.json`, {g['machine']['date']}), the same statistics of "
          f"a GPU-resident `jax.Array` took {g['device_pass_seconds'] * 1e3:.1f} ms in the jitted "
          f"pass (full float32 products, not TF32), against {g['fit_seconds'] * 1e3:.1f} ms for "
          f"`es.fit` on a host array and {g['numpy_matmul_seconds'] * 1e3:.1f} ms for numpy's "
          f"`X.T @ Y` on that machine's CPU: there the host pass is "
          f"{g['ratio_fit_to_matmul']:.1f}x the product, so the 1.5x target above holds on 2 cores "
          "and not against a 16-thread BLAS (the pass runs at most 8 threads of scipy's sparse "
          "kernel, and sums in float64).\n")


def lm_section(d):
  lines = [f"**Toy language models** (`explicit-softmax bench lm`, {_machine(d)}):\n"]
  md = common.RESULTS / "lm.md"
  if md.exists():
    # Nest lm.md's headings under this section; its title and machine line repeat ours.
    body = [line for line in md.read_text().splitlines()
            if not line.startswith("# ") and not line.startswith("Machine:")]
    lines.append("\n".join("##" + line if line.startswith("## ") else line for line in body))
  lines.append("\n![LM](benchmarks/results/lm.png)\n")
  return "\n".join(lines)


def init_section(d):
  out = [f"**Initialising an MLP 784-256-10** (`explicit-softmax bench init`, {_machine(d)}, "
         f"Adam lr {d['config']['learning_rate']}, batch {d['config']['batch_size']}, "
         f"{d['config']['seeds']} seeds; held-out accuracy % and cross-entropy, mean ± std):\n"]
  budgets = [str(b) for b in d["mnist"]["budgets"]]
  for fw in d["config"]["frameworks"]:
    arms = d["mnist"][fw]
    out.append(f"| {fw} | init s | " + " | ".join(
        f"step {b}" for b in ["0"] + budgets) + " |")
    out.append("| --- | ---: |" + " ---: |" * (len(budgets) + 1))
    for arm, v in arms.items():
      cells = []
      for b in ["0"] + budgets:
        s = v["by_step"].get(b)
        if s is None:
          cells.append("")
          continue
        a, c = s["accuracy"], s["cross_entropy"]
        cells.append(f"{100 * a['mean']:.2f}±{100 * a['std']:.2f} / {c['mean']:.3f}")
      out.append(f"| {arm} | {v['init_seconds']['mean']:.2f} | " + " | ".join(cells) + " |")
    out.append("")
  lm = d.get("lm", {})
  rows = []
  for data in ("markov", "shakespeare"):
    if data not in lm:
      continue
    for fw in d["config"]["frameworks"]:
      arms = lm[data][fw]
      for arm in ("svd", "random"):
        a = arms[arm]
        reach = a["to_target"]
        cells = []
        for target in ("svd_start", "random_end"):
          r = reach.get(target, {})
          steps = r.get("steps", {}).get("mean")
          secs = r.get("seconds", {}).get("mean")
          cells.append("not reached" if steps is None else
                       f"{steps:.0f} steps, {secs:.2f} s ({r['reached']})")
        rows.append(f"| {data} | {fw} | {arm} | {a['ce_start']['mean']:.3f} | "
                    f"{a['ce_end']['mean']:.3f} ± {a['ce_end']['std']:.3f} | " + " | ".join(cells)
                    + " |")
  if rows:
    out.append(f"Embedding (d = {lm['d']}) plus head language models, SVD initialiser against "
               f"random init, Adam for {lm['steps']} steps; steps and seconds to reach the SVD "
               "start's held-out CE and the random arm's final CE (seeds reaching it):\n")
    out.append("| data | framework | init | CE at start | CE at end | to SVD start | "
               "to random's end |")
    out.append("| --- | --- | --- | ---: | ---: | --- | --- |")
    out.extend(rows)
    out.append("")
  return "\n".join(out)


def scale_section(lv, mem, sc):
  out = ["**Scale** (`explicit-softmax bench large-vocab`, `memory`, `scaling`):\n"]
  if lv:
    for run in lv["runs"]:
      out.append(
          f"- Large vocabulary, V = {run['vocab_size']:,}, {run['train_samples']:,} training "
          f"tokens, {run['support']} successors per context: held-out CE "
          f"{run['test_cross_entropy_nats']:.3f} nats against the entropy rate "
          f"{run['entropy_rate_nats']:.3f} (unigram {run['unigram_cross_entropy_nats']:.2f}); "
          f"fit {run['fit_seconds']:.2f} s; model {run['model_bytes'] / 2**20:.0f} MiB instead of "
          f"{run['dense_weight_bytes_float32'] / 2**30:.1f} GiB dense.")
  if mem:
    for run in mem["runs"]:
      out.append(f"- Streaming ({run['mode']}, {run['samples']:,} samples): peak resident memory "
                 f"above baseline = {run['peak_minus_baseline_batches']:.2f} batches "
                 f"(allocated: {run['anon_growth_batches']:.2f} batches).")
  if sc:
    out.append(f"- Sharded statistics: {sc.get('caveat', '')}")
  return "\n".join(out) + "\n"


def readme_section() -> str:
  """The README's results: one compact table (the default against scikit-learn's
  ``LogisticRegression()`` and ``LogisticRegressionCV()`` on real data) with issue 22's
  verdicts, one plot, a line on the KEEL collection, and the verdicts' headlines;
  everything in full on the documentation's benchmark pages (``report_pages``)."""
  lines = ["## Results\n",
           "Generated by `python -m explicit_softmax.bench.report` from the committed "
           "`benchmarks/results/*.json`; every table, plot and verdict in full in "
           "[docs/benchmarks.md](docs/benchmarks.md) (the documentation's benchmark page).\n"]
  real = _load("real.json")
  if real is not None:
    lines += real_readme(real) + ["![Real data](benchmarks/results/real.png)\n"]
  tabular = _load("tabular.json")
  if tabular is not None:
    lines += tabular_readme(tabular)
  ngram = _load("ngram.json")
  if ngram is not None:
    lines += ngram_readme(ngram)
  verdict = verdict_section(_load("mnist.json"), _load("lm.json"), _load("init.json"),
                            _load("deep.json"))
  heads = re.findall(r"^- \*\*(.+?)\*\*", verdict, flags=re.M)
  if heads:
    lines += ["Where the closed form wins, and where it does not (measured):\n"]
    lines += [f"- {h}" for h in heads]
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--readme", default=str(_harness.REPO / "README.md"))
  parser.add_argument("--results", default=str(RESULTS),
                      help="folder of the JSON results (default: the committed ones)")
  args = parser.parse_args(argv)
  _use_results(pathlib.Path(args.results))
  readme = pathlib.Path(args.readme)
  text = readme.read_text()
  section = f"{BEGIN}\n{readme_section()}\n{END}"
  if BEGIN in text:
    head, rest = text.split(BEGIN, 1)
    text = head + section + rest.split(END, 1)[1]
  else:
    text = text.rstrip() + "\n\n" + section + "\n"
  readme.write_text(text)
  print(f"updated {readme}")


if __name__ == "__main__":
  _harness.run(main)
