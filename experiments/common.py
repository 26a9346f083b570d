"""Pieces shared by the experiment entry points: learners from configs, paths."""

from __future__ import annotations

import os
import pathlib

import imaml_jax

ALGORITHMS = ("imaml_gd", "imaml_hf", "maml", "fomaml", "reptile")
REPO = pathlib.Path(__file__).resolve().parents[1]


def build_learner(c, loss):
  """The learner a config names, with its inner-loop settings."""
  if c.algorithm == "imaml_gd":
    solver = imaml_jax.gradient_descent(c.inner_steps, c.inner_lr)
  elif c.algorithm == "imaml_hf":
    solver = imaml_jax.newton_cg(c.newton_steps, cg_steps=c.cg_steps)
  elif c.algorithm in ("maml", "fomaml", "reptile"):
    return getattr(imaml_jax, c.algorithm)(loss, c.inner_steps, c.inner_lr)
  else:
    raise ValueError(f"unknown algorithm {c.algorithm!r}; expected one of "
                     f"{', '.join(ALGORITHMS)}.")
  return imaml_jax.imaml(loss, solver, c.lam, c.cg_steps, c.system)


def default_omniglot_dir() -> str | None:
  """Where the Omniglot archives are on this project's machines, if there.

  ``$OMNIGLOT_DIR`` wins; else ``../shared/data/omniglot`` beside the checkout;
  else ``None`` (TFDS downloads the canonical archives).
  """
  for path in (os.environ.get("OMNIGLOT_DIR"),
               REPO.parent / "shared" / "data" / "omniglot"):
    if path and os.path.isdir(path):
      return os.fspath(path)
  return None


def model_and_loss(c):
  """The Conv4 of the config's data set and its cross-entropy loss."""
  if c.dataset == "omniglot":
    model = imaml_jax.omniglot_conv4(c.ways)
  elif c.dataset == "mini_imagenet":
    model = imaml_jax.mini_imagenet_conv4(c.ways)
  else:
    raise ValueError(f"unknown dataset {c.dataset!r}.")
  return model, imaml_jax.cross_entropy_loss(imaml_jax.apply_fn(model))


def load_images(c, split: str):
  """A split as one uint8 device array ``(classes, examples, H, W[, C])``.

  Training classes get their rotations when ``c.rotations`` is set.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from imaml_jax.data import omniglot  # pylint: disable=g-import-not-at-top
  if c.dataset != "omniglot":
    raise ValueError(f"no loader for dataset {c.dataset!r} yet.")
  images = jax.device_put(omniglot.load_omniglot(
      split, data_dir=c.data_dir or None, source_dir=c.source_dir or None))
  if split == "train" and c.rotations:
    images = imaml_jax.with_rotations(images)
  return images


def make_evaluator(c, learner, loss, queries: int, chunk: int = 100):
  """``evaluate(theta, images, key, episodes) -> per-episode accuracy (numpy)``.

  Episodes are drawn on device with ``key`` and evaluated ``chunk`` at a time
  (vmapped adaptation of each, then accuracy on its query set).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  @jax.jit
  def one_chunk(theta, images, key):
    tasks = imaml_jax.sample_episodes(key, images, chunk, c.ways, c.shots,
                                      queries)
    return imaml_jax.adapt_and_evaluate(learner.adapt, loss.metrics, theta,
                                        tasks)["accuracy"]

  def evaluate(theta, images, key, episodes: int):
    keys = jax.random.split(key, -(-episodes // chunk))
    acc = np.concatenate([np.asarray(one_chunk(theta, images, k)) for k in keys])
    return acc[:episodes]

  return evaluate
