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
import numpy as np
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


def split_loss(loss_fn: Callable[[PyTree, PyTree], jax.Array],
               predict_fn: Callable[[PyTree, PyTree], jax.Array] | None = None,
               output_loss_fn: Callable[[jax.Array, PyTree], jax.Array]
               | None = None):
  """``(predict, output_loss)`` with ``loss_fn = output_loss(predict(.), .)``.

  Explicit functions win; else the loss's own ``predict`` and ``output_loss``
  (the losses of this module have them). Raises ``ValueError`` naming the loss
  when neither is there: Gauss-Newton curvature needs the split.
  """
  predict = predict_fn or getattr(loss_fn, "predict", None)
  output_loss = output_loss_fn or getattr(loss_fn, "output_loss", None)
  if predict is None or output_loss is None:
    raise ValueError(
        "Gauss-Newton curvature needs the loss split as output_loss(predict("
        "params, batch), batch): pass predict_fn and output_loss_fn, or use a "
        "loss from imaml_jax.losses (cross_entropy_loss, mse_loss); got "
        f"loss_fn={loss_fn!r}.")
  return predict, output_loss


def gauss_newton_product(predict: Callable[[PyTree, PyTree], jax.Array],
                         output_loss: Callable[[jax.Array, PyTree], jax.Array],
                         params: PyTree, batch: PyTree
                         ) -> Callable[[PyTree], PyTree]:
  r"""The generalised Gauss-Newton product :math:`v \mapsto J^\top H_o J v`.

  :math:`J` is the Jacobian of ``predict(., batch)`` at ``params`` and
  :math:`H_o` the Hessian of ``output_loss(., batch)`` at the outputs
  (Schraudolph 2002). The model is linearised once; each product then costs a
  forward and a backward pass through the linearisation. For a loss convex in
  the outputs the matrix is positive semi-definite.

  Args:
    predict: ``predict(params, batch) -> outputs``.
    output_loss: ``output_loss(outputs, batch) -> scalar``.
    params: where the matrix is taken.
    batch: the data.

  Returns:
    ``matvec(v) -> J^T H_o J v``, ``v`` shaped like ``params``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = imaml_jax.mse_loss(lambda w, x: x @ w)   # J = x, H_o = 2 I / n
    >>> batch = imaml_jax.Batch(x=jnp.eye(2), y=jnp.zeros((2, 1)))
    >>> mv = imaml_jax.gauss_newton_product(loss.predict, loss.output_loss,
    ...                                     jnp.ones((2, 1)), batch)
    >>> mv(jnp.ones((2, 1))).ravel().tolist()
    [1.0, 1.0]

  References:
    Schraudolph, "Fast Curvature Matrix-Vector Products for Second-Order
    Gradient Descent", Neural Computation 2002; Martens, "Deep learning via
    Hessian-free optimization", ICML 2010.
  """
  outputs, jvp_fn = jax.linearize(lambda p: predict(p, batch), params)
  vjp_fn = jax.linear_transpose(jvp_fn, params)
  output_grad = lambda o: jax.grad(output_loss)(o, batch)

  def matvec(v):
    ho_jv = jax.jvp(output_grad, (outputs,), (jvp_fn(v),))[1]
    return vjp_fn(ho_jv)[0]

  return matvec


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
  values = np.asarray(labels)   # numpy, so nothing is traced inside loops
  lo, hi = int(values.min()), int(values.max())
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

  Args:
    apply_fn: ``apply_fn(params, x) -> predictions`` of shape ``(n, outputs)``.

  Returns:
    A :class:`SupervisedLoss`, callable as ``loss(params, batch)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = imaml_jax.mse_loss(lambda w, x: x * w)
    >>> batch = imaml_jax.Batch(x=jnp.ones((4, 1)), y=jnp.full((4, 1), 3.0))
    >>> float(loss(1.0, batch))
    4.0
  """
  return SupervisedLoss(apply_fn, "mse")
