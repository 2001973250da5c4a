"""The source paper's claims, tested on a small synthetic Markov language model.

Williams and Zhao (2023) claim that explicit solutions of single-layer softmax
models are near-optimal: (1) iterative optimisation only marginally improves
them, (2) randomly initialised parameters optimise towards them, and (3) better
optima are found after explicit solutions than by backpropagation alone.

The toy LM is ``MarkovSource(V=30, order=1, zipf_exponent=0.5)``, 20,000
tokens (every one of the 900 bigrams occurs, so ``smoothing=0`` is finite):

* one-hot bigram contexts (K = 1): the loss is convex and the co-occurrence
  solution is its exact minimiser, so the claims hold in their strongest form:
  (1) full-batch refinement changes the training loss by float32 round-off
  only (minibatch noise makes it slightly worse), (2) the
  mean KL divergence to the explicit solution *is* the loss gap and falls
  monotonically under full-batch SGD, (3) at every step budget explicit init is
  at least as good as random init (and both tend to the same optimum);
* two context tokens (K = 2) from the same sequence: the 2-back token is
  redundant given the previous one, so the co-occurrence solution (a geometric
  mean of the 1-step and 2-step conditionals) double counts evidence and is NOT
  the optimum. Refinement improves it by about 1 % (claim 1 holds as
  "marginally", not as "zero"); explicit init stays ahead at equal step budgets,
  but the loss is still convex, so the optimum reached from random init is the
  same one (claim 3's "better optima" is not true here, only "sooner");
* two context tokens carrying independent evidence: ``LogLinearSource(V=30,
  order=2)``, whose log-probabilities add up over the two tokens (the model
  class contains it). Here the co-occurrence solution is far from the optimum:
  claim 1 fails (refinement gains about 16 %), and claim 2 only holds on the
  way: SGD from random init passes near the explicit solution, then moves on
  to a lower loss, away from it.

Tolerances come from measurements over seeds 0..19 (each docstring says what
was measured; the helpers ``_measure_*`` return those quantities, so the
measurement is reproducible with a loop over seeds). All runs are seeded, so
every test is deterministic.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import explicit_softmax as es

V = 30
N_TOKENS = 20_000
ZIPF = 0.5
SGD_LR = 30.0  # full-batch SGD: each row's curvature is ~ (1/V) * 1/2, so lr ~ V.
INIT_SCALE = 0.1


@functools.lru_cache(maxsize=None)
def _lm(seed: int, n_context: int):
  """(TokenFeatures, targets) of a seeded 20,000-token sample of the toy source."""
  source = es.data.MarkovSource(V, order=1, zipf_exponent=ZIPF, seed=seed)
  tokens = source.sample(N_TOKENS, seed=seed + 100)
  return es.data.context_tokens(tokens, n_context, V)


def _random_init(seed: int, n_features: int) -> es.SoftmaxModel:
  """Small normal weights ``N(0, 0.1^2)``, zero bias."""
  rng = np.random.default_rng([seed, 7])
  return es.SoftmaxModel(rng.normal(0.0, INIT_SCALE, (n_features, V)), np.zeros(V))


def _relative_improvement(start, x, y, **refine_kwargs) -> float:
  """``(L_start - L_refined) / L_start`` of the training loss (positive: better)."""
  before = start.log_loss(x, y)
  after = es.refine(start, x, y, **refine_kwargs).log_loss(x, y)
  return (before - after) / before


def _checkpoint_losses(start, x, y, *, every: int, steps: int, reference=None,
                       **refine_kwargs):
  """Full training loss (and KL from the ``reference`` model) every ``every`` steps."""
  losses, kls = [], []

  def callback(step, model, record):
    del record
    if (step + 1) % every == 0:
      losses.append(model.log_loss(x, y))
      if reference is not None:
        kls.append(es.diagnostics.mean_kl(reference, model, x))

  es.refine(start, x, y, steps=steps, tol=0, callback=callback, **refine_kwargs)
  return np.asarray(losses), np.asarray(kls)


# -- measurements (each test asserts on one of these) ---------------------------

def _measure_claim1_one_hot(seed: int) -> dict:
  x, y = _lm(seed, 1)
  explicit = es.fit(x, y, n_classes=V, smoothing=0.0, method="cooccurrence")
  return {
      "sgd": _relative_improvement(explicit, x, y, method="sgd", steps=100,
                                   learning_rate=SGD_LR),
      "adam": _relative_improvement(explicit, x, y, method="adam", steps=100,
                                    learning_rate=1e-3),
      "adam_minibatch": _relative_improvement(explicit, x, y, method="adam", steps=100,
                                              learning_rate=1e-3, batch_size=512, seed=seed),
      "sgd_minibatch": _relative_improvement(explicit, x, y, method="sgd", steps=100,
                                             learning_rate=SGD_LR, batch_size=512, seed=seed),
  }


def _measure_claim1_two_tokens(seed: int) -> dict:
  x, y = _lm(seed, 2)
  explicit = es.fit(x, y, n_classes=V, smoothing=0.0, method="cooccurrence")
  return {
      "lbfgs": _relative_improvement(explicit, x, y, method="lbfgs", steps=100),
      "adam": _relative_improvement(explicit, x, y, method="adam", steps=200,
                                    learning_rate=1e-2),
  }


def _measure_claim2(seed: int) -> dict:
  x, y = _lm(seed, 1)
  explicit = es.fit(x, y, n_classes=V, smoothing=0.0, method="cooccurrence")
  start = _random_init(seed, V)
  reference = explicit
  losses, kls = _checkpoint_losses(start, x, y, every=20, steps=200, reference=reference,
                                   method="sgd", learning_rate=SGD_LR)
  _, kls_adam = _checkpoint_losses(start, x, y, every=50, steps=400, reference=reference,
                                   method="adam", learning_rate=1e-2, batch_size=512,
                                   seed=seed)
  return {"kl_start": es.diagnostics.mean_kl(reference, start, x), "kl": kls,
          "gap": losses - explicit.log_loss(x, y), "kl_adam_minibatch": kls_adam}


def _measure_claim3(seed: int, n_context: int) -> dict:
  x, y = _lm(seed, n_context)
  explicit = es.fit(x, y, n_classes=V, smoothing=0.0, method="cooccurrence")
  start = _random_init(seed, n_context * V)
  out = {}
  for name, kwargs in {"sgd": {"method": "sgd", "learning_rate": SGD_LR},
                       "adam": {"method": "adam", "learning_rate": 1e-2}}.items():
    from_explicit, _ = _checkpoint_losses(explicit, x, y, every=20, steps=200, **kwargs)
    from_random, _ = _checkpoint_losses(start, x, y, every=20, steps=200, **kwargs)
    out[name] = from_random - from_explicit  # >= 0: explicit init is at least as good
  return out


# -- claim 1: iterative optimisation only marginally improves explicit solutions -

def test_claim1_one_hot_refinement_does_not_improve_the_explicit_solution():
  """Claim 1, one-hot bigram contexts: the explicit solution is the optimum.

  Measured over seeds 0..19, relative training-loss improvement after 100 steps
  from the co-occurrence solution with smoothing=0: full-batch SGD (lr 30) and
  full-batch Adam (lr 1e-3) -6e-8 .. 1.2e-7 (float32 round-off; 20 L-BFGS steps
  gave exactly 0, it stops rather than raise the loss -- left out here for its
  compile time, ``test_refinement`` covers it); minibatch (512) Adam -4.1e-6
  .. -2.7e-6 and minibatch SGD (lr 30) -1.7e-2 .. -5.9e-3: minibatch noise
  only moves away from the optimum. Asserted:
  |full batch| < 1e-6; minibatch Adam in (-1e-4, 0); minibatch SGD < -1e-3.
  """
  rel = _measure_claim1_one_hot(0)
  for name in ("sgd", "adam"):
    assert abs(rel[name]) < 1e-6, (name, rel[name])
  assert -1e-4 < rel["adam_minibatch"] < 0
  assert rel["sgd_minibatch"] < -1e-3


def test_claim1_two_token_contexts_refinement_improves_by_about_one_percent():
  """Claim 1, K = 2 context tokens: the explicit solution is NOT the optimum.

  The product of the 1-step and 2-step experts double counts evidence.
  Measured over seeds 0..19: L-BFGS (100 steps) improves the training loss by
  1.15 % .. 1.28 % relative, full-batch Adam (lr 1e-2, 200 steps) by the same
  to 3 digits. Asserted: 0.5 % < improvement < 3 % ("marginal", but real, the
  sign and size of the measurement) and Adam within 1 % (relative) of L-BFGS.
  """
  rel = _measure_claim1_two_tokens(0)
  assert 0.005 < rel["lbfgs"] < 0.03
  assert rel["adam"] == pytest.approx(rel["lbfgs"], rel=0.01)


@functools.lru_cache(maxsize=None)
def _additive_lm(seed: int):
  """(TokenFeatures, targets): 20,000 tokens of a seeded additive order-2 source, K = 2."""
  source = es.data.LogLinearSource(V, order=2, seed=seed)
  return es.data.context_tokens(source.sample(N_TOKENS, seed=seed + 100), 2, V)


def test_claim1_refuted_when_context_tokens_carry_independent_evidence():
  """Claim 1 on an additive source (K = 2): refinement is not marginal.

  Measured over seeds 0..9: 100 L-BFGS steps from the co-occurrence solution
  (smoothing 0.1) lower the training loss by 15.6 % .. 17.5 % relative.
  Asserted: more than 10 %.
  """
  x, y = _additive_lm(0)
  explicit = es.fit(x, y, n_classes=V, method="cooccurrence")
  refined = es.refine(explicit, x, y, method="lbfgs", steps=100)
  before = explicit.log_loss(x, y)
  assert (before - refined.log_loss(x, y)) / before > 0.10


def test_claim2_on_an_additive_source_sgd_passes_the_explicit_solution_and_moves_on():
  """Claim 2 on an additive source (K = 2): towards it first, then past it.

  Full-batch SGD (lr 30, 400 steps) from ``N(0, 0.1^2)`` weights, mean
  KL(explicit || model) on the training samples every 25 steps. Measured over
  seeds 0..9: the smallest KL is 0.15 .. 0.35 nats, the final one 1.5x .. 2.5x
  larger, and the final training loss is 0.11 .. 0.26 nats below the explicit
  solution's. Asserted: final KL > 1.2x its minimum, final loss below the
  explicit one by more than 0.05 nats.
  """
  x, y = _additive_lm(0)
  explicit = es.fit(x, y, n_classes=V, method="cooccurrence")
  kls = []

  def track(step, model, record):
    if step % 25 == 24:
      kls.append(es.diagnostics.mean_kl(explicit, model, x))

  sgd = es.refine(_random_init(0, 2 * V), x, y, method="sgd", steps=400, learning_rate=SGD_LR,
                  callback=track)
  assert kls[-1] > 1.2 * min(kls)
  assert sgd.log_loss(x, y) < explicit.log_loss(x, y) - 0.05


# -- claim 2: random initialisations optimise towards the explicit solution -----

def test_claim2_sgd_from_random_init_moves_towards_the_explicit_solution():
  """Claim 2, one-hot bigram contexts, from ``N(0, 0.1^2)`` weights.

  For one-hot contexts the mean KL(explicit || model) over training samples is
  exactly the training-loss gap to the optimum, so it must fall under any
  descent method. Measured over seeds 0..19: KL starts at 0.140 .. 0.153 nats;
  full-batch SGD (lr 30) lowers it at every one of 10 checkpoints (every 20
  steps), to 2.4e-5 .. 8.6e-5 after 200 steps (1/6100 .. 1/1600 of the start),
  with |KL - loss gap| <= 3.7e-7; minibatch Adam (lr 1e-2, batch 512) lowers it
  at every one of 8 checkpoints (every 50 steps), to 5.4e-4 .. 7.4e-4 (1/280 ..
  1/200). Asserted: strictly decreasing KL for both, SGD's final KL < 1/500
  of the start, |KL - gap| < 2e-6, Adam's final KL < 1/50 of the start.
  """
  m = _measure_claim2(0)
  kl = np.concatenate([[m["kl_start"]], m["kl"]])
  assert np.all(np.diff(kl) < 0), kl
  assert kl[-1] < kl[0] / 500
  np.testing.assert_allclose(m["kl"], m["gap"], atol=2e-6)
  adam = np.concatenate([[m["kl_start"]], m["kl_adam_minibatch"]])
  assert np.all(np.diff(adam) < 0), adam
  assert adam[-1] < adam[0] / 50


# -- claim 3: explicit init vs random init at equal step budgets ----------------

@pytest.mark.parametrize("n_context", [1, 2])
def test_claim3_explicit_init_is_ahead_at_every_step_budget(n_context):
  """Claim 3: training loss from explicit init vs random init, same optimiser.

  Full-batch SGD (lr 30) and Adam (lr 1e-2), checkpoints every 20 steps up to
  200, loss(random) - loss(explicit). Measured over seeds 0..19: K = 1 at step
  20 0.024 .. 0.027 (SGD) and 0.069 .. 0.080 (Adam) nats, decreasing to
  2.3e-5 .. 8.6e-5 (SGD) and 5.1e-5 .. 2.5e-4 (Adam) at step 200, positive at
  every checkpoint; K = 2 likewise (step 20: 0.023 .. 0.026 and 0.066 ..
  0.076; step 200: >= 1.8e-5). Asserted: gap > 1e-6 at every checkpoint and >
  1e-2 at the first.
  """
  gaps = _measure_claim3(0, n_context)
  for name, gap in gaps.items():
    assert np.all(gap > 1e-6), (name, gap)
    assert gap[0] > 1e-2, (name, gap)


def test_claim3_two_token_contexts_reach_the_same_optimum_from_both_inits():
  """Claim 3's "better optima" is not what happens: the loss is convex.

  K = 2 contexts, where explicit init is not the optimum: 300 L-BFGS steps
  from the explicit solution and from ``N(0, 0.1^2)`` weights. Measured over
  seeds 0..19: final training losses differ by 0 .. 4.8e-7 relative (either
  sign). Asserted: they agree to 1e-5 relative -- explicit init gets there
  sooner (test above), not to a better optimum.
  """
  x, y = _lm(0, 2)
  explicit = es.fit(x, y, n_classes=V, smoothing=0.0, method="cooccurrence")
  a = es.refine(explicit, x, y, method="lbfgs", steps=300).log_loss(x, y)
  b = es.refine(_random_init(0, 2 * V), x, y, method="lbfgs", steps=300).log_loss(x, y)
  assert a == pytest.approx(b, rel=1e-5)
