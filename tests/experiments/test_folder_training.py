"""Your own images: a folder dataset trains and evaluates through the configs."""

import os
import subprocess
import sys

import numpy as np
from PIL import Image

from experiments import evaluate
from experiments import train
from experiments.configs import folder as folder_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def symbols(root, classes=15, per_class=4, size=20, seed=0):
  """Class folders of random binary 20x20 glyphs with per-image noise."""
  rng = np.random.default_rng(seed)
  for c in range(classes):
    glyph = rng.random((size, size)) < 0.3
    os.makedirs(os.path.join(root, f"glyph{c}"))
    for i in range(per_class):
      noisy = glyph ^ (rng.random((size, size)) < 0.05)
      Image.fromarray((noisy * 255).astype(np.uint8)).save(
          os.path.join(root, f"glyph{c}", f"{i}.png"))
  return root


def tiny(src, data_dir, algorithm="maml"):
  c = folder_config.get_config(f"3way1shot-{algorithm}")
  c.update(source_dir=src, data_dir=data_dir, meta_steps=4, meta_batch=2,
           log_every=2, eval_every=2, val_episodes=4, checkpoint_every=2,
           test_episodes=10, eval_chunk=5, image_size=28)
  return c


def test_a_folder_trains_and_evaluates_under_both_protocols(tmp_path):
  src = symbols(str(tmp_path / "glyphs"))
  c = tiny(src, str(tmp_path / "tfds"))
  workdir = str(tmp_path / "run")
  state = train.train(c, workdir, progress=False)
  assert int(state.step) == 4
  out = evaluate.evaluate(workdir, ("paper", "wide"), 10, output=None)
  assert out["dataset"] == "folder" and out["episodes"] == 10
  assert out["protocol"]["queries_per_class"] == 1
  assert not out["protocol"]["rotate_test_classes"]
  assert 0.0 <= out["accuracy"] <= 1.0


def test_too_few_images_for_the_episodes_is_one_line_naming_the_class(
    tmp_path):
  src = symbols(str(tmp_path / "glyphs"), per_class=2)
  cmd = [sys.executable, "-m", "experiments.train", "--noprogress",
         "--config", "experiments/configs/folder.py:3way2shot-maml",
         f"--config.source_dir={src}",
         f"--config.data_dir={tmp_path / 'tfds'}",
         "--workdir", str(tmp_path / "run")]
  done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                        check=False)
  assert done.returncode == 2, done.stderr[-2000:]
  last = done.stderr.strip().splitlines()[-1]
  assert last.startswith("error: class 'glyph") and (
      "has 2 images, fewer than shots + queries = 4" in last), last


def test_any_config_takes_a_folder_as_its_data_set(tmp_path):
  """--config.dataset=folder on the Omniglot config: the folder's images."""
  from experiments import common
  from experiments.configs import omniglot
  src = symbols(str(tmp_path / "glyphs"), size=40)
  c = omniglot.get_config("5way1shot-maml")
  c.update(dataset="folder", source_dir=src, data_dir=str(tmp_path / "tfds"),
           test_queries=1)
  images = common.load_images(c, "train")
  # 60% of the 15 classes, each also turned by 90, 180, 270 degrees (the
  # Omniglot config's rotations), counts alike
  assert images.images.shape == (36, 4, 28, 28, 1)
  assert images.counts.tolist() == [4] * 36
  model, _ = common.model_and_loss(c)
  assert (model.filters, model.max_pool) == (64, False)
  assert common.image_shape(c) == (28, 28, 1)
