"""The deep-model benchmark's language-model task: a character transformer in PyTorch on
tiny Shakespeare, its data, schedule, explicit factors and arms."""

from __future__ import annotations

import dataclasses
import math
import time

from explicit_softmax.bench import _harness
from explicit_softmax.bench.deep_cnn import explicit_record, torch_lsuv
from explicit_softmax.bench.deep_common import (LM_ARMS, LM_BATCH, LM_CLIP, LM_CONTEXT,
                                                LM_DECAY, LM_FIT_WINDOWS, LM_HEADS, LM_LAYERS,
                                                LM_LR, LM_MIN_LR, LM_VAL_WINDOWS, LM_WARMUP,
                                                LM_WIDTH, eval_steps, explicit_rows,
                                                probe_weights)
from explicit_softmax.bench.training import torch_train


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
  start, cpu_start = time.perf_counter(), time.process_time()
  if arm == "lsuv":
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    extra = torch_lsuv(model, torch.as_tensor(fit_x[:32]), layers, seed)
  elif arm == "probe":  # the windows the explicit head's default budget reads
    rows = explicit_rows(len(fit_x), LM_WIDTH, LM_CONTEXT)
    feats = es_torch.layer_inputs(model, model.head, fit_x[rows])
    w, b = probe_weights(feats.reshape(-1, LM_WIDTH), fit_y[rows].reshape(-1), seed, vocab)
    es_torch.write_linear(model.head, w, b)
    extra = {"rows": len(rows)}
  elif arm in ("explicit", "explicit_blocks"):
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
    explicit = es_torch.init_head(model, fit_x, fit_y, batch_size=64, calibrate=True)
    extra = explicit_record(explicit)
  init_seconds = time.perf_counter() - start
  extra["init_cpu_seconds"] = time.process_time() - cpu_start
  extra["head_norm"] = float(model.head.weight.detach().norm())
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
