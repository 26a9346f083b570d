"""The proximal task loss of iMAML (Rajeswaran et al. 2019, Eq. 4) and its checks.

G(phi, theta; D) = L(phi; D) + lam / 2 * ||phi - theta||^2

The inner problem of iMAML is ``phi* = argmin_phi G(phi, theta; D_tr)``; the
quadratic term keeps the adapted parameters close to the meta-parameters and is
what makes the implicit meta-gradient well defined.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax.tree_utils as otu

from imaml_jax import losses
from imaml_jax import solvers

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]


def check_lam(lam: float) -> None:
  """Raises ``ValueError`` unless the proximal strength is a positive number."""
  if isinstance(lam, jax.core.Tracer):
    return
  try:
    ok = float(lam) > 0.0
  except (TypeError, ValueError):
    raise ValueError(
        f"lam must be a positive number, got {lam!r}.") from None
  if not ok:
    raise ValueError(
        f"lam must be > 0 (the proximal regulariser lam/2 ||phi - theta||^2 "
        f"needs a positive strength), got lam={lam!r}.")


def check_params(params: PyTree, name: str = "params") -> None:
  """Raises ``ValueError`` unless ``params`` is a non-empty tree of float arrays."""
  leaves = jax.tree_util.tree_leaves_with_path(params)
  if not leaves:
    raise ValueError(f"{name} must hold at least one array, got an empty "
                     f"tree: {params!r}.")
  for path, leaf in leaves:
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise ValueError(
          f"{name} must hold floating-point arrays only (meta-parameters are "
          f"differentiated), but leaf {jax.tree_util.keystr(path)} has dtype "
          f"{dtype}.")


def check_same_structure(a: PyTree, b: PyTree, name_a: str = "phi",
                         name_b: str = "theta") -> None:
  """Raises ``ValueError`` unless two trees match in structure, shapes and dtypes."""
  struct_a, struct_b = jax.tree.structure(a), jax.tree.structure(b)
  if struct_a != struct_b:
    raise ValueError(f"{name_a} and {name_b} must have the same tree "
                     f"structure; expected {struct_b}, got {struct_a}.")
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a),
                          jax.tree.leaves(b)):
    if jnp.shape(x) != jnp.shape(y) or jnp.result_type(x) != jnp.result_type(y):
      raise ValueError(
          f"{name_a}{jax.tree_util.keystr(path)} has shape {jnp.shape(x)} and "
          f"dtype {jnp.result_type(x)}, but {name_b} has shape {jnp.shape(y)} "
          f"and dtype {jnp.result_type(y)} there.")


def proximal_loss(loss_fn: LossFn, lam: float
                  ) -> Callable[[PyTree, PyTree, PyTree], jax.Array]:
  r"""Builds the proximal task loss :math:`G` of iMAML.

  .. math::
    G(\phi, \theta; D) = L(\phi; D) + \frac{\lambda}{2} \|\phi - \theta\|^2

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``, the task loss :math:`L`.
    lam: the proximal strength :math:`\lambda > 0`.

  Returns:
    ``G(phi, theta, batch) -> scalar``, pure and differentiable in both
    ``phi`` and ``theta`` (any matching parameter pytrees).

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = lambda p, b: jnp.sum((p["w"] - b) ** 2)
    >>> G = imaml_jax.proximal_loss(loss, lam=2.0)
    >>> float(G({"w": jnp.array([1.0])}, {"w": jnp.array([0.0])}, 0.0))
    2.0

  References:
    Rajeswaran, Finn, Kakade, Levine, "Meta-Learning with Implicit Gradients",
    NeurIPS 2019, Eq. (4).
  """
  check_lam(lam)

  def G(phi: PyTree, theta: PyTree, batch: PyTree) -> jax.Array:
    check_same_structure(phi, theta)
    return loss_fn(phi, batch) + 0.5 * lam * otu.tree_norm(
        otu.tree_sub(phi, theta), squared=True)

  return G


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["theta", "batch"],
                   meta_fields=["loss_fn", "lam"])
@dataclasses.dataclass(frozen=True)
class TaskObjective:
  r"""The inner objective :math:`\phi \mapsto G(\phi, \theta; D)` of one task.

  Callable as ``objective(phi) -> scalar``, which is all an inner solver needs.
  It owns the curvature products of :math:`G` (:meth:`hessian`,
  :meth:`gauss_newton`) that second-order solvers
  (``newton_cg(..., curvature="gauss_newton")``) and the implicit linear
  systems (:func:`imaml_jax.exact_system` and the others) are built from.
  :meth:`ImplicitAdapt.solve <imaml_jax.ImplicitAdapt.solve>` hands one to the
  solver. A pytree (``theta`` and ``batch`` are its leaves), so it passes
  through ``jit``.

  The curvature of :math:`G` does not depend on :math:`\theta` (the proximal
  term is quadratic with identity Hessian), so the products hold for any
  ``theta``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = lambda p, b: 0.5 * jnp.sum(b * p ** 2)    # H_L = diag(b)
    >>> objective = imaml_jax.TaskObjective(loss, 2.0, jnp.zeros(2),
    ...                                     jnp.array([1.0, 3.0]))
    >>> objective.hessian(jnp.ones(2))(jnp.ones(2)).tolist()   # b + lam
    [3.0, 5.0]

  Attributes:
    loss_fn: the task loss :math:`L`.
    lam: the proximal strength :math:`\lambda`.
    theta: the meta-parameters.
    batch: the task's training data :math:`D`.
  """
  loss_fn: LossFn
  lam: float
  theta: PyTree
  batch: PyTree

  def __call__(self, phi: PyTree) -> jax.Array:
    return proximal_loss(self.loss_fn, self.lam)(phi, self.theta, self.batch)

  def hessian(self, phi: PyTree) -> Callable[[PyTree], PyTree]:
    r"""``v -> (H + lam I) v``: the Hessian of G at phi, H that of L.

    The gradient is linearized once
    (:func:`imaml_jax.solvers.linearize_gradient`), so repeated products (CG
    steps) share one forward and backward pass.
    """
    return solvers.linearize_gradient(self, phi)[2]

  def gauss_newton(self, phi: PyTree,
                   predict_fn: Callable[[PyTree, PyTree], jax.Array] | None = None,
                   output_loss_fn: Callable[[jax.Array, PyTree], jax.Array]
                   | None = None) -> Callable[[PyTree], PyTree]:
    r"""``v -> (J^T H_o J + lam I) v``: the Gauss-Newton matrix of G at phi.

    Positive definite; needs a loss split as ``output_loss(predict(.))``:
    ``predict_fn`` and ``output_loss_fn`` default to ``loss_fn.predict`` and
    ``loss_fn.output_loss`` (see :func:`imaml_jax.gauss_newton_product`).
    """
    predict, output_loss = losses.split_loss(self.loss_fn, predict_fn,
                                             output_loss_fn)
    ggn = losses.gauss_newton_product(predict, output_loss, phi, self.batch)
    return lambda v: otu.tree_add_scale(ggn(v), self.lam, v)
