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

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections

import imaml_jax
from experiments import common

def evaluate(workdir: str, episodes: int | None = None,
             test_queries: int | None = None, seed: int = 1,
             step: int | None = None, inner_steps: int | None = None) -> dict:
  """Evaluates a run's checkpoint; writes and returns the results dict.

  ``inner_steps`` overrides the adaptation steps at test time (GD steps, or
  Newton steps for iMAML-HF); by default the training ones.
  """
  with open(os.path.join(workdir, "config.json")) as f:
    c = ml_collections.ConfigDict(json.load(f))
  if inner_steps:
    c["newton_steps" if c.algorithm == "imaml_hf" else "inner_steps"] = (
        inner_steps)
  episodes = episodes or c.test_episodes
  queries = test_queries or c.test_queries
  model, loss = common.model_and_loss(c)
  learner = common.build_learner(c, loss)
  test_images = common.load_images(c, "test")
  example = imaml_jax.sample_episodes(jax.random.key(0), test_images, 1,
                                      c.ways, c.shots, queries)
  theta = imaml_jax.init_params(model, jax.random.key(0), example.support.x[0])
  state = common.restore(
      common.checkpoint_manager(workdir),
      imaml_jax.init_train_state(theta, common.meta_optimizer(c)), step)
  start = time.perf_counter()
  acc = common.make_evaluator(c, learner, loss, queries)(
      state.params, test_images, jax.random.key(seed), episodes)
  seconds = time.perf_counter() - start
  mean, ci = imaml_jax.mean_ci95(acc)
  inner_steps = c.newton_steps if c.algorithm == "imaml_hf" else c.inner_steps
  results = {
      "algorithm": c.algorithm, "dataset": c.dataset,
      "setting": f"{c.ways}-way {c.shots}-shot", "accuracy": mean, "ci95": ci,
      "episodes": int(acc.size), "test_queries_per_class": queries,
      "inner_steps": inner_steps, "meta_steps": int(state.step),
      "seed": c.seed, "test_seed": seed, "checkpoint": os.path.join(
          workdir, "checkpoints", str(int(state.step))),
      "eval_seconds": round(seconds, 1), "hardware": common.hardware(),
      "train_seconds": _train_seconds(workdir),
  }
  if c.algorithm.startswith("imaml"):
    results.update(lam=c.lam, cg_steps=c.cg_steps, system=c.system)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  print(f"{c.name}: test accuracy {100 * mean:.2f} ± {100 * ci:.2f}% over "
        f"{acc.size} episodes ({queries} queries per class), "
        f"{int(state.step)} meta-steps", flush=True)
  return results


def _train_seconds(workdir: str) -> float | None:
  """Training wall time summed from metrics.jsonl (None if absent)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return None
  total, last = 0.0, 0
  with open(path) as f:
    for line in f:
      row = json.loads(line)
      if row.get("kind") == "train":
        total += row["seconds_per_step"] * (row["step"] - last)
        last = row["step"]
  return round(total, 1)


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
