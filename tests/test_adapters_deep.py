"""Explicit initialisation of real deep models (issue 18): a CNN head, a new head on a
pretrained network, and a transformer's embedding, head and value/output projections.

Tiny models throughout; tolerances come from float32 round-off of the sums involved
(see :func:`_matmul_tolerance`), so they hold on any CPU.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import explicit_softmax as es  # noqa: E402
from explicit_softmax.adapters import _tokens, svd_factors  # noqa: E402
from explicit_softmax.adapters import torch as es_torch  # noqa: E402

EPS32 = float(np.finfo(np.float32).eps)


def _matmul_tolerance(features, weights, bias):
  """Elementwise bound on |float32 (f W + b) - exact|: each of the N + 1 terms of a sum
  rounds with relative error <= eps (a standard error bound of n eps |f||W|), with a
  factor 4 for the framework's own summation order."""
  f = np.abs(np.asarray(features, np.float64))
  return 4 * (f.shape[1] + 1) * EPS32 * (f @ np.abs(weights) + np.abs(bias)) + 1e-30


def _logits64(features, explicit):
  return np.asarray(features, np.float64) @ explicit.weights + explicit.bias


@pytest.fixture(scope="module")
def images():
  rng = np.random.default_rng(0)
  x = rng.random((120, 1, 8, 8)).astype(np.float32)
  # Labels that depend on the image (brightness of quadrants), so the fit has signal.
  q = x[:, 0, :4, :4].mean((1, 2)) - x[:, 0, 4:, 4:].mean((1, 2))
  y = np.digitize(q, np.quantile(q, [1 / 3, 2 / 3]))
  return x, y


def _cnn(seed=0, n_classes=3, dtype=torch.float32):
  torch.manual_seed(seed)
  return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Flatten(), nn.Linear(6 * 2 * 2, n_classes)).to(dtype)


def _body(model, x):
  with torch.no_grad():
    return model[:-1](torch.as_tensor(x, dtype=model[-1].weight.dtype)).numpy()


def _assert_clean_leaf(param, shape, dtype):
  assert tuple(param.shape) == shape and param.dtype == dtype
  assert param.requires_grad and param.is_leaf and param.grad_fn is None and param.grad is None


# -- CNN head --------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("calibrate", [False, True])
def test_cnn_head_reproduces_the_explicit_model(images, dtype, calibrate):
  x, y = images
  model = _cnn(dtype=dtype)
  weight_id = id(model[-1].weight)
  explicit = es_torch.init_head(model, x, y, calibrate=calibrate)
  feats = _body(model, x)
  assert feats.min() >= 0 and feats.shape[1] == explicit.n_features
  with torch.no_grad():
    logits = model(torch.as_tensor(x, dtype=dtype)).numpy()
  expected = _logits64(feats, explicit)
  tol = _matmul_tolerance(feats, explicit.weights, explicit.bias)
  if dtype == torch.float32:  # the weights themselves were rounded to float32 once more
    tol = tol + 2 * EPS32 * (np.abs(feats) @ np.abs(explicit.weights) + np.abs(explicit.bias))
  assert np.all(np.abs(logits - expected) <= tol)
  _assert_clean_leaf(model[-1].weight, (3, 24), dtype)
  assert id(model[-1].weight) == weight_id and model[-1].weight.device.type == "cpu"


def _cross_entropy(logits, y):
  z = logits - logits.max(axis=1, keepdims=True)
  return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))


def test_calibration_minimises_the_cross_fitted_cross_entropy(images):
  """calibrate=True is the plain solution with a temperature tau and class biases beta
  that minimise CE(tau z + beta) + l2/2 ||beta||^2 over out-of-fold logits z (5 folds of
  the rows, i % 5; each fold's logits from the solution of the other four folds): a
  convex objective, so its minimiser is no worse than (1, 0) or any nearby point."""
  x, y = images
  plain = es_torch.init_head(_cnn(), x, y)
  calibrated = es_torch.init_head(_cnn(), x, y, calibrate=True)
  feats = _body(_cnn(), x).astype(np.float64)
  info = calibrated.info["calibration"]
  tau, l2 = info["temperature"], info["l2"]
  assert info["folds"] == 5 and l2 == 1 / len(x) and tau > 0
  np.testing.assert_allclose(calibrated.weights, tau * plain.weights, rtol=1e-6)
  beta = calibrated.bias.astype(np.float64) - tau * plain.bias
  folds = np.arange(len(x)) % 5
  z = np.empty((len(x), 3))
  for k in range(5):
    rest = es.SoftmaxStats.from_data(feats[folds != k], y[folds != k], n_classes=3, gram=True)
    held_out = es.solve(rest, "newton")
    z[folds == k] = feats[folds == k] @ held_out.weights + held_out.bias

  def objective(t, b):
    return _cross_entropy(t * z + b, y) + l2 / 2 * float(b @ b)

  best = objective(tau, beta)
  assert best <= objective(1.0, np.zeros(3))
  for dt, db in ((1e-2, 0), (-1e-2, 0), (0, 1e-2), (0, -1e-2)):
    assert best <= objective(tau + dt, beta + db * np.array([1.0, -1.0, 0.0]))
  with pytest.raises(ValueError, match="calibrate must be True or False; got 'yes'"):
    es_torch.init_head(_cnn(), x, y, calibrate="yes")


@pytest.mark.parametrize("seed", range(4))
def test_cross_fitted_calibration_does_not_learn_the_fits_overconfidence(seed):
  """With fewer rows (40) than twice the features (30), the solution nearly interpolates
  its rows: calibrated on them, the temperature soars and the held-out CE with it; fitted
  on out-of-fold logits, it falls to about zero and the head stays near the uniform CE."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(30, 3))

  def draw(t):
    x = rng.normal(size=(t, 30)).astype(np.float32)
    return x, (x @ w / np.sqrt(30) * 1.5 + rng.gumbel(size=(t, 3))).argmax(axis=1)

  (x, y), (x_test, y_test) = draw(40), draw(2000)
  plain = es_torch.init_head(nn.Linear(30, 3), x, y)
  same_rows = es.calibrate(plain, x, y, l2=1 / len(x))
  cross_fitted = es_torch.init_head(nn.Linear(30, 3), x, y, calibrate=True)
  assert cross_fitted.info["calibration"]["temperature"] < 0.1
  assert same_rows.info["calibration"]["temperature"] > 1
  assert cross_fitted.log_loss(x_test, y_test) < np.log(3) + 0.1
  assert same_rows.log_loss(x_test, y_test) > 2 * cross_fitted.log_loss(x_test, y_test)


# -- a new head on a pretrained network -------------------------------------------
def test_new_head_touches_no_other_parameter(images):
  x, y = images
  model = _cnn(seed=1, n_classes=5)
  model.train()
  before = {k: v.clone() for k, v in model.state_dict().items()}
  old_head = model[-1]
  head = es_torch.new_head(model, x, y % 2, n_classes=2)
  assert model[-1] is head and head is not old_head and model.training and head.training
  for name, value in model.state_dict().items():
    if not name.startswith("7."):
      assert torch.equal(value, before[name]), name  # bit for bit
  _assert_clean_leaf(head.weight, (2, 24), torch.float32)
  _assert_clean_leaf(head.bias, (2,), torch.float32)
  feats = _body(model, x)
  explicit = es.solve(es.SoftmaxStats.from_data(feats, y % 2, n_classes=2, gram=True), "newton")
  np.testing.assert_allclose(head.weight.detach().numpy().T, explicit.weights.astype(np.float32),
                             rtol=1e-5, atol=1e-6 * np.abs(explicit.weights).max())
  with torch.no_grad():
    logits = model(torch.as_tensor(x)).numpy()
  assert np.all(np.abs(logits - _logits64(feats, explicit)) <=
                _matmul_tolerance(feats, explicit.weights, explicit.bias)
                + 1e-5 * (np.abs(feats) @ np.abs(explicit.weights) + np.abs(explicit.bias)))


class _Tagged(nn.Module):
  """A pretrained network with a named ``head`` and a BatchNorm whose buffers must stay."""

  def __init__(self):
    super().__init__()
    self.body = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten())
    self.head = nn.Linear(3, 4)

  def forward(self, x):
    return self.head(self.body(x))


def test_new_head_on_a_named_head_keeps_batchnorm_buffers(images):
  x, y = images
  torch.manual_seed(0)
  model = _Tagged()
  model(torch.as_tensor(x))  # training-mode forward: BatchNorm statistics move once
  before = {k: v.clone() for k, v in model.state_dict().items()}
  head = es_torch.new_head(model, x, y, n_classes=3)
  assert model.head is head and head.out_features == 3
  for name, value in model.state_dict().items():
    if not name.startswith("head."):
      assert torch.equal(value, before[name]), name


def test_new_head_rejects_bad_input(images):
  x, y = images
  for bad in (0, 2.5, None, "3"):
    with pytest.raises(ValueError, match=f"n_classes must be a positive integer.*got {bad!r}"):
      es_torch.new_head(_cnn(), x, y, n_classes=bad)
  with pytest.raises(ValueError, match="no place to put a new head"):
    es_torch.new_head(nn.Linear(4, 2), np.ones((3, 4), np.float32), [0, 1, 0], n_classes=2)
  model = _cnn()
  before = [p.clone() for p in model.parameters()]
  with pytest.raises(ValueError):  # labels 0..2 are no codes of 2 classes
    es_torch.new_head(model, x, y, n_classes=2)
  assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
  with pytest.raises(ValueError, match="not a submodule"):
    es_torch.new_head(model, x, y, n_classes=3, head=nn.Linear(24, 3),
                      features_fn=lambda xb: model[:-1](xb))


# -- a tiny transformer ------------------------------------------------------------
VOCAB, WIDTH, CONTEXT, LAYERS = 7, 8, 6, 2


class _Block(nn.Module):

  def __init__(self):
    super().__init__()
    self.ln1, self.ln2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
    self.query, self.key, self.value, self.out = (nn.Linear(WIDTH, WIDTH) for _ in range(4))
    self.fc, self.proj = nn.Linear(WIDTH, 2 * WIDTH), nn.Linear(2 * WIDTH, WIDTH)

  def forward(self, x):
    b, t, d = x.shape
    a = self.ln1(x)
    q, k, v = (layer(a).view(b, t, 2, d // 2).transpose(1, 2)
               for layer in (self.query, self.key, self.value))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
    x = x + self.out(y)
    return x + self.proj(F.gelu(self.fc(self.ln2(x))))


class _GPT(nn.Module):

  def __init__(self):
    super().__init__()
    self.tok, self.pos = nn.Embedding(VOCAB, WIDTH), nn.Embedding(CONTEXT, WIDTH)
    self.blocks = nn.ModuleList(_Block() for _ in range(LAYERS))
    self.ln_f, self.head = nn.LayerNorm(WIDTH), nn.Linear(WIDTH, VOCAB)

  def forward(self, ids):
    x = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
    for block in self.blocks:
      x = block(x)
    return self.head(self.ln_f(x))


@pytest.fixture(scope="module")
def text():
  rng = np.random.default_rng(3)
  stream = np.zeros(3000, np.int64)
  for t in range(1, len(stream)):  # a noisy cycle: the next token depends on the last
    stream[t] = (stream[t - 1] + 1) % VOCAB if rng.random() < 0.8 else rng.integers(VOCAB)
  starts = rng.integers(0, len(stream) - CONTEXT - 1, 40)
  w = stream[starts[:, None] + np.arange(CONTEXT + 1)]
  return stream, w[:, :-1], w[:, 1:]


def test_transformer_head_fits_every_position(text):
  stream, ids, nxt = text
  torch.manual_seed(0)
  model = _GPT()
  explicit = es_torch.init_head(model, ids, nxt, max_samples=None)
  assert explicit.info["init"]["rows"] == len(ids)
  assert explicit.info["init"]["samples"] == ids.size  # every position is a sample
  feats = es_torch.layer_inputs(model, model.head, ids)
  assert feats.shape == (len(ids), CONTEXT, WIDTH)
  flat = feats.reshape(-1, WIDTH)
  ref = es.solve(es.SoftmaxStats.from_data(flat, nxt.ravel(), n_classes=VOCAB, gram=True),
                 "newton")
  np.testing.assert_allclose(explicit.weights, ref.weights, rtol=1e-9, atol=1e-12)
  with torch.no_grad():
    logits = model(torch.as_tensor(ids)).numpy().reshape(-1, VOCAB)
  tol = _matmul_tolerance(flat, explicit.weights, explicit.bias) \
      + 2 * EPS32 * (np.abs(flat) @ np.abs(explicit.weights) + np.abs(explicit.bias))
  assert np.all(np.abs(logits - _logits64(flat, explicit)) <= tol)
  _assert_clean_leaf(model.head.weight, (VOCAB, WIDTH), torch.float32)
  with pytest.raises(ValueError, match="labels have shape"):
    es_torch.init_head(model, ids, nxt[:, :-1])


@pytest.mark.parametrize("max_samples", [144, 100])
def test_transformer_head_counts_positions_against_the_budget(text, max_samples):
  """A sequence row carries CONTEXT samples: the budget is met with ceil(budget / CONTEXT)
  rows spread evenly over the windows, cut at the budget (positions in row order)."""
  _, ids, nxt = text
  torch.manual_seed(0)
  model = _GPT()
  explicit = es_torch.init_head(model, ids, nxt, max_samples=max_samples)
  budget = max_samples  # 144: 24 whole windows; 100: 16 windows and 4 positions of a 17th
  n_rows = -(-budget // CONTEXT)
  rows = np.arange(n_rows) * len(ids) // n_rows
  assert budget < ids.size and explicit.info["init"] == {
      "rows": n_rows, "samples": budget, "max_samples": budget,
      "seconds": explicit.info["init"]["seconds"]}
  feats = es_torch.layer_inputs(model, model.head, ids[rows]).reshape(-1, WIDTH)[:budget]
  ref = es.solve(es.SoftmaxStats.from_data(feats, nxt[rows].ravel()[:budget], n_classes=VOCAB,
                                           gram=True), "newton")
  np.testing.assert_allclose(explicit.weights, ref.weights, rtol=1e-9, atol=1e-12)


def test_transformer_embedding_and_value_output_projections(text):
  stream, ids, nxt = text
  torch.manual_seed(0)
  model = _GPT()
  untouched = {k: v.clone() for k, v in model.state_dict().items()}
  factors = svd_factors(es.SoftmaxStats.from_data(
      es.TokenFeatures(stream[:-1, None], VOCAB), stream[1:], n_classes=VOCAB), VOCAB - 1)
  factors = factors.__class__(
      embedding=np.pad(factors.embedding, ((0, 0), (0, WIDTH - factors.rank))),
      head=np.pad(factors.head, ((0, WIDTH - factors.rank), (0, 0))), bias=factors.bias,
      singular_values=factors.singular_values, n_context=1)
  es_torch.init_embedding(factors, model.tok, model.head)
  np.testing.assert_array_equal(model.tok.weight.detach().numpy(), factors.embedding)
  bag, _ = _tokens.context_bag_weights(stream, VOCAB, CONTEXT)
  table = bag @ np.linalg.pinv(factors.head.astype(np.float64), rcond=1e-6)
  targets = table[ids] / LAYERS
  pairs = [(b.value, b.out) for b in model.blocks]
  written = es_torch.init_value_output(model, ids, pairs, targets)
  for (value, out), (w_v, w_o) in zip(pairs, written):
    for layer in (value, out):
      _assert_clean_leaf(layer.weight, (WIDTH, WIDTH), torch.float32)
      assert not layer.bias.detach().any()
    np.testing.assert_array_equal(value.weight.detach().numpy(), w_v.T)
    np.testing.assert_array_equal(out.weight.detach().numpy(), w_o.T)
  # The last pair was fitted on the inputs it really sees now: its product is the ridge
  # map of those inputs to the targets (factors exact at full rank, float32 rounded).
  inputs = es_torch.layer_inputs(model, pairs[-1][0], ids).reshape(-1, WIDTH)
  w = _tokens.ridge_map(inputs, targets.reshape(-1, WIDTH))
  w_v, w_o = written[-1]
  np.testing.assert_allclose(w_v.astype(np.float64) @ w_o, w,
                             atol=WIDTH * 8 * EPS32 * np.abs(w).max())
  # Nothing but the embedding, the head and the value/output projections changed.
  changed = {"tok.weight", "head.weight", "head.bias"} | {
      f"blocks.{i}.{n}.{p}" for i in range(LAYERS) for n in ("value", "out")
      for p in ("weight", "bias")}
  for name, value in model.state_dict().items():
    if name not in changed:
      assert torch.equal(value, untouched[name]), name


def test_value_output_rejects_bad_input(text):
  stream, ids, nxt = text
  model = _GPT()
  targets = np.zeros((len(ids), CONTEXT, WIDTH), np.float32)
  with pytest.raises(ValueError, match="pairs is empty"):
    es_torch.init_value_output(model, ids, [], targets)
  with pytest.raises(ValueError, match=r"pairs\[0\] must be a \(value, output\) pair"):
    es_torch.init_value_output(model, ids, [model.blocks[0].value], targets)
  with pytest.raises(ValueError, match=r"pairs\[0\]\[0\] \(the value projection\) is a "
                                       "LayerNorm"):
    es_torch.init_value_output(model, ids, [(model.blocks[0].ln1, model.blocks[0].out)],
                               targets)
  with pytest.raises(ValueError, match="must chain"):
    es_torch.init_value_output(model, ids, [(model.blocks[0].value, model.blocks[0].proj)],
                               targets)
  with pytest.raises(ValueError, match="do not match the value projection's inputs|labels"):
    es_torch.init_value_output(model, ids, [(model.blocks[0].value, model.blocks[0].out)],
                               targets[:, :-1])
  with pytest.raises(ValueError, match="layer must be a submodule"):
    es_torch.layer_inputs(model, "head", ids)


# -- framework-free math -------------------------------------------------------------
def test_context_bag_weights_are_the_centred_count_solution():
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, 5, 400)
  c, b = _tokens.context_bag_weights(tokens, 5, 3)
  positions = np.arange(2, len(tokens) - 1)
  feats = np.stack([np.bincount(tokens[t - 2:t + 1], minlength=5) / 3 for t in positions])
  ref = es.solve(es.SoftmaxStats.from_data(feats, tokens[positions + 1], n_classes=5),
                 "cooccurrence")
  ours, theirs = feats @ c + b, feats @ ref.weights + ref.bias
  # Centring moves a constant per row: the softmax (logits up to a shift) is unchanged.
  # The statistics of fractional features are summed in float32 by the library: the
  # logits agree to float32 round-off of their size.
  shift = ours - theirs
  np.testing.assert_allclose(shift - shift.mean(axis=1, keepdims=True), 0,
                             atol=64 * EPS32 * np.abs(theirs).max())
  np.testing.assert_allclose(c.mean(axis=1), 0, atol=8 * EPS32 * np.abs(c).max())
  np.testing.assert_allclose(c.mean(axis=0), 0, atol=8 * EPS32 * np.abs(c).max())


def test_context_bag_weights_reject_bad_input():
  tokens = np.arange(20) % 4
  for kwargs, message in (
      ({"window": 0}, "window must be a positive integer; got 0"),
      ({"window": 2.5}, "window must be a positive integer; got 2.5"),
      ({"window": 30}, "window=30 needs more than 30 tokens; got 20"),
      ({"vocab_size": 3}, r"token ids must lie in \[0, vocab_size=3\); found \[0, 3\]"),
      ({"max_positions": -1}, "max_positions must be a positive integer; got -1")):
    args = {"vocab_size": 4, "window": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
      _tokens.context_bag_weights(tokens, args.pop("vocab_size"), args.pop("window"), **args)
  with pytest.raises(ValueError, match=r"1-D array of integer token ids; got shape \(4, 5\)"):
    _tokens.context_bag_weights(tokens.reshape(4, 5), 4, 2)
  with pytest.raises(ValueError, match="dtype float64"):
    _tokens.context_bag_weights(tokens.astype(float), 4, 2)


def test_ridge_map_and_balanced_factors():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((50, 6))
  a_true = rng.standard_normal((6, 4))
  y = x @ a_true
  a = _tokens.ridge_map(x, y, ridge=0.0)
  np.testing.assert_allclose(a, a_true, atol=1e-8)
  left, right = _tokens.balanced_factors(a, 4)
  np.testing.assert_allclose(left.astype(np.float64) @ right, a,
                             atol=16 * EPS32 * np.abs(a).max())
  # Balanced: both factors carry the same singular values.
  np.testing.assert_allclose(np.linalg.svd(left, compute_uv=False),
                             np.linalg.svd(right, compute_uv=False), rtol=1e-5)
  w_v, w_o = _tokens.value_output_weights(x, y, 7, ridge=0.0)  # wider than the rank: padded
  assert w_v.shape == (6, 7) and w_o.shape == (7, 4) and not w_v[:, 4:].any()
  with pytest.raises(ValueError, match=r"same n >= 1; got \(50, 6\) and \(49, 4\)"):
    _tokens.ridge_map(x, y[:-1])
  with pytest.raises(ValueError, match="NaN or inf"):
    _tokens.ridge_map(np.where(x > 2, np.nan, x), y)
  with pytest.raises(ValueError, match="ridge must be"):
    _tokens.ridge_map(x, y, ridge=-1.0)
  with pytest.raises(ValueError, match=r"rank=5 exceeds min\(6, 4\) = 4"):
    _tokens.balanced_factors(a, 5)


# -- Flax NNX ----------------------------------------------------------------------------
def _flax_cnn(nnx, seed=0, n_classes=3):
  """One conv-ReLU-pool block (each eager op compiles once: kept small for the suite)."""
  rngs = nnx.Rngs(seed)
  pool = functools.partial(nnx.max_pool, window_shape=(4, 4), strides=(4, 4))
  return nnx.Sequential(nnx.Conv(1, 6, (3, 3), rngs=rngs), nnx.relu, pool,
                        lambda h: h.reshape(h.shape[0], -1), nnx.Linear(24, n_classes, rngs=rngs))


def _flax_body(model, x):
  h = x
  for layer in list(model.layers)[:-1]:
    h = layer(h)
  return np.asarray(h)


def test_flax_cnn_head_and_new_head(images):
  nnx = pytest.importorskip("flax.nnx")
  import jax
  from explicit_softmax.adapters import flax as es_flax
  x, y = images
  xf = x.transpose(0, 2, 3, 1)  # NHWC
  with jax.default_matmul_precision("highest"):  # exact float32 on any backend
    _flax_head_and_new_head(nnx, jax, es_flax, xf, y)


def _flax_head_and_new_head(nnx, jax, es_flax, xf, y):
  model = _flax_cnn(nnx)
  kernel_var = model.layers[-1].kernel
  explicit = es_flax.init_head(model, xf, y)
  assert model.layers[-1].kernel is kernel_var and kernel_var[...].dtype == np.float32
  feats = _flax_body(model, xf)
  logits = np.asarray(model(xf))
  tol = _matmul_tolerance(feats, explicit.weights, explicit.bias) \
      + 2 * EPS32 * (np.abs(feats) @ np.abs(explicit.weights) + np.abs(explicit.bias))
  assert np.all(np.abs(logits - _logits64(feats, explicit)) <= tol)

  body = [layer for layer in list(model.layers)[:-1] if isinstance(layer, nnx.Module)]
  before = [[np.array(v) for v in jax.tree.leaves(nnx.state(layer))] for layer in body]
  head = es_flax.new_head(model, xf, y % 2, n_classes=2, head=None)
  assert model.layers[-1] is head and head.kernel[...].shape == (24, 2)
  # Every variable of the body (all layers but the head) is bit-for-bit the same.
  assert sum(map(len, before)) == 2  # the conv's kernel and bias
  for layer, old in zip(body, before):
    for a, b in zip(old, jax.tree.leaves(nnx.state(layer))):
      np.testing.assert_array_equal(a, np.asarray(b))
  for bad in (0, 1.5):
    with pytest.raises(ValueError, match=f"n_classes must be a positive integer.*got {bad!r}"):
      es_flax.new_head(model, xf, y, n_classes=bad, head=None)
