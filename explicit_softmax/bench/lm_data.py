"""The language-model benchmark's settings and data sets: the sources, their specs and
tokens (``es.bench.lm`` runs them)."""

from __future__ import annotations

import dataclasses
import os

import explicit_softmax as es


SMOOTHING = es.solvers.DEFAULT_SMOOTHING
MLE_SMOOTHING = 1e-6
INIT_SCALE = 0.01
ADAM_GRID = (3e-3, 1e-2, 3e-2)
SGD_GRID = (0.3, 1.0, 3.0)  # in units of 1 / (K max_i f_i / T)
# ``calibrate`` keeps several rows x V float64 arrays and its Newton steps cost
# rows x V^2: larger training sets are subsampled to these limits.
CALIBRATION_ELEMENTS = 2**25
CALIBRATION_FLOPS = 2**34
# Evaluation chunks (rows x V float64).
EVAL_ELEMENTS = 2**23
# Training positions used to measure loss and KL for K > 1 (the claims).
PROBE_ELEMENTS = 2**22


@dataclasses.dataclass
class Spec:
  """One data set: how to make its tokens and how many context tokens to use."""

  name: str
  kind: str  # "markov", "loglinear" or "text"
  n_context: int
  vocab_size: int = 0
  order: int = 1
  n_train: int = 0
  n_test: int = 0
  budget: float = 0.0
  description: str = ""


def default_specs(args) -> list[Spec]:
  """The data sets of a full or a ``--quick`` run."""
  if args.quick:
    v1, n1, v2, n2 = 500, 100_000, 50, 100_000
  else:
    v1, n1, v2, n2 = 2_000, 1_000_000, args.order2_vocab, 1_000_000
  specs = [Spec("markov1-K1", "markov", 1, v1, 1, n1, n1 // 10, args.budget,
                f"order-1 Markov source, V={v1}, one-hot bigram (exact model class)")]
  for k in (2, 3):
    specs.append(Spec(f"markov2-K{k}", "markov", k, v2, 2, n2, n2 // 10, args.budget,
                      f"order-2 Markov source, V={v2}, K={k} positional context tokens"))
  for k in (2, 3):
    specs.append(Spec(f"additive-K{k}", "loglinear", k, v2, k, n2, n2 // 10, args.budget,
                      f"log-linear order-{k} source, V={v2}, K={k} positional context "
                      "tokens (the model class contains the source)"))
  for k in (1, 2, 3, 4):
    specs.append(Spec(f"shakespeare-K{k}", "text", k, budget=args.budget,
                      description=f"tiny Shakespeare, characters, K={k} context tokens"))
  return specs


def make_tokens(spec: Spec, args, cache: dict):
  """``(train_tokens, test_tokens, vocab_size, entropy_rate or None)``, or None if absent."""
  if spec.kind == "markov":
    key = ("markov", spec.vocab_size, spec.order, spec.n_train, spec.n_test)
    if key not in cache:
      source = es.data.MarkovSource(spec.vocab_size, order=spec.order, zipf_exponent=1.1,
                                    seed=args.seed)
      cache[key] = (source.sample(spec.n_train, seed=args.seed + 1),
                    source.sample(spec.n_test, seed=args.seed + 2),
                    spec.vocab_size, source.entropy_rate())
    return cache[key]
  if spec.kind == "loglinear":
    source = es.data.LogLinearSource(spec.vocab_size, order=spec.order, seed=args.seed)
    rate, se = source.estimate_entropy_rate()
    spec.description += f"; entropy rate estimated along 500,000 tokens, standard error {se:.1e}"
    return (source.sample(spec.n_train, seed=args.seed + 1),
            source.sample(spec.n_test, seed=args.seed + 2), spec.vocab_size, rate)
  if args.text is None or not os.path.isfile(args.text):
    return None
  if "text" not in cache:
    tokens, vocab = es.data.load_text(args.text, level="char")
    if args.quick:
      tokens = tokens[:args.quick_text_chars]
    train, test = es.data.train_test_split_tokens(tokens, test_fraction=0.1)
    cache["text"] = (train, test, len(vocab), None)
  return cache["text"]
