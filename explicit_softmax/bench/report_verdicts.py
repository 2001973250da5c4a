"""The report's verdicts (where the closed form wins and where not) and the claims table."""

from __future__ import annotations

from explicit_softmax.bench.report_common import _fmt, _sentence
from explicit_softmax.bench.report_deep import deep_verdict
from explicit_softmax.bench.report_mnist import _seed_sentence, _worth_sentence


def _lm_verdicts(lm) -> list[str]:
  """The language-model bullets: one-hot contexts, then several context tokens."""
  out = []
  if lm and "target" in lm:
    t = lm["target"]
    d = lm["datasets"]["markov1-K1"]
    bound = "at least " if t["lower_bound"] else ""
    out.append(
        f"- **Wins: one-hot contexts (bigram language model).** The explicit fit is the exact "
        f"training optimum. On the V = {d['vocab_size']:,} Markov source "
        f"({d['n_train']:,} tokens) it took {t['fit_seconds']:.2f} s to a held-out CE of "
        f"{t['explicit_ce']:.4f} nats (entropy rate {d['entropy_rate']:.4f}); best-tuned SGD/Adam "
        f"reached that value {bound}**{t['ratio']:.0f}x** later. {_sentence(t.get('note', ''))}")
  for name in ("additive-K2", "additive-K3"):
    d = (lm or {}).get("datasets", {}).get(name)
    if not d:
      continue
    m, t = d["methods"], d["target"]
    refined = min((v["ce"], k) for k, v in m.items() if k.startswith("explicit+"))
    scratch = min((v["ce"], k) for k, v in m.items() if " from " in k)
    matched = (f"never matched it within its run (ratio >= {t['ratio']:.0f}x)" if t["lower_bound"]
               else f"matched it after {t['gd_seconds']:.2f} s ({t['ratio']:.1f}x)")
    out.append(
        f"- **Only a rough start: several context tokens ({name}).** On a source inside the "
        f"model class (V = {d['vocab_size']}, K = {d['n_context']}, entropy rate "
        f"{d['entropy_rate']:.3f} nats, estimated) the co-occurrence fit reaches "
        f"{m['explicit']['ce']:.3f} in {m['explicit']['seconds']:.2f} s, "
        f"{m['explicit']['ce'] - d['entropy_rate']:.2f} nats above the floor; best-tuned SGD/Adam "
        f"{matched} and went on to {scratch[0]:.3f} (*{scratch[1]}*, "
        f"{m[scratch[1]]['seconds']:.1f} s); refining the explicit fit for two epochs gave "
        f"{refined[0]:.3f} (*{refined[1]}*, {m[refined[1]]['seconds']:.1f} s).")
  return out


def _mnist_verdicts(mnist) -> list[str]:
  """The MNIST bullets: a warm start, beaten by a tuned Adam, worth as a prior."""
  out = []
  r = mnist["ratios"]
  c = mnist["curves"]
  cooc, cal = c["cooccurrence"][0], c["cooccurrence+calibrate"][0]
  out.append(
      f"- **Only a warm start: dense pixels (MNIST).** The co-occurrence solution alone reaches "
      f"{100 * cooc['acc']:.1f}% accuracy (held-out CE {cooc['ce']:.3f}; its predictions are far "
      f"too flat), {100 * cal['acc']:.1f}% / {cal['ce']:.3f} after calibration. The fastest "
      f"explicit-start pipeline (*{r['pipeline']}*) reaches CE <= {mnist['target_ce']} in "
      f"{_fmt(r['pipeline_seconds'], '.2f')} s, "
      f"{_fmt(r['sklearn_over_pipeline'], '.1f')}x faster "
      f"than scikit-learn's lbfgs ({_fmt(r['sklearn_lbfgs_seconds'], '.2f')} s).")
  zero_pre = mnist["time_to_target"].get("zero → preconditioned L-BFGS")
  adam_ratio = r["adam_over_pipeline"]
  ours, curve = r["pipeline_seconds"], c.get(r["pipeline"])
  # The pipeline's first point is its explicit start: the seconds before refinement.
  offset = curve[0]["seconds"] if curve and ours is not None else None
  saved = None if offset is None else r["adam_from_zero_seconds"] - (ours - offset)
  if adam_ratio is not None and adam_ratio < 1:
    out.append(
        f"- **Gradient descent is simply better: MNIST against a tuned, jitted Adam.** "
        f"*{r.get('adam', 'Adam from zero')}* (batch 128) reached the same target in "
        f"{_fmt(r['adam_from_zero_seconds'], '.2f')} s, {1 / adam_ratio:.1f}x faster than our "
        "best explicit pipeline: the target of beating it was **not met**. "
        + (f"Refining the explicit start took {ours - offset:.2f} s of the pipeline's "
           f"{ours:.2f} s; the fit and calibration before it cost {1e3 * offset:.0f} ms, "
           + (f"more than the {1e3 * saved:.0f} ms the start saved. " if saved >= 0.001 else
              "and the refinement after it was no faster than Adam's from zero. ")
           if offset is not None else "")
        + _seed_sentence(mnist.get("seed_study"), mnist.get("start_costs"),
                         mnist.get("unobserved_seconds_per_step"))
        + "On dense features the library's best tool is that "
        "peer: `es.refine(zero_model, X, y, method=\"adam\", batch_size=128, "
        "learning_rate=lambda k: lr * max(0, 1 - k / steps))`.")
  else:
    out.append(f"- MNIST: the pipeline beat best-tuned Adam from zero "
               f"({_fmt(r['adam_from_zero_seconds'], '.2f')} s) by {_fmt(adam_ratio, '.2f')}x.")
  worth = _worth_sentence(mnist.get("sample_worth"), mnist.get("seed_study"),
                          mnist["target_ce"])
  if worth:
    out.append("- " + worth.strip())
  if zero_pre is not None and r["pipeline_seconds"] is not None \
      and zero_pre < r["pipeline_seconds"]:
    out.append(
        f"- Preconditioned L-BFGS from zero ({zero_pre:.2f} s) reached the target sooner than "
        "from the explicit start: on pixels the one-pass statistics and calibration cost more "
        "than they save.")
  return out


def _init_verdicts(init) -> list[str]:
  """The MLP bullet: the explicit head as an initialiser (init.json)."""
  out = []
  tor = init["mnist"]["torch"]
  a = tor["explicit_head"]["by_step"]["100"]["accuracy"]["mean"]
  b = tor["default"]["by_step"]["100"]["accuracy"]["mean"]
  last = str(init["mnist"]["budgets"][-1])
  a2 = tor["explicit_head"]["by_step"][last]["accuracy"]["mean"]
  b2 = tor["default"]["by_step"][last]["accuracy"]["mean"]
  out.append(
      f"- **Wins as an initialiser of deeper models.** An MLP whose output layer is fitted "
      f"explicitly on its random ReLU features (Newton form) is ahead of default init after "
      f"100 Adam steps ({100 * a:.1f}% vs {100 * b:.1f}% in PyTorch) and still after one epoch "
      f"({100 * a2:.1f}% vs {100 * b2:.1f}%); the co-occurrence form on those dense activations "
      "starts nearly flat, as on pixels.")
  return out


def verdict_section(mnist, lm, init, deep=None) -> str:
  """Where explicit solutions win, where they are a warm start, where GD is better."""
  out = ["## Where the closed form wins, and where it does not\n"]
  out += _lm_verdicts(lm)
  if mnist:
    out += _mnist_verdicts(mnist)
  if init:
    out += _init_verdicts(init)
  if deep_verdict(deep):
    out.append(deep_verdict(deep))
  return "\n".join(out) + "\n"


def claims_section(mnist, lm) -> str:
  """The paper's three claims: what the tests assert and what full scale measured."""
  rows = ["## Claims, tested\n",
          "The source paper claims explicit solutions are near-optimal: (1) iterative training "
          "only marginally improves them, (2) randomly initialised training moves towards them, "
          "(3) starting from them finds better optima than backpropagation alone. The tests "
          "(`tests/test_claims_lm.py`, `tests/test_claims_mnist.py`) assert what holds on small "
          "data; the benchmarks measure the same quantities at full scale.\n",
          "| claim | toy LM, one-hot contexts (tests) | toy LM, 2-token contexts (tests) | "
          "MNIST subset (tests) | full scale (benchmarks) |",
          "| --- | --- | --- | --- | --- |"]
  full = {1: [], 2: [], 3: []}
  for key, label in (("markov1-K1", "bigram V=2000"), ("additive-K2", "additive source K=2")):
    c = (lm or {}).get("claims", {}).get(key)
    if not c:
      continue
    for r in c["1_relative_improvement_from_explicit"]:
      lr = "" if r["learning_rate"] is None else f" lr {r['learning_rate']:.3g}"
      full[1].append(f"{label}, {r['method']}{lr}, {r['steps']} steps from {r['start']}: "
                     f"{100 * r['relative_improvement']:+.3f}%")
    for r in c["2_kl_explicit_to_sgd_from_random"][:2]:
      full[2].append(f"{label}, {r['method']} lr {r['learning_rate']:.3g} from random, KL to "
                     f"{r['reference']}: {r['kl_start']:.3f} → min {r['kl_min']:.3f} → "
                     f"{r['kl_end']:.3f}")
    for r in c["3_random_minus_explicit_train_loss_at_equal_steps"]:
      full[3].append(f"{label}, {r['method']} lr {r['learning_rate']:.3g}: random minus explicit "
                     "train loss "
                     f"{r['random_minus_explicit'][0]:.3f} → {r['random_minus_explicit'][-1]:.3f}"
                     f" nats over {r['steps'][-1]} steps")
  if mnist:
    c = mnist["claims"]
    for name in ("cooccurrence", "cooccurrence+calibrate"):
      r = c[f"relative_improvement_from_{name}"]
      full[1].append(f"MNIST, Adam {r['steps']} steps from {name}: "
                     f"{100 * r['relative']:+.1f}% ({r['before']:.3f} → {r['after']:.3f})")
    series = c["kl_from_gd_iterates_to_explicit"]
    for key in [k for k in series[0] if k.startswith("kl_")]:
      full[2].append(f"MNIST, Adam from random, {key.replace('_', ' ')}: "
                     f"{series[0][key]:.3f} → {series[-1][key]:.3f}")
    e = c["equal_budget_adam"]
    full[3].append(f"MNIST, Adam {e['steps']} steps: held-out CE from explicit+calibrate "
                   f"{e['explicit+calibrate']['ce']:.3f}, from zero {e['zero']['ce']:.3f}, "
                   f"from random {e['random']['ce']:.3f}")
  tests = {
      1: ("holds: relative improvement \\|·\\| < 1e-6 (it is the optimum)",
          "marginal on a Markov source: 0.5% < improvement < 3%; **refuted** on an additive "
          "source: > 10%",
          "**refuted**: > 50% from the raw solution, > 15% after calibration"),
      2: ("holds: KL falls at every checkpoint, to < 1/500 of its start",
          "additive source: SGD from random passes near it, then moves past it to a lower "
          "loss (final KL > 1.2x its minimum)",
          "**only after calibration**: KL to the raw solution rises > 10x; to the calibrated "
          "one it falls > 4x, then plateaus"),
      3: ("holds: explicit start lower at every checkpoint",
          "faster, **not better**: long L-BFGS runs from both starts reach the same loss (convex)",
          "holds at short budgets: calibrated start wins by > 0.05 nats"),
  }
  names = {1: "(1) iterative training improves it only marginally",
           2: "(2) training from random init moves towards it",
           3: "(3) better optima after explicit init"}
  for k in (1, 2, 3):
    rows.append(f"| {names[k]} | {tests[k][0]} | {tests[k][1]} | {tests[k][2]} | "
                + "<br>".join(full[k] or ["not measured"]) + " |")
  return "\n".join(rows) + "\n"
