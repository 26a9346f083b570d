"""Stored meta-parameters adapt to a user's own task in a few lines."""

import os

import jax
import numpy as np
import pytest
from PIL import Image

from experiments import common
from experiments import pretrained
from imaml_jax.data import folder
from imaml_jax.data import omniglot

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CELL = os.path.join(REPO, "results", "omniglot-5w1s-fomaml")


@pytest.fixture(scope="module")
def starting_point():
  return pretrained.load(CELL)


def symbol_folder(root, omniglot_data_dir, first, classes=5, per_class=4):
  """Unseen Omniglot test characters saved as a user would: 60x60 PNGs."""
  test = omniglot.load_omniglot("test", data_dir=omniglot_data_dir,
                                source_dir=common.default_source_dir("omniglot"))
  for c in range(classes):
    os.makedirs(os.path.join(root, f"symbol{c}"))
    for i in range(per_class):
      Image.fromarray(test[first + 11 * c, i]).resize((60, 60)).save(
          os.path.join(root, f"symbol{c}", f"{i}.png"))
  return root


def test_stored_theta_adapts_to_a_users_symbols_far_better_than_scratch(
    starting_point, omniglot_data_dir, tmp_path):
  sp = starting_point
  assert (sp.ways, sp.image_shape) == (5, (28, 28, 1))
  scratch = common.initial_params(sp.config, sp.model, jax.random.key(3),
                                  np.zeros((1, 28, 28, 1), np.float32))
  ours, theirs = [], []
  for t in range(4):
    root = symbol_folder(str(tmp_path / f"task{t}"), omniglot_data_dir, t)
    task, names = pretrained.task_from_folder(root, shots=1, like=sp)
    assert names == [f"symbol{c}" for c in range(5)]
    assert task.support.x.shape == (5, 28, 28, 1)
    assert task.query.x.shape == (15, 28, 28, 1)
    ours.append(np.mean(sp.predict(sp.adapt(task.support), task.query.x)
                        == task.query.y))
    theirs.append(np.mean(sp.predict(sp.adapt(task.support, scratch),
                                     task.query.x) == task.query.y))
  assert np.mean(ours) >= 0.85, ours
  assert np.mean(ours) >= np.mean(theirs) + 0.3, (ours, theirs)


def test_a_task_of_the_wrong_size_is_refused_with_the_fix(
    starting_point, tmp_path):
  from helpers import write_class_folders
  root = write_class_folders(str(tmp_path / "three"), [3, 3, 3],
                             image_size=28)
  with pytest.raises(folder.FolderError,
                     match="3 classes .* meta-trained for 5-way"):
    pretrained.task_from_folder(root, 1, starting_point)
  five = write_class_folders(str(tmp_path / "five"), [3, 3, 1, 3, 3],
                             image_size=28)
  with pytest.raises(folder.FolderError, match="class02.* has 1 images"):
    pretrained.task_from_folder(five, 1, starting_point)
  task, _ = pretrained.task_from_folder(
      write_class_folders(str(tmp_path / "ok"), [2] * 5, image_size=28), 1,
      starting_point)
  with pytest.raises(ValueError, match="labels must lie in 0..4"):
    starting_point.adapt(task.support._replace(y=task.support.y + 1))
  with pytest.raises(ValueError, match=r"\(28, 28, 1\)"):
    starting_point.predict(starting_point.theta, np.zeros((2, 30, 30)))
