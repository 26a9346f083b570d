"""Meta-train on a few-shot benchmark: progress bar, logs, validation, checkpoints.

    python -m experiments.train --config experiments/configs/omniglot.py:5way1shot-imaml_gd
    python -m experiments.train --config ...:5way1shot-maml --config.meta_steps=2000
    python -m experiments.train --config ... --workdir runs/x --resume

Writes to ``--workdir`` (default ``runs/<config name>``): ``config.json``,
``metrics.jsonl`` (one line per logging interval and per validation, and a
``start`` line with the hardware, date and commit at each start or resume),
TensorBoard events in ``tb/`` and orbax checkpoints in ``checkpoints/``.
``--resume`` continues from the last checkpoint and then follows exactly the
trajectory of an uninterrupted run with the same seed (tasks are drawn from
``fold_in(seed key, step)``).

Across processes and hosts (``jax.distributed``), start the same command in
every process with ``--coordinator_address host0:port --num_processes P
--process_id i`` (or ``$JAX_COORDINATOR_ADDRESS``, ``$JAX_NUM_PROCESSES``,
``$JAX_PROCESS_ID``). The meta-batch is split over every device of every
process (each draws its own tasks); the state stays replicated; process 0
alone writes ``config.json``, the logs and prints, while every process takes
part in orbax's checkpoints (``--workdir`` on a file system they share).
``--resume`` after any process was killed: restart them all. See
docs/distributed.md.
"""

from __future__ import annotations

import json
import math
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags
import numpy as np
import orbax.checkpoint as ocp
import tensorboardX
from jax.experimental import multihost_utils
import tqdm

import imaml_jax
from experiments import common
from experiments.configs import base as config_base
from imaml_jax.data import folder


def split_cpu(n: int) -> None:
  """Splits the CPU into ``n`` JAX devices (a config's ``cpu_devices``).

  Call before JAX starts. Does nothing when ``n`` is 0 or already in effect;
  JAX raises if its backends started with another count.
  """
  if n and jax.config.jax_num_cpu_devices != n:
    jax.config.update("jax_num_cpu_devices", n)


_DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                    "JAX_PROCESS_ID")


def init_distributed(coordinator_address: str | None = None,
                     num_processes: int | None = None,
                     process_id: int | None = None) -> int:
  """Joins this process to a multi-process run; returns the process count.

  Each value comes from its argument, else from ``$JAX_COORDINATOR_ADDRESS``,
  ``$JAX_NUM_PROCESSES``, ``$JAX_PROCESS_ID``. With none of them (or one
  process) nothing happens: a single-process run. Call before JAX starts
  (after :func:`split_cpu`).

  Examples:
    >>> init_distributed()   # no flags, no environment: one process
    1
  """
  env = [os.environ.get(k) for k in _DISTRIBUTED_ENV]
  address = coordinator_address or env[0]
  count = num_processes if num_processes is not None else (
      int(env[1]) if env[1] else None)
  index = process_id if process_id is not None else (
      int(env[2]) if env[2] else None)
  if address is None and count is None and index is None:
    return 1
  if address is None or count is None or index is None:
    raise ValueError(
        "a multi-process run needs all of --coordinator_address, "
        "--num_processes and --process_id (or $JAX_COORDINATOR_ADDRESS, "
        f"$JAX_NUM_PROCESSES, $JAX_PROCESS_ID); got {address!r}, {count!r}, "
        f"{index!r}.")
  if not 0 <= index < count:
    raise ValueError(f"--process_id must lie in [0, {count}) for "
                     f"--num_processes={count}; got {index}.")
  if count > 1:
    jax.distributed.initialize(coordinator_address=address,
                               num_processes=count, process_id=index)
  return count


def cpu_layout(c):
  """The config as it runs here: ``c.cpu_devices`` applied if JAX is on a CPU.

  With ``cpu_devices`` set and no accelerator, the meta-batch is sharded over
  that many CPU devices per process (``num_devices``: all of every process)
  and each takes its tasks one at a time (``task_chunk=1``), the fastest
  layout measured on a CPU. Raises if the CPU was not split first
  (:func:`split_cpu`).
  """
  n = c.cpu_devices
  if not n or jax.default_backend() != "cpu":
    return c
  if jax.local_device_count() != n:
    raise ValueError(
        f"the config asks for cpu_devices={n} but JAX's CPU has "
        f"{jax.local_device_count()} device(s); call "
        f"experiments.train.split_cpu({n}) (or jax.config.update("
        f"'jax_num_cpu_devices', {n})) before any JAX computation, as "
        f"`python -m experiments.train` does.")
  c = c.copy_and_resolve_references()
  c.num_devices, c.task_chunk = jax.device_count(), 1
  return c


# Fields a resumed run may change: how long it trains, how it is watched and
# evaluated, its device layout and where its data are. Every other field
# defines the trajectory and must match the run's config.json.
RESUMABLE_FIELDS = frozenset({
    "meta_steps", "max_train_minutes", "log_every", "eval_every",
    "val_episodes", "checkpoint_every", "keep_checkpoint_every",
    "test_episodes", "test_inner_steps", "eval_chunk", "warn_inner_grad_ratio",
    "warn_cg_relative_residual", "max_nonfinite_steps", "cpu_devices",
    "num_devices", "task_chunk", "data_dir", "source_dir"})


class ResumeMismatch(ValueError):
  """A resume asked for other training settings than the run's own."""


def check_resume(c, workdir: str) -> None:
  """Raises :class:`ResumeMismatch` if ``c`` trains another run than ``workdir``'s.

  Compares ``c`` with ``<workdir>/config.json`` on every field not in
  :data:`RESUMABLE_FIELDS` (fields only one of them has are skipped), so that
  a resume that forgot a ``--set`` or ``--config.`` flag stops with one line
  instead of continuing the run with other settings.

  Examples:
    >>> import tempfile
    >>> workdir = tempfile.mkdtemp()
    >>> c = config_base.get_config("imaml_hf")
    >>> with open(os.path.join(workdir, "config.json"), "w") as f:
    ...   _ = f.write(c.to_json())
    >>> c.meta_steps, c.cg_steps = 20_000, 20
    >>> check_resume(c, workdir)   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    experiments.train.ResumeMismatch: ... other settings: cg_steps=5 there, 20 here; ...
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    stored = json.load(f)
  now = json.loads(c.to_json())
  changed = [f"{k}={stored[k]!r} there, {now[k]!r} here"
             for k in sorted(stored.keys() & now.keys())
             if k not in RESUMABLE_FIELDS and stored[k] != now[k]]
  if changed:
    raise ResumeMismatch(
        f"{workdir} trained with other settings: {'; '.join(changed)}; "
        f"resume it with its own settings or choose another workdir")


class NonFiniteSteps(RuntimeError):
  """Training stopped: too many meta-steps in a row were not finite."""


class _Log:
  """Where a run reports: ``metrics.jsonl``, TensorBoard, and the console.

  Only process 0 of a multi-process run reports; the others stay silent.
  """

  def __init__(self, workdir: str, progress: bool):
    self._on = jax.process_index() == 0
    if not self._on:
      self.show = lambda line: None
      return
    self._file = open(os.path.join(workdir, "metrics.jsonl"), "a")
    self._writer = tensorboardX.SummaryWriter(os.path.join(workdir, "tb"))
    self.show = (lambda line: tqdm.tqdm.write(line)) if progress else print

  def write(self, kind: str, step: int, metrics: dict) -> None:
    if not self._on:
      return
    self._file.write(json.dumps({"kind": kind, "step": step, **metrics})
                     + "\n")
    self._file.flush()
    for name, value in metrics.items():
      if isinstance(value, float):
        self._writer.add_scalar(f"{kind}/{name}", value, step)
    self._writer.flush()

  def close(self) -> None:
    if self._on:
      self._writer.close()
      self._file.close()


def _monitor(c, log: _Log):
  """``on_log(step, metrics)``: stability flags, non-finite stop, the log line.

  Prints a flag when it is raised and when it clears. Raises
  :class:`NonFiniteSteps` once ``c.max_nonfinite_steps`` meta-steps in a row
  were skipped as non-finite (the parameters are those of the last finite
  step, and so is every checkpoint).
  """
  # Only iMAML's inner loop is a solve that should converge; MAML's, first-
  # order MAML's and Reptile's take a few steps by design.
  thresholds = imaml_jax.StabilityThresholds(
      inner_grad_ratio=(c.warn_inner_grad_ratio
                        if c.algorithm.startswith("imaml") else math.inf),
      cg_relative_residual=c.warn_cg_relative_residual)
  raised = {}   # flag -> step it was first raised, while it stays raised
  shown = ("query_loss", "query_accuracy", "support_loss_after",
           "inner_grad_norm", "cg_relative_residual", "meta_grad_norm",
           "seconds_per_step", "tasks_per_s")

  def on_log(i: int, m: dict) -> None:
    m["tasks_per_s"] = c.meta_batch / m["seconds_per_step"]
    flags_ = imaml_jax.stability_flags(m, thresholds)
    m["stability_flags"] = float(len(flags_))
    for name, message in flags_.items():
      if name not in raised:
        raised[name] = i
        log.show(f"step {i:6d} WARNING {message}")
    for name in [n for n in raised if n not in flags_]:
      log.show(f"step {i:6d} cleared: {name} (raised at step "
               f"{raised.pop(name)})")
    log.write("train", i, {**m, "flags": sorted(flags_)} if flags_ else m)
    log.show(f"step {i:6d} "
             + " ".join(f"{k} {m[k]:.4g}" for k in shown if k in m))
    in_a_row = m.get("nonfinite_in_a_row_max", 0.0)
    if in_a_row >= c.max_nonfinite_steps:
      raise NonFiniteSteps(
          f"stopped at step {i}: {int(in_a_row)} meta-steps in a row had a "
          f"non-finite meta-gradient or query loss (max_nonfinite_steps="
          f"{c.max_nonfinite_steps}); they were skipped, so the parameters "
          f"and checkpoints are those of the last finite step. Check the "
          f"learning rates (inner_lr={c.inner_lr}, meta_lr={c.meta_lr}) and "
          f"lam={c.lam}.")

  return on_log


def _initial_state(c, model, init_key, manager, workdir: str,
                   resume: bool) -> imaml_jax.TrainState:
  """A fresh state from ``c.init``, or with ``resume`` the last checkpoint."""
  # Parameter shapes need only an input's shape: init_key serves init alone.
  example = np.zeros((c.ways * c.shots,) + common.image_shape(c),
                     np.float32)
  state = imaml_jax.init_train_state(
      common.initial_params(c, model, init_key, example),
      common.meta_optimizer(c))
  if resume and manager.latest_step() is not None:
    state = common.restore(manager, state)
    if jax.process_index() == 0:
      print(f"resumed from step {int(state.step)} of {workdir}", flush=True)
  elif manager.latest_step() is not None:
    raise FileExistsError(f"{workdir} already holds checkpoints; pass --resume "
                          f"to continue or choose another --workdir.")
  return state


def _steps_and_budget(c, state, workdir: str) -> tuple[int, float | None]:
  """The step to train to and the seconds left of the wall-clock budget.

  A budget counts the meta-steps of earlier sessions of the run.
  """
  budget = c.max_train_minutes * 60 or None
  if budget and int(state.step):
    budget -= common.train_seconds(workdir) or 0.0
    if jax.process_count() > 1:   # process 0's log decides for all
      budget = float(multihost_utils.broadcast_one_to_all(np.float64(budget)))
    if budget <= 0:
      if jax.process_index() == 0:
        print(f"the {c.max_train_minutes}-minute budget is spent", flush=True)
      return int(state.step), budget
  return c.meta_steps, budget


def _agree():
  """How the processes agree to stop on the budget: process 0 decides."""
  if jax.process_count() == 1:
    return None
  return lambda stop: bool(multihost_utils.broadcast_one_to_all(np.bool_(stop)))


def train(c, workdir: str, resume: bool = False, progress: bool = True):
  """Runs (or resumes) the meta-training a config describes; returns the state.

  Raises:
    NonFiniteSteps: ``c.max_nonfinite_steps`` meta-steps in a row were not
      finite (nothing non-finite reached the parameters or checkpoints).
  """
  config_base.check(c)
  c = cpu_layout(c)
  if resume:
    check_resume(c, workdir)
  os.makedirs(workdir, exist_ok=True)
  model, loss = common.model_and_loss(c)
  train_images = common.load_images(c, "train")
  val_images = common.load_images(c, "validation")
  init_key, train_key, val_key = jax.random.split(jax.random.key(c.seed), 3)
  manager = common.checkpoint_manager(workdir, c.keep_checkpoint_every)
  state = _initial_state(c, model, init_key, manager, workdir, resume)
  first = jax.process_index() == 0
  if first:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(c.to_json(indent=2))

  # The task batch is split over a "tasks" mesh axis (one device: the plain
  # meta-step); each device draws its share of the episodes itself.
  mesh = imaml_jax.task_mesh(c.num_devices)
  per_device = imaml_jax.device_share(c.meta_batch, mesh)

  step = imaml_jax.make_sharded_meta_step(
      common.build_learner(c, loss), common.meta_optimizer(c),
      common.training_sampler(c, per_device), mesh)
  state = imaml_jax.replicate(state, mesh)
  train_images = imaml_jax.replicate(train_images, mesh)
  evaluate = common.make_evaluator(
      c, common.build_learner(c, loss, test=True).adapt, loss, c.test_queries)
  log = _Log(workdir, progress)

  def validate(s):
    if not first:   # process 0 alone
      return
    # On one device, its own copy: replicated over the mesh, every device
    # would compute the same episodes, and the evaluator would compile
    # apart from evaluate.py's (the same program but for its sharding).
    params = jax.tree.map(lambda a: a.addressable_data(0), s.params)
    mean, ci = imaml_jax.mean_ci95(
        evaluate(params, val_images, val_key, c.val_episodes))
    log.write("validation", int(s.step), {"accuracy": mean, "ci95": ci})
    log.show(f"step {int(s.step):6d} validation accuracy {100 * mean:.2f} ± "
             f"{100 * ci:.2f}% ({c.val_episodes} episodes)")

  def save(s):
    manager.save(int(s.step), args=ocp.args.StandardSave(s))

  devices = mesh.shape[imaml_jax.distributed.TASKS]
  processes = (f" in {jax.process_count()} processes"
               if jax.process_count() > 1 else "")
  log.show(f"{c.name}: {c.meta_steps} meta-steps on {common.hardware()}"
           + (f" x {devices} devices{processes} ({per_device} tasks each)"
              if devices > 1 else "") + f", workdir {workdir}")
  # Which machine and code ran the meta-steps from here: a run resumed on
  # another host mixes step costs (training minutes are summed from them).
  log.write("start", int(state.step), {"hardware": common.hardware(),
                                       "devices": devices,
                                       **common.provenance()})
  steps, budget = _steps_and_budget(c, state, workdir)
  try:
    state, _ = imaml_jax.run(
        step, state, train_key, steps, log_every=c.log_every,
        on_log=_monitor(c, log), data=train_images,
        progress=progress and first,
        hooks=[imaml_jax.Hook(c.eval_every, validate),
               imaml_jax.Hook(c.checkpoint_every, save)],
        max_seconds=budget, agree=_agree())
  finally:
    manager.wait_until_finished()
    log.close()
  return state


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)   # orbax logs every save at INFO
  f = flags.FLAGS
  try:
    config_base.check(f.config)
  except ValueError as e:   # one line, before anything compiles
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  split_cpu(f.config.cpu_devices)
  try:
    init_distributed(f.coordinator_address, f.num_processes, f.process_id)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  workdir = f.workdir or os.path.join("runs", f.config.name)
  try:
    train(f.config, workdir, resume=f.resume, progress=f.progress)
  except (folder.FolderError, ResumeMismatch) as e:   # before anything compiles
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except NonFiniteSteps as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":   # flags are defined here so train() imports cleanly
  config_flags.DEFINE_config_file(
      "config", "experiments/configs/omniglot.py:5way1shot-imaml_gd",
      "Config file and argument, e.g. experiments/configs/omniglot.py:5way1shot-maml.")
  flags.DEFINE_string("workdir", None,
                      "Output directory (default runs/<config name>).")
  flags.DEFINE_bool("resume", False,
                    "Continue from the last checkpoint in --workdir.")
  flags.DEFINE_bool("progress", True, "Show a progress bar.")
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0 "
                      "for a multi-process run ($JAX_COORDINATOR_ADDRESS).")
  flags.DEFINE_integer("num_processes", None, "Processes of a multi-process "
                       "run ($JAX_NUM_PROCESSES).")
  flags.DEFINE_integer("process_id", None, "This process's index, 0 .. "
                       "num_processes - 1 ($JAX_PROCESS_ID).")
  app.run(main)
