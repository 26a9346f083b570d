"""Task losses L(params; D) that know their model outputs.

A task loss here is a plain callable ``loss(params, batch) -> scalar`` (any such
function works with the rest of the library). The ones built here are also
split as ``output_loss(predict(params, batch.x), batch)``, which the
Gauss-Newton system of :mod:`imaml_jax.implicit` needs, and report metrics.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from imaml_jax.tasks import Batch

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class SupervisedLoss:
  """``loss(params, batch) = output_loss(apply_fn(params, batch.x), batch.y)``.

  Attributes:
    apply_fn: ``apply_fn(params, x) -> outputs``.
    kind: ``"cross_entropy"`` (integer labels) or ``"mse"``.
  """
  apply_fn: ApplyFn
  kind: str = "cross_entropy"

  def __post_init__(self):
    if self.kind not in ("cross_entropy", "mse"):
      raise ValueError(f"kind must be 'cross_entropy' or 'mse', got "
                       f"{self.kind!r}.")

  def predict(self, params: PyTree, batch: Batch) -> jax.Array:
    return self.apply_fn(params, batch.x)

  def output_loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
    """Mean loss of ``outputs`` against ``batch.y`` (convex in ``outputs``)."""
    if self.kind == "mse":
      return jnp.mean(jnp.sum((outputs - batch.y) ** 2, axis=-1))
    check_labels(batch.y, outputs.shape[-1])
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        outputs, batch.y))

  def __call__(self, params: PyTree, batch: Batch) -> jax.Array:
    return self.output_loss(self.predict(params, batch), batch)

  def metrics(self, params: PyTree, batch: Batch) -> dict[str, jax.Array]:
    """Loss, and accuracy for classification."""
    outputs = self.predict(params, batch)
    out = {"loss": self.output_loss(outputs, batch)}
    if self.kind == "cross_entropy":
      out["accuracy"] = jnp.mean(jnp.argmax(outputs, -1) == batch.y)
    return out


def check_labels(labels: jax.Array, num_classes: int) -> None:
  """Raises ``ValueError`` for non-integer labels or labels outside [0, N).

  Values can only be checked outside ``jit``; traced labels are checked for
  dtype only (the episode samplers produce labels 0..N-1 by construction).
  """
  if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
    raise ValueError(f"Classification labels must be integers, got dtype "
                     f"{jnp.result_type(labels)}.")
  if isinstance(labels, jax.core.Tracer):
    return
  lo, hi = int(jnp.min(labels)), int(jnp.max(labels))
  if lo < 0 or hi >= num_classes:
    raise ValueError(f"Labels must lie in [0, {num_classes}) for a model with "
                     f"{num_classes} outputs; got labels in [{lo}, {hi}].")


def cross_entropy_loss(apply_fn: ApplyFn) -> SupervisedLoss:
  r"""Mean softmax cross-entropy of a classifier on a :class:`Batch`.

  .. math:: L(\theta; D) = -\frac{1}{|D|}\sum_{(x, y) \in D} \log
            \mathrm{softmax}(f_\theta(x))_y

  Args:
    apply_fn: ``apply_fn(params, x) -> logits`` (last axis = classes).

  Returns:
    A :class:`SupervisedLoss`, callable as ``loss(params, batch)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = imaml_jax.cross_entropy_loss(lambda w, x: x @ w)
    >>> batch = imaml_jax.Batch(x=jnp.eye(2), y=jnp.array([0, 1]))
    >>> round(float(loss(jnp.zeros((2, 2)), batch)), 4)  # log 2
    0.6931
  """
  return SupervisedLoss(apply_fn, "cross_entropy")


def mse_loss(apply_fn: ApplyFn) -> SupervisedLoss:
  r"""Mean squared error of a regressor on a :class:`Batch`.

  .. math:: L(\theta; D) = \frac{1}{|D|}\sum_{(x, y) \in D}\|f_\theta(x) - y\|^2

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = imaml_jax.mse_loss(lambda w, x: x * w)
    >>> batch = imaml_jax.Batch(x=jnp.ones((4, 1)), y=jnp.full((4, 1), 3.0))
    >>> float(loss(1.0, batch))
    4.0
  """
  return SupervisedLoss(apply_fn, "mse")
