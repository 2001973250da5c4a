"""Explicit initialisation of Flax models (``explicit_softmax.adapters.flax``)."""

from __future__ import annotations

import numpy as np
import pytest

flax = pytest.importorskip("flax")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import linen  # noqa: E402
from flax import nnx  # noqa: E402

import explicit_softmax as es  # noqa: E402
from explicit_softmax.adapters import _fit, centred_weights, svd_factors  # noqa: E402
from explicit_softmax.adapters import flax as es_flax  # noqa: E402

N_IN, N_HIDDEN, N_CLASSES = 12, 16, 3


@pytest.fixture(autouse=True)
def _full_float32_products():
  """These tests check float32-exact reproduction of the explicit model. Flax
  layers multiply with JAX's default precision, which on GPUs is TF32 (~1e-3
  relative); the users' own choice, so the tests ask for full float32 here."""
  with jax.default_matmul_precision("highest"):
    yield


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  x = rng.random((300, N_IN)).astype(np.float32)
  y = (x[:, :N_CLASSES] + 0.3 * rng.random((300, N_CLASSES))).argmax(axis=1)
  return x, y


def _mlp(seed=0, param_dtype=jnp.float32):
  rngs = nnx.Rngs(seed)
  return nnx.Sequential(nnx.Linear(N_IN, N_HIDDEN, param_dtype=param_dtype, rngs=rngs),
                        nnx.relu,
                        nnx.Linear(N_HIDDEN, N_CLASSES, param_dtype=param_dtype, rngs=rngs))


def _hidden(model, x):
  return np.asarray(nnx.relu(model.layers[0](x)), np.float32)


class Net(nnx.Module):
  """A model with a ``head`` attribute and dropout before it."""

  def __init__(self, rngs):
    self.body = nnx.Linear(N_IN, N_HIDDEN, rngs=rngs)
    self.drop = nnx.Dropout(0.5, rngs=rngs)
    self.head = nnx.Linear(N_HIDDEN, N_CLASSES, rngs=rngs)

  def features(self, x):
    return nnx.relu(self.body(x))

  def __call__(self, x):
    return self.head(self.drop(self.features(x)))


@pytest.mark.parametrize("method", ["newton", "cooccurrence"])
def test_head_reproduces_the_explicit_model(data, method):
  x, y = data
  model = _mlp()
  explicit = es_flax.init_head(model, x, y, method=method, batch_size=64, max_samples=None)
  feats = _hidden(model, x)
  proba = np.asarray(jax.nn.softmax(model(x)))
  np.testing.assert_allclose(proba, explicit.predict_proba(feats), atol=2e-6)
  direct = es.fit(feats, y, n_classes=N_CLASSES, method=method)
  np.testing.assert_allclose(explicit.weights, direct.weights, rtol=1e-4, atol=1e-5)
  # Layout: the Flax kernel is (in, out), like W.
  np.testing.assert_array_equal(np.asarray(model.layers[-1].kernel[...]), explicit.weights)


# -- how many rows a fit reads (max_samples) -----------------------------------------
def _even(n_rows, n):
  return np.arange(n) * n_rows // n


@pytest.mark.parametrize("max_samples, n", [("auto", 4096), (50, 50), (None, 5000)])
def test_max_samples_reads_rows_spread_evenly(max_samples, n):
  rng = np.random.default_rng(1)  # more rows than the "auto" budget of this head (4,096)
  x = rng.random((5000, N_IN)).astype(np.float32)
  y = (x[:, :N_CLASSES] + 0.3 * rng.random((5000, N_CLASSES))).argmax(axis=1)
  model = _mlp()
  forwarded = []

  def features(t):
    forwarded.append(len(t))
    return nnx.relu(model.layers[0](t))

  explicit = es_flax.init_head(model, jnp.asarray(x), jnp.asarray(y), head=model.layers[-1],
                               features_fn=features, max_samples=max_samples)
  init = explicit.info["init"]
  assert sum(forwarded) == n and init["rows"] == n and init["samples"] == n
  assert init["seconds"] > 0
  rows = _even(len(x), n)
  direct = es.fit(_hidden(model, x)[rows], y[rows], n_classes=N_CLASSES, method="newton")
  np.testing.assert_allclose(explicit.weights, direct.weights, rtol=1e-4, atol=1e-5)


def test_max_samples_loader_new_head_layerwise_and_linen(data):
  x, y = data
  drawn = []

  def loader():
    for i in range(0, len(x), 50):
      drawn.append(i)
      yield x[i:i + 50], y[i:i + 50]

  model = _mlp()
  explicit = es_flax.init_head(model, loader(), max_samples=120)
  assert drawn == [0, 50, 100] and explicit.info["init"]["samples"] == 120
  direct = es.fit(_hidden(model, x[:120]), y[:120], n_classes=N_CLASSES, method="newton")
  np.testing.assert_allclose(explicit.weights, direct.weights, rtol=1e-4, atol=1e-5)

  head = es_flax.new_head(model, x, y % 2, n_classes=2, head=model.layers[-1], max_samples=60)
  rows = _even(len(x), 60)
  direct = es.fit(_hidden(model, x)[rows], y[rows] % 2, n_classes=2, method="newton")
  np.testing.assert_allclose(np.asarray(head.kernel[...]), direct.weights, rtol=1e-4,
                             atol=1e-5)

  fitted = es_flax.init_layerwise(_mlp(), x, y, max_samples=100)
  assert [m.info["init"]["rows"] for m in fitted] == [100, 100]
  fitted = es_flax.init_layerwise(_mlp(), x, y)  # "auto": 4,096 rows, more than there are
  assert [m.info["init"]["rows"] for m in fitted] == [300, 300]

  params = {"params": {"head": {"kernel": np.zeros((N_IN, N_CLASSES), np.float32),
                                "bias": np.zeros(N_CLASSES, np.float32)}}}
  new = es_flax.init_linen_head(params, "head", x, y, max_samples=70)
  rows = _even(len(x), 70)
  direct = es.fit(x[rows], y[rows], n_classes=N_CLASSES, method="newton")
  np.testing.assert_allclose(new["params"]["head"]["kernel"], direct.weights, rtol=1e-4,
                             atol=1e-5)
  for bad in (0, 2.5, "all"):
    with pytest.raises(ValueError, match="max_samples must be"):
      es_flax.init_head(_mlp(), x, y, head=None, max_samples=bad)


def test_calibrate_is_the_cross_fitted_calibration_of_the_features(data):
  """calibrate=True: the plain solution times the out-of-fold temperature (5 folds by row),
  the same as fitting the features read in one batch (folds do not depend on batching)."""
  x, y = data
  plain = es_flax.init_head(_mlp(), x, y, max_samples=None)
  calibrated = es_flax.init_head(_mlp(), x, y, calibrate=True, max_samples=None, batch_size=64)
  info = calibrated.info["calibration"]
  assert info["folds"] == 5 and info["temperature"] > 0
  np.testing.assert_allclose(calibrated.weights, info["temperature"] * plain.weights, rtol=1e-6)
  direct = _fit.fit_explicit([(_hidden(_mlp(), x), y)], n_features=N_HIDDEN,
                             n_classes=N_CLASSES, calibrate=True)
  np.testing.assert_allclose(calibrated.weights, direct.weights, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(calibrated.bias, direct.bias, rtol=1e-4, atol=1e-5)


def test_state_is_updated_in_place(data):
  x, y = data
  model = _mlp()
  kernel_var = model.layers[-1].kernel
  explicit = es_flax.init_head(model, x, y)
  assert model.layers[-1].kernel is kernel_var  # same Variable, new value
  state = nnx.state(model, nnx.Param)
  np.testing.assert_array_equal(np.asarray(state["layers"][2]["kernel"][...]), explicit.weights)
  graphdef, params = nnx.split(model)
  np.testing.assert_array_equal(np.asarray(nnx.merge(graphdef, params)(x)),
                                np.asarray(model(x)))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_dtypes_are_preserved(data, dtype):
  x, y = data
  model = _mlp(param_dtype=dtype)
  explicit = es_flax.init_head(model, x, y)
  head = model.layers[-1]
  assert head.kernel[...].dtype == dtype and head.bias[...].dtype == dtype
  np.testing.assert_array_equal(np.asarray(head.kernel[...]),
                                np.asarray(jnp.asarray(explicit.weights, dtype)))
  assert list(head.kernel[...].devices()) == jax.devices()[:1]
  feats = _hidden(model, x)
  proba = np.asarray(jax.nn.softmax(model(x).astype(jnp.float32)))
  np.testing.assert_allclose(proba, explicit.predict_proba(feats), atol=0.05)


def test_head_attribute_uses_the_models_own_forward(data):
  x, y = data
  net = Net(nnx.Rngs(1))
  assert not net.drop.deterministic
  explicit = es_flax.init_head(net, x, y)
  assert type(net.head) is nnx.Linear  # the capture class is restored
  assert not net.drop.deterministic  # the train mode is restored
  feats = np.asarray(net.features(x))
  net.eval()
  np.testing.assert_allclose(np.asarray(jax.nn.softmax(net(x))),
                             explicit.predict_proba(feats), atol=2e-6)


def test_features_fn_and_batch_iterable(data):
  x, y = data
  net = Net(nnx.Rngs(2))
  batches = [(x[i:i + 50], y[i:i + 50]) for i in range(0, len(x), 50)]
  explicit = es_flax.init_head(net, batches, head=net.head, features_fn=net.features,
                               max_samples=None)
  direct = es.fit(np.asarray(net.features(x)), y, n_classes=N_CLASSES, method="newton")
  np.testing.assert_allclose(explicit.weights, direct.weights, rtol=1e-4, atol=1e-5)


def test_errors(data):
  x, y = data
  linear_stack = nnx.Sequential(nnx.Linear(N_IN, N_HIDDEN, rngs=nnx.Rngs(0)),
                                nnx.Linear(N_HIDDEN, N_CLASSES, rngs=nnx.Rngs(1)))
  with pytest.raises(ValueError, match="negative entries.*nnx.relu"):
    es_flax.init_head(linear_stack, x, y, method="cooccurrence")
  assert np.isfinite(es_flax.init_head(linear_stack, x, y).weights).all()  # newton: real ok
  relu_last = nnx.Sequential(nnx.Linear(N_IN, N_CLASSES, rngs=nnx.Rngs(0)), nnx.relu)
  with pytest.raises(ValueError, match="not a dense nnx.Linear"):
    es_flax.init_head(relu_last, x, y)
  model = _mlp()
  with pytest.raises(ValueError, match="labels must lie in"):
    es_flax.init_head(model, x, y + 5)
  with pytest.raises(ValueError, match="takes 16 input features but the features.* have 5"):
    es_flax.init_head(model, x, y, features_fn=lambda b: b[:, :5])
  with pytest.raises(ValueError, match="cannot find the dense head"):
    es_flax.init_head(nnx.Dropout(0.1), x, y)
  with pytest.raises(ValueError, match="the weights contain NaN or inf"):
    es_flax.write_linear(model.layers[-1], np.full((N_HIDDEN, N_CLASSES), np.nan))


def test_layerwise(data):
  x, y = data
  model = _mlp()
  fitted = es_flax.init_layerwise(model, x, y, n_cluster_samples=200, batch_size=128)
  assert [m.weights.shape for m in fitted] == [(N_IN, N_HIDDEN), (N_HIDDEN, N_CLASSES)]
  pre = np.asarray(model.layers[0](x))
  np.testing.assert_allclose(pre.mean(axis=1), 0, atol=1e-4)
  np.testing.assert_allclose(np.asarray(jax.nn.softmax(model(x))),
                             fitted[-1].predict_proba(_hidden(model, x)), atol=2e-6)
  with pytest.raises(ValueError, match="nnx.Sequential"):
    es_flax.init_layerwise(Net(nnx.Rngs(0)), x, y)


def test_residual_head_starts_at_the_explicit_model_and_trains_the_correction(data):
  x, y = data
  explicit = es.fit(x, y, method="newton")
  head = es_flax.ResidualHead(explicit)
  np.testing.assert_allclose(np.asarray(head(x)), explicit.decision_function(x),
                             rtol=1e-6, atol=1e-6)
  frozen = np.asarray(head.explicit_kernel[...])
  optimizer = nnx.Optimizer(head, optax.adam(1e-2), wrt=nnx.Param)

  def loss_fn(h):
    return optax.softmax_cross_entropy_with_integer_labels(h(x), y).mean()

  grads = nnx.grad(loss_fn)(head)
  assert set(grads.keys()) == {"kernel_delta", "bias"}
  optimizer.update(head, grads)
  np.testing.assert_array_equal(np.asarray(head.explicit_kernel[...]), frozen)
  assert np.abs(np.asarray(head.kernel_delta[...])).sum() > 0
  trainable = es_flax.ResidualHead(explicit, trainable_explicit=True)
  assert set(nnx.state(trainable, nnx.Param).keys()) == {"explicit_kernel", "kernel_delta",
                                                         "bias"}


def test_explicit_init_returns_the_weights(data):
  x, y = data
  explicit = es.fit(x, y, method="newton")
  layer = nnx.Linear(N_IN, N_CLASSES, kernel_init=es_flax.explicit_init(explicit),
                     bias_init=es_flax.explicit_init(explicit, "bias"), rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(np.asarray(layer.kernel[...]), explicit.weights)
  np.testing.assert_array_equal(np.asarray(layer.bias[...]), explicit.bias)
  init = es_flax.explicit_init(es.SoftmaxStats.from_data(x, y))  # co-occurrence
  np.testing.assert_array_equal(np.asarray(init(None, (N_IN, N_CLASSES))),
                                es.fit(x, y, method="cooccurrence").weights)
  assert init(None, (N_IN, N_CLASSES), jnp.bfloat16).dtype == jnp.bfloat16
  with pytest.raises(ValueError, match=r"shape \(3, 12\).*\(12, 3\)"):
    init(None, (N_CLASSES, N_IN))
  with pytest.raises(ValueError, match="part=.embedding. is unknown; choose one of"):
    es_flax.explicit_init(explicit, "embedding")


def _token_model(vocab=11, k=2, seed=4):
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, vocab, size=(600, k))
  y = (ids[:, 0] * 3 + ids[:, -1] + rng.integers(0, 3, 600)) % vocab
  tokens = es.TokenFeatures(ids, vocab)
  return tokens, y, es.fit(tokens, y, n_classes=vocab, method="cooccurrence")


@pytest.mark.parametrize("k", [1, 2])
def test_svd_at_full_rank_reproduces_the_explicit_logits(k):
  tokens, y, explicit = _token_model(k=k)
  vocab = tokens.vocab_size
  c, b = centred_weights(explicit, n_context=k)
  np.testing.assert_allclose(c.sum(axis=1), 0, atol=1e-9)  # row-centred
  full = min(c.shape)
  factors = svd_factors(explicit, full, n_context=k)
  np.testing.assert_allclose(factors.embedding @ factors.head, c, atol=1e-4)
  logits = factors.logits(tokens.ids)
  centred = explicit.decision_function(tokens)
  centred -= centred.mean(axis=1, keepdims=True)
  np.testing.assert_allclose(logits - logits.mean(axis=1, keepdims=True), centred, atol=1e-4)
  np.testing.assert_allclose(jax.nn.softmax(logits), explicit.predict_proba(tokens),
                             atol=1e-5)
  assert factors.embedding.shape == (k * vocab, full) and factors.head.shape == (full, vocab)


def test_svd_is_the_best_rank_d_approximation():
  tokens, y, explicit = _token_model(k=2)
  c, _ = centred_weights(explicit, n_context=2)
  s = np.linalg.svd(c, compute_uv=False)
  rng = np.random.default_rng(0)
  for d in (1, 3, 6):
    factors = svd_factors(explicit, d, n_context=2)
    approx = factors.embedding.astype(np.float64) @ factors.head
    err = ((c - approx)**2).sum()
    np.testing.assert_allclose(err, (s[d:]**2).sum(), rtol=1e-4, atol=1e-6)  # Eckart-Young
    np.testing.assert_allclose(np.linalg.matrix_rank(approx, tol=1e-5), d)
    # No other rank-d matrix does better, e.g. projections on random subspaces.
    for _ in range(5):
      q, _ = np.linalg.qr(rng.normal(size=(c.shape[1], d)))
      assert ((c - c @ q @ q.T)**2).sum() >= err - 1e-6
  # Balanced split of the singular values between the two factors.
  np.testing.assert_allclose(np.linalg.norm(factors.embedding, axis=0),
                             np.linalg.norm(factors.head, axis=1), rtol=1e-4)
  with pytest.raises(ValueError, match="d=99"):
    svd_factors(explicit, 99, n_context=2)
  with pytest.raises(ValueError, match="n_context"):
    svd_factors(explicit, 3, n_context=3)


def test_embedding_factors_written_into_nnx_layers():
  tokens, y, explicit = _token_model(k=1)
  vocab, d = tokens.vocab_size, 4
  factors = svd_factors(explicit, d)
  embed = nnx.Embed(vocab, d, rngs=nnx.Rngs(0))
  head = nnx.Linear(d, vocab, rngs=nnx.Rngs(1))
  es_flax.init_embedding(factors, embed, head)
  logits = np.asarray(head(embed(jnp.asarray(tokens.ids[:, 0]))))
  np.testing.assert_allclose(logits, factors.logits(tokens.ids), rtol=1e-5, atol=1e-5)
  declared = nnx.Embed(vocab, d, embedding_init=es_flax.explicit_init(factors, "embedding"),
                       rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(np.asarray(declared.embedding[...]), factors.embedding)
  with pytest.raises(ValueError, match="nnx.Embed table"):
    es_flax.init_embedding(factors, nnx.Embed(vocab, d + 1, rngs=nnx.Rngs(0)), head)


class LinenMLP(linen.Module):

  @linen.compact
  def __call__(self, x):
    h = linen.relu(linen.Dense(N_HIDDEN, name="hidden")(x))
    return linen.Dense(N_CLASSES, name="head")(h)


def test_linen_head_returns_a_new_tree(data):
  x, y = data
  module = LinenMLP()
  variables = module.init(jax.random.key(0), x[:1])
  old_kernel = variables["params"]["head"]["kernel"]
  feats = np.asarray(es_flax.linen_head_inputs(module, variables, x, "head"))
  np.testing.assert_array_equal(
      feats, np.asarray(linen.relu(x @ variables["params"]["hidden"]["kernel"]
                                   + variables["params"]["hidden"]["bias"])))
  new = es_flax.init_linen_head(
      variables, ("params", "head"), x, y,
      features_fn=lambda xb: es_flax.linen_head_inputs(module, variables, xb, "head"),
      max_samples=None)
  assert variables["params"]["head"]["kernel"] is old_kernel  # input untouched
  assert new["params"]["hidden"] is variables["params"]["hidden"]  # other leaves shared
  explicit = es.fit(feats, y, n_classes=N_CLASSES, method="newton")
  np.testing.assert_allclose(np.asarray(jax.nn.softmax(module.apply(new, x))),
                             explicit.predict_proba(feats), atol=2e-6)
  frozen = es_flax.init_linen_head(flax.core.freeze(variables), "head", feats, y,
                                   max_samples=None)
  assert isinstance(frozen, flax.core.FrozenDict)
  np.testing.assert_allclose(np.asarray(frozen["params"]["head"]["kernel"]),
                             np.asarray(new["params"]["head"]["kernel"]), atol=1e-6)


def test_linen_errors(data):
  x, y = data
  variables = LinenMLP().init(jax.random.key(0), x[:1])
  with pytest.raises(ValueError, match="no entry 'head_7'"):
    es_flax.init_linen_head(variables, "head_7", x, y)
  with pytest.raises(ValueError, match="not a Dense layer"):
    es_flax.init_linen_head(variables, "params", x, y)
  with pytest.raises(ValueError, match="negative entries"):
    es_flax.init_linen_head(variables, "hidden", x - 0.5, y % N_HIDDEN, method="cooccurrence")
