"""The ``explicit-softmax`` command line: fit, predict, evaluate, bench and demo.

Run ``explicit-softmax --help`` (or ``python -m explicit_softmax --help``) for
the commands and examples. Errors in files or arguments are reported as one
line on stderr with a nonzero exit status, never as a traceback.

Data files (``DATA``): ``.npz`` (``X``, ``y``), ``.npy`` pairs, svmlight/libsvm
text and CSV/TSV tables with a label column; ``es._files`` says
how each is read and how labels that are not the codes ``0..M-1`` are encoded
(and stored in the model file, so ``predict`` prints them back).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import scipy.sparse as sp

from explicit_softmax import _progress
from explicit_softmax import _validation
from explicit_softmax._files import encode_labels, map_labels, read_data

PROG = "explicit-softmax"

EPILOG = """\
examples:
  explicit-softmax demo                                  # toy language model, < 1 minute
  explicit-softmax fit train.npz --out model.npz         # arrays X, y in one file
  explicit-softmax fit X.npy y.npy --out model.npz --calibrate
  explicit-softmax fit train.svm --out model.npz --refine lbfgs --steps 50
  explicit-softmax fit iris.csv --label-column species --out model.npz
  explicit-softmax fit table.csv --label-column -1 --out model.npz     # no header
  explicit-softmax predict model.npz test.csv --proba --out preds.csv
  explicit-softmax evaluate model.npz test.npz
  explicit-softmax bench fit --quick --out results      # results as JSON + PNG

Data formats: .npz (X, y), .npy (X; labels as a second .npy or --labels),
svmlight/libsvm (.svm, .svmlight, .libsvm) and CSV/TSV with a label column.
Features are any finite real numbers; --method cooccurrence needs nonnegative ones
(counts, intensities, activations).
"""


# -- commands ------------------------------------------------------------------

def _positive_int(text: str) -> int:
  """An integer >= 1 (``--support 0`` would otherwise mean the whole vocabulary)."""
  try:
    value = int(text)
  except ValueError:
    value = 0
  if value < 1:
    raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
  return value


def _l2_value(text: str):
  """``--l2``: ``auto`` or a finite number >= 0."""
  if text == "auto":
    return text
  try:
    value = float(text)
  except ValueError:
    value = float("nan")
  if not (np.isfinite(value) and value >= 0):
    raise argparse.ArgumentTypeError(f"expected auto or a finite number >= 0; got {text!r}")
  return value


def _cmd_fit(args) -> int:
  out = pathlib.Path(args.out)
  if not out.parent.is_dir():
    raise ValueError(f"output directory {str(out.parent)!r} does not exist.")
  data = read_data(args.data, labels_path=args.labels, label_column=args.label_column)
  x, y = data.x, data.y
  if y is None:
    raise ValueError(
        f"{args.data[0]!r} has no labels; give them as a second .npy path, with --labels, "
        "or as a column of the table.")
  targets, classes = encode_labels(y, args.n_classes)
  # M once for all batches, checked as es.fit checks it (labels that are ids up
  # to 10**8 are refused here, before any (N, M) array exists).
  n_classes = _validation.check_targets(targets, len(targets), args.n_classes).n_classes
  start = time.perf_counter()
  if not sp.issparse(x):
    x = np.asarray(x)
  _validation.check_shape_2d(x.shape)
  model = _fit_model(args, x, targets, n_classes)
  seconds = time.perf_counter() - start
  info = dict(model.info)
  if classes is not None:
    info["classes"] = classes
  # predict and evaluate select a table's columns by these names.
  if data.feature_names is not None:
    info["feature_names"] = data.feature_names
  if data.label_name is not None:
    info["label_column"] = data.label_name
  model = model.replace(info=info, history=None)
  loss, accuracy = model.log_loss(x, targets), _accuracy(model, x, targets)
  model.save(out)
  record = model.info.get("refine", {})
  print(f"fitted {args.method}"
        + (" + calibration" if args.calibrate else "")
        + (f" + {args.refine} x{args.steps}" if args.refine else "")
        + f" on {x.shape[0]:,} samples x {x.shape[1]:,} features, {n_classes} classes "
        f"in {seconds:.2f} s")
  print(f"labels: {data.labels_from}")
  print(f"training cross-entropy {loss:.4f} nats, accuracy {accuracy:.4f}")
  if "converged" in record:
    print(f"optimisation: {record['reason']} after {record['steps']} steps (relative "
          f"gradient norm {record['relative_grad_norm']:.2g}, l2 {record['l2']:.3g})")
  print(f"wrote {out}")
  return 0


def _fit_model(args, x, targets, n_classes: int):
  """The model ``fit`` asks for, from the library's one pipeline."""
  from explicit_softmax import fitting
  return fitting.run(x, targets, n_classes, args.method, smoothing=args.smoothing,
                     ridge=args.ridge, l2=args.l2, calibrate=args.calibrate,
                     refine=args.refine or None, refine_steps=args.steps,
                     batch_size=args.batch_size).model


def _accuracy(model, x, targets) -> float:
  """The fraction of rows whose predicted class is the (most probable) target."""
  hard = targets if targets.ndim == 1 else targets.argmax(axis=1)
  return float(np.mean(model.predict(x) == hard))


def _load_model_and_data(args, need_labels: bool):
  """The model and the data, its columns matched to the model's features by name where
  both have names; a note on stderr says where they are matched by position instead."""
  import explicit_softmax as es
  model = es.load(args.model)
  names = model.info.get("feature_names")
  data = read_data(args.data, labels_path=args.labels, label_column=args.label_column,
                   n_features=model.n_features, feature_names=names,
                   label_name=model.info.get("label_column"))
  where = repr(str(args.data[0]))
  if names is not None and data.feature_names is None:
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    _note(f"{where} has no column names: its columns are taken by position as the model's "
          f"features ({shown}).")
  elif names is None and data.feature_names is not None:
    _note(f"the model stores no feature names (fitted on data without a header): the "
          f"columns of {where} are taken by position.")
  elif data.reordered:
    _note(f"the columns of {where} are matched to the model's features by name "
          "(in another order than in training).")
  if data.labels_from is not None and not need_labels:
    _note(f"labels: {data.labels_from} (not used as a feature).")
  if need_labels and data.y is None:
    raise ValueError(
        f"{args.data[0]!r} has no labels to evaluate against; give them as a second .npy "
        "path, with --labels, or as a column of the table.")
  return model, data


def _note(text: str) -> None:
  print(f"{PROG}: note: {text}", file=sys.stderr)


def _cmd_predict(args) -> int:
  model, data = _load_model_and_data(args, need_labels=False)
  x = data.x
  classes = model.info.get("classes")
  names = classes if classes is not None else list(range(model.n_classes))
  proba = model.predict_proba(x) if args.proba else None
  pred = model.predict(x)
  fh: contextlib.AbstractContextManager = (
      open(args.out, "w", newline="", encoding="utf-8") if args.out
      else contextlib.nullcontext(sys.stdout))
  with fh as stream:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["prediction"] + ([f"p_{c}" for c in names] if args.proba else []))
    for i, k in enumerate(pred):
      row = [names[k]]
      if proba is not None:
        row += [f"{p:.6g}" for p in proba[i]]
      writer.writerow(row)
  if args.out:
    print(f"wrote {len(pred):,} predictions to {args.out}", file=sys.stderr)
  return 0


def _cmd_evaluate(args) -> int:
  model, data = _load_model_and_data(args, need_labels=True)
  x = data.x
  targets = map_labels(data.y, model.info.get("classes"), model.n_classes)
  loss, accuracy = model.log_loss(x, targets), _accuracy(model, x, targets)
  grad = model.grad_norm(x, targets)
  print(f"samples          {x.shape[0]:,}")
  print(f"labels           {data.labels_from}")
  print(f"cross-entropy    {loss:.6f} nats ({loss / np.log(2):.6f} bits)")
  print(f"accuracy         {accuracy:.6f}")
  print(f"gradient norm    {grad:.6g}")
  return 0


def _cmd_bench(args) -> int:
  from explicit_softmax import bench
  bench.check_extras(args.which)  # before any work: a missing extra is named, not met later
  from explicit_softmax.bench import _harness
  if args.update_committed:
    if args.out:
      raise ValueError("give either --out or --update-committed, not both.")
    if not _harness.COMMITTED.is_dir():
      raise ValueError(
          f"--update-committed rewrites the results committed with the source, "
          f"{str(_harness.COMMITTED)!r}, which exists only in a source checkout; use --out DIR.")
    out = _harness.COMMITTED
  else:
    out = pathlib.Path(args.out or _harness.default_out())
  # Named here, so that it can be reported; the benchmark creates it when it writes.
  out = out.resolve()
  cmd = [sys.executable, "-m", f"explicit_softmax.bench.{bench.MODULES[args.which]}"]
  cmd += (["--quick"] if args.quick else []) + ["--out", str(out)] + list(args.extra)
  print(f"== bench {args.which}: {' '.join(cmd[1:])}", flush=True)
  # A process of its own: the benchmarks set thread counts before importing JAX.
  status = subprocess.run(cmd, check=False).returncode
  if status:
    print(f"{PROG}: error: bench {args.which} failed with exit status {status}.",
          file=sys.stderr)
    return status
  if out.is_dir():  # not after ``-- --help``, which writes nothing
    print(f"results in {out}")
  return 0


def _cmd_demo(args) -> int:
  import explicit_softmax as es
  from explicit_softmax import data
  v = _validation.check_integer("--vocab-size", args.vocab_size, minimum=2)
  n_tokens = _validation.check_integer("--tokens", args.tokens, minimum=100)
  _validation.check_number("--seconds", args.seconds, exclusive=True)
  support = min(args.support, v)
  source = data.MarkovSource(v, order=1, zipf_exponent=1.1, support=support, seed=args.seed)
  n_test = max(n_tokens // 5, 100)
  x_train, y_train = data.context_tokens(source.sample(n_tokens, seed=args.seed + 1), 1, v)
  x_test, y_test = data.context_tokens(source.sample(n_test, seed=args.seed + 2), 1, v)
  print(f"toy language model: order-1 Markov source, V={v:,} tokens, "
        f"{support} successors per context, Zipf exponent 1.1")
  print(f"{len(y_train):,} training / {len(y_test):,} held-out next-token samples, "
        f"{v * v:,} weights\n", flush=True)

  start = time.perf_counter()
  explicit = es.fit(x_train, y_train, n_classes=v, method="cooccurrence",
                    smoothing=args.smoothing)
  explicit_seconds = time.perf_counter() - start

  zero = es.SoftmaxModel(np.zeros((v, v), np.float32), np.zeros(v, np.float32))
  with _progress.progress(total=round(args.seconds, 1), desc="adam from zero", unit="s") as bar:
    def stop(step, model, record):
      del step, model
      bar.update(round(min(record["seconds"], args.seconds) - bar.n, 1))
      return record["seconds"] >= args.seconds
    descent = es.refine(zero, x_train, y_train, method="adam", steps=10**9,
                        batch_size=args.batch_size, learning_rate=args.learning_rate,
                        callback=stop, callback_every=10, seed=args.seed)
  descent_seconds = float(descent.history.seconds[-1]) if len(descent.history.seconds) else 0.0
  steps = len(descent.history.loss)

  rows = [("explicit co-occurrence (1 call)", explicit_seconds, explicit),
          (f"adam from zero ({steps} steps)", descent_seconds, descent)]
  floor = source.entropy_rate()
  print(f"{'method':<36}{'seconds':>8}{'train CE':>11}{'held-out CE':>13}")
  for name, seconds, model in rows:
    print(f"{name:<36}{seconds:8.2f}{model.log_loss(x_train, y_train):11.4f}"
          f"{model.log_loss(x_test, y_test):13.4f}", flush=True)
  print(f"{'entropy rate of the source (floor)':<36}{'-':>8}{floor:11.4f}{floor:13.4f}")
  print(f"\ncross-entropies in nats/token; a uniform guess scores log V = {np.log(v):.4f}; "
        "a training CE below the floor is fitted sampling noise.\n"
        f"Adam: batch {args.batch_size}, learning rate {args.learning_rate}, "
        f"{args.seconds:g} s budget (compilation included).")
  _demo_ngram(x_train, y_train, x_test, y_test, v, rows, floor)
  return 0


def _demo_ngram(x_train, y_train, x_test, y_test, v: int, rows, floor: float) -> None:
  """The demo's models beside a Kneser-Ney bigram model of the same tokens, in perplexity."""
  import explicit_softmax as es
  start = time.perf_counter()
  tokens = np.concatenate([x_train.ids[:1, 0], y_train])  # the training stream
  kneser_ney = es.NgramModel.fit(tokens, order=2, vocab_size=v)
  kn_ce = -float(kneser_ney.log_prob(x_test, y_test).mean())
  seconds = time.perf_counter() - start
  print("\nheld-out perplexity (exp of the held-out CE), beside an n-gram model of the same "
        "tokens:")
  print(f"{'model':<36}{'seconds':>8}{'perplexity':>13}")
  print(f"{'Kneser-Ney bigram (es.NgramModel)':<36}{seconds:8.2f}{np.exp(kn_ce):13.2f}")
  for name, seconds, model in rows:
    print(f"{name:<36}{seconds:8.2f}{np.exp(model.log_loss(x_test, y_test)):13.2f}")
  print(f"{'entropy rate of the source (floor)':<36}{'-':>8}{np.exp(floor):13.2f}")


# -- the parser ----------------------------------------------------------------

def _add_data_args(parser) -> None:
  parser.add_argument(
      "data", nargs="+", metavar="DATA",
      help="data file (.npz, .npy, svmlight, CSV); or two .npy files X.npy y.npy")
  parser.add_argument("--labels", metavar="Y.npy", help="labels for .npy features")
  parser.add_argument("--label-column", metavar="NAME_OR_INDEX",
                      help="CSV label column, by header name or 0-based index "
                      "(never guessed: without it, a header cell label/labels/target/class/y)")


class _Parser(argparse.ArgumentParser):
  """An argparse parser whose usage errors are one line (plus exit status 2)."""

  def error(self, message):
    self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
  """The argparse parser of the ``explicit-softmax`` command."""
  from explicit_softmax import __version__
  parser = _Parser(
      prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
      description="Closed-form single-layer softmax models p(y|x) = softmax(xW + b), "
      "fitted from one pass of additive statistics.")
  parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND")
  for add in (_add_fit, _add_predict, _add_evaluate, _add_bench, _add_demo):
    add(sub)
  return parser


def _subcommand(sub, name: str, func, summary: str, description: str,
                *examples: str) -> argparse.ArgumentParser:
  """A subcommand ``name`` run by ``func``, with its examples as the epilog."""
  heading = "examples:" if len(examples) > 1 else "example:"
  parser = sub.add_parser(
      name, help=summary, formatter_class=argparse.RawDescriptionHelpFormatter,
      description=description,
      epilog="".join([heading + "\n"] + [f"  {PROG} {e}\n" for e in examples]))
  parser.set_defaults(func=func)
  return parser


def _add_fit(sub) -> None:
  """``fit DATA --out MODEL``: the closed forms, calibration and refinement."""
  fit = _subcommand(
      sub, "fit", _cmd_fit, "fit a model and save it (.npz)",
      "Fit a softmax model: by default the certified L2-regularised optimum "
      "(the exact count solution on one-hot data); --method "
      "cooccurrence/newton give the raw closed forms in one pass (optionally "
      "calibrated/refined).",
      "fit train.npz --out model.npz",
      "fit X.npy y.npy --out model.npz --method newton",
      "fit data.csv --label-column 0 --out model.npz --calibrate",
      "fit train.svm --out model.npz --refine lbfgs --steps 100")
  _add_data_args(fit)
  fit.add_argument("--out", required=True, metavar="MODEL.npz", help="where to save the model")
  fit.add_argument("--method", choices=("auto", "cooccurrence", "newton"), default="auto",
                   help="auto: the optimum (see above); or a raw closed form "
                        "(default: %(default)s)")
  fit.add_argument("--smoothing", type=float, default=0.1,
                   help="co-occurrence smoothing (default: %(default)s)")
  fit.add_argument("--ridge", type=float, default=1e-3,
                   help="relative ridge of the Newton solution (default: %(default)s)")
  fit.add_argument("--calibrate", action="store_true",
                   help="fit a temperature and class biases afterwards")
  fit.add_argument("--refine", choices=("lbfgs", "adam", "sgd"),
                   help="refine iteratively afterwards with this optimiser")
  fit.add_argument("--steps", type=int, default=50, help="refinement steps (default: %(default)s)")
  fit.add_argument("--l2", type=_l2_value, default="auto",
                   help="L2 penalty of the optimum and of --refine (on the weights) and of "
                        "--calibrate (on the bias corrections): a number >= 0, or auto "
                        "(chosen on held-out folds for --method auto, else 1/T, "
                        "scikit-learn's C=1; default: %(default)s)")
  fit.add_argument("--batch-size", type=int, default=None,
                   help="minibatch size of adam/sgd refinement (default: full batch)")
  fit.add_argument("--n-classes", type=int, default=None,
                   help="number of classes M for integer labels 0..M-1 (default: max + 1)")


def _add_predict(sub) -> None:
  """``predict MODEL DATA``: labels (and probabilities) as CSV."""
  predict = _subcommand(
      sub, "predict", _cmd_predict, "predict labels (and probabilities) as CSV",
      "Predict with a saved model; writes CSV to --out or stdout.",
      "predict model.npz test.npz", "predict model.npz test.csv --proba --out preds.csv")
  predict.add_argument("model", metavar="MODEL", help="model file written by fit")
  _add_data_args(predict)
  predict.add_argument("--out", metavar="PREDS.csv", help="output CSV (default: stdout)")
  predict.add_argument("--proba", action="store_true", help="also write class probabilities")


def _add_evaluate(sub) -> None:
  """``evaluate MODEL DATA``: cross-entropy, accuracy and gradient norm."""
  evaluate = _subcommand(
      sub, "evaluate", _cmd_evaluate, "cross-entropy, accuracy and gradient norm on labelled data",
      "Evaluate a saved model on labelled data.", "evaluate model.npz test.npz")
  evaluate.add_argument("model", metavar="MODEL", help="model file written by fit")
  _add_data_args(evaluate)


def _add_bench(sub) -> None:
  """``bench NAME``: one benchmark of ``es.bench``."""
  from explicit_softmax.bench import MODULES
  bench = _subcommand(
      sub, "bench", _cmd_bench, "run a benchmark (JSON + PNG results)",
      "Run one benchmark of explicit_softmax.bench with this Python; arguments "
      "after -- go to the benchmark itself.",
      "bench fit --quick --out results", "bench real -- --datasets iris,wine",
      "bench mnist --update-committed     # in a source checkout")
  bench.add_argument("which", choices=tuple(MODULES), help="which benchmark")
  bench.add_argument("--quick", action="store_true", help="reduced sizes")
  bench.add_argument("--out", metavar="DIR", help="results folder (default: a new folder "
                     "explicit-softmax-bench-DATE-TIME in the current directory)")
  bench.add_argument("--update-committed", action="store_true",
                     help="rewrite the results committed with a source checkout")


def _add_demo(sub) -> None:
  """``demo``: the explicit fit against Adam on a toy language model."""
  demo = _subcommand(
      sub, "demo", _cmd_demo,
      "explicit fit vs gradient descent on a toy language model (< 1 min)",
      "Samples a corpus from a Markov source with a known entropy rate, fits "
      "next-token weights in one explicit call, runs Adam from zero for a few seconds on "
      "the same data, and prints both cross-entropies against the entropy-rate floor.",
      "demo", "demo --vocab-size 500 --tokens 200000 --seed 1")
  demo.add_argument("--vocab-size", type=int, default=1000, help="V (default: %(default)s)")
  demo.add_argument("--tokens", type=int, default=300_000,
                    help="training tokens (default: %(default)s)")
  demo.add_argument("--support", type=_positive_int, default=64,
                    help="possible successors per context (default: %(default)s)")
  demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
  demo.add_argument("--smoothing", type=float, default=0.01,
                    help="co-occurrence smoothing (default: %(default)s)")
  demo.add_argument("--seconds", type=float, default=5.0,
                    help="time budget of gradient descent (default: %(default)s)")
  demo.add_argument("--batch-size", type=int, default=1024, help=argparse.SUPPRESS)
  demo.add_argument("--learning-rate", type=float, default=0.1, help=argparse.SUPPRESS)


def _one_line(err: BaseException) -> str:
  text = " ".join(str(err).split()) or type(err).__name__
  if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
    text += f": {err.filename}"
  return text


def main(argv=None) -> int:
  """Runs the command line; returns the exit status (0 on success)."""
  parser = build_parser()
  argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
  # ``bench NAME ... -- ARGS``: everything after ``--`` goes to the benchmark.
  extra = argv[argv.index("--") + 1:] if "--" in argv else []
  args = parser.parse_args(argv[:len(argv) - len(extra) - bool(extra or "--" in argv)])
  args.extra = extra
  if args.command is None:
    parser.print_help(sys.stderr)
    return 2
  try:
    return int(args.func(args) or 0)
  except BrokenPipeError:
    # The reader of stdout went away (e.g. `| head`): stop quietly, as the
    # Python documentation recommends, without a second error at shutdown.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1
  except (ValueError, OSError) as err:  # FileNotFoundError is an OSError
    print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print(f"{PROG}: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
