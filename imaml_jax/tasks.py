"""Few-shot tasks: a support batch D_tr and a query batch D_test."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

PyTree = Any


class Batch(NamedTuple):
  """Inputs ``x`` and targets ``y`` of one data set, leading axis = examples."""
  x: jax.Array
  y: jax.Array


class Task(NamedTuple):
  """One few-shot task: adapt on ``support`` (D_tr), evaluate on ``query`` (D_test).

  A batch of tasks is a ``Task`` whose leaves carry a leading task axis.
  """
  support: PyTree
  query: PyTree


def check_batch(batch: PyTree, name: str, batch_dims: int = 0) -> None:
  """Raises ``ValueError`` if ``batch`` is empty or its leaves disagree in length.

  Args:
    batch: a pytree of arrays whose axis ``batch_dims`` indexes examples.
    name: how to call it in the error ("support", "query", ...).
    batch_dims: number of leading axes before the example axis (1 for a batch
      of tasks).
  """
  leaves = jax.tree_util.tree_leaves_with_path(batch)
  if not leaves:
    raise ValueError(f"The {name} set holds no arrays: {batch!r}.")
  sizes = {}
  for path, leaf in leaves:
    shape = jnp.shape(leaf)
    if len(shape) <= batch_dims:
      raise ValueError(
          f"Every {name} array needs an example axis at position {batch_dims}; "
          f"{name}{jax.tree_util.keystr(path)} has shape {shape}.")
    sizes[jax.tree_util.keystr(path)] = shape[batch_dims]
  if any(n == 0 for n in sizes.values()):
    raise ValueError(f"The {name} set is empty (examples per array: {sizes}); "
                     f"a task needs at least one {name} example.")
  if len(set(sizes.values())) > 1:
    raise ValueError(f"The {name} arrays disagree in their number of examples: "
                     f"{sizes}.")


def check_tasks(tasks: Task, batched: bool = True) -> None:
  """Checks a (batch of) task(s): a ``Task`` with non-empty support and query."""
  if not isinstance(tasks, Task):
    raise TypeError(f"Expected an imaml_jax.Task(support, query), got "
                    f"{type(tasks).__name__}.")
  dims = int(batched)
  check_batch(tasks.support, "support", dims)
  check_batch(tasks.query, "query", dims)
  if batched:
    counts = {jnp.shape(leaf)[0] for leaf in jax.tree.leaves(tasks)}
    if len(counts) > 1:
      raise ValueError(f"All arrays of a task batch need the same leading task "
                       f"axis; got task counts {sorted(counts)}.")


def minibatches(batch: PyTree, count: int) -> PyTree:
  """``count`` disjoint minibatches of ``batch``, strided over its examples.

  Minibatch ``j`` holds examples ``j, j + count, j + 2 count, ...``: leaves
  ``(n, ...)`` become ``(count, n // count, ...)``. On a class-major episode
  (the K examples of each class in a row, as
  :func:`imaml_jax.data.sample_episodes` draws them) with ``count`` dividing
  K, every minibatch holds K / count examples of every class.

  Args:
    batch: a pytree of arrays whose leading axis indexes examples.
    count: how many minibatches; must divide the number of examples.

  Returns:
    ``batch`` with a new leading minibatch axis of size ``count``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> imaml_jax.minibatches(jnp.arange(6), 3).tolist()
    [[0, 3], [1, 4], [2, 5]]
  """
  n = jnp.shape(jax.tree.leaves(batch)[0])[0]
  if not isinstance(count, int) or count < 1 or n % count:
    raise ValueError(f"count must be a positive integer dividing the "
                     f"{n} examples, got {count!r}.")
  return jax.tree.map(
      lambda a: jnp.swapaxes(a.reshape(n // count, count, *a.shape[1:]), 0, 1),
      batch)
