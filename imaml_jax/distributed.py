"""Meta-batches sharded over devices: the meta-step on a ``tasks`` mesh axis.

The task batch is split over the devices of a one-axis mesh (``"tasks"``);
each device draws its share of tasks with its own key, adapts them and
computes their meta-gradient, and the directions are averaged across devices
(one ``jax.lax.all_gather``) before the optax update, which runs
replicated. It is :func:`imaml_jax.make_meta_step` under
``jax.shard_map``; on a one-device mesh
it computes exactly what the unsharded step does. Several hosts work the same
way once ``jax.distributed.initialize`` has run: the mesh then spans every
process's devices (docs/distributed.md).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from imaml_jax import metrics as metrics_lib
from imaml_jax import tasks as tasks_lib
from imaml_jax import train as train_lib

PyTree = Any
TASKS = "tasks"


def task_mesh(num_devices: Optional[int] = None,
              devices: Optional[Sequence[jax.Device]] = None
              ) -> jax.sharding.Mesh:
  """A one-axis mesh named ``"tasks"`` over the first ``num_devices`` devices.

  Args:
    num_devices: how many devices; ``None`` or 0 for all of ``devices``.
    devices: defaults to ``jax.devices()`` (every process's devices).

  Examples:
    >>> import imaml_jax
    >>> mesh = imaml_jax.task_mesh(1)
    >>> mesh.axis_names, mesh.shape["tasks"]
    (('tasks',), 1)
  """
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices) if not num_devices else num_devices
  if not isinstance(n, int) or n < 1 or n > len(devices):
    raise ValueError(f"num_devices must be an integer in [1, {len(devices)}] "
                     f"(the devices available) or 0 for all; got "
                     f"{num_devices!r}.")
  return jax.sharding.Mesh(np.array(devices[:n]), (TASKS,))


def replicate(tree: PyTree, mesh: jax.sharding.Mesh) -> PyTree:
  """Places every array of ``tree`` on all devices of ``mesh`` (replicated).

  With several processes (after ``jax.distributed.initialize``) every process
  must pass the same values; each contributes the copies of its own devices.

  Args:
    tree: a pytree of arrays (a train state, a data set).
    mesh: the device mesh, e.g. :func:`imaml_jax.task_mesh`.

  Returns:
    The same pytree, each array replicated over ``mesh``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import imaml_jax
    >>> mesh = imaml_jax.task_mesh(1)
    >>> x = imaml_jax.replicate({"w": jnp.ones(3)}, mesh)["w"]
    >>> x.sharding.is_fully_replicated, x.tolist()
    (True, [1.0, 1.0, 1.0])
  """
  sharding = NamedSharding(mesh, P())
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      tree)


def device_share(meta_batch: int, mesh: jax.sharding.Mesh) -> int:
  """Tasks per device: ``meta_batch / devices``, which must be a whole number.

  Args:
    meta_batch: tasks per meta-step, all devices together.
    mesh: a mesh with a ``"tasks"`` axis (:func:`imaml_jax.task_mesh`).

  Returns:
    The tasks each device draws and adapts to per meta-step.

  Examples:
    >>> import imaml_jax
    >>> imaml_jax.device_share(32, imaml_jax.task_mesh(1))
    32
  """
  n = mesh.shape[TASKS]
  if meta_batch % n:
    raise ValueError(f"the meta-batch ({meta_batch}) must be divisible by the "
                     f"number of devices on the 'tasks' axis ({n}).")
  return meta_batch // n


def _reduce_over_devices(direction: PyTree, metrics: dict[str, jax.Array]
                         ) -> tuple[PyTree, dict[str, jax.Array]]:
  """Across devices, in one collective: means, and worst cases by max / min.

  The direction and the metrics are averaged over the devices, except the
  worst-case metrics (``*_max`` by max, ``*_min`` by min). Everything goes
  through a single ``all_gather``: one rendezvous per step rather than a
  pmean, a pmax and a pmin, which XLA's CPU runtime may run concurrently on
  its small intra-op thread pool (docs/distributed.md, "On one CPU").
  """
  flat, unravel = jax.flatten_util.ravel_pytree((direction, metrics))
  every = jax.lax.all_gather(flat, TASKS)          # (devices, size)
  direction, out = unravel(jnp.mean(every, axis=0))
  highest, lowest = (unravel(jnp.max(every, axis=0))[1],
                     unravel(jnp.min(every, axis=0))[1])
  worst = {"max": highest, "min": lowest}
  for name in metrics:
    if metrics_lib.reduction(name) in worst:
      out[name] = worst[metrics_lib.reduction(name)][name]
  return direction, out


def make_sharded_meta_step(
    learner: Callable[..., tuple[PyTree, dict[str, jax.Array]]],
    optimizer: optax.GradientTransformation,
    sample_tasks: Callable[[jax.Array, Any], tasks_lib.Task],
    mesh: jax.sharding.Mesh,
) -> Callable[..., tuple[train_lib.TrainState, dict[str, jax.Array]]]:
  r"""The jitted meta-step with the task batch sharded over ``mesh``.

  .. math:: \text{direction} = \frac{1}{D} \sum_{d=1}^{D}
            \text{learner}(\theta, \text{tasks}_d), \qquad
            \text{tasks}_d = \text{sample\_tasks}(\text{fold\_in}(k, d))

  Device :math:`d` of the :math:`D` on the ``"tasks"`` axis draws its own
  tasks with the step's key folded with :math:`d`. On a one-device mesh the
  step is :func:`imaml_jax.make_meta_step`'s program (``shard_map`` would
  only change XLA's fusion, hence the last bits), so one device reproduces
  an unsharded run bit for bit. Directions and metrics are averaged over
  devices (worst-case metrics ``*_max`` / ``*_min`` by max / min;
  ``meta_grad_norm`` is the norm of the averaged direction); parameters and
  optimizer state stay replicated.

  Args:
    learner: as for :func:`imaml_jax.make_meta_step`.
    optimizer: any optax transformation.
    sample_tasks: ``sample_tasks(key, data) -> Task`` drawing *one device's
      share* of the meta-batch (see :func:`device_share`).
    mesh: a mesh with a ``"tasks"`` axis, e.g. :func:`task_mesh`.

  Returns:
    ``step(state, key, data=None) -> (state, metrics)``, jitted; pass ``state``
    and ``data`` placed with :func:`replicate`. On CPU devices each call
    returns only once its result is ready (see the code: asynchronous steps
    can deadlock XLA's CPU collectives).

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> import imaml_jax
    >>> loss = imaml_jax.mse_loss(lambda w, x: x @ w)
    >>> def sample(key, data):   # 4 tasks per device
    ...   x = jax.random.normal(key, (4, 10, 2))
    ...   return imaml_jax.Task(imaml_jax.Batch(x, x[..., :1]),
    ...                         imaml_jax.Batch(x, x[..., :1]))
    >>> mesh = imaml_jax.task_mesh()
    >>> opt = optax.adam(1e-2)
    >>> step = imaml_jax.make_sharded_meta_step(
    ...     imaml_jax.fomaml(loss, 1, 0.1), opt, sample, mesh)
    >>> state = imaml_jax.replicate(
    ...     imaml_jax.init_train_state(jnp.zeros((2, 1)), opt), mesh)
    >>> state, metrics = step(state, jax.random.key(0))
    >>> int(state.step)
    1
  """
  if TASKS not in mesh.axis_names:
    raise ValueError(f"the mesh needs a {TASKS!r} axis; its axes are "
                     f"{mesh.axis_names}.")
  devices = mesh.shape[TASKS]

  def local(params, key, data):
    task_key, learner_key = jax.random.split(key)
    if devices > 1:
      index = jax.lax.axis_index(TASKS)
      task_key = jax.random.fold_in(task_key, index)
      learner_key = jax.random.fold_in(learner_key, index)
    tasks = sample_tasks(task_key, data)
    direction, metrics = learner(params, tasks, learner_key)
    direction, metrics = _reduce_over_devices(direction, metrics)
    if "meta_grad_norm" in metrics:
      metrics["meta_grad_norm"] = otu.tree_norm(direction)
    return direction, metrics

  if devices == 1:   # shard_map adds nothing: keep the unsharded program
    return train_lib.make_meta_step(learner, optimizer, sample_tasks)
  # check_vma=False: the inner solvers linearise functions of the replicated
  # theta and the per-device tasks together, which the varying-manual-axes
  # checker rejects; every output is made device-invariant by the all_gather.
  sharded = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P()),
                          out_specs=(P(), P()), check_vma=False)

  def step(state: train_lib.TrainState, key: jax.Array, data: Any = None):
    key = jax.random.fold_in(key, state.step)
    direction, metrics = sharded(state.params, key, data)
    return train_lib.meta_update(optimizer, state, direction, metrics)

  jitted = jax.jit(step)
  if any(d.platform != "cpu" for d in mesh.devices.flat):
    return jitted

  # On CPU devices, a step dispatched while the previous one still runs can
  # deadlock XLA's CPU collectives: one device waits in the all_gather for a
  # device whose part never starts (jax 0.10.2, 2 devices; within 50 steps
  # of an MLP, tests/test_distributed.py). So each call waits for its result;
  # at CPU step times (0.1 s or more) the overlap lost is one dispatch.
  def blocking_step(state: train_lib.TrainState, key: jax.Array,
                    data: Any = None):
    return jax.block_until_ready(jitted(state, key, data))

  blocking_step.lower = jitted.lower
  return blocking_step
