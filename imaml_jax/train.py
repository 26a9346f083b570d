"""The meta-training step: sample tasks -> adapt -> meta-gradient -> optax update.

The whole step is one ``jax.jit`` function of ``(state, key)``: tasks are drawn
on device from ``jax.random.fold_in(key, state.step)``, so a run is a pure
function of its seed and restarting from a saved state replays the same tasks.

A meta-step whose direction or query loss is not finite leaves the
meta-parameters and the optimizer's moments untouched (``optax.apply_if_finite``
wraps the meta-optimizer in :func:`init_train_state`): it is counted in the
metrics ``nonfinite`` (1 for a skipped step) and ``nonfinite_in_a_row_max``
(skipped steps in a row), so a caller can stop (``experiments/train.py`` does
after ``max_nonfinite_steps``), and no state ever holds non-finite
parameters that were finite before.
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
  """Meta-parameters, optimizer state and the number of meta-steps taken.

  ``opt_state`` is the state of the guarded optimizer (:func:`guarded`): an
  ``optax.ApplyIfFiniteState`` around the meta-optimizer's own state.
  """
  params: PyTree
  opt_state: optax.OptState
  step: jax.Array


# apply_if_finite applies a non-finite update once this many have come in a
# row; never here: callers stop on ``nonfinite_in_a_row_max`` instead.
_NEVER_APPLY = int(jnp.iinfo(jnp.int32).max)


def guarded(optimizer: optax.GradientTransformation
            ) -> optax.GradientTransformation:
  """``optimizer`` skipping non-finite updates (``optax.apply_if_finite``).

  A skipped update leaves the parameters and the inner state as they were
  and is counted in the state (``notfinite_count`` in a row,
  ``total_notfinite``).

  Args:
    optimizer: the meta-optimizer.

  Returns:
    The guarded transformation whose state :class:`TrainState` holds.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import imaml_jax
    >>> opt = imaml_jax.train.guarded(optax.sgd(1.0))
    >>> state = opt.init(jnp.zeros(2))
    >>> updates, state = opt.update(jnp.array([1.0, jnp.nan]), state)
    >>> updates.tolist(), int(state.notfinite_count)
    ([0.0, 0.0], 1)
  """
  return optax.apply_if_finite(optimizer, max_consecutive_errors=_NEVER_APPLY)


def init_train_state(params: PyTree,
                     optimizer: optax.GradientTransformation) -> TrainState:
  """A fresh :class:`TrainState` at step 0.

  Args:
    params: the initial meta-parameters.
    optimizer: the meta-optimizer (e.g. ``optax.adam(1e-3)``).

  Returns:
    ``TrainState(params, guarded(optimizer).init(params), step=0)``.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import imaml_jax
    >>> state = imaml_jax.init_train_state(jnp.zeros(3), optax.adam(1e-3))
    >>> int(state.step), state.params.shape
    (0, (3,))
  """
  return TrainState(params, guarded(optimizer).init(params),
                    jnp.zeros((), jnp.int32))


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
    return meta_update(optimizer, state, direction, metrics)

  return jax.jit(step)


def apply_direction(optimizer: optax.GradientTransformation,
                    state: TrainState, direction: PyTree) -> TrainState:
  """One update of the meta-parameters along ``direction`` by the guarded
  ``optimizer`` (skipped, but counted, if ``direction`` is not finite)."""
  updates, opt_state = guarded(optimizer).update(direction, state.opt_state,
                                                 state.params)
  return TrainState(optax.apply_updates(state.params, updates), opt_state,
                    state.step + 1)


def meta_update(optimizer: optax.GradientTransformation, state: TrainState,
                direction: PyTree, metrics: Metrics
                ) -> tuple[TrainState, Metrics]:
  """The end of a meta-step: the guarded update and its non-finite counters.

  The step is skipped when ``direction`` or ``metrics["query_loss"]`` is not
  finite. ``metrics`` gain ``nonfinite`` (1.0 for a skipped step; a mean over
  an interval is the fraction skipped) and ``nonfinite_in_a_row_max``
  (skipped steps in a row, ending at this one).

  Args:
    optimizer: the meta-optimizer (unguarded; the guard is added here).
    state: the :class:`TrainState` before the step.
    direction: the learner's direction, structured like ``state.params``.
    metrics: the learner's metrics.

  Returns:
    ``(state, metrics)`` after the step.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import imaml_jax
    >>> opt = optax.sgd(1.0)
    >>> state = imaml_jax.init_train_state(jnp.zeros(2), opt)
    >>> state, m = imaml_jax.train.meta_update(
    ...     opt, state, jnp.ones(2), {"query_loss": jnp.array(jnp.nan)})
    >>> state.params.tolist(), int(state.step), float(m["nonfinite"])
    ([0.0, 0.0], 1, 1.0)
  """
  if "query_loss" in metrics:   # a non-finite loss poisons the direction
    loss_ok = jnp.isfinite(metrics["query_loss"])
    direction = jax.tree.map(lambda d: jnp.where(loss_ok, d, jnp.nan),
                             direction)
  state = apply_direction(optimizer, state, direction)
  guard = state.opt_state
  metrics = {**metrics,
             "nonfinite": 1.0 - guard.last_finite.astype(jnp.float32),
             "nonfinite_in_a_row_max": guard.notfinite_count.astype(
                 jnp.float32)}
  return state, metrics


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
        agree: Optional[Callable[[bool], bool]] = None,
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
  at a last step, so a checkpoint is written. Several processes of one run
  must stop at the same step: ``agree(stop) -> stop`` makes their decision
  one (e.g. process 0's, broadcast).

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
    agree: makes a budget stop the same in every process (default: each
      decides alone, right for one process).

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
        if max_seconds is not None:
          spent = elapsed >= max_seconds
          last = last or (agree(spent) if agree is not None else spent)
      for hook in hooks:
        if (i + 1) % hook.every == 0 or last:
          hook.fn(state)
      if last:
        break
      if count == 0:   # the next interval's clock starts after logs and hooks
        tic = time.perf_counter()
  return state, history
