"""Sinusoid regression tasks (Finn et al. 2017, Sec. 5.1), sampled on device."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from imaml_jax.tasks import Batch, Task


def sample_sinusoid_tasks(key: jax.Array, num_tasks: int, support_size: int = 10,
                          query_size: int = 10) -> Task:
  r"""A batch of tasks :math:`y = A \sin(x - b)`.

  Amplitude :math:`A \sim U[0.1, 5]`, phase :math:`b \sim U[0, \pi]`, inputs
  :math:`x \sim U[-5, 5]`, as in MAML's regression experiment.

  Args:
    key: PRNG key of the batch.
    num_tasks: tasks in the batch.
    support_size: K, the support examples per task.
    query_size: query examples per task.

  Returns:
    A :class:`Task` with ``x`` and ``y`` of shape ``(num_tasks, n, 1)``.

  Examples:
    >>> import jax
    >>> from imaml_jax.data import sample_sinusoid_tasks
    >>> tasks = sample_sinusoid_tasks(jax.random.key(0), 4, 5, 7)
    >>> tasks.support.x.shape, tasks.query.y.shape
    ((4, 5, 1), (4, 7, 1))
  """
  if min(num_tasks, support_size, query_size) < 1:
    raise ValueError(f"num_tasks, support_size and query_size must be >= 1, "
                     f"got {num_tasks}, {support_size}, {query_size}.")
  k_amp, k_phase, k_x = jax.random.split(key, 3)
  amp = jax.random.uniform(k_amp, (num_tasks, 1, 1), minval=0.1, maxval=5.0)
  phase = jax.random.uniform(k_phase, (num_tasks, 1, 1), maxval=jnp.pi)
  x = jax.random.uniform(k_x, (num_tasks, support_size + query_size, 1),
                         minval=-5.0, maxval=5.0)
  y = amp * jnp.sin(x - phase)
  return Task(Batch(x[:, :support_size], y[:, :support_size]),
              Batch(x[:, support_size:], y[:, support_size:]))
