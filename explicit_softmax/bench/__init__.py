"""The benchmarks: each measures a claim of the library against its peers.

Run one with ``explicit-softmax bench NAME [--quick] [--out DIR]`` (also from an
installed wheel; the ``bench`` extra brings matplotlib, scikit-learn and
psutil). Each writes JSON (with machine facts and library versions) and a PNG
plot; :mod:`explicit_softmax.bench.report` turns the committed results into the
README's and the documentation's tables. :mod:`explicit_softmax.bench._harness`
holds what they share.
"""

# Command-line name -> module of this package.
MODULES = {
    "fit": "fit",                  # es.fit against a bare X^T Y on MNIST-sized data
    "mnist": "mnist",              # explicit, calibrated, refined, GD grids, scikit-learn
    "lm": "lm",                    # synthetic sources and tiny Shakespeare, K = 1..4
    "ngram": "ngram",              # Kneser-Ney n-gram models on tiny Shakespeare words, chars
    "init": "init",                # explicit initialisation of an MLP (Flax, PyTorch)
    "deep": "deep",                # CNN, transfer, char transformer vs LSUV and a probe
    "real": "real",                # the default estimator against scikit-learn
    "dask": "dask_cluster",        # passes and throughput on a Dask LocalCluster
    "large-vocab": "large_vocab",  # V = 50,000 without a dense matrix
    "memory": "memory",            # streaming memory
    "scaling": "scaling",          # sharded statistics over devices
}
