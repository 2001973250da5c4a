"""The real-data benchmark's data sets: scikit-learn's bundled sets (standardised and
raw), MNIST, tiny Shakespeare's speakers, and two seeded synthetic sets (badly scaled
correlated features; a 200,000-word bag of words) that ``es.bench.real``
runs."""

from __future__ import annotations

import collections
import pathlib

import numpy as np

from explicit_softmax.bench import _harness


DATASETS = ("iris", "wine", "breast_cancer", "digits", "breast_cancer_raw", "digits_raw",
            "badly_scaled", "mnist", "shakespeare", "wide_bow")
QUICK = ("iris", "wine", "digits", "breast_cancer_raw")
SKLEARN_SETS = ("iris", "wine", "breast_cancer", "digits")
RAW_SETS = {"breast_cancer_raw": "breast_cancer", "digits_raw": "digits"}
N_SPEAKERS = 10
# The synthetic sets: training rows (after the stratified 75/25 split), features, classes.
BADLY_SCALED = {"train_rows": 20_000, "features": 200, "classes": 10, "factors": 20,
                "signal": 8.0, "log10_scale_range": 3.0, "seed": 0}
WIDE_BOW = {"train_rows": 200_000, "vocab": 200_000, "classes": 20, "tokens_per_row": 3,
            "zipf_exponent": 1.1, "seed": 0}
TEST_FRACTION = 0.25


class Skip(Exception):
  """A data set that cannot run here (missing files); the message says why."""


def _default_text() -> pathlib.Path:
  try:
    return _harness.tiny_shakespeare()
  except FileNotFoundError:
    return pathlib.Path(_harness.TEXT_NAME)  # reported as not found, and skipped


def speeches(text: str, n_speakers: int = N_SPEAKERS) -> tuple[list[str], list[str]]:
  """The speeches of the ``n_speakers`` most frequent speakers of a play corpus.

  Blocks are separated by blank lines; a block whose first line ends with ``:``
  is a speech by that name, its other lines (joined by spaces) the document.
  Frequency is the number of speeches (ties keep the order of first appearance).

  Returns:
    ``(documents, speakers)``, in corpus order.
  """
  blocks = text.replace("\r\n", "\n").split("\n\n")
  pairs = []
  for block in blocks:
    lines = [line.strip() for line in block.strip("\n").split("\n")]
    if len(lines) >= 2 and lines[0].endswith(":") and len(lines[0]) > 1:
      pairs.append((lines[0][:-1], " ".join(line for line in lines[1:] if line)))
  top = {name for name, _ in collections.Counter(n for n, _ in pairs).most_common(n_speakers)}
  kept = [(name, doc) for name, doc in pairs if name in top]
  return [doc for _, doc in kept], [name for name, _ in kept]


def _rows_for(train_rows: int) -> int:
  """Rows to draw so that a 75/25 split (``train_test_split`` rounds the test part up)
  leaves exactly ``train_rows`` for training."""
  t = int(np.ceil(train_rows / (1 - TEST_FRACTION)))
  while t - int(np.ceil(TEST_FRACTION * t)) < train_rows:
    t += 1
  return t


def _sample_softmax(rng, logits: np.ndarray) -> np.ndarray:
  """One label per row drawn from ``softmax(logits)`` (the Gumbel-max trick)."""
  return np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)


def badly_scaled(train_rows: int = BADLY_SCALED["train_rows"],
                 n_features: int = BADLY_SCALED["features"],
                 n_classes: int = BADLY_SCALED["classes"],
                 factors: int = BADLY_SCALED["factors"],
                 signal: float = BADLY_SCALED["signal"],
                 log10_scale_range: float = BADLY_SCALED["log10_scale_range"],
                 seed: int = BADLY_SCALED["seed"]) -> tuple[np.ndarray, np.ndarray, dict]:
  """Correlated Gaussian features from a log-linear source, then badly scaled.

  Latents ``z = F L + 0.5 E`` (``F``: ``factors`` standard normal factors, ``L`` their
  standard normal loadings, ``E`` standard normal noise; each column then standardised)
  are strongly correlated. Labels are drawn from ``softmax(z W + b)`` with
  ``W ~ N(0, signal^2 / n_features)`` and ``b ~ N(0, 1/4)`` (``signal = 8``: the source's
  own log loss is about 0.39 nats, its accuracy about 85%). The features a user would get are
  ``x = z s + o`` with per-feature scales ``s = 10^U(-r, r)`` and offsets
  ``o = 10^U(-r, r) N(0, 1)`` (``r = log10_scale_range``), raw, not standardised.

  Returns:
    ``(x, y, info)`` for all rows (to be split 75/25); ``info`` has the source's own
    log loss on these labels (the floor of any fitted model's) and the scales' range.
  """
  rng = np.random.default_rng(seed)
  t = _rows_for(train_rows)
  z = rng.standard_normal((t, factors)) @ rng.standard_normal((factors, n_features))
  z += 0.5 * rng.standard_normal((t, n_features))
  z = (z - z.mean(axis=0)) / z.std(axis=0)
  weights = signal * rng.standard_normal((n_features, n_classes)) / np.sqrt(n_features)
  bias = 0.5 * rng.standard_normal(n_classes)
  logits = z @ weights + bias
  y = _sample_softmax(rng, logits)
  scales = 10.0 ** rng.uniform(-log10_scale_range, log10_scale_range, n_features)
  offsets = 10.0 ** rng.uniform(-log10_scale_range, log10_scale_range, n_features) \
      * rng.standard_normal(n_features)
  x = z * scales + offsets
  # The source's own log loss on these labels: the floor no fitted model can beat.
  log_p = logits - logits.max(axis=1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
  info = {"source_log_loss_all_rows": float(-log_p[np.arange(t), y].mean()),
          "scales_log10_range": [float(np.log10(scales).min()), float(np.log10(scales).max())]}
  return x, y, info


def wide_bag_of_words(train_rows: int = WIDE_BOW["train_rows"], vocab: int = WIDE_BOW["vocab"],
                      n_classes: int = WIDE_BOW["classes"],
                      tokens_per_row: int = WIDE_BOW["tokens_per_row"],
                      zipf_exponent: float = WIDE_BOW["zipf_exponent"],
                      seed: int = WIDE_BOW["seed"]):
  """A sparse bag of words (CSR counts) from a log-linear source over a large vocabulary.

  Each row holds ``tokens_per_row`` word ids drawn from a Zipf law over ``vocab``
  words (``p(k) ~ (k + 1)^-zipf_exponent``; repeated words count twice); its label is
  drawn from ``softmax(sum_words W[word] + b)``, ``W ~ N(0, 1)``, ``b ~ N(0, 1/4)``.

  Returns:
    ``(x, y, info)``: the (rows, vocab) CSR matrix of counts, labels, and the
    source's own log loss on them.
  """
  import scipy.sparse
  rng = np.random.default_rng(seed)
  t = _rows_for(train_rows)
  p = 1.0 / np.arange(1, vocab + 1) ** zipf_exponent
  ids = rng.choice(vocab, size=(t, tokens_per_row), p=p / p.sum())
  weights = rng.standard_normal((vocab, n_classes))
  bias = 0.5 * rng.standard_normal(n_classes)
  logits = weights[ids].sum(axis=1) + bias
  y = _sample_softmax(rng, logits)
  rows = np.repeat(np.arange(t), tokens_per_row)
  x = scipy.sparse.csr_matrix((np.ones(rows.size), (rows, ids.ravel())), shape=(t, vocab))
  x.sum_duplicates()
  log_p = logits - logits.max(axis=1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
  info = {"source_log_loss_all_rows": float(-log_p[np.arange(t), y].mean()),
          "words_seen": int(np.unique(ids).size)}
  return x, y, info


def load(name: str, args) -> tuple:
  """``(x_train, y_train, x_test, y_test, info)`` of one data set; raises Skip."""
  from sklearn.model_selection import train_test_split
  split = "stratified 75/25, seed 0"
  if name in RAW_SETS:
    from sklearn import datasets
    x, y = getattr(datasets, f"load_{RAW_SETS[name]}")(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_FRACTION, stratify=y,
                                              random_state=0)
    info = {"source": f"sklearn.datasets.load_{RAW_SETS[name]}", "split": split,
            "features": "raw (not standardised)"}
    return x_tr, y_tr, x_te, y_te, info
  if name in ("badly_scaled", "wide_bow"):
    spec = BADLY_SCALED if name == "badly_scaled" else WIDE_BOW
    x, y, info = (badly_scaled() if name == "badly_scaled" else wide_bag_of_words())
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_FRACTION, stratify=y,
                                              random_state=0)
    features = ("raw: correlated Gaussian latents times 10^U(-3,3) plus offsets"
                if name == "badly_scaled" else
                f"CSR counts of {spec['tokens_per_row']} Zipf-distributed words a row")
    info = {"source": f"seeded log-linear source ({name}, generated here)", "split": split,
            "features": features, "generator": dict(spec), **info}
    return x_tr, y_tr, x_te, y_te, info
  if name in SKLEARN_SETS:
    from sklearn import datasets
    from sklearn.preprocessing import StandardScaler
    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_FRACTION, stratify=y,
                                              random_state=0)
    scaler = StandardScaler().fit(x_tr)
    info = {"source": f"sklearn.datasets.load_{name}", "split": split,
            "features": "StandardScaler fitted on the training part"}
    return scaler.transform(x_tr), y_tr, scaler.transform(x_te), y_te, info
  if name == "mnist":
    from explicit_softmax import data
    try:
      x, y = data.load_mnist("train")
      x_te, y_te = data.load_mnist("test")
    except FileNotFoundError as err:
      raise Skip(f"MNIST files not found ({str(err).splitlines()[0]})") from None
    total = len(x)
    if args.mnist_rows:
      x, y = x[:args.mnist_rows], y[:args.mnist_rows]
    prep = lambda a: (a.reshape(len(a), -1).astype(np.float32) / 255)  # noqa: E731
    info = {"source": "explicit_softmax.data.load_mnist", "split": "official train / test",
            "features": "pixels / 255, float32", "train_rows_available": int(total),
            "train_rows_used": int(len(x))}
    return prep(x), y, prep(x_te), y_te, info
  if name == "shakespeare":
    from sklearn.feature_extraction.text import CountVectorizer
    path = pathlib.Path(args.text) if args.text else _default_text()
    if not path.is_file():
      raise Skip(f"text corpus {str(path)!r} not found (pass --text PATH)")
    docs, speakers = speeches(path.read_text(encoding="utf-8"), N_SPEAKERS)
    d_tr, d_te, y_tr, y_te = train_test_split(docs, np.asarray(speakers), test_size=0.25,
                                              stratify=speakers, random_state=0)
    vectorizer = CountVectorizer().fit(d_tr)
    info = {"source": str(path), "split": "stratified 75/25, seed 0",
            "features": "CountVectorizer() counts fitted on the training part (sparse)",
            "speakers": sorted(set(speakers)), "documents": len(docs)}
    return vectorizer.transform(d_tr), y_tr, vectorizer.transform(d_te), y_te, info
  raise ValueError(f"unknown data set {name!r}; choose from {DATASETS}.")


def _plain(value):
  """A JSON value for a hyperparameter (numbers, strings, None; anything else as repr)."""
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if isinstance(value, np.generic):
    return value.item()
  return repr(value)


def _nonnegative(x) -> bool:
  values = x.data if hasattr(x, "tocsr") else x
  return bool(values.size == 0 or values.min() >= 0)
