"""Models of the paper's experiments, as plain flax.linen modules.

* :class:`Conv4`: the 4-block conv net of Finn et al. (2017) used by MAML,
  Reptile and iMAML: Omniglot (64 filters, stride-2 3x3 convs) and
  Mini-ImageNet (32 filters, stride-1 convs with 2x2 max-pool).
* :class:`MLP`: a small regression network for toy task families.

Batch norm is *transductive*: it always normalises with the statistics of the
batch it is given (support at adaptation, query at evaluation) and keeps no
running averages, so no state leaks between tasks. The meta-parameters are
just the ``params`` collection; use :func:`init_params` and :func:`apply_fn`.
Any flax module (or any ``apply_fn(params, x)``) works with the library.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

PyTree = Any


class Conv4(nn.Module):
  """Four [3x3 conv, batch norm, ReLU] blocks, then a linear classifier.

  Attributes:
    num_classes: outputs (N of the N-way tasks).
    filters: channels per conv (64 Omniglot, 32 Mini-ImageNet).
    max_pool: 2x2 max-pool after each block (Mini-ImageNet) instead of
      stride-2 convs (Omniglot).
  """
  num_classes: int
  filters: int = 64
  max_pool: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4:
      raise ValueError(f"Conv4 expects images of shape (batch, height, width, "
                       f"channels), got shape {x.shape}.")
    for _ in range(4):
      x = nn.Conv(self.filters, (3, 3),
                  strides=(1, 1) if self.max_pool else (2, 2),
                  padding="SAME")(x)
      x = nn.BatchNorm(use_running_average=False, momentum=0.0)(x)
      x = nn.relu(x)
      if self.max_pool:
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(self.num_classes)(x)


def omniglot_conv4(num_classes: int) -> Conv4:
  """The Omniglot model: 64 filters, stride-2 convs (Finn et al. 2017)."""
  return Conv4(num_classes, filters=64, max_pool=False)


def mini_imagenet_conv4(num_classes: int) -> Conv4:
  """The Mini-ImageNet model: 32 filters, 2x2 max-pool (Finn et al. 2017)."""
  return Conv4(num_classes, filters=32, max_pool=True)


class MLP(nn.Module):
  """A ReLU multilayer perceptron (40-40 hidden units for sinusoids)."""
  features: Sequence[int] = (40, 40)
  outputs: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for width in self.features:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.outputs)(x)


def init_params(model: nn.Module, key: jax.Array, x: jax.Array) -> PyTree:
  """The meta-parameters of ``model``: its ``params`` collection only."""
  return model.init(key, x)["params"]


def apply_fn(model: nn.Module) -> Callable[[PyTree, jax.Array], jax.Array]:
  """``f(params, x) -> outputs``, pure, with transductive batch norm.

  Batch-norm statistics are computed from ``x`` and the updated running
  averages flax produces are discarded: nothing is carried between calls.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import imaml_jax
    >>> model = imaml_jax.omniglot_conv4(num_classes=5)
    >>> x = jnp.ones((10, 28, 28, 1))
    >>> params = imaml_jax.init_params(model, jax.random.key(0), x)
    >>> imaml_jax.apply_fn(model)(params, x).shape
    (10, 5)
  """

  def f(params: PyTree, x: jax.Array) -> jax.Array:
    out, _ = model.apply({"params": params}, x, mutable=["batch_stats"])
    return out

  return f
