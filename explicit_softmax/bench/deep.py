"""Initialising real deep models: a CNN, a new head on a pretrained CNN, a small transformer.

One command::

    python benchmarks/bench_deep.py --threads 1          # full run (3 seeds)
    python benchmarks/bench_deep.py --quick --threads 1  # smoke test (1 seed, short budgets)

writes ``benchmarks/results/deep.json`` (config, machine facts with the load
average, every curve, mean and spread, the target ratios) and
``benchmarks/results/deep.png`` (validation loss against steps and against
seconds; ``deep_quick.*`` with ``--quick``). ``--tasks`` runs a subset and
``--merge A.json B.json`` combines partial runs (e.g. the language model and the
CNN tasks run as two processes, one core each) into one result and plot.

Tasks (issue 18):

1. ``cnn``: a small CNN on MNIST (conv 3x3 1->8, ReLU, 2x2 max-pool, conv 3x3
   8->16, ReLU, 2x2 max-pool, dense 784->10), from scratch, PyTorch and Flax NNX,
   Adam lr 1e-3, batch 128, one epoch (468 steps).
2. ``transfer``: the same CNN pretrained (one epoch, not counted) on digits 0-4,
   given a new head for digits 5-9 and fine-tuned for 300 steps (Adam lr 1e-3,
   batch 128) on digits 5-9, every parameter trainable.
3. ``lm``: a decoder-only transformer character model on tiny Shakespeare (4
   pre-LayerNorm blocks, width 128, 4 heads, context 64, GELU MLP 4x; separate
   query/key/value/output projections), AdamW (lr 1e-3, betas 0.9/0.99, weight
   decay 0.1, 100 warm-up steps then cosine decay to 1e-4, gradient clipping at
   1), batch 4 x 64 characters, 2,000 steps; PyTorch (sized for 2 shared cores).

Arms (the same optimiser, schedule and batch order within a seed; each arm's
initialisation seconds are counted):

* ``default``: the framework's default initialisation;
* ``lsuv``: layer-sequential unit variance (Mishkin & Matas 2016): every conv
  and dense weight orthonormal (biases zero, as the paper's Caffe fillers),
  then layer by layer in forward order, the weight is scaled by
  ``1/std(output)`` on one batch until ``|var - 1| < 0.1`` (at most 10 rounds).
  In the transfer task only the new head is LSUV-initialised (the body is the
  pretrained network);
* ``probe``: the head fitted by scikit-learn's ``LogisticRegression()`` on the
  frozen features of the default-initialised (or pretrained) body (Kumar et al.
  2022's linear probe), the same rows as the explicit fit;
* ``explicit``: the head fitted in closed form (``init_head`` / ``new_head``,
  Newton form: real-valued features) on the features the network really
  produces. For the language model: token embedding and head from the SVD of
  the bigram count solution (``svd_factors``, zero-padded from rank V = 65 to
  width 128), then the head refitted in closed form on the final LayerNorm's
  real outputs, blocks at default;
* ``explicit_blocks`` (language model): as ``explicit``, plus every block's
  attention value/output projections fitted (``init_value_output``) so that each
  attended position carries 1/L of its token's vote for the next token in the
  count solution of "next character given the bag of the last 64 characters"
  (``context_bag_weights``), mapped into the embedding space through the
  pseudo-inverse of the SVD head; the head is fitted last, on the real features.

Measured per task, framework and arm (3 seeds): the validation loss and
accuracy curve, and, for each explicit arm E and each peer P (default, LSUV,
probe), with target = P's final validation loss in the same seed: the steps and
seconds (initialisation included) E and P need to reach it, their ratios, and
whether E is no worse than P at the end. The target of issue 18: ratios <= 0.5
against default, and never worse at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import sys
import time

from explicit_softmax.bench._harness import RESULTS  # noqa: E402
from explicit_softmax.bench.init import summary  # noqa: E402  (one copy of each)
from explicit_softmax.bench import _harness  # noqa: E402

TASKS = ("cnn", "transfer", "lm")
CNN_ARMS = ("default", "lsuv", "probe", "explicit")
LM_ARMS = ("default", "lsuv", "probe", "explicit", "explicit_blocks")
EXPLICIT_ARMS = ("explicit", "explicit_blocks")
PEERS = ("default", "lsuv", "probe")
LR, BATCH = 1e-3, 128
CNN_VAL = 2000          # validation rows evaluated along the curve (the rest of test at the end)
FIT_ROWS = 6000         # rows the explicit head and the probe are fitted on (same rows)
LSUV_BATCH, LSUV_TOL, LSUV_ROUNDS = 256, 0.1, 10
# Language model.
LM_WIDTH, LM_LAYERS, LM_HEADS, LM_CONTEXT, LM_BATCH = 128, 4, 4, 64, 4
LM_LR, LM_MIN_LR, LM_WARMUP, LM_DECAY, LM_CLIP = 1e-3, 1e-4, 100, 0.1, 1.0
LM_FIT_WINDOWS, LM_VAL_WINDOWS = 256, 64


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="smoke test: 1 seed, CNN 100 steps, transfer 60, LM 150")
  parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
  parser.add_argument("--tasks", default=",".join(TASKS), help="subset of cnn,transfer,lm")
  parser.add_argument("--frameworks", default="torch,flax",
                      help="CNN frameworks, subset of torch,flax (the LM is PyTorch)")
  parser.add_argument("--threads", type=int, default=None,
                      help="threads for BLAS, XLA and torch (default: all cores)")
  parser.add_argument("--out", default=None, help="JSON path (default results/deep.json; "
                      "--quick: results/deep_quick.json)")
  parser.add_argument("--merge", nargs="+", default=None,
                      help="combine these partial JSON files into --out (and its plot)")
  args = parser.parse_args(argv)
  args.tasks = [t for t in args.tasks.split(",") if t]
  args.frameworks = [f for f in args.frameworks.split(",") if f]
  if set(args.tasks) - set(TASKS):
    parser.error(f"unknown tasks {sorted(set(args.tasks) - set(TASKS))}; choose from {TASKS}.")
  if set(args.frameworks) - {"torch", "flax"}:
    parser.error("frameworks must be a subset of torch,flax.")
  if args.seeds is None:
    args.seeds = 1 if args.quick else 3
  if args.out is None:
    args.out = str(RESULTS / ("deep_quick.json" if args.quick else "deep.json"))
  args.budgets = ({"cnn": 100, "transfer": 60, "lm": 150} if args.quick
                  else {"cnn": None, "transfer": 300, "lm": 2000})  # cnn None: one epoch
  return args


def eval_steps(budget: int) -> list[int]:
  """Evaluation points: dense early (geometric) and even (linear) up to the budget."""
  import numpy as np
  geo = np.geomspace(4, budget, 12).round().astype(int)
  lin = np.linspace(0, budget, 21).round().astype(int)
  return sorted(set(geo.tolist()) | set(lin.tolist()) | {0, budget})


def batch_order(seed: int, n: int, steps: int, batch: int = BATCH):
  """Row indices of each step's batch: epochs of a seeded permutation, full batches."""
  import numpy as np
  rng = np.random.default_rng(1000 + seed)
  order = []
  while len(order) < steps:
    perm = rng.permutation(n)
    order.extend(perm[i * batch:(i + 1) * batch] for i in range(n // batch))
  return order[:steps]


def fit_rows(seed: int, n: int, rows: int = FIT_ROWS):
  import numpy as np
  return np.sort(np.random.default_rng(2000 + seed).choice(n, size=min(n, rows), replace=False))


def probe_weights(features, labels, seed: int, n_classes: int):
  """scikit-learn's LogisticRegression() on frozen features: (N, M) weights, (M,) bias.

  A class absent from the fitted rows (rare characters) gets zero weights and the
  lowest fitted intercept: finite, as rare as the rarest class seen.
  """
  import warnings
  import numpy as np
  from sklearn.exceptions import ConvergenceWarning
  from sklearn.linear_model import LogisticRegression
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)  # the default max_iter, as users run it
    clf = LogisticRegression(random_state=seed).fit(features, labels)
  w = np.zeros((features.shape[1], n_classes), np.float32)
  b = np.full(n_classes, clf.intercept_.min(), np.float32)
  w[:, clf.classes_], b[clf.classes_] = clf.coef_.T, clf.intercept_
  return w, b


def orthonormal(rng, rows: int, cols: int):
  """A (rows, cols) matrix with orthonormal rows or columns (SVD of a Gaussian)."""
  import numpy as np
  u, _, vt = np.linalg.svd(rng.standard_normal((rows, cols)), full_matrices=False)
  return (u @ vt).astype(np.float32)


# -- PyTorch --------------------------------------------------------------------
def torch_cnn():
  from torch import nn
  return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Flatten(), nn.Linear(784, 10))


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


def torch_train(model, params, x_tr, y_tr, order, steps_to_eval, evaluate, *, opt=None,
                schedule=None, clip=None, loss_fn=None):
  """Trains on the given batch order; evaluates at ``steps_to_eval`` (clock stopped)."""
  import torch
  from torch import nn
  loss_fn = loss_fn or (lambda out, yb: nn.functional.cross_entropy(out, yb))
  opt = opt or torch.optim.Adam(params, lr=LR)
  points = [{"step": 0, "seconds": 0.0, **evaluate()}]
  elapsed = 0.0
  for step, idx in enumerate(order, start=1):
    t0 = time.perf_counter()
    if schedule is not None:
      for group in opt.param_groups:
        group["lr"] = schedule(step - 1)
    idx = torch.as_tensor(idx)
    loss = loss_fn(model(x_tr[idx]), y_tr[idx])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
      torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    elapsed += time.perf_counter() - t0
    if step in steps_to_eval:
      model.eval()
      points.append({"step": step, "seconds": elapsed, **evaluate()})
      model.train()
  return points


def torch_classifier_eval(model, x, y):
  import torch
  from torch import nn

  def evaluate():
    with torch.no_grad():
      logits = torch.cat([model(x[i:i + 1000]) for i in range(0, len(x), 1000)])
      return {"loss": float(nn.functional.cross_entropy(logits, y)),
              "acc": float((logits.argmax(1) == y).float().mean())}
  return evaluate


def torch_cnn_arm(arm, seed, data, budget, *, pretrained=None, n_classes=10):
  """One arm of the CNN (``pretrained=None``) or transfer task in PyTorch."""
  import numpy as np
  import torch
  from torch import nn
  from explicit_softmax.adapters import torch as es_torch
  xtr, ytr, xval, yval, xtest, ytest = data
  torch.manual_seed(seed)
  model = torch_cnn()
  if pretrained is not None:
    model[-1] = nn.Linear(784, 5)
    model.load_state_dict(pretrained)
  rows = fit_rows(seed, len(xtr))
  extra = {}
  start = time.perf_counter()
  if pretrained is not None:  # the new head for the new classes, framework default
    model[-1] = nn.Linear(784, n_classes)
  if arm == "lsuv":
    layers = ([model[-1]] if pretrained is not None
              else [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))])
    batch = torch.as_tensor(xtr[fit_rows(seed, len(xtr), LSUV_BATCH)])
    extra = torch_lsuv(model, batch, layers, seed)
  elif arm == "probe":
    model.eval()
    with torch.no_grad():
      feats = model[:-1](torch.as_tensor(xtr[rows])).numpy()
    model.train()
    w, b = probe_weights(feats, ytr[rows], seed, n_classes)
    es_torch.write_linear(model[-1], w, b)
  elif arm == "explicit":
    if pretrained is None:
      es_torch.init_head(model, xtr[rows], ytr[rows], calibrate=True)
    else:
      es_torch.new_head(model, xtr[rows], ytr[rows], n_classes=n_classes,
                        calibrate=True)
  init_seconds = time.perf_counter() - start
  x_tr, y_tr = torch.as_tensor(xtr), torch.as_tensor(ytr)
  evaluate = torch_classifier_eval(model, torch.as_tensor(xval), torch.as_tensor(yval))
  order = batch_order(seed, len(xtr), budget)
  model.train()
  points = torch_train(model, list(model.parameters()), x_tr, y_tr, order,
                       set(eval_steps(budget)), evaluate)
  model.eval()
  test = torch_classifier_eval(model, torch.as_tensor(xtest), torch.as_tensor(ytest))()
  return {"init_seconds": init_seconds, "points": points, "test": test, **extra}


def torch_pretrain(seed, xtr, ytr):
  """The digits 0-4 network (one epoch; not counted)."""
  import torch
  torch.manual_seed(100 + seed)
  model = torch_cnn()
  model[-1] = torch.nn.Linear(784, 5)
  x, y = torch.as_tensor(xtr), torch.as_tensor(ytr)
  torch_train(model, list(model.parameters()), x, y, batch_order(100 + seed, len(x),
              len(x) // BATCH), set(), lambda: {})
  state = model.state_dict()
  return {k: v.clone() for k, v in state.items()}


# -- Flax NNX -------------------------------------------------------------------
def flax_cnn(seed: int, n_classes: int = 10):
  import functools
  from flax import nnx
  rngs = nnx.Rngs(seed)
  pool = functools.partial(nnx.max_pool, window_shape=(2, 2), strides=(2, 2))
  return nnx.Sequential(nnx.Conv(1, 8, (3, 3), rngs=rngs), nnx.relu, pool,
                        nnx.Conv(8, 16, (3, 3), rngs=rngs), nnx.relu, pool,
                        lambda h: h.reshape(h.shape[0], -1),
                        nnx.Linear(784, n_classes, rngs=rngs))


def flax_lsuv(model, x_batch, layer_ids, seed: int) -> dict:
  """LSUV on the conv/dense layers of an nnx.Sequential (see :func:`torch_lsuv`)."""
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


def flax_train(model, x_tr, y_tr, order, steps_to_eval, x_val, y_val):
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.adam(LR)
  opt_state = tx.init(params)

  def loss_fn(p, xb, yb):
    logits = nnx.merge(graphdef, p, rest)(xb)
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  @jax.jit
  def step_fn(p, state, x_all, y_all, idx):
    # The batch is gathered inside the compiled step (no eager dispatch per step).
    loss, grads = jax.value_and_grad(loss_fn)(p, x_all[idx], y_all[idx])
    updates, state = tx.update(grads, state, p)
    return optax.apply_updates(p, updates), state, loss

  @jax.jit
  def eval_fn(p, x, y):
    logits = nnx.merge(graphdef, p, rest)(x)
    return ((logits.argmax(-1) == y).mean(),
            optax.softmax_cross_entropy_with_integer_labels(logits, y).mean())

  def evaluate(p, x, y):
    acc, loss = eval_fn(p, x, y)
    return {"loss": float(loss), "acc": float(acc)}

  x_d, y_d = jnp.asarray(x_tr), jnp.asarray(y_tr, jnp.int32)
  xv, yv = jnp.asarray(x_val), jnp.asarray(y_val, jnp.int32)
  step_c = step_fn.lower(params, opt_state, x_d, y_d, jnp.arange(BATCH)).compile()
  points = [{"step": 0, "seconds": 0.0, **evaluate(params, xv, yv)}]
  elapsed = 0.0
  for step, idx in enumerate(order, start=1):
    t0 = time.perf_counter()
    params, opt_state, loss = step_c(params, opt_state, x_d, y_d, jnp.asarray(idx))
    loss.block_until_ready()
    elapsed += time.perf_counter() - t0
    if step in steps_to_eval:
      points.append({"step": step, "seconds": elapsed, **evaluate(params, xv, yv)})
  nnx.update(model, params)
  return points, lambda x, y: evaluate(params, jnp.asarray(x), jnp.asarray(y, jnp.int32))


def flax_cnn_arm(arm, seed, data, budget, *, pretrained=None, n_classes=10):
  import jax
  from flax import nnx
  from explicit_softmax.adapters import flax as es_flax
  xtr, ytr, xval, yval, xtest, ytest = data
  model = flax_cnn(seed, 10 if pretrained is None else 5)
  if pretrained is not None:
    nnx.update(model, pretrained)
  rows = fit_rows(seed, len(xtr))
  extra = {}
  linear_ids = [i for i, m in enumerate(model.layers) if isinstance(m, (nnx.Conv, nnx.Linear))]
  start = time.perf_counter()
  if pretrained is not None:  # the new head for the new classes, framework default
    model.layers[-1] = nnx.Linear(784, n_classes, rngs=nnx.Rngs(seed))
  if arm == "lsuv":
    batch = xtr[fit_rows(seed, len(xtr), LSUV_BATCH)]
    extra = flax_lsuv(model, batch, linear_ids[-1:] if pretrained is not None else linear_ids,
                      seed)
  elif arm == "probe":
    h = xtr[rows]
    for layer in list(model.layers)[:-1]:
      h = layer(h)
    w, b = probe_weights(jax.device_get(h), ytr[rows], seed, n_classes)
    es_flax.write_linear(model.layers[-1], w, b)
  elif arm == "explicit":
    if pretrained is None:
      es_flax.init_head(model, xtr[rows], ytr[rows], calibrate=True)
    else:
      es_flax.new_head(model, xtr[rows], ytr[rows], n_classes=n_classes,
                       calibrate=True)
  init_seconds = time.perf_counter() - start
  order = batch_order(seed, len(xtr), budget)
  points, evaluate = flax_train(model, xtr, ytr, order, set(eval_steps(budget)), xval, yval)
  return {"init_seconds": init_seconds, "points": points, "test": evaluate(xtest, ytest),
          **extra}


def flax_pretrain(seed, xtr, ytr):
  from flax import nnx
  model = flax_cnn(100 + seed, 5)
  flax_train(model, xtr, ytr, batch_order(100 + seed, len(xtr), len(xtr) // BATCH), set(),
             xtr[:10], ytr[:10])
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
  runners = {"torch": torch_cnn_arm, "flax": flax_cnn_arm}
  pretrainers = {"torch": torch_pretrain, "flax": flax_pretrain}
  out = {}
  for fw in args.frameworks:
    fw_start = time.perf_counter()
    if task == "cnn":
      data = mnist_data(fw)
      budget = args.budgets["cnn"] or len(data[0]) // BATCH
      pre = None
    else:
      data = mnist_data(fw, digits=[5, 6, 7, 8, 9])
      source = mnist_data(fw, digits=[0, 1, 2, 3, 4])
      budget = args.budgets["transfer"]
      pre, pre_seconds = {}, []
      for seed in range(args.seeds):
        t0 = time.perf_counter()
        pre[seed] = pretrainers[fw](seed, source[0], source[1])
        pre_seconds.append(time.perf_counter() - t0)
    arms = {arm: [] for arm in CNN_ARMS}
    for seed in range(args.seeds):
      for arm in CNN_ARMS:
        log(f"{task} {fw} {arm} seed {seed}")
        kwargs = {} if pre is None else {"pretrained": pre[seed], "n_classes": 5}
        arms[arm].append(runners[fw](arm, seed, data, budget, **kwargs))
    out[fw] = {"budget": budget, "eval_steps": eval_steps(budget), "runs": arms,
               "wall_seconds": time.perf_counter() - fw_start}
    if pre is not None:
      out[fw]["pretrain_seconds_not_counted"] = summary(pre_seconds)
  return out


# -- transformer language model (PyTorch) ---------------------------------------
def torch_gpt(vocab: int):
  import torch
  from torch import nn
  from torch.nn import functional as F

  class Block(nn.Module):
    """Pre-LayerNorm block; the attention's value and output projections are separate
    nn.Linear layers (nanoGPT packs q, k, v into one)."""

    def __init__(self):
      super().__init__()
      d = LM_WIDTH
      self.ln1 = nn.LayerNorm(d)
      self.query, self.key, self.value, self.out = (nn.Linear(d, d) for _ in range(4))
      self.ln2 = nn.LayerNorm(d)
      self.fc, self.proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
      b, t, d = x.shape
      a = self.ln1(x)
      q, k, v = (layer(a).view(b, t, LM_HEADS, d // LM_HEADS).transpose(1, 2)
                 for layer in (self.query, self.key, self.value))
      y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
      x = x + self.out(y.transpose(1, 2).reshape(b, t, d))
      return x + self.proj(F.gelu(self.fc(self.ln2(x))))

  class GPT(nn.Module):

    def __init__(self):
      super().__init__()
      self.tok = nn.Embedding(vocab, LM_WIDTH)
      self.pos = nn.Embedding(LM_CONTEXT, LM_WIDTH)
      self.blocks = nn.ModuleList(Block() for _ in range(LM_LAYERS))
      self.ln_f = nn.LayerNorm(LM_WIDTH)
      self.head = nn.Linear(LM_WIDTH, vocab)

    def forward(self, ids):
      x = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
      for block in self.blocks:
        x = block(x)
      return self.head(self.ln_f(x))

  return GPT()


def lm_data():
  import numpy as np
  from explicit_softmax import data as data_lib
  path = str(_harness.tiny_shakespeare())
  tokens, vocab = data_lib.load_text(path, level="char")
  train, val = data_lib.train_test_split_tokens(tokens, 0.1)
  return np.asarray(train, np.int64), np.asarray(val, np.int64), len(vocab), path


def windows(tokens, starts):
  """(len(starts), CONTEXT) inputs and next-token targets."""
  import numpy as np
  idx = np.asarray(starts)[:, None] + np.arange(LM_CONTEXT + 1)
  w = tokens[idx]
  return w[:, :-1], w[:, 1:]


def lm_schedule(budget: int):
  def lr(step):  # linear warm-up, then cosine decay to LM_MIN_LR
    if step < LM_WARMUP:
      return LM_LR * (step + 1) / LM_WARMUP
    frac = min(1.0, (step - LM_WARMUP) / max(1, budget - LM_WARMUP))
    return LM_MIN_LR + 0.5 * (LM_LR - LM_MIN_LR) * (1 + math.cos(math.pi * frac))
  return lr


def lm_factors(train, vocab):
  """Bigram count solution's SVD factors, zero-padded from rank V to the model width."""
  import numpy as np
  import explicit_softmax as es
  from explicit_softmax import data as data_lib
  from explicit_softmax.adapters import svd_factors
  f, y = data_lib.context_tokens(train, 1, vocab)
  stats = es.SoftmaxStats.from_data(f, y, n_classes=vocab)
  factors = svd_factors(stats, min(vocab, LM_WIDTH), n_context=1)
  pad = LM_WIDTH - factors.rank
  embedding = np.pad(factors.embedding, ((0, 0), (0, pad)))
  # embedding @ head is unchanged by embedding * c, head / c; c gives the table the
  # RMS of PyTorch's default N(0, 1) embedding (and of the position table added to
  # it), where the even SVD split leaves it at ~0.3, swamped by the positions.
  c = 1.0 / float(np.sqrt(np.mean(embedding.astype(np.float64)**2)))
  return dataclasses.replace(factors, embedding=(embedding * c).astype(np.float32),
                             head=(np.pad(factors.head, ((0, pad), (0, 0))) / c
                                   ).astype(np.float32))


def lm_arm(arm, seed, lm, budget):
  import numpy as np
  import torch
  from torch import nn
  from explicit_softmax.adapters import context_bag_weights
  from explicit_softmax.adapters import torch as es_torch
  train, val, vocab = lm
  rng = np.random.default_rng(3000 + seed)
  fit_x, fit_y = windows(train, rng.integers(0, len(train) - LM_CONTEXT - 1, LM_FIT_WINDOWS))
  torch.manual_seed(seed)
  model = lm_model = torch_gpt(vocab)
  extra = {}
  start = time.perf_counter()
  if arm == "lsuv":
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    extra = torch_lsuv(model, torch.as_tensor(fit_x[:32]), layers, seed)
  elif arm == "probe":
    feats = es_torch.layer_inputs(model, model.head, fit_x)
    w, b = probe_weights(feats.reshape(-1, LM_WIDTH), fit_y.reshape(-1), seed, vocab)
    es_torch.write_linear(model.head, w, b)
  elif arm in EXPLICIT_ARMS:
    factors = lm_factors(train, vocab)
    es_torch.init_embedding(factors, model.tok, model.head)
    if arm == "explicit_blocks":
      bag, _ = context_bag_weights(train, vocab, LM_CONTEXT)
      # Each token's vote as a residual-stream vector: the head maps it back to the
      # vote's logits (least-squares through the SVD head's pseudo-inverse).
      # (rcond drops the null directions: centring leaves the (d, V) head rank V - 1.)
      table = bag @ np.linalg.pinv(factors.head.astype(np.float64), rcond=1e-6)
      targets = table[fit_x] / LM_LAYERS
      es_torch.init_value_output(model, fit_x, [(b.value, b.out) for b in model.blocks],
                                 targets)
    es_torch.init_head(model, fit_x, fit_y, batch_size=64, calibrate=True)
  init_seconds = time.perf_counter() - start
  vx, vy = windows(val, np.linspace(0, len(val) - LM_CONTEXT - 1, LM_VAL_WINDOWS).astype(int))
  vx, vy = torch.as_tensor(vx), torch.as_tensor(vy)

  def evaluate():
    with torch.no_grad():
      logits = lm_model(vx)
      return {"loss": float(nn.functional.cross_entropy(logits.reshape(-1, vocab),
                                                        vy.reshape(-1))),
              "acc": float((logits.argmax(-1) == vy).float().mean())}

  # One batch order for every arm of a seed: windows drawn from the seed's generator.
  order_rng = np.random.default_rng(4000 + seed)
  starts = order_rng.integers(0, len(train) - LM_CONTEXT - 1, (budget, LM_BATCH))
  bx, by = windows(train, starts.ravel())
  bx = torch.as_tensor(bx).reshape(budget, LM_BATCH, LM_CONTEXT)
  by = torch.as_tensor(by).reshape(budget, LM_BATCH, LM_CONTEXT)
  decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
  no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
  opt = torch.optim.AdamW([{"params": decay, "weight_decay": LM_DECAY},
                           {"params": no_decay, "weight_decay": 0.0}], lr=LM_LR,
                          betas=(0.9, 0.99))
  model.train()
  points = torch_train(
      model, list(model.parameters()), bx, by, range(budget), set(eval_steps(budget)),
      evaluate, opt=opt, schedule=lm_schedule(budget), clip=LM_CLIP,
      loss_fn=lambda out, yb: nn.functional.cross_entropy(out.reshape(-1, vocab),
                                                          yb.reshape(-1)))
  return {"init_seconds": init_seconds, "points": points, **extra}


def run_lm_task(args, log) -> dict:
  import numpy as np
  train, val, vocab, path = lm_data()
  budget = args.budgets["lm"]
  start = time.perf_counter()
  arms = {arm: [] for arm in LM_ARMS}
  for seed in range(args.seeds):
    for arm in LM_ARMS:
      log(f"lm torch {arm} seed {seed}")
      arms[arm].append(lm_arm(arm, seed, (train, val, vocab), budget))
  return {"torch": {"budget": budget, "eval_steps": eval_steps(budget), "runs": arms,
                    "wall_seconds": time.perf_counter() - start, "vocab_size": vocab,
                    "train_tokens": int(len(train)), "val_tokens": int(len(val)),
                    "path": path}}


# -- the measurements -----------------------------------------------------------
def first_reach(run: dict, target: float):
  """(steps, seconds incl. init) of the first evaluation at or below ``target``."""
  for p in run["points"]:
    if p["loss"] <= target + 1e-12:
      return p["step"], p["seconds"] + run["init_seconds"]
  return None, None


def step_cost(run: dict) -> float:
  """Mean training seconds per step of a run (evaluation excluded)."""
  return run["points"][-1]["seconds"] / max(run["points"][-1]["step"], 1)


def compare(runs: dict) -> dict:
  """Each explicit arm against each peer: steps/seconds ratios to the peer's final loss."""
  out = {}
  for e in (a for a in EXPLICIT_ARMS if a in runs):
    for p in (a for a in PEERS if a in runs):
      per_seed = []
      for er, pr in zip(runs[e], runs[p]):
        target = pr["points"][-1]["loss"]
        es_, et = first_reach(er, target)
        ps, pt = first_reach(pr, target)
        per_seed.append({
            "target": target, "explicit_steps": es_, "explicit_seconds": et,
            "peer_steps": ps, "peer_seconds": pt,
            # A peer at its own final loss already at step 0 (and 0 s) leaves no ratio.
            "steps_ratio": None if es_ is None or not ps else es_ / ps,
            "seconds_ratio": None if et is None or not pt else et / pt,
            # Load-independent seconds: both arms' steps priced at the peer's mean step time
            # (arms run one after another on shared cores, so measured step times drift).
            "seconds_ratio_equal_step_cost": (
                None if es_ is None or not ps else
                (er["init_seconds"] + es_ * step_cost(pr))
                / (pr["init_seconds"] + ps * step_cost(pr))),
            "final_difference": er["points"][-1]["loss"] - target})
      reached = [s for s in per_seed if s["steps_ratio"] is not None]
      steps_ratio = summary([s["steps_ratio"] for s in reached]) if reached else None
      seconds_ratio = summary([s["seconds_ratio"] for s in reached]) if reached else None
      equal_cost = summary([s["seconds_ratio_equal_step_cost"] for s in reached]) if reached \
          else None
      diff = summary([s["final_difference"] for s in per_seed])
      out[f"{e}_vs_{p}"] = {
          "per_seed": per_seed, "reached": f"{len(reached)}/{len(per_seed)}",
          "steps_ratio": steps_ratio, "seconds_ratio": seconds_ratio,
          "seconds_ratio_equal_step_cost": equal_cost, "final_difference": diff,
          "half_steps": bool(len(reached) == len(per_seed)
                             and max(s["steps_ratio"] for s in reached) <= 0.5),
          "half_seconds": bool(len(reached) == len(per_seed)
                               and max(s["seconds_ratio"] for s in reached) <= 0.5),
          "never_worse_at_end": bool(max(diff["values"]) <= 0.0),
      }
  return out


def summarise(entry: dict) -> dict:
  """Per arm: init seconds, start/final loss and accuracy, the mean curve; comparisons."""
  import numpy as np
  arms = {}
  for arm, runs in entry["runs"].items():
    loss = np.array([[p["loss"] for p in r["points"]] for r in runs])
    acc = np.array([[p["acc"] for p in r["points"]] for r in runs])
    secs = np.array([[p["seconds"] + r["init_seconds"] for p in r["points"]] for r in runs])
    arms[arm] = {
        "init_seconds": summary([r["init_seconds"] for r in runs]),
        "train_seconds": summary([r["points"][-1]["seconds"] for r in runs]),
        "start_loss": summary(loss[:, 0]), "final_loss": summary(loss[:, -1]),
        "start_acc": summary(acc[:, 0]), "final_acc": summary(acc[:, -1]),
        "curve_steps": [p["step"] for p in runs[0]["points"]],
        "loss_mean": loss.mean(0).tolist(),
        "loss_std": (loss.std(0, ddof=1) if len(loss) > 1 else 0 * loss[0]).tolist(),
        "acc_mean": acc.mean(0).tolist(), "seconds_mean": secs.mean(0).tolist(),
    }
    # Steps and seconds (init included) to the default arm's final loss of the same seed.
    hits = [first_reach(r, d["points"][-1]["loss"])
            for r, d in zip(runs, entry["runs"]["default"])]
    ok = [h for h in hits if h[0] is not None]
    arms[arm]["to_default_final"] = {
        "reached": f"{len(ok)}/{len(hits)}",
        "steps": summary([h[0] for h in ok]) if ok else None,
        "seconds": summary([h[1] for h in ok]) if ok else None}
    if "test" in runs[0]:
      arms[arm]["test_acc"] = summary([r["test"]["acc"] for r in runs])
      arms[arm]["test_loss"] = summary([r["test"]["loss"] for r in runs])
  return {"arms": arms, "comparisons": compare(entry["runs"])}


def target_verdicts(result: dict) -> dict:
  """Issue 18's target per task and framework: some explicit arm reaches default's final
  loss in <= half the steps and seconds (every seed) and is never worse at the end."""
  out = {}
  for task in TASKS:
    for fw, entry in result.get(task, {}).items():
      comps = entry["summary"]["comparisons"]
      best = None
      for e in EXPLICIT_ARMS:
        c = comps.get(f"{e}_vs_default")
        if c is None:
          continue
        met = c["half_steps"] and c["half_seconds"] and c["never_worse_at_end"]
        if best is None or met:
          best = {"arm": e, "met": met, "half_steps": c["half_steps"],
                  "half_seconds": c["half_seconds"],
                  "never_worse_at_end": c["never_worse_at_end"]}
          if met:
            break
      out[f"{task}/{fw}"] = best
  return out


def plot(result: dict, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np
  from matplotlib.ticker import FormatStrFormatter
  panels = [(task, fw) for task in TASKS for fw in result.get(task, {})]
  if not panels:
    return
  fig, axes = plt.subplots(len(panels), 2, figsize=(13, 3.6 * len(panels)), squeeze=False)
  colors = {"default": "tab:gray", "lsuv": "tab:orange", "probe": "tab:green",
            "explicit": "tab:blue", "explicit_blocks": "tab:purple"}
  titles = {"cnn": "MNIST CNN from scratch", "transfer": "transfer 0-4 -> 5-9, new head",
            "lm": "char transformer, tiny Shakespeare"}
  for row, (task, fw) in enumerate(panels):
    arms = result[task][fw]["summary"]["arms"]
    for arm, a in arms.items():
      mean, std = np.array(a["loss_mean"]), np.array(a["loss_std"])
      steps, secs = np.array(a["curve_steps"]), np.array(a["seconds_mean"])
      for ax, x in ((axes[row, 0], steps), (axes[row, 1], secs)):
        ax.plot(x, mean, color=colors[arm], label=arm, marker=".", ms=3)
        ax.fill_between(x, mean - std, mean + std, color=colors[arm], alpha=0.2)
    target = arms["default"]["final_loss"]["mean"]
    for ax, xlabel in ((axes[row, 0], "steps"), (axes[row, 1], "seconds (init included)")):
      ax.axhline(target, color="k", lw=0.8, ls=":", label="default's final loss")
      ax.set(yscale="log", xlabel=xlabel, ylabel="validation loss (nats, log)",
             title=f"{titles[task]} ({fw})")
      ax.grid(alpha=0.3, which="both")
      ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))  # 0.3, 0.4, ... not 3 x 10^-1
      ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    axes[row, 1].set_xscale("symlog", linthresh=1.0)
    axes[row, 1].set_xlim(left=0)
    axes[row, 0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def finish(result: dict, out: pathlib.Path) -> None:
  for task in TASKS:
    for fw, entry in result.get(task, {}).items():
      entry["summary"] = summarise(entry)
  result["targets"] = target_verdicts(result)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=1))
  plot(result, out.with_suffix(".png"))
  print_tables(result)
  print(f"\nwrote {out} and {out.with_suffix('.png')}")


def print_tables(result: dict) -> None:
  for task in TASKS:
    for fw, entry in result.get(task, {}).items():
      s = entry["summary"]
      print(f"\n[{task} / {fw}] budget {entry['budget']} steps")
      for arm, a in s["arms"].items():
        print(f"  {arm:>15}: init {a['init_seconds']['mean']:6.2f}s  loss "
              f"{a['start_loss']['mean']:.3f} -> {a['final_loss']['mean']:.4f}"
              f"±{a['final_loss']['std']:.4f}  acc {100 * a['final_acc']['mean']:.2f}%")
      for name, c in s["comparisons"].items():
        sr, tr = c["steps_ratio"], c["seconds_ratio"]
        srs = "-" if sr is None else f"{sr['mean']:.2f}"
        trs = "-" if tr is None else f"{tr['mean']:.2f}"
        print(f"  {name:>28}: reached {c['reached']}, steps ratio {srs}, seconds ratio "
              f"{trs}, final diff {c['final_difference']['mean']:+.4f}")
  for key, v in result.get("targets", {}).items():
    print(f"target {key}: {v}")


def machine_facts() -> dict:
  from _common import machine_facts as base
  facts = base()
  facts["loadavg_start"] = list(os.getloadavg())
  facts["threads_limit"] = os.environ.get("OMP_NUM_THREADS")
  return facts


def main(argv=None) -> dict:
  args = parse_args(argv)
  out = pathlib.Path(args.out)
  if args.merge:
    result = {"parts": []}
    for name in args.merge:
      part = json.loads(pathlib.Path(name).read_text())
      result["parts"].append({"file": name, "config": part["config"],
                              "machine": part["machine"],
                              "total_seconds": part["total_seconds"]})
      for task in TASKS:
        if task in part:
          result.setdefault(task, {}).update(part[task])
    first = result["parts"][0]
    result["config"] = {**first["config"], "tasks": [t for t in TASKS if t in result],
                        "merged": args.merge}
    result["machine"] = first["machine"]
    result["total_seconds"] = max(p["total_seconds"] for p in result["parts"])
    finish(result, out)
    return result
  _harness.limit_threads(args.threads)
  import torch
  if args.threads:
    torch.set_num_threads(args.threads)
  import warnings
  warnings.filterwarnings("ignore", category=DeprecationWarning)
  start = time.perf_counter()

  def log(message):
    print(f"[{time.perf_counter() - start:7.1f}s] {message}", flush=True)

  result = {"config": {"quick": args.quick, "seeds": args.seeds, "tasks": args.tasks,
                       "frameworks": args.frameworks, "threads": args.threads,
                       "budgets": args.budgets, "learning_rate": LR, "batch_size": BATCH,
                       "fit_rows": FIT_ROWS, "cnn_validation_rows": CNN_VAL,
                       "lsuv": {"batch": LSUV_BATCH, "tolerance": LSUV_TOL,
                                "max_rounds": LSUV_ROUNDS},
                       "lm": {"width": LM_WIDTH, "layers": LM_LAYERS, "heads": LM_HEADS,
                              "context": LM_CONTEXT, "batch": LM_BATCH, "lr": LM_LR,
                              "min_lr": LM_MIN_LR, "warmup": LM_WARMUP,
                              "weight_decay": LM_DECAY, "clip": LM_CLIP,
                              "fit_windows": LM_FIT_WINDOWS, "val_windows": LM_VAL_WINDOWS},
                       "command": " ".join(sys.argv)},
            "machine": machine_facts()}
  for task in args.tasks:
    result[task] = run_lm_task(args, log) if task == "lm" else run_cnn_task(task, args, log)
  result["total_seconds"] = time.perf_counter() - start
  result["machine"]["loadavg_end"] = list(os.getloadavg())
  finish(result, out)
  return result


if __name__ == "__main__":
  _harness.run(main)
