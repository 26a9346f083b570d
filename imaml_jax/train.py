"""The meta-training step: sample tasks -> adapt -> meta-gradient -> optax update.

The whole step is one ``jax.jit`` function of ``(state, key)``: tasks are drawn
on device from ``jax.random.fold_in(key, state.step)``, so a run is a pure
function of its seed and restarting from a saved state replays the same tasks.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax
import tqdm.auto as tqdm

from imaml_jax import tasks as tasks_lib

PyTree = Any
Metrics = dict[str, jax.Array]


class TrainState(NamedTuple):
  """Meta-parameters, optimizer state and the number of meta-steps taken."""
  params: PyTree
  opt_state: optax.OptState
  step: jax.Array


def init_train_state(params: PyTree,
                     optimizer: optax.GradientTransformation) -> TrainState:
  """A fresh :class:`TrainState` at step 0."""
  return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def make_meta_step(
    learner: Callable[..., tuple[PyTree, Metrics]],
    optimizer: optax.GradientTransformation,
    sample_tasks: Callable[[jax.Array], tasks_lib.Task],
) -> Callable[[TrainState, jax.Array], tuple[TrainState, Metrics]]:
  """Builds the jitted meta-step ``step(state, key) -> (state, metrics)``.

  Args:
    learner: ``(theta, tasks, key) -> (direction, metrics)``, e.g.
      :func:`imaml_jax.imaml`.
    optimizer: any optax transformation (Adam in the paper).
    sample_tasks: ``sample_tasks(key) -> Task`` drawing a batch of tasks on
      device.

  Returns:
    ``step(state, key)``; ``key`` is the run's base key, folded with the step
    number inside, so the same ``key`` is passed at every step.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> import imaml_jax
    >>> loss = imaml_jax.mse_loss(lambda w, x: x @ w)
    >>> def sample(key):
    ...   x = jax.random.normal(key, (8, 10, 2))
    ...   return imaml_jax.Task(imaml_jax.Batch(x, x[..., :1]),
    ...                         imaml_jax.Batch(x, x[..., :1]))
    >>> learner = imaml_jax.fomaml(loss, steps=1, learning_rate=0.1)
    >>> opt = optax.adam(1e-2)
    >>> step = imaml_jax.make_meta_step(learner, opt, sample)
    >>> state = imaml_jax.init_train_state(jnp.zeros((2, 1)), opt)
    >>> state, metrics = step(state, jax.random.key(0))
    >>> int(state.step)
    1
  """

  def step(state: TrainState, key: jax.Array) -> tuple[TrainState, Metrics]:
    key = jax.random.fold_in(key, state.step)
    task_key, learner_key = jax.random.split(key)
    tasks = sample_tasks(task_key)
    direction, metrics = learner(state.params, tasks, learner_key)
    updates, opt_state = optimizer.update(direction, state.opt_state,
                                          state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(params, opt_state, state.step + 1), metrics

  return jax.jit(step)


def run(step: Callable[[TrainState, jax.Array], tuple[TrainState, Metrics]],
        state: TrainState, key: jax.Array, num_steps: int,
        log_every: int = 100,
        on_log: Optional[Callable[[int, dict[str, float]], None]] = None,
        progress: bool = True) -> tuple[TrainState, list[dict[str, float]]]:
  """Runs ``step`` until ``state.step == num_steps``, with a progress bar.

  Metrics of the last step of every ``log_every`` (and of the final step) are
  pulled to the host, passed to ``on_log(step, metrics)`` and returned.
  """
  if num_steps < 0 or log_every < 1:
    raise ValueError(f"need num_steps >= 0 and log_every >= 1, got "
                     f"{num_steps} and {log_every}.")
  history = []
  start = int(state.step)
  with tqdm.tqdm(total=num_steps, initial=start, disable=not progress,
                 desc="meta-train", unit="step") as bar:
    for i in range(start, num_steps):
      state, metrics = step(state, key)
      bar.update(1)
      if (i + 1) % log_every == 0 or i + 1 == num_steps:
        logged = {k: float(v) for k, v in jax.device_get(metrics).items()}
        history.append({"step": i + 1, **logged})
        bar.set_postfix(loss=f"{logged.get('query_loss', float('nan')):.3f}")
        if on_log is not None:
          on_log(i + 1, logged)
  return state, history
