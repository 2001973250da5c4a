"""Explicit initialisation of deeper Flax and PyTorch models.

The framework adapters live in submodules that import their framework only
when imported themselves, so ``import explicit_softmax`` works without either::

    from explicit_softmax.adapters import flax as es_flax    # needs flax
    from explicit_softmax.adapters import torch as es_torch  # needs torch

Both offer the same operations:

* ``init_head``: fit explicit weights on the features that reach a model's last
  dense layer (streamed in batches through the model's own forward) and write
  them into it in place;
* ``init_layerwise``: fit every dense layer of an MLP in turn (see
  :func:`layerwise_init` for the scheme);
* ``ResidualHead``: logits ``x W_explicit + x dW + b`` with a zero-initialised
  trainable correction ``dW``;
* ``init_embedding``: write the SVD factors of a token model
  (:func:`svd_factors`) into an embedding table and an output layer.

The framework-free math is importable from here.
"""

from explicit_softmax.adapters._common import (
    ClassClusters,
    EmbeddingFactors,
    centred_weights,
    class_clusters,
    fit_explicit,
    hidden_weights,
    layerwise_init,
    svd_factors,
)

__all__ = [
    "ClassClusters",
    "EmbeddingFactors",
    "centred_weights",
    "class_clusters",
    "fit_explicit",
    "hidden_weights",
    "layerwise_init",
    "svd_factors",
]
