"""The meta-training step: sample tasks -> adapt -> meta-gradient -> optax update.

The whole step is one ``jax.jit`` function of ``(state, key)``: tasks are drawn
on device from ``jax.random.fold_in(key, state.step)``, so a run is a pure
function of its seed and restarting from a saved state replays the same tasks.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import optax
import tqdm.auto as tqdm

from imaml_jax import metrics as metrics_lib
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
  """A fresh :class:`TrainState` at step 0.

  Args:
    params: the initial meta-parameters.
    optimizer: the meta-optimizer (e.g. ``optax.adam(1e-3)``).

  Returns:
    ``TrainState(params, optimizer.init(params), step=0)``.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import imaml_jax
    >>> state = imaml_jax.init_train_state(jnp.zeros(3), optax.adam(1e-3))
    >>> int(state.step), state.params.shape
    (0, (3,))
  """
  return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def make_meta_step(
    learner: Callable[..., tuple[PyTree, Metrics]],
    optimizer: optax.GradientTransformation,
    sample_tasks: Callable[[jax.Array, Any], tasks_lib.Task],
) -> Callable[..., tuple[TrainState, Metrics]]:
  """Builds the jitted meta-step ``step(state, key, data=None) -> (state, metrics)``.

  Args:
    learner: ``(theta, tasks, key) -> (direction, metrics)``, e.g.
      :func:`imaml_jax.imaml`.
    optimizer: any optax transformation (Adam in the paper).
    sample_tasks: ``sample_tasks(key, data) -> Task`` drawing a batch of tasks
      on device from ``data`` (e.g. a whole image set already on device; pass
      it as an argument rather than closing over it, which would embed it in
      the compiled program as a constant).

  Returns:
    ``step(state, key, data=None)``; ``key`` is the run's base key, folded
    with the step number inside, so the same ``key`` is passed at every step.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> import imaml_jax
    >>> loss = imaml_jax.mse_loss(lambda w, x: x @ w)
    >>> def sample(key, data):
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

  def step(state: TrainState, key: jax.Array,
           data: Any = None) -> tuple[TrainState, Metrics]:
    key = jax.random.fold_in(key, state.step)
    task_key, learner_key = jax.random.split(key)
    tasks = sample_tasks(task_key, data)
    direction, metrics = learner(state.params, tasks, learner_key)
    return apply_direction(optimizer, state, direction), metrics

  return jax.jit(step)


def apply_direction(optimizer: optax.GradientTransformation,
                    state: TrainState, direction: PyTree) -> TrainState:
  """One optax update of the meta-parameters along ``direction``."""
  updates, opt_state = optimizer.update(direction, state.opt_state,
                                        state.params)
  return TrainState(optax.apply_updates(state.params, updates), opt_state,
                    state.step + 1)


class Hook(NamedTuple):
  """Calls ``fn(state)`` after every ``every``-th meta-step (and the last)."""
  every: int
  fn: Callable[[TrainState], None]


def run(step: Callable[..., tuple[TrainState, Metrics]],
        state: TrainState, key: jax.Array, num_steps: int,
        log_every: int = 100,
        on_log: Optional[Callable[[int, dict[str, float]], None]] = None,
        hooks: Sequence[Hook] = (),
        progress: bool = True,
        data: Any = None,
        max_seconds: Optional[float] = None,
        ) -> tuple[TrainState, list[dict[str, float]]]:
  """Runs ``step(state, key, data)`` from ``state.step`` to ``num_steps``.

  A progress bar shows the way. Every ``log_every`` steps (and at the last)
  the metrics, reduced over the interval on device (means averaged, worst
  cases ``*_max`` / ``*_min`` by max / min: :mod:`imaml_jax.metrics`), are
  pulled to the host
  with ``seconds_per_step`` (wall time of the interval, so the first one
  includes compilation), passed to ``on_log(step, metrics)`` and returned in
  the history. ``hooks`` run after their steps (validation, checkpoints).

  With ``max_seconds``, the run also ends after the logging interval in which
  the meta-steps' wall time (hooks excluded) reaches it; the hooks then run as
  at a last step, so a checkpoint is written.

  Args:
    step: ``step(state, key, data) -> (state, metrics)``, e.g. from
      :func:`make_meta_step`.
    state: the state to start from (its ``step`` says where).
    key: PRNG key; the step folds the meta-step number into it.
    num_steps: the meta-step to stop at.
    log_every: logging interval.
    on_log: ``on_log(step, metrics)`` after each interval.
    hooks: :class:`Hook` s run after their steps and at the last one.
    progress: show a progress bar.
    data: passed to ``step`` (e.g. the training images on device).
    max_seconds: wall-clock budget of the meta-steps.

  Returns:
    ``(state, history)``: the final state and the logged metrics.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> import imaml_jax
    >>> def step(state, key, data):   # gradient descent on (w - 3)^2
    ...   return state._replace(params=state.params - 0.25 * (state.params - 3),
    ...                         step=state.step + 1), {"w": state.params}
    >>> state = imaml_jax.init_train_state(jnp.zeros(()), optax.sgd(0.1))
    >>> state, history = imaml_jax.run(step, state, jax.random.key(0), 10,
    ...                                log_every=5, progress=False)
    >>> int(state.step), [h["step"] for h in history]
    (10, [5, 10])
  """
  if num_steps < 0 or log_every < 1 or any(h.every < 1 for h in hooks):
    raise ValueError(f"need num_steps >= 0 and intervals >= 1, got "
                     f"num_steps={num_steps}, log_every={log_every}, hooks "
                     f"every {[h.every for h in hooks]}.")
  history = []
  start = int(state.step)
  total, count, tic, elapsed = None, 0, time.perf_counter(), 0.0
  with tqdm.tqdm(total=num_steps, initial=start, disable=not progress,
                 desc="meta-train", unit="step", dynamic_ncols=True) as bar:
    for i in range(start, num_steps):
      state, metrics = step(state, key, data)
      total = metrics_lib.accumulate(total, metrics)
      count += 1
      bar.update(1)
      last = i + 1 == num_steps
      if (i + 1) % log_every == 0 or last:
        logged = metrics_lib.finish(jax.device_get(total), count)
        interval = time.perf_counter() - tic
        elapsed += interval
        logged["seconds_per_step"] = interval / count
        history.append({"step": i + 1, **logged})
        bar.set_postfix(loss=f"{logged.get('query_loss', float('nan')):.3f}")
        if on_log is not None:
          on_log(i + 1, logged)
        total, count = None, 0
        last = last or (max_seconds is not None and elapsed >= max_seconds)
      for hook in hooks:
        if (i + 1) % hook.every == 0 or last:
          hook.fn(state)
      if last:
        break
      if count == 0:   # the next interval's clock starts after logs and hooks
        tic = time.perf_counter()
  return state, history
