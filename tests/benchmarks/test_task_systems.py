"""Per-task diagnostics of benchmarks.task_systems against the batched learner."""

import jax
import numpy as np

import imaml_jax
from benchmarks import task_systems


def test_per_task_metrics_reduce_to_the_learners_mean_and_worst_task():
  k = jax.random.split(jax.random.key(0), 4)
  num_tasks, n, d = 5, 6, 4
  xs, xq = (jax.random.normal(kk, (num_tasks, n, d)) for kk in k[:2])
  w = jax.random.normal(k[2], (num_tasks, d, 1))
  tasks = imaml_jax.Task(imaml_jax.Batch(xs, xs @ w),
                         imaml_jax.Batch(xq, xq @ w + 0.1))
  loss = imaml_jax.mse_loss(lambda p, x: x @ p)
  # 2 CG steps on a 4-dimensional system: residuals differ from task to task.
  learner = imaml_jax.imaml(loss, imaml_jax.gradient_descent(3, 0.05),
                            lam=0.5, cg_steps=2)
  theta = jax.random.normal(k[3], (d, 1))
  per_task = task_systems.per_task_metrics(learner, theta, tasks)
  _, batched = learner(theta, tasks, None)
  for name in task_systems.METRICS:
    values = np.asarray(per_task[name])
    assert values.shape == (num_tasks,)
    np.testing.assert_allclose(values.mean(), batched[name], rtol=1e-5)
    np.testing.assert_allclose(values.max(), batched[name + "_max"],
                               rtol=1e-5)
  assert np.ptp(np.asarray(per_task["cg_relative_residual"])) > 0
  s = task_systems.summary(np.array([0.1, 0.3, 2.0]))
  assert s == {"median": 0.3, "mean": 0.8, "max": 2.0}
