"""Explicit initialisation of PyTorch models (``explicit_softmax.adapters.torch``)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import explicit_softmax as es  # noqa: E402
from explicit_softmax.adapters import _fit, _layerwise, svd_factors  # noqa: E402
from explicit_softmax.adapters import torch as es_torch  # noqa: E402

N_IN, N_HIDDEN, N_CLASSES = 12, 16, 3


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  x = rng.random((300, N_IN)).astype(np.float32)
  y = (x[:, :N_CLASSES] + 0.3 * rng.random((300, N_CLASSES))).argmax(axis=1)
  return x, y


def _mlp(seed=0, dtype=torch.float32, bias=True):
  torch.manual_seed(seed)
  return nn.Sequential(nn.Linear(N_IN, N_HIDDEN), nn.ReLU(),
                       nn.Linear(N_HIDDEN, N_CLASSES, bias=bias)).to(dtype)


def _hidden(model, x):
  with torch.no_grad():
    return model[:-1](torch.as_tensor(x, dtype=model[0].weight.dtype)).numpy()


def _proba(model, x):
  with torch.no_grad():
    return torch.softmax(model(torch.as_tensor(x, dtype=model[0].weight.dtype)), -1).numpy()


class Net(nn.Module):
  """A non-Sequential model with a ``head`` attribute and dropout before it."""

  def __init__(self):
    super().__init__()
    self.body = nn.Linear(N_IN, N_HIDDEN)
    self.drop = nn.Dropout(0.5)
    self.head = nn.Linear(N_HIDDEN, N_CLASSES)

  def features(self, x):
    return torch.relu(self.body(x))

  def forward(self, x):
    return self.head(self.drop(self.features(x)))


@pytest.mark.parametrize("method", ["newton", "cooccurrence"])
def test_head_reproduces_the_explicit_model(data, method):
  x, y = data
  model = _mlp()
  explicit = es_torch.init_head(model, x, y, method=method, batch_size=64, max_samples=None)
  feats = _hidden(model, x)
  np.testing.assert_allclose(_proba(model, x), explicit.predict_proba(feats), atol=2e-6)
  # Streaming in batches gives the statistics of the whole data set.
  direct = es.fit(feats, y, n_classes=N_CLASSES, method=method)
  np.testing.assert_allclose(explicit.weights, direct.weights, rtol=1e-4, atol=1e-5)
  # Layout: nn.Linear stores (out, in), the transpose of W (in, out).
  np.testing.assert_array_equal(model[-1].weight.detach().numpy(), explicit.weights.T)
  np.testing.assert_array_equal(model[-1].bias.detach().numpy(), explicit.bias)


def test_dtype_identity_and_no_autograd_side_effects(data):
  x, y = data
  model = _mlp(dtype=torch.float64)
  model[-1].bias.requires_grad_(False)
  weight, bias = model[-1].weight, model[-1].bias
  model.train()
  explicit = es_torch.init_head(model, x, y)
  assert model[-1].weight is weight and model[-1].bias is bias
  assert weight.dtype == torch.float64 and weight.device.type == "cpu"
  assert weight.requires_grad and not bias.requires_grad
  for p in model.parameters():
    assert p.grad is None and p.grad_fn is None and p.is_leaf
  assert model.training and all(m.training for m in model.modules())
  np.testing.assert_allclose(_proba(model, x), explicit.predict_proba(_hidden(model, x)),
                             atol=1e-6)


def test_head_attribute_uses_the_models_own_forward(data):
  x, y = data
  torch.manual_seed(1)
  net = Net().train()
  explicit = es_torch.init_head(net, torch.as_tensor(x), torch.as_tensor(y))
  assert not net.head._forward_pre_hooks  # the capture hook is removed
  assert net.training and net.drop.training  # the train mode is restored
  net.eval()
  with torch.no_grad():
    feats = net.features(torch.as_tensor(x)).numpy()
    proba = torch.softmax(net(torch.as_tensor(x)), -1).numpy()
  np.testing.assert_allclose(proba, explicit.predict_proba(feats), atol=2e-6)


def test_features_fn_and_batch_iterable(data):
  x, y = data
  torch.manual_seed(2)
  net = Net()
  batches = [(torch.as_tensor(x[i:i + 50]), torch.as_tensor(y[i:i + 50]))
             for i in range(0, len(x), 50)]
  explicit = es_torch.init_head(net, batches, head=net.head, features_fn=net.features,
                                max_samples=None)
  with torch.no_grad():
    feats = net.features(torch.as_tensor(x)).numpy()
  direct = es.fit(feats, y, n_classes=N_CLASSES, method="newton")
  np.testing.assert_allclose(explicit.weights, direct.weights, rtol=1e-4, atol=1e-5)


def test_linear_alone_takes_the_data_as_features(data):
  x, y = data
  head = nn.Linear(N_IN, N_CLASSES)
  explicit = es_torch.init_head(head, x, y, method="cooccurrence", max_samples=None)
  with torch.no_grad():
    proba = torch.softmax(head(torch.as_tensor(x)), -1).numpy()
  np.testing.assert_allclose(proba, es.fit(x, y, method="cooccurrence").predict_proba(x),
                             atol=2e-6)
  assert explicit.n_features == N_IN


def test_real_valued_features_fit_and_cooccurrence_gives_advice(data):
  """A head after a linear layer sees real features: Newton (the default) fits
  them; the co-occurrence solution refuses them with framework advice."""
  x, y = data
  model = nn.Sequential(nn.Linear(N_IN, N_HIDDEN), nn.Linear(N_HIDDEN, N_CLASSES))
  explicit = es_torch.init_head(model, x, y)
  with torch.no_grad():
    feats = model[0](torch.as_tensor(x)).numpy()
    proba = torch.softmax(model(torch.as_tensor(x)), -1).numpy()
  assert feats.min() < 0
  np.testing.assert_allclose(proba, explicit.predict_proba(feats), atol=2e-5)
  with pytest.raises(ValueError, match="negative entries.*nn.ReLU.*method='newton'"):
    es_torch.init_head(model, x, y, method="cooccurrence")


def test_non_dense_last_layer_and_missing_head_raise(data):
  x, y = data
  with pytest.raises(ValueError, match="not a dense nn.Linear"):
    es_torch.init_head(nn.Sequential(nn.Linear(N_IN, N_CLASSES), nn.ReLU()), x, y)
  with pytest.raises(ValueError, match="cannot find the dense head"):
    es_torch.init_head(nn.Module(), x, y)


def test_mismatched_shapes_raise(data):
  x, y = data
  model = _mlp()
  with pytest.raises(ValueError, match="labels must lie in"):
    es_torch.init_head(model, x, y + 5)  # more classes than the head's outputs
  with pytest.raises(ValueError, match="takes 16 input features but the features.* have 5"):
    es_torch.init_head(model, x, y, features_fn=lambda t: torch.relu(t[:, :5]))
  with pytest.raises(ValueError, match="same length"):
    es_torch.init_head(model, x, y[:10])
  with pytest.raises(ValueError, match="do not fit"):
    es_torch.write_linear(model[-1], np.zeros((N_CLASSES, N_HIDDEN)))
  before = model[-1].weight.detach().clone()
  with pytest.raises(ValueError, match="the weights contain NaN or inf"):
    es_torch.write_linear(model[-1], np.full((N_HIDDEN, N_CLASSES), np.nan))
  with pytest.raises(ValueError, match="the bias contain NaN or inf"):
    es_torch.write_linear(model[-1], np.zeros((N_HIDDEN, N_CLASSES)), np.full(N_CLASSES, np.inf))
  assert torch.equal(model[-1].weight, before)  # nothing written when the bias is refused


def test_head_without_bias(data):
  x, y = data
  model = _mlp(bias=False)
  with pytest.raises(ValueError, match="no bias"):
    es_torch.init_head(model, x, y, method="newton")
  explicit = es_torch.init_head(model, x, y, method="cooccurrence")
  np.testing.assert_allclose(_proba(model, x), explicit.predict_proba(_hidden(model, x)),
                             atol=2e-6)


def test_layerwise_fits_every_layer_on_its_real_inputs(data):
  x, y = data
  model = _mlp()
  fitted = es_torch.init_layerwise(model, x, y, n_cluster_samples=200, batch_size=128)
  assert [m.weights.shape for m in fitted] == [(N_IN, N_HIDDEN), (N_HIDDEN, N_CLASSES)]
  # The hidden pre-activations are centred per sample and scaled to unit RMS.
  with torch.no_grad():
    pre = model[0](torch.as_tensor(x)).numpy()
  np.testing.assert_allclose(pre.mean(axis=1), 0, atol=1e-4)
  assert 0.7 < np.sqrt((pre**2).mean()) < 1.3
  # The output layer is the explicit model of the hidden layer's real outputs.
  np.testing.assert_allclose(_proba(model, x), fitted[-1].predict_proba(_hidden(model, x)),
                             atol=2e-6)
  for p in model.parameters():
    assert p.grad is None and p.requires_grad


# -- how many rows a fit reads (max_samples) -----------------------------------------
def _even(n_rows, n):
  return np.arange(n) * n_rows // n


def test_auto_budget_is_eight_samples_per_input_and_at_least_4096():
  assert _fit.sample_budget("auto", 12) == 4096
  assert _fit.sample_budget("auto", 784) == 8 * 785
  assert _fit.sample_budget(100, 784) == 100 and _fit.sample_budget(None, 784) is None


@pytest.fixture(scope="module")
def many():
  """More rows than the "auto" budget of a 16-input head (4,096)."""
  rng = np.random.default_rng(1)
  x = rng.random((5000, N_IN)).astype(np.float32)
  y = (x[:, :N_CLASSES] + 0.3 * rng.random((5000, N_CLASSES))).argmax(axis=1)
  return x, y


@pytest.mark.parametrize("max_samples, budget, n", [("auto", 4096, 4096), (50, 50, 50),
                                                    (9000, 9000, 5000), (None, None, 5000)])
def test_max_samples_reads_rows_spread_evenly(many, max_samples, budget, n):
  """The rows read are i T // n, and only they go through the model."""
  x, y = many
  model = _mlp()
  forwarded = []

  def features(t):
    forwarded.append(len(t))
    return torch.relu(model[0](t))

  explicit = es_torch.init_head(model, x, y, features_fn=features, max_samples=max_samples)
  init = explicit.info["init"]
  assert sum(forwarded) == n and init["rows"] == n and init["samples"] == n
  assert init["max_samples"] == budget and init["seconds"] > 0
  rows = _even(len(x), n)
  direct = es.fit(_hidden(model, x)[rows], y[rows], n_classes=N_CLASSES, method="newton")
  np.testing.assert_allclose(explicit.weights, direct.weights, rtol=1e-4, atol=1e-5)


def test_max_samples_takes_the_first_batches_of_a_loader(data):
  x, y = data
  drawn = []

  def loader():
    for i in range(0, len(x), 50):
      drawn.append(i)
      yield torch.as_tensor(x[i:i + 50]), torch.as_tensor(y[i:i + 50])

  model = _mlp()
  explicit = es_torch.init_head(model, loader(), max_samples=120)
  assert drawn == [0, 50, 100]  # no batch is drawn after the one that reaches the budget
  assert explicit.info["init"]["rows"] == 150 and explicit.info["init"]["samples"] == 120
  direct = es.fit(_hidden(model, x[:120]), y[:120], n_classes=N_CLASSES, method="newton")
  np.testing.assert_allclose(explicit.weights, direct.weights, rtol=1e-4, atol=1e-5)


def test_new_head_and_layerwise_read_max_samples_rows(data):
  x, y = data
  model = _mlp()
  forwarded = []

  def features(t):
    forwarded.append(len(t))
    return torch.relu(model[0](t))

  head = es_torch.new_head(model, x, y % 2, n_classes=2, features_fn=features, max_samples=60)
  assert sum(forwarded) == 60
  rows = _even(len(x), 60)
  direct = es.fit(_hidden(model, x)[rows], y[rows] % 2, n_classes=2, method="newton")
  np.testing.assert_allclose(head.weight.detach().numpy().T, direct.weights, rtol=1e-4,
                             atol=1e-5)
  for max_samples, rows_read in (("auto", [300, 300]), (100, [100, 100]), (None, [300, 300])):
    model = _mlp()
    fitted = es_torch.init_layerwise(model, x, y, max_samples=max_samples)
    assert [m.info["init"]["rows"] for m in fitted] == rows_read
    assert all(m.info["init"]["seconds"] > 0 for m in fitted)
    rows = _even(len(x), rows_read[-1])
    direct = es.fit(_hidden(model, x)[rows], y[rows], n_classes=N_CLASSES, method="newton")
    np.testing.assert_allclose(fitted[-1].weights, direct.weights, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "all", True])
def test_bad_max_samples_is_a_value_error(data, bad):
  x, y = data
  with pytest.raises(ValueError, match="max_samples must be"):
    es_torch.init_head(_mlp(), x, y, max_samples=bad)
  with pytest.raises(ValueError, match="max_samples must be"):
    es_torch.init_layerwise(_mlp(), x, y, max_samples=bad)


def test_layerwise_rejects_bad_models_and_labels(data):
  x, y = data
  with pytest.raises(ValueError, match="nn.Sequential"):
    es_torch.init_layerwise(Net(), x, y)
  soft = np.eye(N_CLASSES)[y]
  with pytest.raises(ValueError, match="integer class labels"):
    es_torch.init_layerwise(_mlp(), x, soft)
  model = nn.Sequential(nn.Linear(N_IN, N_HIDDEN), nn.ReLU(), nn.Linear(N_HIDDEN, N_CLASSES))
  with pytest.raises(ValueError, match="negative entries in the inputs of dense layer 0.*pixels"):
    es_torch.init_layerwise(model, x - 0.5, y, method="cooccurrence")


def test_class_clusters_respect_the_classes(data):
  x, y = data
  clusters = _layerwise.class_clusters(x, y, 7, N_CLASSES, seed=0)
  units = clusters.assign(x, y)
  assert (clusters.unit_class[units] == y).all()
  few = _layerwise.class_clusters(x, y, 2, N_CLASSES)
  np.testing.assert_array_equal(few.assign(x, y), y % 2)


def test_residual_head_starts_at_the_explicit_model(data):
  x, y = data
  explicit = es.fit(x, y, method="newton")
  head = es_torch.ResidualHead(explicit)
  with torch.no_grad():
    logits = head(torch.as_tensor(x)).numpy()
  np.testing.assert_allclose(logits, explicit.decision_function(x), rtol=1e-6, atol=1e-6)
  assert sorted(n for n, _ in head.named_parameters()) == ["bias", "weight_delta"]
  assert "explicit_weight" in head.state_dict()
  frozen = head.explicit_weight.clone()
  opt = torch.optim.Adam(head.parameters(), 1e-2)
  nn.functional.cross_entropy(head(torch.as_tensor(x)), torch.as_tensor(y)).backward()
  opt.step()
  assert torch.equal(head.explicit_weight, frozen)
  assert head.weight_delta.abs().sum() > 0
  trainable = es_torch.ResidualHead(explicit, trainable_explicit=True, dtype=torch.float64)
  assert {n for n, _ in trainable.named_parameters()} == {"explicit_weight", "weight_delta",
                                                           "bias"}
  assert trainable.explicit_weight.dtype == torch.float64


def test_residual_head_from_statistics(data):
  x, y = data
  stats = es.SoftmaxStats.from_data(x, y, gram=True)
  head = es_torch.ResidualHead(stats)  # Newton, since the Gram matrix is there
  with torch.no_grad():
    logits = head(torch.as_tensor(x)).numpy()
  np.testing.assert_allclose(logits, es.solve(stats, "newton").decision_function(x),
                             rtol=1e-5, atol=1e-5)


def test_embedding_factors_written_into_torch_layers():
  rng = np.random.default_rng(3)
  vocab, k, d = 9, 2, 5
  ids = rng.integers(0, vocab, size=(400, k))
  y = (ids[:, 0] * 2 + ids[:, 1] + rng.integers(0, 2, 400)) % vocab
  tokens = es.TokenFeatures(ids, vocab)
  factors = svd_factors(es.SoftmaxStats.from_data(tokens, y, n_classes=vocab), d, n_context=k)
  embed, head = nn.Embedding(k * vocab, d).double(), nn.Linear(d, vocab).double()
  es_torch.init_embedding(factors, embed, head)
  assert embed.weight.dtype == torch.float64 and embed.weight.grad is None
  rows = torch.as_tensor(tokens.feature_indices())
  with torch.no_grad():
    logits = head(embed(rows).sum(axis=1)).numpy()
  np.testing.assert_allclose(logits, factors.logits(ids), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="nn.Embedding table"):
    es_torch.init_embedding(factors, nn.Embedding(vocab, d), head)


def test_adapters_package_imports_no_framework():
  code = ("import sys, explicit_softmax, explicit_softmax.adapters; "
          "bad = [m for m in ('torch', 'flax') if m in sys.modules]; "
          "assert not bad, bad")
  subprocess.run([sys.executable, "-c", code], check=True)


def test_samples_with_all_zero_features_are_ordinary_samples(data):
  """One rule for rows of zeros (dead units) everywhere: they inform the bias."""
  x, y = data
  model = _mlp()

  def features(t):
    h = torch.relu(model[0](t))
    h[:10] = 0  # ten samples whose every unit is off
    return h

  explicit = es_torch.init_head(model, x, y, features_fn=features, max_samples=None,
                                batch_size=len(x))  # one batch: its first ten rows are off
  with torch.no_grad():
    feats = features(torch.as_tensor(x)).numpy()
  direct = es.fit(feats, y, n_classes=N_CLASSES, method="newton")
  np.testing.assert_allclose(explicit.weights, direct.weights, rtol=1e-4, atol=1e-5)
  blank = es_torch.init_head(model, x, y, features_fn=lambda t: torch.zeros(len(t), N_HIDDEN))
  assert np.all(blank.weights == 0) and np.isfinite(blank.bias).all()


def test_missing_labels_and_wrong_widths_are_value_errors(data):
  x, y = data
  model = _mlp()
  with pytest.raises(ValueError, match="y is missing"):
    es_torch.init_head(model, x)
  with pytest.raises(ValueError, match="failed on inputs of shape"):
    es_torch.init_head(model, x[:, :5], y)
