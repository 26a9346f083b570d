"""A user's folder of class folders: layouts, split rule, errors, episodes."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import imaml_jax
from imaml_jax.data import folder
from helpers import write_class_folders


def load(split, src, tmp_path, **kw):
  return folder.load_folder(split, str(src), image_size=8,
                            data_dir=str(tmp_path / "tfds"), **kw)


def decode(images, counts):
  """(class c, index i) of every real image, from its pixel 10 c + i + 1."""
  return [[int(images[c, i, 0, 0, 0]) - 1 for i in range(n)]
          for c, n in enumerate(counts)]


def test_one_folder_is_split_by_its_recorded_rule_with_every_image_in_place(
    tmp_path):
  sizes = [3, 5, 4, 6, 3, 4, 5, 3, 4, 6]
  src = write_class_folders(str(tmp_path / "src"), sizes)
  parts = folder.split_classes([f"class{c:02d}" for c in range(10)], seed=0)
  seen = []
  for split in folder.SPLITS:
    data = load(split, src, tmp_path)
    assert data.classes == parts[split]
    ids = [int(name[5:]) for name in data.classes]
    counts = data.images.counts.tolist()
    assert counts == [sizes[c] for c in ids]
    assert decode(data.images.images, counts) == [
        [10 * c + i for i in range(sizes[c])] for c in ids]
    assert not data.images.images[np.arange(len(ids))[:, None],
                                  np.arange(max(counts))[None, :]][
        np.arange(max(counts))[None, :] >= np.array(counts)[:, None]].any()
    seen += data.classes
  assert sorted(seen) == [f"class{c:02d}" for c in range(10)]
  other = folder.split_classes([f"class{c:02d}" for c in range(10)], seed=1)
  assert other != parts   # the seed is the rule


def test_split_layout_keeps_the_users_splits_and_rgb(tmp_path):
  src = str(tmp_path / "src")
  for split, n in (("train", 4), ("val", 2), ("test", 3)):
    write_class_folders(src, [2] * n, mode="RGB", split=split)
  for split, n in (("train", 4), ("validation", 2), ("test", 3)):
    data = load(split, src, tmp_path, channels=3)
    assert data.images.images.shape == (n, 2, 8, 8, 3)
    assert data.classes == [f"class{c:02d}" for c in range(n)]


def test_resized_images_and_a_changed_folder_is_rebuilt(tmp_path):
  src = write_class_folders(str(tmp_path / "src"), [2] * 5, image_size=16)
  data = folder.load_folder("train", src, image_size=8,
                            data_dir=str(tmp_path / "tfds"))
  assert data.images.images.shape[2:] == (8, 8, 1)
  write_class_folders(src, [3] * 5, image_size=16)   # one more image each
  again = folder.load_folder("train", src, image_size=8,
                             data_dir=str(tmp_path / "tfds"))
  assert again.images.counts.tolist() == [3] * len(again.classes)


@pytest.mark.parametrize("breakage,match", [
    ("empty", "holds no class folders"),
    ("missing", "does not exist"),
    ("no_val", "none for validation"),
    ("unreadable", r"cannot read image .*class01[/\\]bad\.png"),
    ("mixed", r"class02[/\\]big\.png is 9x9 but .* 8x8"),
    ("no_images", "class00 of the .* hold no images"),
])
def test_bad_folders_are_named(breakage, match, tmp_path):
  src = str(tmp_path / "src")
  if breakage == "empty":
    os.makedirs(src)
  elif breakage == "no_val":
    write_class_folders(src, [2] * 3, split="train")
    write_class_folders(src, [2] * 3, split="test")
  elif breakage == "no_images":
    write_class_folders(src, [2] * 5)
    for f in os.listdir(os.path.join(src, "class00")):
      os.remove(os.path.join(src, "class00", f))
    with open(os.path.join(src, "class00", "notes.txt"), "w") as f:
      f.write("not an image")
  elif breakage != "missing":
    write_class_folders(src, [2] * 5)
    if breakage == "unreadable":
      with open(os.path.join(src, "class01", "bad.png"), "wb") as f:
        f.write(b"not a png")
    else:
      from PIL import Image
      Image.fromarray(np.ones((9, 9), np.uint8)).save(
          os.path.join(src, "class02", "big.png"))
  with pytest.raises(folder.FolderError, match=match):
    for split in folder.SPLITS:
      load(split, src, tmp_path)


def test_episode_checks_name_the_short_class_and_the_ways():
  data = folder.FolderSplit(
      imaml_jax.ImageSet(np.zeros((4, 5, 2, 2, 1), np.uint8),
                         np.array([5, 5, 2, 5])), ["a", "b", "c", "d"])
  with pytest.raises(folder.FolderError, match="class 'c' of the train split "
                     "has 2 images, fewer than shots \\+ queries = 3"):
    folder.check_for_episodes(data, "train", ways=4, examples=3)
  with pytest.raises(folder.FolderError, match="4 classes, fewer than ways = 5"):
    folder.check_for_episodes(data, "train", ways=5, examples=2)
  folder.check_for_episodes(data, "train", ways=4, examples=2)


def test_episodes_of_unequal_classes_never_draw_padding_or_repeat():
  counts = np.array([3, 7, 4, 3, 5, 6])
  images = np.zeros((6, 7, 2, 2), np.uint8)
  for c, n in enumerate(counts):
    images[c, :n] = (10 * c + np.arange(n) + 1)[:, None, None]
  data = imaml_jax.ImageSet(jnp.asarray(images), jnp.asarray(counts))
  tasks = jax.jit(imaml_jax.sample_episodes, static_argnums=(2, 3, 4, 5))(
      jax.random.key(0), data, 200, 4, 1, 2)
  ids = np.rint(np.concatenate([
      np.asarray(tasks.support.x).reshape(200, 4, 1, -1)[..., 0],
      np.asarray(tasks.query.x).reshape(200, 4, 2, -1)[..., 0]], 2)
      * 255).astype(int) - 1   # (task, way, example): 10 c + i
  classes, index = ids // 10, ids % 10
  assert (ids >= 0).all()                                   # no padding
  assert (classes == classes[..., :1]).all()                # one class a way
  assert (index < counts[classes]).all()                    # real examples
  assert all(len(set(row)) == 3 for row in index.reshape(-1, 3))  # distinct
  # every real example of the 3-image classes is drawn (all 3 each time)
  assert set(index[classes == 0].ravel()) == {0, 1, 2}
  rotated = imaml_jax.with_rotations(data)
  assert rotated.counts.tolist() == counts.tolist() * 4
