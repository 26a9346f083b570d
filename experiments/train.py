"""Meta-train on a few-shot benchmark: progress bar, logs, validation, checkpoints.

    python -m experiments.train --config experiments/configs/omniglot.py:5way1shot-imaml_gd
    python -m experiments.train --config ...:5way1shot-maml --config.meta_steps=2000
    python -m experiments.train --config ... --workdir runs/x --resume

Writes to ``--workdir`` (default ``runs/<config name>``): ``config.json``,
``metrics.jsonl`` (one line per logging interval and per validation),
TensorBoard events in ``tb/`` and orbax checkpoints in ``checkpoints/``.
``--resume`` continues from the last checkpoint and then follows exactly the
trajectory of an uninterrupted run with the same seed (tasks are drawn from
``fold_in(seed key, step)``).
"""

from __future__ import annotations

import json
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


def cpu_layout(c):
  """The config as it runs here: ``c.cpu_devices`` applied if JAX is on a CPU.

  With ``cpu_devices`` set and no accelerator, the meta-batch is sharded over
  that many CPU devices (``num_devices``) and each takes its tasks one at a
  time (``task_chunk=1``), the fastest layout measured on a CPU. Raises if
  the CPU was not split first (:func:`split_cpu`).
  """
  n = c.cpu_devices
  if not n or jax.default_backend() != "cpu":
    return c
  if len(jax.devices()) != n:
    raise ValueError(
        f"the config asks for cpu_devices={n} but JAX's CPU has "
        f"{len(jax.devices())} device(s); call experiments.train.split_cpu("
        f"{n}) (or jax.config.update('jax_num_cpu_devices', {n})) before "
        f"any JAX computation, as `python -m experiments.train` does.")
  c = c.copy_and_resolve_references()
  c.num_devices, c.task_chunk = n, 1
  return c


class NonFiniteSteps(RuntimeError):
  """Training stopped: too many meta-steps in a row were not finite."""


class _Log:
  """Where a run reports: ``metrics.jsonl``, TensorBoard, and the console."""

  def __init__(self, workdir: str, progress: bool):
    self._file = open(os.path.join(workdir, "metrics.jsonl"), "a")
    self._writer = tensorboardX.SummaryWriter(os.path.join(workdir, "tb"))
    self.show = (lambda line: tqdm.tqdm.write(line)) if progress else print

  def write(self, kind: str, step: int, metrics: dict) -> None:
    self._file.write(json.dumps({"kind": kind, "step": step, **metrics})
                     + "\n")
    self._file.flush()
    for name, value in metrics.items():
      if isinstance(value, float):
        self._writer.add_scalar(f"{kind}/{name}", value, step)
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()
    self._file.close()


def _monitor(c, log: _Log):
  """``on_log(step, metrics)``: stability flags, non-finite stop, the log line.

  Prints a flag when it is raised and when it clears. Raises
  :class:`NonFiniteSteps` once ``c.max_nonfinite_steps`` meta-steps in a row
  were skipped as non-finite (the parameters are those of the last finite
  step, and so is every checkpoint).
  """
  thresholds = imaml_jax.StabilityThresholds(
      inner_grad_ratio=c.warn_inner_grad_ratio,
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
    if budget <= 0:
      print(f"the {c.max_train_minutes}-minute budget is spent", flush=True)
      return int(state.step), budget
  return c.meta_steps, budget


def train(c, workdir: str, resume: bool = False, progress: bool = True):
  """Runs (or resumes) the meta-training a config describes; returns the state.

  Raises:
    NonFiniteSteps: ``c.max_nonfinite_steps`` meta-steps in a row were not
      finite (nothing non-finite reached the parameters or checkpoints).
  """
  config_base.check(c)
  c = cpu_layout(c)
  os.makedirs(workdir, exist_ok=True)
  model, loss = common.model_and_loss(c)
  train_images = common.load_images(c, "train")
  val_images = common.load_images(c, "validation")
  init_key, train_key, val_key = jax.random.split(jax.random.key(c.seed), 3)
  manager = common.checkpoint_manager(workdir, c.keep_checkpoint_every)
  state = _initial_state(c, model, init_key, manager, workdir, resume)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(c.to_json(indent=2))

  # The task batch is split over a "tasks" mesh axis (one device: the plain
  # meta-step); each device draws its share of the episodes itself.
  mesh = imaml_jax.task_mesh(c.num_devices)
  per_device = imaml_jax.device_share(c.meta_batch, mesh)

  def sample(k, images):
    return imaml_jax.sample_episodes(k, images, per_device, c.ways, c.shots,
                                     c.train_queries)

  step = imaml_jax.make_sharded_meta_step(
      common.build_learner(c, loss), common.meta_optimizer(c), sample, mesh)
  state = imaml_jax.replicate(state, mesh)
  train_images = imaml_jax.replicate(train_images, mesh)
  evaluate = common.make_evaluator(
      c, common.build_learner(c, loss, test=True).adapt, loss, c.test_queries)
  log = _Log(workdir, progress)

  def validate(s):
    mean, ci = imaml_jax.mean_ci95(
        evaluate(s.params, val_images, val_key, c.val_episodes))
    log.write("validation", int(s.step), {"accuracy": mean, "ci95": ci})
    log.show(f"step {int(s.step):6d} validation accuracy {100 * mean:.2f} ± "
             f"{100 * ci:.2f}% ({c.val_episodes} episodes)")

  def save(s):
    manager.save(int(s.step), args=ocp.args.StandardSave(s))

  devices = mesh.shape[imaml_jax.distributed.TASKS]
  print(f"{c.name}: {c.meta_steps} meta-steps on {common.hardware()}"
        + (f" x {devices} devices ({per_device} tasks each)" if devices > 1
           else "") + f", workdir {workdir}", flush=True)
  steps, budget = _steps_and_budget(c, state, workdir)
  try:
    state, _ = imaml_jax.run(
        step, state, train_key, steps, log_every=c.log_every,
        on_log=_monitor(c, log), data=train_images, progress=progress,
        hooks=[imaml_jax.Hook(c.eval_every, validate),
               imaml_jax.Hook(c.checkpoint_every, save)],
        max_seconds=budget)
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
  workdir = f.workdir or os.path.join("runs", f.config.name)
  try:
    train(f.config, workdir, resume=f.resume, progress=f.progress)
  except folder.FolderError as e:   # a user's folder: before anything compiles
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
  app.run(main)
