"""Explicit initialisation of deeper Flax and PyTorch models.

The framework adapters live in submodules that import their framework only
when imported themselves, so ``import explicit_softmax`` works without either:

```python
from explicit_softmax.adapters import flax as es_flax    # needs flax
from explicit_softmax.adapters import torch as es_torch  # needs torch
```

Both offer the same operations:

* ``init_head`` ([PyTorch][explicit_softmax.adapters.torch.init_head],
  [Flax][explicit_softmax.adapters.flax.init_head]): fit explicit weights on the
  features that reach a model's last dense layer (streamed in batches through the
  model's own forward) and write them into it in place. It also takes sequence
  models: a head applied at every position (features (B, T, N), labels (B, T)) is
  fitted on all positions; with ``calibrate=True`` a temperature and class biases
  follow the closed form;
* ``init_layerwise`` ([PyTorch][explicit_softmax.adapters.torch.init_layerwise],
  [Flax][explicit_softmax.adapters.flax.init_layerwise]): fit every dense layer of
  an MLP in turn (see [`layerwise_init`][explicit_softmax.adapters.layerwise_init]
  for the scheme);
* ``ResidualHead`` ([PyTorch][explicit_softmax.adapters.torch.ResidualHead],
  [Flax][explicit_softmax.adapters.flax.ResidualHead]): logits
  ``x W_explicit + x dW + b`` with a zero-initialised trainable correction ``dW``.
  Under plain Adam or SGD (no weight decay), training ``dW`` with ``W_explicit``
  frozen follows exactly the trajectory of training ``W`` itself from
  ``W_explicit`` (the updates depend only on the gradient, which is the same). The
  split matters with weight decay on ``dW`` (it then pulls towards the explicit
  solution instead of towards zero), with separate learning rates, or to keep and
  inspect the learned correction;
* ``init_embedding`` ([PyTorch][explicit_softmax.adapters.torch.init_embedding],
  [Flax][explicit_softmax.adapters.flax.init_embedding]): write the SVD factors of
  a token model ([`svd_factors`][explicit_softmax.adapters.svd_factors]) into an
  embedding table and an output layer;
* ``new_head`` ([PyTorch][explicit_softmax.adapters.torch.new_head],
  [Flax][explicit_softmax.adapters.flax.new_head]): replace the head of a
  pretrained network by an explicit head for new classes, touching no other
  parameter (transfer).

PyTorch only, for transformers:
[`layer_inputs`][explicit_softmax.adapters.torch.layer_inputs] (what any submodule
receives in the model's forward) and
[`init_value_output`][explicit_softmax.adapters.torch.init_value_output] (attention
value/output projections fitted so each attended position carries a given vector,
e.g. its token's vote for the next token from
[`context_bag_weights`][explicit_softmax.adapters.context_bag_weights]). Flax only:
[`explicit_init`][explicit_softmax.adapters.flax.explicit_init] (explicit weights as
a layer's initializer) and [`init_linen_head`][explicit_softmax.adapters.flax.init_linen_head]
(Linen parameter trees). See ``docs/deep_models.md``.

Both adapters run one implementation, so they find heads, check inputs, fit and
write alike; they differ only in how they read features out of a model and write
a layer. The framework-free math (fitting a layer from its inputs, the layer-wise
scheme, SVD factors, context bags and value/output maps) is importable from here.
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
