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


class PatchConv(nn.Module):
  """A 2-D convolution with "SAME" padding written as patches @ kernel.

  The padded input is cut into ``k * k`` strided slices, concatenated on the
  channel axis and multiplied by the kernel reshaped to ``(k * k * C_in,
  C_out)``: one matrix product. It computes what ``flax.linen.Conv`` does, with
  the same parameter shapes, but ``vmap`` over tasks turns it into a batched
  matrix product rather than a grouped convolution, which XLA runs several
  times faster on CPU for these tiny images.
  """
  features: int
  kernel_size: int = 3
  stride: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, s = self.kernel_size, self.stride
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (k, k, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    pads = []
    for size in x.shape[1:3]:   # "SAME": extra padding goes after, as in XLA
      out = -(-size // s)
      total = max((out - 1) * s + k - size, 0)
      pads.append((total // 2, total - total // 2, out))
    x = jnp.pad(x, ((0, 0), pads[0][:2], pads[1][:2], (0, 0)))
    (oh, ow) = pads[0][2], pads[1][2]
    patches = jnp.concatenate(
        [x[:, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s, :]
         for i in range(k) for j in range(k)], axis=-1)
    return patches @ kernel.reshape(-1, self.features) + bias


class Conv4(nn.Module):
  """Four [3x3 conv, batch norm, ReLU] blocks, then a linear classifier.

  Attributes:
    num_classes: outputs (N of the N-way tasks).
    filters: channels per conv (64 Omniglot, 32 Mini-ImageNet).
    max_pool: 2x2 max-pool after each block (Mini-ImageNet) instead of
      stride-2 convs (Omniglot).
    conv: ``"patches"`` (:class:`PatchConv`, fastest under ``vmap`` on CPU) or
      ``"lax"`` (``flax.linen.Conv``); same parameters, same function.
  """
  num_classes: int
  filters: int = 64
  max_pool: bool = False
  conv: str = "patches"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4:
      raise ValueError(f"Conv4 expects images of shape (batch, height, width, "
                       f"channels), got shape {x.shape}.")
    if self.conv not in ("patches", "lax"):
      raise ValueError(f"conv must be 'patches' or 'lax', got {self.conv!r}.")
    stride = 1 if self.max_pool else 2
    for i in range(4):
      if self.conv == "patches":
        x = PatchConv(self.filters, 3, stride, name=f"Conv_{i}")(x)
      else:
        x = nn.Conv(self.filters, (3, 3), strides=(stride, stride),
                    padding="SAME", name=f"Conv_{i}")(x)
      x = nn.BatchNorm(use_running_average=False, momentum=0.0)(x)
      x = nn.relu(x)
      if self.max_pool:
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(self.num_classes)(x)


def omniglot_conv4(num_classes: int) -> Conv4:
  """The Omniglot model: 64 filters, stride-2 convs (Finn et al. 2017).

  Args:
    num_classes: N of the N-way tasks.

  Returns:
    A :class:`Conv4` for 28x28 grey images.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import imaml_jax
    >>> params = imaml_jax.init_params(imaml_jax.omniglot_conv4(5),
    ...                                jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    >>> params["Dense_0"]["kernel"].shape   # 2x2x64 features after 4 strides
    (256, 5)
  """
  return Conv4(num_classes, filters=64, max_pool=False)


def mini_imagenet_conv4(num_classes: int) -> Conv4:
  """The Mini-ImageNet model: 32 filters, 2x2 max-pool (Finn et al. 2017).

  Args:
    num_classes: N of the N-way tasks.

  Returns:
    A :class:`Conv4` for 84x84 RGB images.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import imaml_jax
    >>> params = imaml_jax.init_params(imaml_jax.mini_imagenet_conv4(5),
    ...                                jax.random.key(0), jnp.ones((1, 84, 84, 3)))
    >>> params["Dense_0"]["kernel"].shape   # 5x5x32 features after 4 pools
    (800, 5)
  """
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
  """The meta-parameters of ``model``: its ``params`` collection only.

  Args:
    model: a flax module.
    key: PRNG key of the initialisation.
    x: an input batch; only its shape matters.

  Returns:
    The ``params`` pytree (batch-norm running statistics are not kept: batch
    norm is transductive, see :func:`apply_fn`).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import imaml_jax
    >>> params = imaml_jax.init_params(imaml_jax.MLP((40, 40)),
    ...                                jax.random.key(0), jnp.zeros((1, 1)))
    >>> [params[f"Dense_{i}"]["kernel"].shape for i in range(3)]
    [(1, 40), (40, 40), (40, 1)]
  """
  # Jitted: one small compile instead of the forward pass op by op (seconds
  # for a Conv4 on CPU); the same values.
  return jax.jit(model.init)(key, x)["params"]


def xavier_uniform_init(params: PyTree, key: jax.Array, gain: float = 1.0,
                        bias_range: tuple[float, float] = (0.0, 0.0)
                        ) -> PyTree:
  r"""``params`` with every kernel redrawn Xavier-uniform and biases uniform.

  Kernels (leaves named ``kernel``: convolutions and dense layers) are drawn
  from :math:`U[-a, a]`, :math:`a = \mathrm{gain}\sqrt{6 / (\mathrm{fan_{in}}
  + \mathrm{fan_{out}})}` (Glorot and Bengio 2010, with the receptive field
  in both fans as in PyTorch's ``xavier_uniform_``); their biases from
  :math:`U[\mathrm{bias\_range}]`. Normalisation parameters (any leaf under
  a module whose name starts with ``BatchNorm``) are kept. The authors'
  public iMAML code initialises its Conv4 this way with gain 1.73 and biases
  in [0, 0.05].

  Args:
    params: a parameter pytree (flax ``params`` collection).
    key: PRNG key of the new values.
    gain: the Xavier gain.
    bias_range: ``(low, high)`` of the uniform biases.

  Returns:
    A pytree of the same structure.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import imaml_jax
    >>> model = imaml_jax.omniglot_conv4(num_classes=5)
    >>> params = imaml_jax.init_params(model, jax.random.key(0),
    ...                                jnp.ones((2, 28, 28, 1)))
    >>> new = imaml_jax.xavier_uniform_init(params, jax.random.key(1), 1.73,
    ...                                     (0.0, 0.05))
    >>> a = 1.73 * (6 / (9 * 64 + 9 * 64)) ** 0.5
    >>> bool(abs(new["Conv_1"]["kernel"]).max() <= a), float(
    ...     new["BatchNorm_1"]["scale"].mean())
    (True, 1.0)
  """
  init = nn.initializers.variance_scaling(gain ** 2, "fan_avg", "uniform")
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  keys = jax.random.split(key, len(leaves))
  out = []
  for (path, leaf), k in zip(leaves, keys):
    names = [getattr(p, "key", str(p)) for p in path]
    if any(str(n).startswith("BatchNorm") for n in names):
      out.append(leaf)
    elif names[-1] == "kernel":
      out.append(init(k, leaf.shape, leaf.dtype))
    elif names[-1] == "bias":
      out.append(jax.random.uniform(k, leaf.shape, leaf.dtype, *bias_range))
    else:
      out.append(leaf)
  return jax.tree_util.tree_unflatten(treedef, out)


def apply_fn(model: nn.Module) -> Callable[[PyTree, jax.Array], jax.Array]:
  """``f(params, x) -> outputs``, pure, with transductive batch norm.

  Batch-norm statistics are computed from ``x`` and the updated running
  averages flax produces are discarded: nothing is carried between calls.

  Args:
    model: a flax module (e.g. :func:`omniglot_conv4`).

  Returns:
    ``f(params, x) -> outputs``.

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
