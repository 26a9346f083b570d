"""Inner solvers: approximately minimise the proximal task loss G(phi, theta; D_tr).

A solver is a pure callable ``solver(fun, init) -> (params, SolverInfo)`` that
minimises ``fun(params) -> scalar`` starting at ``init`` (iMAML starts at theta).
Both solvers here run a *static* number of iterations built on ``lax`` loops, so
they compile once, ``vmap`` over tasks and never branch on data in Python.

* :func:`gradient_descent` -- iMAML-GD (Rajeswaran et al. 2019, Sec. 5):
  ``phi_{k+1} = phi_k - alpha * grad G(phi_k)``.
* :func:`newton_cg` -- iMAML-HF: Hessian-free Newton steps
  ``(H_G + mu I) d = -grad G`` solved by a few truncated CG iterations on
  Hessian-vector products, followed by a backtracking (Armijo) line search.
* :func:`pull_back_gradient_descent` -- the inner loop of the authors' public
  iMAML code: gradient descent on the task loss L alone, then one step on the
  proximal term only.

Linear solves ``solve(matvec, b, steps, tol) -> (x, CGInfo)``, passed as values
to :func:`imaml_jax.implicit_adapt` (``linear_solve=``) in jaxopt's style:

* :func:`solve_cg` -- ``jax.scipy.sparse.linalg.cg``, the paper's plain CG;
* :func:`truncated_cg` -- CG that stops at non-positive curvature (also the
  inner CG of Newton-CG).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax.tree_utils as otu

PyTree = Any
Objective = Callable[[PyTree], jax.Array]
MatVec = Callable[[PyTree], PyTree]
CURVATURES = ("hessian", "gauss_newton")


class SolverInfo(NamedTuple):
  """Diagnostics of one inner solve (per task; batched under ``vmap``).

  Attributes:
    loss: objective value at the returned parameters.
    grad_norm: ``||grad fun||`` at the returned parameters.
    steps: number of iterations that moved the parameters (a step is skipped
      once ``grad_norm <= tol``, or when the line search finds no decrease).
    losses: objective value before each iteration, shape ``(max_steps,)``;
      ``losses[0]`` is the loss at ``init``.
    grad_norms: ``||grad fun||`` before each iteration, shape
      ``(max_steps,)``; ``grad_norm / grad_norms[0]`` is how much of the
      initial gradient the solve removed.
  """
  loss: jax.Array
  grad_norm: jax.Array
  steps: jax.Array
  losses: jax.Array
  grad_norms: jax.Array


def _check_positive_int(name: str, value: int) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")


def _check_nonnegative(name: str, value: float, strict: bool = False) -> None:
  bad = not isinstance(value, (int, float)) or (value <= 0 if strict
                                                else value < 0)
  if bad:
    bound = "> 0" if strict else ">= 0"
    raise ValueError(f"{name} must be a number {bound}, got {value!r}.")


def _finish(fun: Objective, params: PyTree, steps: jax.Array,
            history: tuple[jax.Array, jax.Array]
            ) -> tuple[PyTree, SolverInfo]:
  loss, grad = jax.value_and_grad(fun)(params)
  losses, grad_norms = history
  return params, SolverInfo(loss=loss, grad_norm=otu.tree_norm(grad),
                            steps=steps, losses=losses, grad_norms=grad_norms)


def linearize_gradient(fun: Objective, params: PyTree
                       ) -> tuple[jax.Array, PyTree, MatVec]:
  r"""``(f, grad f, v -> H v)`` at ``params`` from one ``jax.linearize``.

  The Hessian-vector products are the linearization of the gradient
  (forward-over-reverse), so every product shares one forward and backward
  pass: what Newton-CG's and the implicit solve's CG steps need.

  Args:
    fun: ``fun(params) -> scalar``.
    params: where to linearize.

  Returns:
    ``(fun(params), grad fun(params), matvec)`` with
    :math:`\mathrm{matvec}(v) = \nabla^2 f(params)\, v`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from imaml_jax import solvers
    >>> f = lambda x: x[0] ** 2 * x[1]           # H = [[2 x1, 2 x0], [2 x0, 0]]
    >>> value, grad, hvp = solvers.linearize_gradient(f, jnp.array([1.0, 3.0]))
    >>> float(value), grad.tolist(), hvp(jnp.array([1.0, 0.0])).tolist()
    (3.0, [6.0, 1.0], [6.0, 2.0])
  """
  (value, grad), tangents = jax.linearize(jax.value_and_grad(fun), params)
  return value, grad, lambda v: tangents(v)[1]


@dataclasses.dataclass(frozen=True)
class GradientDescent:
  """Gradient descent with a fixed number of steps; see :func:`gradient_descent`."""
  steps: int
  learning_rate: float
  tol: float = 0.0

  def __post_init__(self):
    _check_positive_int("steps", self.steps)
    _check_nonnegative("learning_rate", self.learning_rate, strict=True)
    _check_nonnegative("tol", self.tol)

  def __call__(self, fun: Objective, init: PyTree
               ) -> tuple[PyTree, SolverInfo]:
    value_and_grad = jax.value_and_grad(fun)

    def step(carry, _):
      params, moved = carry
      loss, grad = value_and_grad(params)
      grad_norm = otu.tree_norm(grad)
      move = grad_norm > self.tol
      new = otu.tree_add_scale(params, -self.learning_rate, grad)
      return (otu.tree_where(move, new, params), moved + move), (loss,
                                                                 grad_norm)

    (params, moved), history = jax.lax.scan(
        step, (init, jnp.zeros((), jnp.int32)), None, length=self.steps)
    return _finish(fun, params, moved, history)


def gradient_descent(steps: int, learning_rate: float, tol: float = 0.0
                     ) -> GradientDescent:
  r"""Inner solver: a fixed number of gradient-descent steps.

  .. math::
    \phi_{k+1} = \phi_k - \alpha \nabla f(\phi_k), \quad \phi_0 = \text{init}

  Reverse-mode differentiable (it unrolls into ``lax.scan``), so the same
  solver serves MAML, which backpropagates through it.

  Args:
    steps: number of iterations (static).
    learning_rate: step size :math:`\alpha > 0`.
    tol: a step is skipped once :math:`\|\nabla f\| \le` ``tol`` (convergence
      based stopping with a fixed maximum, so it still ``vmap``-s).

  Returns:
    A solver ``solver(fun, init) -> (params, SolverInfo)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> solver = imaml_jax.gradient_descent(steps=100, learning_rate=0.1)
    >>> x, info = solver(lambda x: jnp.sum((x - 3.0) ** 2), jnp.zeros(2))
    >>> [round(float(v), 4) for v in x], int(info.steps)
    ([3.0, 3.0], 100)

  References:
    Rajeswaran et al., "Meta-Learning with Implicit Gradients", NeurIPS 2019,
    Sec. 5 (iMAML-GD).
  """
  return GradientDescent(steps, learning_rate, tol)


class CGInfo(NamedTuple):
  r"""Diagnostics of a linear solve (:func:`truncated_cg`, :func:`solve_cg`).

  Attributes:
    residual: :math:`\|b - A x\|` at exit.
    min_curvature: the smallest :math:`p^\top A p / p^\top p` met: over the
      search directions (:func:`truncated_cg`), or the Rayleigh quotient of
      the solution where the directions are hidden (:func:`solve_cg`).
    negative_curvature: True if a curvature at or below 0 was met: ``A`` is
      then indefinite along the solve.
    iterations: iterations that updated ``x`` (:func:`solve_cg`: the most it
      runs, jax's CG does not report its count).
  """
  residual: jax.Array
  min_curvature: jax.Array
  negative_curvature: jax.Array
  iterations: jax.Array


def solve_cg(matvec: MatVec, b: PyTree, steps: int, tol: float = 0.0
             ) -> tuple[PyTree, CGInfo]:
  r"""``jax.scipy.sparse.linalg.cg`` for :math:`A x = b`, with diagnostics.

  Plain CG from :math:`x_0 = 0` for at most ``steps`` iterations, stopping
  once the residual norm is at most ``tol`` (absolute): the paper's solve of
  the implicit system. It has no safeguard against an indefinite ``A``; its
  :class:`CGInfo` reports the residual and the Rayleigh quotient
  :math:`x^	op A x / x^	op x` of the solution from one more product.

  Args:
    matvec: ``v -> A v`` on pytrees.
    b: right-hand side pytree.
    steps: maximum number of iterations (static).
    tol: absolute residual norm at which to stop.

  Returns:
    ``(x, CGInfo)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> A = jnp.array([[4.0, 1.0], [1.0, 3.0]])   # positive definite: 2 steps
    >>> x, info = imaml_jax.solve_cg(lambda v: A @ v, jnp.array([1.0, 2.0]), 2)
    >>> [round(float(v), 4) for v in x], float(info.residual) < 1e-5
    ([0.0909, 0.6364], True)
  """
  _check_positive_int("steps", steps)
  x, _ = jax.scipy.sparse.linalg.cg(matvec, b, tol=0.0, atol=tol,
                                    maxiter=steps)
  ax = matvec(x)
  xx = otu.tree_vdot(x, x)
  rayleigh = otu.tree_vdot(x, ax) / jnp.where(xx > 0, xx, 1.0)
  return x, CGInfo(residual=otu.tree_norm(otu.tree_sub(b, ax)),
                   min_curvature=rayleigh, negative_curvature=rayleigh <= 0,
                   iterations=jnp.asarray(steps, jnp.int32))


def truncated_cg(matvec: Callable[[PyTree], PyTree], b: PyTree, steps: int,
                 tol: float = 0.0, stop_at_nonpositive: bool = True
                 ) -> tuple[PyTree, CGInfo]:
  r"""Conjugate gradient for :math:`A x = b` from :math:`x_0 = 0`, truncated.

  Runs at most ``steps`` iterations and stops early (by masking, so it
  ``vmap``-s) when the residual falls below ``tol`` or a direction of
  non-positive curvature :math:`p^\top A p \le 0` is met, as truncated Newton
  methods do (Nocedal & Wright, Alg. 7.1). If that happens at the first
  iteration it returns ``b`` itself, so for :math:`b = -\nabla f` the result is
  always a descent direction. ``jax.scipy.sparse.linalg.cg`` has no such
  safeguard, which an indefinite Newton system needs. Either way it reports
  the smallest curvature :math:`p^\top A p / p^\top p` of its search
  directions, a lower estimate of how definite :math:`A` is along the solve.

  Args:
    matvec: ``v -> A v`` on pytrees.
    b: right-hand side pytree.
    steps: maximum number of iterations (static).
    tol: absolute residual norm at which to stop.
    stop_at_nonpositive: stop at the first direction with
      :math:`p^\top A p \le 0` (``False``: plain CG, which only records it).

  Returns:
    ``(x, CGInfo)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> A = jnp.array([[4.0, 1.0], [1.0, 3.0]])   # positive definite: 2 steps
    >>> x, info = imaml_jax.truncated_cg(lambda v: A @ v, jnp.array([1.0, 2.0]),
    ...                                  steps=2)
    >>> [round(float(v), 4) for v in x], bool(info.negative_curvature)
    ([0.0909, 0.6364], False)
    >>> D = jnp.diag(jnp.array([1.0, -1.0]))      # indefinite: stops, returns b
    >>> x, info = imaml_jax.truncated_cg(lambda v: D @ v, jnp.array([1.0, 2.0]),
    ...                                  steps=2)
    >>> x.tolist(), bool(info.negative_curvature)
    ([1.0, 2.0], True)
  """
  _check_positive_int("steps", steps)
  zero = otu.tree_zeros_like(b)
  rr0 = otu.tree_vdot(b, b)
  dtype = jnp.result_type(rr0)

  def body(i, state):
    x, r, p, rr, done, neg, min_curv, iters = state
    ap = matvec(p)
    pap = otu.tree_vdot(p, ap)
    pp = otu.tree_vdot(p, p)
    curv = pap / jnp.where(pp > 0, pp, 1.0)
    converged = jnp.sqrt(rr) <= tol
    nonpositive = pap <= 0
    stop = done | converged | (nonpositive & stop_at_nonpositive)
    # Non-positive curvature at the first iteration: fall back to b.
    if stop_at_nonpositive:
      x = otu.tree_where(~done & nonpositive & (i == 0), b, x)
    alpha = rr / jnp.where(stop | (pap == 0), 1.0, pap)
    x_new = otu.tree_add_scale(x, alpha, p)
    r_new = otu.tree_add_scale(r, -alpha, ap)
    rr_new = otu.tree_vdot(r_new, r_new)
    p_new = otu.tree_add_scale(r_new, rr_new / jnp.where(stop, 1.0, rr), p)
    min_curv = jnp.where(done | converged, min_curv, jnp.minimum(min_curv, curv))
    return (otu.tree_where(stop, x, x_new), otu.tree_where(stop, r, r_new),
            otu.tree_where(stop, p, p_new), jnp.where(stop, rr, rr_new),
            stop, neg | (~done & ~converged & nonpositive), min_curv,
            iters + (~stop).astype(jnp.int32))

  init = (zero, b, b, rr0, jnp.zeros((), bool), jnp.zeros((), bool),
          jnp.asarray(jnp.inf, dtype), jnp.zeros((), jnp.int32))
  x, _, _, _, _, neg, min_curv, iters = jax.lax.fori_loop(0, steps, body, init)
  residual = otu.tree_norm(otu.tree_sub(b, matvec(x)))
  return x, CGInfo(residual, min_curv, neg, iters)


@dataclasses.dataclass(frozen=True)
class NewtonCG:
  """Hessian-free Newton with line search; see :func:`newton_cg`."""
  steps: int
  cg_steps: int = 5
  damping: float = 0.0
  max_backtracks: int = 10
  armijo: float = 1e-4
  shrink: float = 0.5
  tol: float = 0.0
  curvature: str = "hessian"

  def __post_init__(self):
    _check_positive_int("steps", self.steps)
    _check_positive_int("cg_steps", self.cg_steps)
    if self.curvature not in CURVATURES:
      raise ValueError(f"curvature must be one of {CURVATURES}, got "
                       f"{self.curvature!r}.")
    _check_positive_int("max_backtracks", self.max_backtracks)
    _check_nonnegative("damping", self.damping)
    _check_nonnegative("tol", self.tol)
    if not 0.0 < self.armijo < 1.0:
      raise ValueError(f"armijo must lie in (0, 1), got {self.armijo!r}.")
    if not 0.0 < self.shrink < 1.0:
      raise ValueError(f"shrink must lie in (0, 1), got {self.shrink!r}.")

  def _linearized(self, fun: Objective) -> Callable[
      [PyTree], tuple[jax.Array, PyTree, Callable[[PyTree], PyTree]]]:
    """``params -> (f, grad f, v -> B v)``, B the Hessian or Gauss-Newton
    matrix of fun at params. With the Hessian, ``jax.linearize`` of the
    gradient runs the forward and backward pass once for all the CG steps."""
    if self.curvature == "hessian":
      return lambda params: linearize_gradient(fun, params)
    if not callable(getattr(fun, "gauss_newton", None)):
      raise TypeError(
          "newton_cg(curvature='gauss_newton') needs an objective with a "
          "gauss_newton(params) -> matvec method, such as the "
          "imaml_jax.TaskObjective that implicit_adapt passes its solver; got "
          f"{fun!r}.")
    value_and_grad = jax.value_and_grad(fun)
    return lambda params: (*value_and_grad(params), fun.gauss_newton(params))

  def __call__(self, fun: Objective, init: PyTree
               ) -> tuple[PyTree, SolverInfo]:
    linearized = self._linearized(fun)

    def step(carry, _):
      params, moved = carry
      loss, g, product = linearized(params)
      matvec = lambda v: otu.tree_add_scale(product(v), self.damping, v)

      direction, _ = truncated_cg(matvec, otu.tree_scale(-1.0, g),
                                  self.cg_steps)
      slope = otu.tree_vdot(g, direction)

      def trial(t):
        return fun(otu.tree_add_scale(params, t, direction))

      def insufficient(t, value):  # also True for NaN values
        return ~(value <= loss + self.armijo * t * slope)

      def backtrack(state):
        t, _, k = state
        t = t * self.shrink
        return t, trial(t), k + 1

      t, value, _ = jax.lax.while_loop(
          lambda s: insufficient(s[0], s[1]) & (s[2] < self.max_backtracks),
          backtrack, (jnp.ones_like(loss), trial(1.0), 0))
      grad_norm = otu.tree_norm(g)
      move = (~insufficient(t, value)) & (grad_norm > self.tol)
      new = otu.tree_add_scale(params, t, direction)
      return (otu.tree_where(move, new, params), moved + move), (loss,
                                                                 grad_norm)

    (params, moved), history = jax.lax.scan(
        step, (init, jnp.zeros((), jnp.int32)), None, length=self.steps)
    return _finish(fun, params, moved, history)


@dataclasses.dataclass(frozen=True)
class PullBackGradientDescent:
  """GD on L, then one proximal pull-back; see :func:`pull_back_gradient_descent`."""
  steps: int
  learning_rate: float

  def __post_init__(self):
    _check_positive_int("steps", self.steps)
    _check_nonnegative("learning_rate", self.learning_rate, strict=True)

  def __call__(self, fun: Objective, init: PyTree
               ) -> tuple[PyTree, SolverInfo]:
    missing = [a for a in ("loss_fn", "batch", "theta", "lam")
               if not hasattr(fun, a)]
    if missing:
      raise TypeError(f"pull_back_gradient_descent needs the task objective "
                      f"(imaml_jax.TaskObjective: loss_fn, batch, theta, lam) "
                      f"to run GD on L alone; got {type(fun).__name__} without "
                      f"{', '.join(missing)}.")
    task_loss = lambda p: fun.loss_fn(p, fun.batch)
    phi, info = GradientDescent(self.steps, self.learning_rate)(task_loss, init)
    phi = otu.tree_add_scale(phi, -self.learning_rate * fun.lam,
                             otu.tree_sub(phi, fun.theta))
    # The history is L's (equal to G's at theta, where the proximal term is
    # 0); the final loss and gradient are G's, as for the other solvers.
    return _finish(fun, phi, info.steps + 1, (info.losses, info.grad_norms))


def pull_back_gradient_descent(steps: int, learning_rate: float
                               ) -> PullBackGradientDescent:
  r"""Inner solver of the authors' public iMAML code (aravindr93/imaml_dev).

  ``steps`` plain gradient-descent steps on the task loss :math:`L` alone,
  from :math:`\phi_0 = \theta`, then one gradient step on the proximal term
  :math:`\frac{\lambda}{2}\|\phi - \theta\|^2` only:

  .. math::
    \phi_{k+1} = \phi_k - \alpha \nabla L(\phi_k), \qquad
    \phi \leftarrow \phi - \alpha \lambda (\phi - \theta)

  (at :math:`\alpha = 0.1, \lambda = 2`: :math:`0.8\,\phi + 0.2\,\theta`).
  It does not minimise :math:`G` of the paper's Algorithm 2; the proximal term
  acts once, after the fact. It needs the task objective that
  :meth:`imaml_jax.ImplicitAdapt.solve` passes (an
  :class:`imaml_jax.TaskObjective`), not any function.

  Args:
    steps: gradient steps on :math:`L` (16 in the authors' Omniglot script).
    learning_rate: :math:`\alpha`, for both kinds of step (0.1 there).

  Returns:
    A solver ``solver(objective, init) -> (params, SolverInfo)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = lambda p, b: 0.5 * jnp.sum((p - b) ** 2)   # L's minimum at b
    >>> objective = imaml_jax.TaskObjective(loss, 2.0, jnp.zeros(2),
    ...                                     jnp.ones(2))
    >>> solver = imaml_jax.pull_back_gradient_descent(200, 0.1)
    >>> phi, _ = solver(objective, jnp.zeros(2))  # 0.8 * 1 + 0.2 * 0
    >>> [round(float(v), 4) for v in phi]
    [0.8, 0.8]

  References:
    aravindr93/imaml_dev, ``implicit_maml/learner_model.py`` and
    ``examples/omniglot_implicit_maml.py`` (read 2026-12-01;
    ``../shared/docs/PROTOCOL.md``).
  """
  return PullBackGradientDescent(steps, learning_rate)


def newton_cg(steps: int, cg_steps: int = 5, damping: float = 0.0,
              max_backtracks: int = 10, armijo: float = 1e-4,
              shrink: float = 0.5, tol: float = 0.0,
              curvature: str = "hessian") -> NewtonCG:
  r"""Inner solver: Hessian-free Newton-CG with a backtracking line search.

  Each iteration solves the damped Newton system with :func:`truncated_cg`
  (Hessian-vector products by forward-over-reverse differentiation):

  .. math::
    (B_k + \mu I)\, d_k = -\nabla f(\phi_k)

  where :math:`B_k = \nabla^2 f(\phi_k)` (``curvature="hessian"``, the
  paper's Newton-CG) or, for Hessian-free optimisation in the sense of Martens
  (2010), the positive definite Gauss-Newton matrix of
  :class:`imaml_jax.TaskObjective` (``curvature="gauss_newton"``), whose
  products skip the network's second derivatives.

  then takes :math:`\phi_{k+1} = \phi_k + t d_k` with the largest
  :math:`t \in \{1, s, s^2, \dots\}` satisfying the Armijo condition
  :math:`f(\phi_k + t d_k) \le f(\phi_k) + c\, t\, \nabla f^\top d_k`. If none of
  ``max_backtracks`` trials does, the step is skipped, so ``f`` never
  increases. Not reverse-differentiable (the line search is a
  ``lax.while_loop``): use it with :func:`imaml_jax.implicit_adapt`.

  Args:
    steps: Newton iterations (static).
    cg_steps: CG iterations per Newton system (5 in the paper).
    damping: :math:`\mu \ge 0` added to the Hessian.
    max_backtracks: maximum step-size halvings per iteration.
    armijo: sufficient-decrease constant :math:`c \in (0, 1)`.
    shrink: backtracking factor :math:`s \in (0, 1)`.
    tol: iterations are skipped once :math:`\|\nabla f\| \le` ``tol``.
    curvature: ``"hessian"`` (any ``fun``) or ``"gauss_newton"`` (``fun``
      must have a ``gauss_newton(params) -> matvec`` method, as the objective
      :func:`imaml_jax.implicit_adapt` passes does).

  Returns:
    A solver ``solver(fun, init) -> (params, SolverInfo)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> A = jnp.array([[3.0, 1.0], [1.0, 2.0]])
    >>> f = lambda x: 0.5 * x @ A @ x - x.sum()
    >>> x, info = imaml_jax.newton_cg(steps=2, cg_steps=2)(f, jnp.zeros(2))
    >>> [round(float(v), 4) for v in x]  # A^-1 [1, 1]
    [0.2, 0.4]

  References:
    Rajeswaran et al., "Meta-Learning with Implicit Gradients", NeurIPS 2019,
    Sec. 5 (iMAML-HF); Nocedal & Wright, "Numerical Optimization", Alg. 7.1;
    Martens, "Deep learning via Hessian-free optimization", ICML 2010.
  """
  return NewtonCG(steps, cg_steps, damping, max_backtracks, armijo, shrink,
                  tol, curvature)
