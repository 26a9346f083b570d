"""Evaluate a trained run, or stored meta-parameters, on held-out test episodes.

    python -m experiments.evaluate --workdir runs/make_train          # paper, then wide
    python -m experiments.evaluate --params results/omniglot-5w1s-imaml_hf
    python -m experiments.evaluate --workdir ... --protocols wide --episodes 1000
    python -m experiments.evaluate --workdir ... --adaptation gd_lam0  # iMAML, authors' README
    python -m experiments.evaluate --workdir ... --checkpoint validation

``--workdir`` is a training run (its ``config.json`` and orbax checkpoints);
``--params`` a results folder (``config.json`` and ``theta.msgpack``, as
``experiments.reproduce`` stores them). Episodes come from the test classes,
disjoint from training by construction of the split. Each protocol
(:mod:`experiments.protocol`; ``paper`` first by default, the figure to
compare with the paper) reports mean query accuracy with its 95% confidence
interval; results.json records every field that defines it.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, NamedTuple, Sequence

from absl import app
from absl import flags
from absl import logging
import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections

import imaml_jax
from experiments import common
from experiments import protocol as protocol_lib
from experiments.configs import base as config_base

THETA = "theta.msgpack"


class Run(NamedTuple):
  """A trained run, restored: its config, model, loss, learner and state."""
  config: ml_collections.ConfigDict
  model: Any
  loss: imaml_jax.SupervisedLoss
  learner: Any
  state: imaml_jax.TrainState


def save_theta(folder: str, params: Any, step: int) -> str:
  """Writes meta-parameters and their meta-step as ``<folder>/theta.msgpack``."""
  path = os.path.join(folder, THETA)
  with open(path, "wb") as f:
    f.write(flax.serialization.to_bytes(
        {"params": jax.device_get(params), "step": int(step)}))
  return path


def load_run(path: str, step: int | None = None,
             inner_steps: int | None = None) -> Run:
  """Restores a run with its config: a training workdir or a results folder.

  Args:
    path: a training workdir (orbax checkpoints) or a folder holding
      ``theta.msgpack`` (the state then has the stored meta-parameters, a
      fresh optimizer state and the stored step).
    step: the checkpoint step of a workdir (default: the latest).
    inner_steps: test-time adaptation steps of ``learner`` (default: the
      config's ``test_inner_steps``, else the training ones).

  Returns:
    A :class:`Run`.
  """
  with open(os.path.join(path, "config.json")) as f:
    c = config_base.upgrade(ml_collections.ConfigDict(json.load(f)))
  if inner_steps:
    c.test_inner_steps = inner_steps
  model, loss = common.model_and_loss(c)
  like = common.state_like(c, model)
  theta_file = os.path.join(path, THETA)
  if os.path.exists(theta_file) and step is None:
    with open(theta_file, "rb") as f:
      stored = flax.serialization.from_bytes(
          {"params": like.params, "step": 0}, f.read())
    state = like._replace(params=jax.tree.map(jnp.asarray, stored["params"]),
                          step=jnp.asarray(stored["step"], jnp.int32))
  elif os.path.isdir(os.path.join(path, "checkpoints")):
    state = common.restore(common.checkpoint_manager(path), like, step)
  else:
    raise FileNotFoundError(
        f"{path} holds neither {THETA} (a stored cell) nor checkpoints/ (a "
        f"training run); a cell still training has only its "
        f"checkpoint.msgpack: finish it with python -m experiments.reproduce.")
  return Run(c, model, loss, common.build_learner(c, loss, test=True), state)


def evaluate_protocol(run: Run, p: protocol_lib.Protocol, test_images,
                      episodes: int, seed: int = 1) -> dict:
  """Accuracy ± 95% CI of ``run``'s meta-parameters under protocol ``p``.

  Args:
    run: a :class:`Run`.
    p: the protocol (:func:`experiments.protocol.protocol`).
    test_images: the test split (:func:`experiments.common.load_images`).
    episodes: test episodes.
    seed: seed of the test episodes; the same seed draws the same classes
      and examples under every protocol with the same query count.

  Returns:
    ``{"accuracy", "ci95", "episodes", "eval_seconds", "protocol"}``.
  """
  c = run.config
  adapt = common.test_adaptation(c, run.loss, p)
  start = time.perf_counter()
  acc = common.make_evaluator(c, adapt, run.loss, p.queries_per_class,
                              p.rotate_test_classes)(
      run.state.params, test_images, jax.random.key(seed), episodes)
  mean, ci = imaml_jax.mean_ci95(acc)
  return {"accuracy": mean, "ci95": ci, "episodes": int(acc.size),
          "eval_seconds": round(time.perf_counter() - start, 1),
          "protocol": p._asdict()}


def checkpoint_step(workdir: str, rule: str) -> int:
  """The step ``rule`` picks among a workdir's kept checkpoints (validation only)."""
  kept = common.checkpoint_manager(workdir).all_steps()
  return protocol_lib.select_checkpoint(
      kept, protocol_lib.validation_curve(workdir), rule)


def evaluate(path: str, protocols: Sequence[str] = ("paper", "wide"),
             episodes: int | None = None, seed: int = 1,
             step: int | None = None, adaptation: str = "trained",
             checkpoint: str = "final", output: str | None = "default") -> dict:
  """Evaluates a run under each protocol; writes and returns the results.

  Args:
    path: a training workdir or a results folder (see :func:`load_run`).
    protocols: protocol names; the first gives the headline ``accuracy`` and
      ``ci95``, each other one a sub-dict under its name.
    episodes: test episodes (default: the config's ``test_episodes``).
    seed: seed of the test episodes.
    step: a workdir's checkpoint step; default: the one ``checkpoint`` picks.
    adaptation: iMAML's test-time adaptation, ``"trained"`` or ``"gd_lam0"``.
    checkpoint: ``"final"`` or ``"validation"`` (best validation accuracy).
    output: where to write results.json; ``"default"`` is
      ``<workdir>/results.json`` for a workdir and nothing for a results
      folder (its own results.json is not overwritten); ``None``: nowhere.

  Returns:
    The results dict.
  """
  stored = os.path.exists(os.path.join(path, THETA)) and step is None
  if not stored and step is None:
    step = checkpoint_step(path, checkpoint)
  run = load_run(path, step)
  c = run.config
  episodes = episodes or c.test_episodes
  test_images = common.load_images(c, "test")
  figures = {}
  for name in protocols:
    p = protocol_lib.protocol(name, c, adaptation, checkpoint)
    figures[name] = evaluate_protocol(run, p, test_images, episodes, seed)
    print(f"{c.name}: test accuracy {100 * figures[name]['accuracy']:.2f} ± "
          f"{100 * figures[name]['ci95']:.2f}% [{name} protocol: "
          f"{p.queries_per_class} queries per class, "
          f"{'rotated' if p.rotate_test_classes else 'unrotated'} test "
          f"classes, {p.test_inner_steps} {p.adaptation} adaptation steps] "
          f"over {episodes} episodes, {int(run.state.step)} meta-steps",
          flush=True)
  headline = figures[protocols[0]]
  results = {
      "algorithm": c.algorithm, "dataset": c.dataset,
      "setting": f"{c.ways}-way {c.shots}-shot", **headline,
      **{name: figures[name] for name in protocols[1:]},
      "meta_steps": int(run.state.step), "meta_batch": c.meta_batch,
      "train_queries": c.train_queries, "seed": c.seed, "test_seed": seed,
      "checkpoint": (os.path.join(path, THETA) if stored else os.path.join(
          path, "checkpoints", str(int(run.state.step)))),
      "hardware": common.hardware(),
      "train_seconds": common.train_seconds(path),
      **common.provenance(),
  }
  if c.algorithm.startswith("imaml"):
    results.update(lam=c.lam, cg_steps=c.cg_steps, system=c.system)
  if c.algorithm == "imaml_hf":
    results.update(newton_curvature=c.newton_curvature,
                   newton_cg_steps=c.newton_cg_steps)
  if output == "default":
    output = None if stored else os.path.join(path, "results.json")
  if output:
    with open(output, "w") as f:
      json.dump(results, f, indent=2)
  return results


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  f = flags.FLAGS
  if bool(f.workdir) == bool(f.params):
    raise app.UsageError("give exactly one of --workdir (a training run) and "
                         "--params (a results folder with theta.msgpack).")
  protocols = [p.strip() for p in f.protocols.split(",") if p.strip()]
  try:
    for name in protocols:
      if name not in protocol_lib.PROTOCOLS:
        raise ValueError(f"--protocols: expected names from "
                         f"{protocol_lib.PROTOCOLS}, got {name!r}.")
    evaluate(f.workdir or f.params, protocols, f.episodes, f.seed, f.step,
             f.adaptation, f.checkpoint, f.output or "default")
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from None


if __name__ == "__main__":   # flags are defined here so evaluate() imports cleanly
  flags.DEFINE_string("workdir", None, "Training run directory.")
  flags.DEFINE_string("params", None, "Results folder with config.json and "
                      "theta.msgpack (e.g. results/omniglot-5w1s-imaml_hf).")
  flags.DEFINE_string("protocols", "paper,wide", "Comma-separated protocols; "
                      "the first is the headline figure.")
  flags.DEFINE_integer("episodes", None,
                       "Test episodes (default: the config's test_episodes).")
  flags.DEFINE_integer("seed", 1, "Seed of the test episodes.")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: --checkpoint).")
  flags.DEFINE_enum("checkpoint", "final", list(protocol_lib.CHECKPOINT_RULES),
                    "Which kept checkpoint: the final one or the best on "
                    "validation.")
  flags.DEFINE_enum("adaptation", "trained", list(protocol_lib.ADAPTATIONS),
                    "iMAML's test-time adaptation: as trained, or plain GD "
                    "with lam 0 for 16 steps (the authors' README).")
  flags.DEFINE_string("output", None, "Where to write results.json (default: "
                      "<workdir>/results.json; none for --params).")
  app.run(main)
