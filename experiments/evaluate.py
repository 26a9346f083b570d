"""Evaluate a trained checkpoint on held-out test episodes; write results.json.

    python -m experiments.evaluate --workdir runs/omniglot_5way1shot_imaml_gd
    python -m experiments.evaluate --workdir ... --episodes 1000 --test_queries 1

Reads the run's ``config.json`` and latest checkpoint, draws ``--episodes``
N-way K-shot episodes from the test classes (disjoint from training by
construction of the split), adapts with the run's learner, and reports mean
query accuracy with its 95% confidence interval.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, NamedTuple

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
import numpy as np

import imaml_jax
from experiments import common


class Run(NamedTuple):
  """A trained run, restored: its config, model, loss, learner and state."""
  config: ml_collections.ConfigDict
  model: Any
  loss: imaml_jax.SupervisedLoss
  learner: Any
  state: imaml_jax.TrainState


def load_run(workdir: str, step: int | None = None,
             inner_steps: int | None = None) -> Run:
  """Restores ``workdir``'s checkpoint (default latest) with its config.

  The learner adapts as at test time: ``inner_steps`` if given, else the
  config's ``test_inner_steps``, else the training steps.
  """
  with open(os.path.join(workdir, "config.json")) as f:
    c = ml_collections.ConfigDict(json.load(f))
  if inner_steps:
    c.test_inner_steps = inner_steps
  model, loss = common.model_and_loss(c)
  x = np.zeros((1,) + common.IMAGE_SHAPES[c.dataset], np.float32)
  like = imaml_jax.init_train_state(
      imaml_jax.init_params(model, jax.random.key(0), x),
      common.meta_optimizer(c))
  state = common.restore(common.checkpoint_manager(workdir), like, step)
  return Run(c, model, loss, common.build_learner(c, loss, test=True), state)


def evaluate(workdir: str, episodes: int | None = None,
             test_queries: int | None = None, seed: int = 1,
             step: int | None = None, inner_steps: int | None = None) -> dict:
  """Evaluates a run's checkpoint; writes and returns the results dict.

  ``inner_steps`` overrides the adaptation steps at test time (GD steps, or
  Newton steps for iMAML-HF); by default the config's ``test_inner_steps``,
  else the training ones.
  """
  c, _, loss, learner, state = load_run(workdir, step, inner_steps)
  episodes = episodes or c.test_episodes
  queries = test_queries or c.test_queries
  test_images = common.load_images(c, "test")
  start = time.perf_counter()
  acc = common.make_evaluator(c, learner, loss, queries)(
      state.params, test_images, jax.random.key(seed), episodes)
  seconds = time.perf_counter() - start
  mean, ci = imaml_jax.mean_ci95(acc)
  inner_steps = (c.get("test_inner_steps", 0) or
                 (c.newton_steps if c.algorithm == "imaml_hf"
                  else c.inner_steps))
  results = {
      "algorithm": c.algorithm, "dataset": c.dataset,
      "setting": f"{c.ways}-way {c.shots}-shot", "accuracy": mean, "ci95": ci,
      "episodes": int(acc.size), "test_queries_per_class": queries,
      "inner_steps": inner_steps, "meta_steps": int(state.step),
      "seed": c.seed, "test_seed": seed, "checkpoint": os.path.join(
          workdir, "checkpoints", str(int(state.step))),
      "eval_seconds": round(seconds, 1), "hardware": common.hardware(),
      "train_seconds": common.train_seconds(workdir),
  }
  if c.algorithm.startswith("imaml"):
    results.update(lam=c.lam, cg_steps=c.cg_steps, system=c.system)
  if c.algorithm == "imaml_hf":
    results.update(newton_curvature=c.get("newton_curvature", "hessian"),
                   newton_cg_steps=c.get("newton_cg_steps", c.cg_steps))
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  print(f"{c.name}: test accuracy {100 * mean:.2f} ± {100 * ci:.2f}% over "
        f"{acc.size} episodes ({queries} queries per class), "
        f"{int(state.step)} meta-steps", flush=True)
  return results


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  f = flags.FLAGS
  evaluate(f.workdir, f.episodes, f.test_queries, f.seed, f.step,
           f.inner_steps)


if __name__ == "__main__":   # flags are defined here so evaluate() imports cleanly
  flags.DEFINE_string("workdir", None, "Run directory.", required=True)
  flags.DEFINE_integer("episodes", None,
                       "Test episodes (default: the config's test_episodes).")
  flags.DEFINE_integer("test_queries", None,
                       "Query examples per class (default: the config's).")
  flags.DEFINE_integer("seed", 1, "Seed of the test episodes.")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
  flags.DEFINE_integer("inner_steps", None,
                       "Adaptation steps at test time (default: training's).")
  app.run(main)
