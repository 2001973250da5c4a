"""The deep-model benchmark's CNN and transfer tasks: the two CNNs in PyTorch and Flax NNX,
LSUV, training, each arm and the MNIST data."""

from __future__ import annotations

import math
import time

from explicit_softmax.bench.deep_common import (CNN_ARMS, CNN_VAL, LSUV_BATCH, LSUV_ROUNDS,
                                                LSUV_TOL, ORDER_SEED, TRANSFER_ARMS, eval_steps,
                                                explicit_rows, fit_rows, orthonormal,
                                                probe_weights)
from explicit_softmax.bench.training import BATCH, batch_order, flax_train, summary, torch_train

# The CNNs: "cnn" (conv 1->8, conv 8->16, dense 784 -> classes) and "cnn_dense" (issue 26:
# conv 1->16, conv 16->32, dense 1568 -> 128, ReLU, dense 128 -> classes); 3x3 convs
# (padding "same"), each followed by ReLU and 2x2 max-pooling.
ARCHS = {"cnn": (8, 16, None), "cnn_dense": (16, 32, 128)}


def head_inputs(arch: str) -> int:
  """The width of the features entering the head."""
  c1, c2, dense = ARCHS[arch]
  return dense or c2 * 7 * 7


# -- PyTorch --------------------------------------------------------------------
def torch_cnn(arch: str = "cnn", n_classes: int = 10):
  from torch import nn
  c1, c2, dense = ARCHS[arch]
  layers = [nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()]
  if dense:
    layers += [nn.Linear(c2 * 49, dense), nn.ReLU()]
  return nn.Sequential(*layers, nn.Linear(head_inputs(arch), n_classes))


def torch_lsuv(model, x_batch, layers, seed: int) -> dict:
  """LSUV (Mishkin & Matas 2016) on ``layers`` (conv/dense, in forward order).

  Orthonormal pre-initialisation, zero biases, then per layer: scale the weight
  by 1/std of the layer's output on ``x_batch`` until |var - 1| < LSUV_TOL.

  Returns: the rounds each layer took.
  """
  import numpy as np
  import torch
  rng = np.random.default_rng(seed)
  with torch.no_grad():
    for layer in layers:
      w = layer.weight
      w.copy_(torch.from_numpy(orthonormal(rng, w.shape[0], int(np.prod(w.shape[1:])))
                               ).reshape(w.shape))
      if layer.bias is not None:
        layer.bias.zero_()
  rounds = []
  was_training = model.training
  model.eval()
  for layer in layers:
    out = {}
    handle = layer.register_forward_hook(lambda m, a, o: out.__setitem__("y", o))
    k = 0
    with torch.no_grad():
      for k in range(1, LSUV_ROUNDS + 1):
        model(x_batch)
        var = float(out["y"].var())
        if abs(var - 1.0) < LSUV_TOL:
          break
        layer.weight.mul_(1.0 / math.sqrt(var))
    handle.remove()
    rounds.append(k)
  model.train(was_training)
  return {"rounds": rounds}


def torch_classifier_eval(model, x, y):
  import torch
  from torch import nn

  def evaluate():
    with torch.no_grad():
      logits = torch.cat([model(x[i:i + 1000]) for i in range(0, len(x), 1000)])
      return {"loss": float(nn.functional.cross_entropy(logits, y)),
              "acc": float((logits.argmax(1) == y).float().mean())}
  return evaluate


def torch_cnn_arm(arm, seed, data, budget, *, arch="cnn", pretrained=None, n_classes=10):
  """One arm of a CNN task (``pretrained=None``) or of the transfer task in PyTorch."""
  import torch
  from torch import nn
  from explicit_softmax.adapters import torch as es_torch
  xtr, ytr, xval, yval, xtest, ytest = data
  torch.manual_seed(seed)
  model = torch_cnn(arch)
  if pretrained is not None:
    model[-1] = nn.Linear(head_inputs(arch), 5)
    model.load_state_dict(pretrained)
  extra = {}
  start, cpu_start = time.perf_counter(), time.process_time()
  if pretrained is not None:  # the new head for the new classes, framework default
    model[-1] = nn.Linear(head_inputs(arch), n_classes)
  dense = [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
  lsuv_batch = lambda: torch.as_tensor(xtr[fit_rows(seed, len(xtr), LSUV_BATCH)])  # noqa: E731
  if arm == "lsuv":
    extra = torch_lsuv(model, lsuv_batch(), [model[-1]] if pretrained is not None else dense,
                       seed)
  elif arm == "probe":
    rows = explicit_rows(len(xtr), head_inputs(arch))
    model.eval()
    with torch.no_grad():
      feats = model[:-1](torch.as_tensor(xtr[rows])).numpy()
    model.train()
    w, b = probe_weights(feats, ytr[rows], seed, n_classes)
    es_torch.write_linear(model[-1], w, b)
    extra = {"rows": len(rows)}
  elif arm in ("explicit", "explicit_lsuv"):
    if arm == "explicit_lsuv":  # LSUV for the body, the head excluded
      extra = torch_lsuv(model, lsuv_batch(), dense[:-1], seed)
    if pretrained is None:
      explicit = es_torch.init_head(model, xtr, ytr, calibrate=True)
      extra.update(explicit_record(explicit))
    else:
      es_torch.new_head(model, xtr, ytr, n_classes=n_classes, calibrate=True)
      extra["rows"] = len(explicit_rows(len(xtr), head_inputs(arch)))
  init_seconds = time.perf_counter() - start
  extra["init_cpu_seconds"] = time.process_time() - cpu_start
  extra["head_norm"] = float(model[-1].weight.detach().norm())
  x_tr, y_tr = torch.as_tensor(xtr), torch.as_tensor(ytr)
  evaluate = torch_classifier_eval(model, torch.as_tensor(xval), torch.as_tensor(yval))
  order = batch_order(ORDER_SEED + seed, len(xtr), budget)
  model.train()
  points = torch_train(model, list(model.parameters()), x_tr, y_tr, order,
                       set(eval_steps(budget)), evaluate)
  model.eval()
  test = torch_classifier_eval(model, torch.as_tensor(xtest), torch.as_tensor(ytest))()
  return {"init_seconds": init_seconds, "points": points, "test": test, **extra}


def explicit_record(explicit) -> dict:
  """What an explicit head's ``info`` says it read and cost, for the result file."""
  init = explicit.info["init"]
  return {"rows": init["rows"], "samples": init["samples"], "fit_seconds": init["seconds"],
          "feature_rms": explicit.info.get("feature_rms"),
          "temperature": explicit.info.get("calibration", {}).get("temperature")}


def torch_pretrain(seed, xtr, ytr):
  """The digits 0-4 network (one epoch; not counted)."""
  import torch
  torch.manual_seed(100 + seed)
  model = torch_cnn("cnn", 5)
  x, y = torch.as_tensor(xtr), torch.as_tensor(ytr)
  order = batch_order(ORDER_SEED + 100 + seed, len(x), len(x) // BATCH)
  torch_train(model, list(model.parameters()), x, y, order, set(), lambda: {})
  state = model.state_dict()
  return {k: v.clone() for k, v in state.items()}


# -- Flax NNX -------------------------------------------------------------------
def flax_cnn(seed: int, n_classes: int = 10, arch: str = "cnn"):
  import functools
  from flax import nnx
  rngs = nnx.Rngs(seed)
  c1, c2, dense = ARCHS[arch]
  pool = functools.partial(nnx.max_pool, window_shape=(2, 2), strides=(2, 2))
  layers = [nnx.Conv(1, c1, (3, 3), rngs=rngs), nnx.relu, pool,
            nnx.Conv(c1, c2, (3, 3), rngs=rngs), nnx.relu, pool,
            lambda h: h.reshape(h.shape[0], -1)]
  if dense:
    layers += [nnx.Linear(c2 * 49, dense, rngs=rngs), nnx.relu]
  return nnx.Sequential(*layers, nnx.Linear(head_inputs(arch), n_classes, rngs=rngs))


def flax_lsuv(model, x_batch, layer_ids, seed: int) -> dict:
  """LSUV on the conv/dense layers of an nnx.Sequential (see ``torch_lsuv``)."""
  import jax.numpy as jnp
  import numpy as np
  rng = np.random.default_rng(seed)
  layers = list(model.layers)
  for i in layer_ids:
    k = layers[i].kernel
    shape = k[...].shape  # (..., in, out): rows are outputs in the torch sense
    w = orthonormal(rng, shape[-1], int(np.prod(shape[:-1])))  # (out, fan_in)
    k[...] = jnp.asarray(w.T.reshape(shape), k[...].dtype)
    if layers[i].bias is not None:
      layers[i].bias[...] = jnp.zeros_like(layers[i].bias[...])
  rounds = []
  for i in layer_ids:
    k = 0
    for k in range(1, LSUV_ROUNDS + 1):
      h = x_batch
      for layer in layers[:i + 1]:
        h = layer(h)
      var = float(jnp.var(h))
      if abs(var - 1.0) < LSUV_TOL:
        break
      layers[i].kernel[...] = layers[i].kernel[...] / math.sqrt(var)
    rounds.append(k)
  return {"rounds": rounds}


def flax_cnn_arm(arm, seed, data, budget, *, arch="cnn", pretrained=None, n_classes=10):
  import jax
  import numpy as np
  from flax import nnx
  from explicit_softmax.adapters import flax as es_flax
  xtr, ytr, xval, yval, xtest, ytest = data
  model = flax_cnn(seed, 10 if pretrained is None else 5, arch)
  if pretrained is not None:
    nnx.update(model, pretrained)
  extra = {}
  linear_ids = [i for i, m in enumerate(model.layers) if isinstance(m, (nnx.Conv, nnx.Linear))]
  lsuv_batch = lambda: xtr[fit_rows(seed, len(xtr), LSUV_BATCH)]  # noqa: E731
  start, cpu_start = time.perf_counter(), time.process_time()
  if pretrained is not None:  # the new head for the new classes, framework default
    model.layers[-1] = nnx.Linear(head_inputs(arch), n_classes, rngs=nnx.Rngs(seed))
  if arm == "lsuv":
    extra = flax_lsuv(model, lsuv_batch(),
                      linear_ids[-1:] if pretrained is not None else linear_ids, seed)
  elif arm == "probe":
    rows = explicit_rows(len(xtr), head_inputs(arch))
    h = xtr[rows]
    for layer in list(model.layers)[:-1]:
      h = layer(h)
    w, b = probe_weights(jax.device_get(h), ytr[rows], seed, n_classes)
    es_flax.write_linear(model.layers[-1], w, b)
    extra = {"rows": len(rows)}
  elif arm in ("explicit", "explicit_lsuv"):
    if arm == "explicit_lsuv":  # LSUV for the body, the head excluded
      extra = flax_lsuv(model, lsuv_batch(), linear_ids[:-1], seed)
    if pretrained is None:
      explicit = es_flax.init_head(model, xtr, ytr, calibrate=True)
      extra.update(explicit_record(explicit))
    else:
      es_flax.new_head(model, xtr, ytr, n_classes=n_classes, calibrate=True)
      extra["rows"] = len(explicit_rows(len(xtr), head_inputs(arch)))
  init_seconds = time.perf_counter() - start
  extra["init_cpu_seconds"] = time.process_time() - cpu_start
  extra["head_norm"] = float(np.linalg.norm(np.asarray(model.layers[-1].kernel[...])))
  order = batch_order(ORDER_SEED + seed, len(xtr), budget)
  points, evaluate = flax_train(model, xtr, ytr, order, set(eval_steps(budget)), xval, yval)
  return {"init_seconds": init_seconds, "points": points, "test": evaluate(xtest, ytest),
          **extra}


def flax_pretrain(seed, xtr, ytr):
  from flax import nnx
  model = flax_cnn(100 + seed, 5)
  order = batch_order(ORDER_SEED + 100 + seed, len(xtr), len(xtr) // BATCH)
  flax_train(model, xtr, ytr, order, set(), xtr[:10], ytr[:10])
  return nnx.state(model)


# -- CNN and transfer tasks -----------------------------------------------------
def mnist_data(framework: str, digits=None):
  """Train, validation (first CNN_VAL test rows) and test (the rest), images for the
  framework's layout (NCHW for torch, NHWC for flax); labels shifted to start at 0."""
  import numpy as np
  from explicit_softmax import data as data_lib
  xtr, ytr = data_lib.load_mnist("train", dtype="float32")
  xte, yte = data_lib.load_mnist("test", dtype="float32")
  if digits is not None:
    keep_tr, keep_te = np.isin(ytr, digits), np.isin(yte, digits)
    xtr, ytr, xte, yte = xtr[keep_tr], ytr[keep_tr] - min(digits), xte[keep_te], yte[keep_te] - min(digits)
  shape = (-1, 1, 28, 28) if framework == "torch" else (-1, 28, 28, 1)
  xtr, xte = xtr.reshape(shape), xte.reshape(shape)
  return (np.ascontiguousarray(xtr), ytr, xte[:CNN_VAL], yte[:CNN_VAL], xte[CNN_VAL:],
          yte[CNN_VAL:])


def run_cnn_task(task, args, log) -> dict:
  """The ``cnn`` / ``cnn_dense`` task (from scratch) or the ``transfer`` task."""
  runners = {"torch": torch_cnn_arm, "flax": flax_cnn_arm}
  pretrainers = {"torch": torch_pretrain, "flax": flax_pretrain}
  arch = "cnn" if task == "transfer" else task
  arm_names = TRANSFER_ARMS if task == "transfer" else CNN_ARMS
  out = {}
  for fw in args.frameworks:
    fw_start = time.perf_counter()
    if task == "transfer":
      data = mnist_data(fw, digits=[5, 6, 7, 8, 9])
      source = mnist_data(fw, digits=[0, 1, 2, 3, 4])
      budget = args.budgets["transfer"]
      pre, pre_seconds = {}, []
      for seed in range(args.seeds):
        t0 = time.perf_counter()
        pre[seed] = pretrainers[fw](seed, source[0], source[1])
        pre_seconds.append(time.perf_counter() - t0)
    else:
      data = mnist_data(fw)
      budget = args.budgets[task] or len(data[0]) // BATCH
      pre = None
    arms = {arm: [] for arm in arm_names}
    for seed in range(args.seeds):
      for arm in arm_names:
        log(f"{task} {fw} {arm} seed {seed}")
        kwargs = {"arch": arch}
        if pre is not None:
          kwargs.update(pretrained=pre[seed], n_classes=5)
        arms[arm].append(runners[fw](arm, seed, data, budget, **kwargs))
    out[fw] = {"budget": budget, "eval_steps": eval_steps(budget), "runs": arms,
               "head_inputs": head_inputs(arch), "train_rows": len(data[0]),
               "wall_seconds": time.perf_counter() - fw_start}
    if pre is not None:
      out[fw]["pretrain_seconds_not_counted"] = summary(pre_seconds)
  return out
