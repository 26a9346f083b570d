"""Task and batch checks: what a malformed task is told."""

import jax.numpy as jnp
import pytest

import imaml_jax
from imaml_jax import tasks


def batch(n, tasks_=None):
  lead = () if tasks_ is None else (tasks_,)
  return imaml_jax.Batch(jnp.zeros(lead + (n, 3)), jnp.zeros(lead + (n,)))


def test_a_well_formed_task_batch_passes():
  tasks.check_tasks(imaml_jax.Task(batch(5, 4), batch(2, 4)))
  tasks.check_tasks(imaml_jax.Task(batch(5), batch(2)), batched=False)


@pytest.mark.parametrize("task,error,match", [
    ((batch(5), batch(2)), TypeError, "imaml_jax.Task"),
    (imaml_jax.Task(batch(0, 4), batch(2, 4)), ValueError, "support set is empty"),
    (imaml_jax.Task(batch(5, 4), imaml_jax.Batch(jnp.zeros((4, 2, 3)),
                                                 jnp.zeros((4, 3)))),
     ValueError, "query arrays disagree"),
    (imaml_jax.Task(batch(5, 4), batch(2, 3)), ValueError, "task counts"),
    (imaml_jax.Task(imaml_jax.Batch(jnp.zeros(4), jnp.zeros(4)), batch(2, 4)),
     ValueError, "example axis"),
])
def test_malformed_tasks_are_named(task, error, match):
  with pytest.raises(error, match=match):
    tasks.check_tasks(task)
