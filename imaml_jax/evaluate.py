"""Evaluation over test episodes: mean accuracy with its 95% confidence interval."""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from imaml_jax import tasks as tasks_lib

PyTree = Any


def mean_ci95(values: Any) -> tuple[float, float]:
  r"""Mean and 95% confidence half-width :math:`1.96\, s / \sqrt{n}`.

  ``s`` is the sample standard deviation (``ddof=1``), as reported in the
  MAML and iMAML tables.

  Args:
    values: per-episode accuracies (or losses), at least two.

  Returns:
    ``(mean, half_width)`` as floats.

  Examples:
    >>> import imaml_jax
    >>> mean, ci = imaml_jax.mean_ci95([1.0, 0.0, 1.0, 0.0])
    >>> round(mean, 4), round(ci, 4)
    (0.5, 0.5658)
  """
  values = np.asarray(values, dtype=np.float64).ravel()
  if values.size < 2:
    raise ValueError(f"need at least 2 episodes for a confidence interval, "
                     f"got {values.size}.")
  return float(values.mean()), float(
      1.96 * values.std(ddof=1) / np.sqrt(values.size))


def adapt_and_evaluate(
    adapt: Callable[[PyTree, PyTree], PyTree],
    metric_fn: Callable[[PyTree, PyTree], dict[str, jax.Array]],
    theta: PyTree, tasks: tasks_lib.Task) -> dict[str, jax.Array]:
  """Per-task metrics after adaptation, ``vmap``-ped over a batch of tasks.

  Args:
    adapt: ``adapt(theta, support) -> phi``, e.g. an
      :func:`imaml_jax.implicit_adapt` or :func:`imaml_jax.finetune`.
    metric_fn: ``metric_fn(phi, query) -> dict`` (e.g. ``loss.metrics``).
    theta: meta-parameters.
    tasks: a batch of tasks.

  Returns:
    A dict of arrays with one value per task.

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> loss = imaml_jax.mse_loss(lambda w, x: x @ w)
    >>> adapt = imaml_jax.finetune(loss, imaml_jax.gradient_descent(50, 0.2))
    >>> x = jnp.ones((2, 3, 1))                        # 2 tasks, y = 1 and 2
    >>> y = jnp.stack([jnp.ones((3, 1)), 2 * jnp.ones((3, 1))])
    >>> tasks = imaml_jax.Task(imaml_jax.Batch(x, y), imaml_jax.Batch(x, y))
    >>> m = imaml_jax.adapt_and_evaluate(adapt, loss.metrics,
    ...                                  jnp.zeros((1, 1)), tasks)
    >>> [round(float(v), 6) for v in m["loss"]]   # each task fits its own y
    [0.0, 0.0]
  """
  tasks_lib.check_tasks(tasks, batched=True)

  def one(task):
    return metric_fn(adapt(theta, task.support), task.query)

  return jax.vmap(one)(tasks)
