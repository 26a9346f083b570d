"""Per-task inner solves and implicit systems of trained checkpoints, side by side.

    python -m benchmarks.task_systems runs/cells/A@3000 runs/cells/B@3000
    python -m benchmarks.task_systems runs/cells/B@3000 --set cg_steps=10 --set lam=2

For each ``WORKDIR@STEP`` (a training run's kept checkpoint) the training
learner of its own config, with ``--set FIELD=VALUE`` on top, takes one
meta-gradient on each of the same ``--tasks`` training episodes (one
sampling key for every checkpoint) and prints, per metric, the median, mean
and worst task: the implicit CG's relative residual
:math:`\\|g - A v\\| / \\|g\\|` of the system
:math:`A v = (I + \\tfrac{1}{\\lambda} \\nabla^2 \\hat L(\\phi))\\, v = g`, and
the inner solve's remaining gradient ratio. It tells whether a run's worse
stability metrics come from its meta-parameters (the same tasks are harder
to solve at its theta) or from how they were measured (the meta-batch a
metric was averaged over), and whether more CG steps or a larger lam would
cure them at that theta (docs/stability.md §5).
"""

from __future__ import annotations

import argparse
import json
from typing import Callable

import jax
import numpy as np

import imaml_jax
from experiments import common
from experiments import evaluate
from experiments.configs import base as config_base

METRICS = ("cg_relative_residual", "inner_grad_ratio", "inner_grad_norm")


def per_task_metrics(learner: Callable, theta, tasks: imaml_jax.Task) -> dict:
  """``{metric: array[num_tasks]}``: ``learner`` on each task of ``tasks`` alone.

  A learner averages its metrics over the task batch (and keeps the worst
  task of a few, ``*_max``); here each task is a batch of one, vmapped.
  """
  one = lambda task: learner(theta, jax.tree.map(lambda a: a[None], task),
                             None)[1]
  return jax.jit(jax.vmap(one))(tasks)


def summary(values: np.ndarray) -> dict:
  """Median, mean and worst (largest) value over tasks, rounded."""
  return {"median": round(float(np.median(values)), 4),
          "mean": round(float(np.mean(values)), 4),
          "max": round(float(np.max(values)), 4)}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("checkpoints", nargs="+", help="WORKDIR@STEP of kept "
                 "checkpoints (the step defaults to the latest)")
  p.add_argument("--tasks", type=int, default=64)
  p.add_argument("--seed", type=int, default=123,
                 help="key of the training episodes every checkpoint gets")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="a learner setting on top of each run's config")
  a = p.parse_args(argv)
  images = None
  for spec in a.checkpoints:
    path, _, step = spec.partition("@")
    run = evaluate.load_run(path, step=int(step) if step else None)
    c = run.config
    try:
      c.update(config_base.parse_sets(c, a.set, path))
    except ValueError as e:
      p.error(str(e))
    if images is None:
      images = common.load_images(c, "train")
    tasks = common.training_sampler(c, a.tasks)(jax.random.key(a.seed), images)
    learner = common.build_learner(c, run.loss)
    metrics = per_task_metrics(learner, run.state.params, tasks)
    print(json.dumps({"checkpoint": spec, "step": int(run.state.step),
                      "set": a.set, "tasks": a.tasks,
                      **{m: summary(np.asarray(metrics[m])) for m in METRICS
                         if m in metrics}}), flush=True)


if __name__ == "__main__":
  main()
