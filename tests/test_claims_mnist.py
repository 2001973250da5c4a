"""The source paper's claims, measured on an MNIST subset (dense pixel features).

The paper claims explicit solutions are near-optimal: (1) iterative optimisation
only marginally improves them, (2) randomly initialised parameters optimise
towards them, (3) better optima are found after explicit solutions than by
backpropagation alone. On dense images the measurements below refute (1), show
(2) only for the temperature-calibrated solution, and support (3) at equal short
budgets. Measured on 4,000 training images, SGD (lr 0.1, batch 64), seeds 0-2.
"""

from __future__ import annotations

import numpy as np
import pytest

import explicit_softmax as es

M = 10
STEPS = 200


@pytest.fixture(scope="module")
def mnist_subset():
  try:
    x, y = es.data.load_mnist("train", dtype="float32")
  except (FileNotFoundError, ValueError) as err:  # no data on this machine
    pytest.skip(f"MNIST not available: {err}")
  rows = np.random.default_rng(0).choice(len(x), 4000, replace=False)
  return x[rows], y[rows]


@pytest.fixture(scope="module")
def starts(mnist_subset):
  x, y = mnist_subset
  explicit = es.fit(x, y, n_classes=M, method="cooccurrence")
  random = es.SoftmaxModel(np.random.default_rng(0).normal(0, 0.01, (784, M)), np.zeros(M))
  return {"explicit": explicit, "calibrated": es.calibrate(explicit, x, y), "random": random}


def _sgd(model, x, y, **kwargs):
  return es.refine(model, x, y, method="sgd", steps=STEPS, batch_size=64, learning_rate=0.1,
                   seed=0, **kwargs)


def test_claim_1_iterative_training_improves_the_explicit_solution_a_lot(mnist_subset, starts):
  """Claim (1), refuted on pixels. Measured relative training-loss improvement
  after 200 SGD steps: 0.74 from the co-occurrence solution (1.81 -> 0.47) and
  0.29 after calibration (0.54 -> 0.38), identical over 3 seeds to 0.01.
  Asserted: more than 0.5 and 0.15, i.e. far from marginal."""
  x, y = mnist_subset
  for name, bound in (("explicit", 0.5), ("calibrated", 0.15)):
    before = starts[name].log_loss(x, y)
    after = _sgd(starts[name], x, y).log_loss(x, y)
    assert (before - after) / before > bound, name


def test_claim_2_gradient_descent_moves_towards_the_calibrated_solution_only(
    mnist_subset, starts):
  """Claim (2), holds only after calibration. Mean KL(explicit || SGD iterate)
  measured every 40 steps: to the raw co-occurrence solution it RISES from 0.08
  to 2.2 (its predictions are nearly uniform: the fitted temperature is ~13);
  to the calibrated solution it FALLS from 1.66 to a plateau near 0.16 (never 0:
  the calibrated solution is not the optimum). Asserted: the rise is > 10x, the
  fall is > 4x, and the plateau stays above 0.05."""
  x, y = mnist_subset
  kl = {"explicit": [], "calibrated": []}

  def track(step, model, record):
    if step % 40 == 0 or step == 399:
      for name in kl:
        kl[name].append(es.diagnostics.mean_kl(starts[name], model, x))

  es.refine(starts["random"], x, y, method="sgd", steps=400, batch_size=64, learning_rate=0.1,
            seed=0, callback=track)
  assert kl["explicit"][-1] > 10 * kl["explicit"][0]
  assert kl["calibrated"][-1] < kl["calibrated"][0] / 4
  assert kl["calibrated"][-1] > 0.05


def test_claim_3_explicit_init_wins_at_equal_short_budgets(mnist_subset, starts):
  """Claim (3), supported at short budgets. Training loss after 200 SGD steps:
  0.384 from the calibrated explicit solution, 0.472 from the raw one, 0.483
  from a random init (seeds 0-2 within 0.003). Asserted: calibrated start wins by
  more than 0.05, the raw start is no worse than random (+0.01)."""
  x, y = mnist_subset
  after = {name: _sgd(start, x, y).log_loss(x, y) for name, start in starts.items()}
  assert after["calibrated"] < after["random"] - 0.05
  assert after["explicit"] <= after["random"] + 0.01
