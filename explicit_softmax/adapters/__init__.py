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
  [`layerwise_init`][explicit_softmax.adapters._layerwise.layerwise_init] for the scheme);
* ``ResidualHead``: logits ``x W_explicit + x dW + b`` with a zero-initialised
  trainable correction ``dW``. Under plain Adam or SGD (no weight decay),
  training ``dW`` with ``W_explicit`` frozen follows exactly the trajectory of
  training ``W`` itself from ``W_explicit`` (the updates depend only on the
  gradient, which is the same). The split matters with weight decay on ``dW``
  (it then pulls towards the explicit solution instead of towards zero), with
  separate learning rates, or to keep and inspect the learned correction;
* ``init_embedding``: write the SVD factors of a token model
  ([`svd_factors`][explicit_softmax.adapters._tokens.svd_factors]) into an embedding table and an
  output layer;
* ``new_head``: replace the head of a pretrained network by an explicit head
  for new classes, touching no other parameter (transfer);
* ``init_head`` also takes sequence models: a head applied at every position
  (features (B, T, N), labels (B, T)) is fitted on all positions; with
  ``calibrate=True`` a temperature and class biases follow the closed form.

PyTorch only, for transformers: ``layer_inputs`` (what any submodule receives in
the model's forward) and ``init_value_output`` (attention value/output
projections fitted so each attended position carries a given vector, e.g. its
token's vote for the next token from ``context_bag_weights``). See
``docs/deep_models.md``.

Both adapters run one implementation (``adapters/_common.py``); they only
read features out of a model and write layers (``adapters/_framework.py``).
The framework-free math is importable from here.
"""

from explicit_softmax.adapters._fit import fit_explicit
from explicit_softmax.adapters._layerwise import (
    ClassClusters,
    class_clusters,
    hidden_weights,
    layerwise_init,
)
from explicit_softmax.adapters._tokens import (
    EmbeddingFactors,
    balanced_factors,
    centred_weights,
    context_bag_weights,
    ridge_map,
    svd_factors,
    value_output_weights,
)

__all__ = [
    "ClassClusters",
    "EmbeddingFactors",
    "balanced_factors",
    "centred_weights",
    "class_clusters",
    "context_bag_weights",
    "fit_explicit",
    "hidden_weights",
    "layerwise_init",
    "ridge_map",
    "svd_factors",
    "value_output_weights",
]
