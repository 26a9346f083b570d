"""The implicit meta-gradient of iMAML (Rajeswaran et al. 2019, Lemma 1, Alg. 2).

With phi* = argmin_phi L(phi; D_tr) + lam/2 ||phi - theta||^2 and
H = Hessian of L(.; D_tr) at phi*, the implicit function theorem gives

    d phi* / d theta = (I + H / lam)^-1,

so the meta-gradient of any outer loss with gradient g at phi* is

    (I + H / lam)^-1 g,

found by conjugate gradient on Hessian-vector products: memory does not grow
with the number of inner steps. :func:`implicit_adapt` packages this as
``adapt(theta, batch) -> phi`` with a ``jax.custom_vjp``.

Both ingredients of the backward solve are values: the linear system
``system(objective, phi) -> matvec`` (:func:`exact_system`, the paper's;
:func:`damped_system`; :func:`gauss_newton_system`; or your own), built from
the curvature products the task objective owns
(:class:`imaml_jax.TaskObjective`), and the linear solve
``solve(matvec, b, steps, tol) -> (x, info)`` (:func:`imaml_jax.solve_cg`,
:func:`imaml_jax.truncated_cg`, or your own).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Union

import jax
import jax.flatten_util
import jax.numpy as jnp
import optax.tree_utils as otu

from imaml_jax import proximal
from imaml_jax import solvers as solvers_lib
from imaml_jax import tasks as tasks_lib

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]
MatVec = Callable[[PyTree], PyTree]
# system(objective, phi) -> (v -> A v), A the implicit system's matrix at phi
LinearSystem = Callable[[proximal.TaskObjective, PyTree], MatVec]
# solve(matvec, b, steps, tol) -> (x, CGInfo)
LinearSolve = Callable[[MatVec, PyTree, int, float],
                       tuple[PyTree, solvers_lib.CGInfo]]


def hvp(loss_fn: LossFn, params: PyTree, batch: PyTree, v: PyTree) -> PyTree:
  r"""Hessian-vector product ``H v`` of ``loss_fn(., batch)`` at ``params``.

  Forward-over-reverse: the JVP of the gradient, about the cost of two
  gradient evaluations and no Hessian in memory. For many products at one
  ``params``, linearize the gradient once
  (:meth:`imaml_jax.TaskObjective.hessian`), as the systems below do for
  their CG steps.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``.
    params: where the Hessian is taken.
    batch: the data ``loss_fn`` is evaluated on.
    v: a pytree of the structure of ``params``.

  Returns:
    :math:`\nabla^2_{params} L(params; batch)\, v`, structured like ``v``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = lambda p, b: 0.5 * jnp.sum(b * p ** 2)   # H = diag(b)
    >>> imaml_jax.hvp(loss, jnp.ones(2), jnp.array([2.0, 3.0]),
    ...               jnp.array([1.0, -1.0])).tolist()
    [2.0, -3.0]
  """
  grad = lambda p: jax.grad(loss_fn)(p, batch)
  return jax.jvp(grad, (params,), (v,))[1]


def exact_system() -> LinearSystem:
  r"""The paper's system :math:`(I + H/\lambda)\, v = g` (Lemma 1).

  Exact at an exact inner minimum; :math:`I + H/\lambda` is indefinite where
  the loss has curvature below :math:`-\lambda`, and CG may then diverge.

  It is the Hessian of the proximal objective :math:`G` over :math:`\lambda`,
  :math:`(H + \lambda I)/\lambda`, from :meth:`TaskObjective.hessian
  <imaml_jax.TaskObjective.hessian>` (the gradient linearized once at
  ``phi``).

  Returns:
    ``system(objective, phi) -> matvec``, ``matvec(v) = v + H v / lam``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = lambda p, b: 0.5 * jnp.sum(b * p ** 2)   # H = diag(b)
    >>> objective = imaml_jax.TaskObjective(loss, 2.0, jnp.ones(2),
    ...                                     jnp.array([2.0, 4.0]))
    >>> matvec = imaml_jax.exact_system()(objective, jnp.ones(2))
    >>> matvec(jnp.ones(2)).tolist()   # 1 + b / lam
    [2.0, 3.0]
  """

  def system(objective, phi):
    hessian = objective.hessian(phi)
    return lambda v: otu.tree_scale(1.0 / objective.lam, hessian(v))

  return system


def damped_system(regularization: float = 1.0,
                  lam_damping: float = 10.0) -> LinearSystem:
  r"""The damped system of the authors' public code.

  .. math:: \big((1 + c)\, I + H / (\lambda + \mu)\big)\, v = g

  with :math:`c` = ``regularization`` and :math:`\mu` = ``lam_damping``
  (defaults 1.0 and 10.0 as in ``matrix_evaluator`` of aravindr93/imaml_dev).
  Its solution is used as the meta-gradient as is (so it is about
  :math:`1/(1+c)` times the exact one where :math:`H` is small).

  Args:
    regularization: :math:`c`, added to the identity.
    lam_damping: :math:`\mu`, added to lam in the Hessian's scale.

  Returns:
    ``system(objective, phi) -> matvec``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = lambda p, b: 0.5 * jnp.sum(b * p ** 2)   # H = diag(b)
    >>> objective = imaml_jax.TaskObjective(loss, 2.0, jnp.ones(2),
    ...                                     jnp.array([12.0, 24.0]))
    >>> matvec = imaml_jax.damped_system()(objective, jnp.ones(2))
    >>> matvec(jnp.ones(2)).tolist()   # 2 + b / (2 + 10)
    [3.0, 4.0]
  """
  if regularization < 0 or lam_damping < 0:
    raise ValueError(f"regularization and lam_damping must be >= 0, got "
                     f"{regularization!r} and {lam_damping!r}.")

  def system(objective, phi):
    lam = objective.lam
    hessian = objective.hessian(phi)   # H + lam I
    # (1 + c) v + H v / (lam + mu), H v = (H + lam I) v - lam v
    return lambda v: otu.tree_add_scale(
        otu.tree_scale(1.0 + regularization - lam / (lam + lam_damping), v),
        1.0 / (lam + lam_damping), hessian(v))

  return system


def gauss_newton_system(
    predict_fn: Callable[[PyTree, PyTree], jax.Array] | None = None,
    output_loss_fn: Callable[[jax.Array, PyTree], jax.Array] | None = None,
) -> LinearSystem:
  r"""The Gauss-Newton system :math:`(I + J^\top H_o J / \lambda)\, v = g`.

  :math:`J` is the Jacobian of the model outputs w.r.t. the parameters and
  :math:`H_o` the Hessian of the (convex) output loss w.r.t. the outputs, so
  the matrix is positive definite and CG always converges. It drops the
  second-order term of the network from :math:`H` (Schraudolph 2002).

  Args:
    predict_fn: ``predict_fn(params, batch) -> outputs``. Defaults to
      ``loss_fn.predict`` (the losses of :mod:`imaml_jax.losses` have it).
    output_loss_fn: ``output_loss_fn(outputs, batch) -> scalar``, convex in
      ``outputs``. Defaults to ``loss_fn.output_loss``.

  It is the Gauss-Newton matrix of :math:`G` over :math:`\lambda`, from
  :meth:`TaskObjective.gauss_newton <imaml_jax.TaskObjective.gauss_newton>`.

  Returns:
    ``system(objective, phi) -> matvec``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = imaml_jax.mse_loss(lambda w, x: x @ w)   # J = x, H_o = 2 I / n
    >>> x = jnp.array([[1.0, 0.0], [0.0, 2.0]])   # 2 examples, 1 output
    >>> objective = imaml_jax.TaskObjective(
    ...     loss, 1.0, jnp.zeros((2, 1)), imaml_jax.Batch(x, jnp.zeros((2, 1))))
    >>> matvec = imaml_jax.gauss_newton_system()(objective, jnp.zeros((2, 1)))
    >>> matvec(jnp.ones((2, 1))).ravel().tolist()   # v + x^T x v
    [2.0, 5.0]
  """

  def system(objective, phi):
    ggn = objective.gauss_newton(phi, predict_fn, output_loss_fn)
    return lambda v: otu.tree_scale(1.0 / objective.lam, ggn(v))

  return system


_SYSTEMS = {"exact": exact_system, "damped": damped_system,
            "gauss_newton": gauss_newton_system}


def resolve_system(system: Union[str, LinearSystem]) -> LinearSystem:
  """Maps ``"exact" | "damped" | "gauss_newton"`` (or a callable) to a system."""
  if callable(system):
    return system
  if system not in _SYSTEMS:
    raise ValueError(f"system must be one of {sorted(_SYSTEMS)} or a callable "
                     f"(objective, phi) -> matvec; got {system!r}.")
  return _SYSTEMS[system]()


class ImplicitInfo(NamedTuple):
  """Diagnostics of the implicit linear solve ``A v = g``.

  From the linear solve's :class:`imaml_jax.CGInfo`: ``curvature`` is the
  smallest :math:`p^\top A p / p^\top p` over CG's search directions with
  :func:`imaml_jax.truncated_cg`; with :func:`imaml_jax.solve_cg` (whose CG
  hides its directions) it is the Rayleigh quotient :math:`v^\top A v /
  v^\top v` of the solution. At or below 0, ``A`` is indefinite along the
  solve and CG's answer is not a solution of a positive definite system:
  ``negative_curvature`` is then True. ``iterations`` counts the CG steps
  that updated ``v`` with :func:`imaml_jax.truncated_cg` (fewer than
  ``cg_steps`` when it stopped early); jax's CG does not report its count, so
  with :func:`imaml_jax.solve_cg` it is ``cg_steps``, the most it runs.
  """
  residual: jax.Array       # ||g - A v||
  rhs_norm: jax.Array       # ||g||, to read the residual relative to it
  curvature: jax.Array      # see above
  negative_curvature: jax.Array   # bool: CG met p^T A p <= 0
  iterations: jax.Array     # see above

  @property
  def relative_residual(self) -> jax.Array:
    return self.residual / jnp.maximum(self.rhs_norm, 1e-30)


@dataclasses.dataclass(frozen=True)
class ImplicitAdapt:
  """An inner solve with implicit gradients; build it with :func:`implicit_adapt`.

  ``adapt(theta, batch) -> phi`` is differentiable (a ``jax.custom_vjp``);
  :meth:`solve` and :meth:`implicit_gradient` are its two halves, for callers
  that want the diagnostics as well.
  """
  loss_fn: LossFn
  solver: Callable[..., Any]
  lam: float
  cg_steps: int = 5
  system: Union[str, LinearSystem] = "exact"
  cg_tol: float = 0.0
  linear_solve: LinearSolve = solvers_lib.solve_cg

  def __post_init__(self):
    proximal.check_lam(self.lam)
    if (not isinstance(self.cg_steps, int) or isinstance(self.cg_steps, bool)
        or self.cg_steps < 1):
      raise ValueError(f"cg_steps must be an integer >= 1, got "
                       f"{self.cg_steps!r}.")
    if not callable(self.loss_fn):
      raise TypeError(f"loss_fn must be callable (params, batch) -> scalar, "
                      f"got {self.loss_fn!r}.")
    if not callable(self.solver):
      raise TypeError(f"solver must be callable (fun, init) -> (params, info), "
                      f"e.g. imaml_jax.gradient_descent(...); got "
                      f"{self.solver!r}.")
    if self.cg_tol < 0:
      raise ValueError(f"cg_tol must be >= 0, got {self.cg_tol!r}.")
    if not callable(self.linear_solve):
      raise TypeError(f"linear_solve must be callable (matvec, b, steps, tol) "
                      f"-> (x, CGInfo), e.g. imaml_jax.solve_cg; got "
                      f"{self.linear_solve!r}.")
    resolve_system(self.system)

  def __call__(self, theta: PyTree, batch: PyTree) -> PyTree:
    """``phi ~= argmin_phi G(phi, theta; batch)``, with implicit gradients."""
    return _adapt(self, theta, batch)

  def solve(self, theta: PyTree, batch: PyTree
            ) -> tuple[PyTree, solvers_lib.SolverInfo]:
    """Runs the inner solver on G(., theta; batch) from ``theta``."""
    proximal.check_params(theta, "theta")
    tasks_lib.check_batch(batch, "support")
    objective = proximal.TaskObjective(self.loss_fn, self.lam, theta, batch)
    phi, info = self.solver(objective, theta)
    proximal.check_same_structure(phi, theta, "solver output", "theta")
    return phi, info

  def implicit_gradient(self, phi: PyTree, batch: PyTree, g: PyTree
                        ) -> tuple[PyTree, ImplicitInfo]:
    """Solves ``A v = g`` (the linear solve on the system at ``phi``); returns v.

    ``A`` is the system's matrix built from the curvature of the task
    objective at ``phi`` (which does not depend on theta).
    """
    objective = proximal.TaskObjective(self.loss_fn, self.lam, phi, batch)
    matvec = resolve_system(self.system)(objective, phi)
    # The solve runs on the flattened vector: jax's cg (0.10) fails under
    # vmap when the leaves of g carry different batch axes (conv-kernel
    # gradients do).
    flat_g, unravel = jax.flatten_util.ravel_pytree(g)
    flat_matvec = lambda z: jax.flatten_util.ravel_pytree(matvec(unravel(z)))[0]
    flat_v, cg = self.linear_solve(flat_matvec, flat_g, self.cg_steps,
                                   self.cg_tol)
    info = ImplicitInfo(residual=cg.residual,
                        rhs_norm=jnp.linalg.norm(flat_g),
                        curvature=cg.min_curvature,
                        negative_curvature=cg.negative_curvature,
                        iterations=cg.iterations)
    return unravel(flat_v), info


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _adapt(spec: ImplicitAdapt, theta: PyTree, batch: PyTree) -> PyTree:
  return spec.solve(theta, batch)[0]


def _adapt_fwd(spec, theta, batch):
  phi = spec.solve(theta, batch)[0]
  return phi, (phi, batch)


def _adapt_bwd(spec, residuals, g):
  phi, batch = residuals
  v, _ = spec.implicit_gradient(phi, batch, g)
  # The data enter through grad_phi L(phi, batch) = -lam (phi - theta) at the
  # optimum: d phi / d batch = -(H + lam I)^-1 d(grad_phi L)/d batch, and
  # (H + lam I)^-1 g = v / lam for the exact system.
  _, vjp_batch = jax.vjp(lambda b: jax.grad(spec.loss_fn)(phi, b), batch)
  (batch_cotangent,) = vjp_batch(otu.tree_scale(-1.0 / spec.lam, v))
  return v, batch_cotangent


_adapt.defvjp(_adapt_fwd, _adapt_bwd)


def implicit_adapt(loss_fn: LossFn,
                   solver: Callable[..., Any],
                   lam: float,
                   cg_steps: int = 5,
                   system: Union[str, LinearSystem] = "exact",
                   cg_tol: float = 0.0,
                   linear_solve: LinearSolve = solvers_lib.solve_cg
                   ) -> ImplicitAdapt:
  r"""Task adaptation whose gradient is the implicit meta-gradient of iMAML.

  Forward: :math:`\phi = \mathrm{solver}(G(\cdot, \theta; D))` from
  :math:`\phi_0 = \theta`, with :math:`G = L(\phi; D) + \frac{\lambda}{2}
  \|\phi - \theta\|^2`. Backward, for a cotangent :math:`g` on :math:`\phi`:

  .. math:: \bar\theta = (I + H/\lambda)^{-1} g, \qquad
            H = \nabla^2_\phi L(\phi; D),

  solved with ``cg_steps`` iterations of ``linear_solve`` (by default
  ``jax.scipy.sparse.linalg.cg``) on Hessian-vector products (or the
  ``damped`` / ``gauss_newton`` variants).
  Memory is independent of the solver's number of steps. The cotangent of the
  data ``batch`` is the implicit one too,
  :math:`-(\partial_D \nabla_\phi L)^\top v / \lambda`.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``, the task loss :math:`L`.
    solver: an inner solver, e.g. :func:`imaml_jax.gradient_descent` or
      :func:`imaml_jax.newton_cg`.
    lam: proximal strength :math:`\lambda > 0`.
    cg_steps: CG iterations for the backward solve (5 in the paper).
    system: ``"exact"`` (the paper's), ``"damped"`` (the authors' code),
      ``"gauss_newton"`` (positive definite), or a callable, see
      :func:`exact_system`, :func:`damped_system`, :func:`gauss_newton_system`.
    cg_tol: absolute residual at which CG may stop before ``cg_steps``.
    linear_solve: ``solve(matvec, b, steps, tol) -> (x, CGInfo)``:
      :func:`imaml_jax.solve_cg` (``jax.scipy.sparse.linalg.cg``, the paper's
      plain CG), :func:`imaml_jax.truncated_cg` (stops at the first direction
      of non-positive curvature, as truncated Newton methods do, so an
      indefinite system cannot blow the meta-gradient up), or your own.

  Returns:
    An :class:`ImplicitAdapt`: ``adapt(theta, batch) -> phi``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = lambda p, b: 0.5 * jnp.sum(b * p ** 2)   # H = diag(b)
    >>> adapt = imaml_jax.implicit_adapt(
    ...     loss, imaml_jax.gradient_descent(200, 0.2), lam=1.0, cg_steps=2)
    >>> grad = jax.grad(lambda th: adapt(th, jnp.array([1.0, 3.0])).sum())
    >>> [round(float(v), 3) for v in grad(jnp.ones(2))]  # lam / (b + lam)
    [0.5, 0.25]

  References:
    Rajeswaran, Finn, Kakade, Levine, "Meta-Learning with Implicit
    Gradients", NeurIPS 2019, Lemma 1 and Algorithm 2.
  """
  return ImplicitAdapt(loss_fn, solver, lam, cg_steps, system, cg_tol,
                       linear_solve)
