"""Meta-learners behind one type: iMAML, MAML, first-order MAML, Reptile.

Every learner is a :class:`Learner`: its ``meta_gradient`` (also what calling
the learner does) maps ``(theta, tasks, key) -> (direction, metrics)``:

* ``tasks`` is a :class:`imaml_jax.Task` whose leaves have a leading task axis;
  the per-task work is ``vmap``-ped (no Python loop over tasks);
* ``direction`` has the structure of ``theta`` and is the task average of the
  per-task meta-gradients (or, for Reptile, of ``theta - phi``), ready for any
  optax optimizer: ``updates, opt_state = opt.update(direction, opt_state)``;
* ``metrics`` is a dict of scalars averaged over the tasks;
* ``key`` is a PRNG key for stochastic learners; the learners built here are
  deterministic functions of the tasks and accept it for a uniform signature;

and its ``adapt(theta, support) -> phi`` is the task adaptation it trains
for, to evaluate with.

The meta-gradient of each method for one task with support D_tr, query D_test:

* iMAML (Alg. 2): phi = argmin G(., theta), g = grad L(phi; D_test),
  direction = (I + H/lam)^-1 g by CG;
* MAML: direction = d L(phi(theta); D_test) / d theta through the unrolled
  inner gradient steps;
* FOMAML: direction = grad L(phi; D_test), the Jacobian d phi / d theta taken
  as the identity;
* Reptile: direction = theta - phi after the inner steps on D_tr.
"""

from __future__ import annotations

import dataclasses

from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import optax.tree_utils as otu

from imaml_jax import implicit as implicit_lib
from imaml_jax import proximal
from imaml_jax import solvers as solvers_lib
from imaml_jax import tasks as tasks_lib

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]
Metrics = dict[str, jax.Array]
MetaGradient = Callable[[PyTree, tasks_lib.Task, Optional[jax.Array]],
                        tuple[PyTree, Metrics]]
Adapt = Callable[[PyTree, PyTree], PyTree]


@dataclasses.dataclass(frozen=True)
class Learner:
  """A meta-learner: its meta-gradient and the task adaptation it trains for.

  Calling the learner is calling ``meta_gradient``, so
  ``learner(theta, tasks, key) -> (direction, metrics)`` as everywhere in
  imaml-jax (:func:`imaml_jax.make_meta_step`, the sharded step), and
  ``jax.jit(learner)`` works. A frozen dataclass (hashable, weakly
  referenceable, as ``jit`` needs of a function), not a pytree.

  Attributes:
    meta_gradient: ``(theta, tasks, key) -> (direction, metrics)`` over a
      batch of tasks (leading task axis).
    adapt: ``(theta, support) -> phi`` for one task: the adaptation whose
      query loss ``meta_gradient`` differentiates, used at test time.

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = imaml_jax.mse_loss(lambda w, x: x @ w)   # L(w) = (w - 1)^2
    >>> learner = imaml_jax.fomaml(loss, 1, 0.25)
    >>> x = jnp.ones((3, 1))
    >>> learner.adapt(jnp.zeros((1, 1)), imaml_jax.Batch(x, x)).tolist()
    [[0.5]]
  """
  meta_gradient: MetaGradient
  adapt: Adapt

  def __call__(self, theta: PyTree, tasks: tasks_lib.Task,
               key: Optional[jax.Array] = None) -> tuple[PyTree, Metrics]:
    return self.meta_gradient(theta, tasks, key)


def _task_metrics(loss_fn: LossFn, theta: PyTree, phi: PyTree,
                  task: tasks_lib.Task, info: solvers_lib.SolverInfo,
                  query_loss: jax.Array, lam: float = 0.0) -> Metrics:
  """Per-task diagnostics; ``lam`` is the proximal strength the solver saw.

  The solver already evaluated its objective (L, or G = L + lam/2 ||phi -
  theta||^2 for iMAML) at theta (``losses[0]``, where the proximal term is 0)
  and at phi (``loss``), so the support losses cost no extra pass.
  """
  distance = otu.tree_norm(otu.tree_sub(phi, theta))
  metrics = {
      "query_loss": query_loss,
      "support_loss_before": info.losses[0],
      "support_loss_after": info.loss - 0.5 * lam * distance ** 2,
      "inner_grad_norm": info.grad_norm,
      # Final over initial gradient norm: near 0 for a converged solve.
      "inner_grad_ratio": info.grad_norm / jnp.maximum(info.grad_norms[0],
                                                       1e-30),
      "inner_steps": info.steps.astype(jnp.float32),
      "distance": distance,
  }
  if hasattr(loss_fn, "metrics"):
    query = loss_fn.metrics(phi, task.query)
    metrics.update({f"query_{k}": v for k, v in query.items() if k != "loss"})
  return metrics


def finetune(loss_fn: LossFn, solver: Callable[..., Any]
             ) -> Callable[[PyTree, PyTree], PyTree]:
  """``adapt(theta, support) -> phi``: the solver on ``L(.; support)`` from theta.

  The task adaptation of MAML, FOMAML and Reptile (no proximal term); gradients
  flow by unrolling the solver.

  Args:
    loss_fn: task loss ``loss_fn(params, batch) -> scalar``.
    solver: an inner solver ``solver(fun, init) -> (params, info)``, e.g.
      :func:`imaml_jax.gradient_descent`.

  Returns:
    ``adapt(theta, support) -> phi``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = imaml_jax.mse_loss(lambda w, x: x @ w)   # L(w) = (w - 1)^2
    >>> adapt = imaml_jax.finetune(loss, imaml_jax.gradient_descent(1, 0.25))
    >>> x = jnp.ones((3, 1))
    >>> adapt(jnp.zeros((1, 1)), imaml_jax.Batch(x, x)).tolist()
    [[0.5]]
  """

  def adapt(theta: PyTree, support: PyTree) -> PyTree:
    return solver(lambda p: loss_fn(p, support), theta)[0]

  return adapt


# Per-task metrics that also get their worst task, and which side is worst;
# the suffix (_max / _min) is how the metric then reduces everywhere
# (imaml_jax.metrics).
_WORST_CASE = {"inner_grad_norm": "max", "inner_grad_ratio": "max",
               "cg_relative_residual": "max", "cg_curvature": "min"}
_OVER_TASKS = {"max": jnp.max, "min": jnp.min}


def _batched(per_task: Callable[[PyTree, tasks_lib.Task],
                                tuple[PyTree, Metrics]],
             adapt: Callable[[PyTree, PyTree], PyTree],
             task_chunk: Optional[int] = None) -> Learner:
  """Lifts ``per_task(theta, task)`` to a learner averaging over a task batch.

  Metrics are task means; a few diagnostics also get their worst case over
  the batch (``*_max`` / ``*_min``, see ``_WORST_CASE``), since one bad task
  hides in a mean. ``adapt(theta, support) -> phi`` is the task adaptation
  the learner trains for, to evaluate with.

  ``task_chunk``: ``None`` vmaps over the whole task batch; an integer runs
  ``jax.lax.map`` over chunks of that many vmapped tasks (same result; on a
  CPU the smaller working set can be faster, see docs/benchmarks.md).
  """
  if task_chunk is not None and (not isinstance(task_chunk, int)
                                 or task_chunk < 1):
    raise ValueError(f"task_chunk must be None or an integer >= 1, got "
                     f"{task_chunk!r}.")

  def meta_gradient(theta: PyTree, tasks: tasks_lib.Task,
                    key: Optional[jax.Array] = None) -> tuple[PyTree, Metrics]:
    del key  # deterministic learners
    proximal.check_params(theta, "theta")
    tasks_lib.check_tasks(tasks, batched=True)
    if task_chunk is None:
      directions, per_task_metrics = jax.vmap(per_task, in_axes=(None, 0))(
          theta, tasks)
    else:   # a loop over chunks of task_chunk vmapped tasks
      directions, per_task_metrics = jax.lax.map(
          lambda task: per_task(theta, task), tasks, batch_size=task_chunk)
    direction = jax.tree.map(lambda d: jnp.mean(d, axis=0), directions)
    metrics = {k: jnp.mean(m.astype(jnp.float32) if m.dtype == bool else m,
                           axis=0)
               for k, m in per_task_metrics.items()}
    for name, side in _WORST_CASE.items():
      if name in per_task_metrics:
        metrics[f"{name}_{side}"] = _OVER_TASKS[side](per_task_metrics[name])
    metrics["meta_grad_norm"] = otu.tree_norm(direction)
    return direction, metrics

  return Learner(meta_gradient, adapt)


def imaml(loss_fn: LossFn,
          solver: Callable[..., Any],
          lam: float,
          cg_steps: int = 5,
          system: Union[str, implicit_lib.LinearSystem] = "exact",
          cg_tol: float = 0.0,
          linear_solve: implicit_lib.LinearSolve = solvers_lib.solve_cg,
          task_chunk: Optional[int] = None) -> Learner:
  r"""iMAML (Rajeswaran et al. 2019, Algorithm 2) with any inner solver.

  Per task: :math:`\phi = \mathrm{solver}(G(\cdot, \theta; D_{tr}))`,
  :math:`g = \nabla_\phi L(\phi; D_{test})`, and the meta-gradient
  :math:`(I + H/\lambda)^{-1} g` by ``cg_steps`` of CG. Metrics add
  ``cg_residual`` (:math:`\|g - A v\|`), ``cg_relative_residual``,
  ``cg_curvature``, ``cg_iterations`` (see :class:`imaml_jax.ImplicitInfo`)
  and ``cg_negative_curvature``, the fraction of tasks whose CG met
  :math:`p^\top A p \le 0`.

  Args:
    loss_fn: task loss ``loss_fn(params, batch) -> scalar``.
    solver: :func:`imaml_jax.gradient_descent` (iMAML-GD) or
      :func:`imaml_jax.newton_cg` (iMAML-HF).
    lam, cg_steps, system, cg_tol, linear_solve: as for
      :func:`imaml_jax.implicit_adapt`.
    task_chunk: ``None`` to ``vmap`` over all tasks at once, or how many
      tasks to ``vmap`` per iteration of a ``lax.map`` (same result).

  Returns:
    A :class:`Learner`: ``learner(theta, tasks, key) -> (meta_gradient,
    metrics)``, ``learner.adapt`` the implicit adaptation.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = imaml_jax.mse_loss(lambda w, x: x @ w)
    >>> learner = imaml_jax.imaml(
    ...     loss, imaml_jax.gradient_descent(16, 0.1), lam=2.0)
    >>> x = jax.random.normal(jax.random.key(0), (4, 5, 3))  # 4 tasks
    >>> tasks = imaml_jax.Task(imaml_jax.Batch(x, x[..., :1]),
    ...                        imaml_jax.Batch(x, x[..., 1:2]))
    >>> grad, metrics = learner(jnp.zeros((3, 1)), tasks, None)
    >>> grad.shape, {"cg_residual", "cg_iterations", "distance"} <= set(metrics)
    ((3, 1), True)

  References:
    Rajeswaran et al., "Meta-Learning with Implicit Gradients", NeurIPS 2019.
  """
  adapt = implicit_lib.implicit_adapt(loss_fn, solver, lam, cg_steps, system,
                                      cg_tol, linear_solve)

  def per_task(theta, task):
    phi, info = adapt.solve(theta, task.support)
    query_loss, g = jax.value_and_grad(loss_fn)(phi, task.query)
    meta_grad, cg_info = adapt.implicit_gradient(phi, task.support, g)
    metrics = _task_metrics(loss_fn, theta, phi, task, info, query_loss, lam)
    metrics["cg_residual"] = cg_info.residual
    metrics["cg_relative_residual"] = cg_info.relative_residual
    metrics["cg_curvature"] = cg_info.curvature
    metrics["cg_negative_curvature"] = cg_info.negative_curvature
    metrics["cg_iterations"] = cg_info.iterations.astype(jnp.float32)
    return meta_grad, metrics

  return _batched(per_task, adapt, task_chunk)


def maml(loss_fn: LossFn, steps: int, learning_rate: float,
         task_chunk: Optional[int] = None) -> Learner:
  r"""MAML (Finn et al. 2017): differentiate through the unrolled inner loop.

  .. math:: \phi = \theta - \alpha \sum_k \nabla L(\phi_k; D_{tr}), \qquad
            \text{direction} = \frac{d L(\phi(\theta); D_{test})}{d\theta}

  Memory grows linearly with ``steps`` (reverse mode stores every step).

  Args:
    loss_fn: task loss ``loss_fn(params, batch) -> scalar``.
    steps: inner gradient steps on the support loss.
    learning_rate: inner step size.
    task_chunk: ``None`` to ``vmap`` over all tasks at once, or how many
      tasks to ``vmap`` per iteration of a ``lax.map`` (same result).

  Returns:
    A :class:`Learner`: ``learner(theta, tasks, key) -> (direction,
    metrics)``, ``learner.adapt`` the unrolled adaptation (:func:`finetune`).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = imaml_jax.mse_loss(lambda w, x: x @ w)
    >>> x = jnp.ones((2, 3, 1))
    >>> tasks = imaml_jax.Task(imaml_jax.Batch(x, x), imaml_jax.Batch(x, x))
    >>> grad, _ = imaml_jax.maml(loss, 1, 0.25)(jnp.zeros((1, 1)), tasks)
    >>> grad.tolist()  # phi = 0.5; (1 - 2 a) * 2 (phi - 1)
    [[-0.5]]

  References:
    Finn, Abbeel, Levine, "Model-Agnostic Meta-Learning for Fast Adaptation
    of Deep Networks", ICML 2017.
  """
  solver = solvers_lib.gradient_descent(steps, learning_rate)

  def per_task(theta, task):
    def meta_loss(th):
      phi, info = solver(lambda p: loss_fn(p, task.support), th)
      return loss_fn(phi, task.query), (phi, info)

    (query_loss, (phi, info)), grad = jax.value_and_grad(
        meta_loss, has_aux=True)(theta)
    return grad, _task_metrics(loss_fn, theta, phi, task, info, query_loss)

  return _batched(per_task, finetune(loss_fn, solver), task_chunk)


def fomaml(loss_fn: LossFn, steps: int, learning_rate: float,
           task_chunk: Optional[int] = None) -> Learner:
  r"""First-order MAML: the query gradient at the adapted parameters.

  .. math:: \text{direction} = \nabla_\phi L(\phi; D_{test}), \qquad
            \phi = \text{GD}^{K}_{\alpha}(L(\cdot; D_{tr}), \theta)

  Args:
    loss_fn: task loss ``loss_fn(params, batch) -> scalar``.
    steps: inner gradient steps on the support loss.
    learning_rate: inner step size.
    task_chunk: ``None`` to ``vmap`` over all tasks at once, or how many
      tasks to ``vmap`` per iteration of a ``lax.map`` (same result).

  Returns:
    A :class:`Learner`: ``learner(theta, tasks, key) -> (direction,
    metrics)``, ``learner.adapt`` the unrolled adaptation (:func:`finetune`).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = imaml_jax.mse_loss(lambda w, x: x @ w)   # L(w) = (w - 1)^2
    >>> x = jnp.ones((2, 3, 1))
    >>> tasks = imaml_jax.Task(imaml_jax.Batch(x, x), imaml_jax.Batch(x, x))
    >>> grad, _ = imaml_jax.fomaml(loss, 1, 0.25)(jnp.zeros((1, 1)), tasks)
    >>> grad.tolist()  # phi = 0.5; 2 (phi - 1), no (1 - 2 a) factor
    [[-1.0]]

  References:
    Finn et al. 2017, Sec. 5.2; Nichol, Achiam, Schulman 2018.
  """
  solver = solvers_lib.gradient_descent(steps, learning_rate)

  def per_task(theta, task):
    phi, info = solver(lambda p: loss_fn(p, task.support), theta)
    query_loss, grad = jax.value_and_grad(loss_fn)(phi, task.query)
    return grad, _task_metrics(loss_fn, theta, phi, task, info, query_loss)

  return _batched(per_task, finetune(loss_fn, solver), task_chunk)


def _minibatch_descent(loss_fn: LossFn, support: PyTree, init: PyTree,
                       steps: int, learning_rate: float, count: int
                       ) -> tuple[PyTree, solvers_lib.SolverInfo]:
  """Gradient descent whose step k takes minibatch k mod ``count`` of ``support``.

  Its :class:`~imaml_jax.solvers.SolverInfo` holds the minibatch losses and
  gradient norms before each step and the whole support set's loss at the
  end. Two fields stand in for what would cost another gradient of the whole
  set (as much as all the steps together): ``losses[0]``, the loss at
  ``init`` on minibatch 0 (a stratified subsample), for the support loss
  there, and ``grad_norm``, the last step's minibatch gradient norm.
  """
  batches = tasks_lib.minibatches(support, count)
  value_and_grad = jax.value_and_grad(loss_fn)

  def step(params, k):
    batch = jax.tree.map(lambda a: a[k % count], batches)
    loss, grad = value_and_grad(params, batch)
    return (otu.tree_add_scale(params, -learning_rate, grad),
            (loss, otu.tree_norm(grad)))

  params, (losses, grad_norms) = jax.lax.scan(step, init, jnp.arange(steps))
  return params, solvers_lib.SolverInfo(
      loss=loss_fn(params, support), grad_norm=grad_norms[-1],
      steps=jnp.asarray(steps, jnp.int32), losses=losses,
      grad_norms=grad_norms)


def reptile(loss_fn: LossFn, steps: int, learning_rate: float,
            minibatches: int = 1,
            task_chunk: Optional[int] = None) -> Learner:
  r"""Reptile (Nichol, Achiam, Schulman 2018): move theta towards phi.

  .. math:: \text{direction} = \theta - \phi, \qquad
            \phi_{k+1} = \phi_k - \alpha \nabla L(\phi_k; B_{k \bmod m}),
            \quad \phi_0 = \theta

  where :math:`B_0, \dots, B_{m-1}` are ``minibatches`` disjoint minibatches
  of :math:`D_{tr}` (:func:`imaml_jax.minibatches`). Reptile's
  within-task generalisation comes from the inner steps seeing *different*
  data (its paper's Sec. 5: the expected inner product of gradients on
  different minibatches); with :math:`m = 1` every step sees the same
  support set, and on few examples the inner loop memorises them. Reptile's
  public code takes minibatches of 10 of the 50 training examples on
  Omniglot (5 steps, 10 examples per class).

  With ``optax.sgd(epsilon)`` the meta-update is Reptile's
  :math:`\theta \leftarrow \theta + \epsilon (\phi - \theta)`; with Adam it is
  the Adam variant of Reptile's public code.

  Args:
    loss_fn: task loss ``loss_fn(params, batch) -> scalar``.
    steps: inner gradient steps on the support loss.
    learning_rate: inner step size.
    minibatches: :math:`m`, how many disjoint minibatches the support set is
      split into (it must divide the support size); 1: every step on the
      whole support set. ``adapt`` (test time) always uses the whole set.
    task_chunk: ``None`` to ``vmap`` over all tasks at once, or how many
      tasks to ``vmap`` per iteration of a ``lax.map`` (same result).

  Returns:
    A :class:`Learner`: ``learner(theta, tasks, key) -> (direction,
    metrics)``, ``learner.adapt`` the unrolled adaptation (:func:`finetune`).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = imaml_jax.mse_loss(lambda w, x: x @ w)   # L(w) = (w - 1)^2
    >>> x = jnp.ones((2, 3, 1))
    >>> tasks = imaml_jax.Task(imaml_jax.Batch(x, x), imaml_jax.Batch(x, x))
    >>> direction, _ = imaml_jax.reptile(loss, 1, 0.25)(jnp.zeros((1, 1)),
    ...                                              tasks)
    >>> direction.tolist()  # theta - phi = 0 - 0.5
    [[-0.5]]

  References:
    Nichol, Achiam, Schulman, "On First-Order Meta-Learning Algorithms", 2018.
  """
  solver = solvers_lib.gradient_descent(steps, learning_rate)
  if not isinstance(minibatches, int) or minibatches < 1:
    raise ValueError(f"minibatches must be an integer >= 1, got "
                     f"{minibatches!r}.")

  def per_task(theta, task):
    if minibatches == 1:
      phi, info = solver(lambda p: loss_fn(p, task.support), theta)
    else:
      phi, info = _minibatch_descent(loss_fn, task.support, theta, steps,
                                     learning_rate, minibatches)
    query_loss = loss_fn(phi, task.query)
    return (otu.tree_sub(theta, phi),
            _task_metrics(loss_fn, theta, phi, task, info, query_loss))

  return _batched(per_task, finetune(loss_fn, solver), task_chunk)

