"""The Mini-ImageNet TFDS builder on tiny generated sources, in each layout."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from imaml_jax.data import mini_imagenet as mi

from helpers import tiny_mini_imagenet_builder
from helpers import tiny_mini_imagenet_rows
from helpers import write_mini_imagenet_source

CLASSES = {"train": 3, "validation": 2, "test": 2}
PER_CLASS = 4


@pytest.mark.parametrize("layout", ["folders", "zips", "flat"])
def test_each_layout_builds_the_csv_classes_in_order(tmp_path, layout):
  data = tiny_mini_imagenet_rows(CLASSES, PER_CLASS)
  source = tmp_path / "source"
  source.mkdir()
  write_mini_imagenet_source(str(source), layout, data)
  builder = tiny_mini_imagenet_builder(tmp_path, CLASSES, PER_CLASS)
  for split, stem in mi.STEMS.items():
    images = mi.load_mini_imagenet(split, str(tmp_path / "tfds"), str(source),
                                   builder)
    assert images.shape == (CLASSES[split], PER_CLASS, 84, 84, 3)
    assert images.dtype == np.uint8
    rows = data[stem]
    for k, (_, _, jpeg) in enumerate(rows):
      np.testing.assert_array_equal(images[k // PER_CLASS, k % PER_CLASS],
                                    mi.decode(jpeg))
  # Once prepared, no source is needed. The 100x90 image was LANCZOS-resized
  # to 84x84, the 84x84 ones decoded as stored.
  train = mi.load_mini_imagenet("train", str(tmp_path / "tfds"), None, builder)
  decoded = lambda k: Image.open(io.BytesIO(data["train"][k][2])).convert("RGB")
  np.testing.assert_array_equal(
      train[0, 0], np.asarray(decoded(0).resize((84, 84), Image.LANCZOS)))
  np.testing.assert_array_equal(train[0, 1], np.asarray(decoded(1)))


def _source_with(tmp_path, edit):
  data = tiny_mini_imagenet_rows(CLASSES, PER_CLASS)
  edit(data)
  source = tmp_path / "source"
  source.mkdir()
  write_mini_imagenet_source(str(source), "folders", data)
  return str(source)


def test_a_missing_image_is_named(tmp_path):
  source = _source_with(tmp_path, lambda d: None)
  name, wnid, _ = tiny_mini_imagenet_rows(CLASSES, PER_CLASS)["val"][5]
  os.remove(os.path.join(source, "val", wnid, name))
  with pytest.raises(mi.MiniImageNetError, match=f"{name}.*{wnid}"):
    mi.check_split(source, "validation", 2, PER_CLASS)


def test_an_image_in_another_class_folder_is_named(tmp_path):
  source = _source_with(tmp_path, lambda d: None)
  rows = tiny_mini_imagenet_rows(CLASSES, PER_CLASS)["test"]
  name, wnid, _ = rows[0]
  other = rows[-1][1]
  os.replace(os.path.join(source, "test", wnid, name),
             os.path.join(source, "test", other, name))
  with pytest.raises(mi.MiniImageNetError,
                     match=f"another class.*{name}.*{wnid}.*{other}"):
    mi.check_split(source, "test", 2, PER_CLASS)


def test_an_image_the_csv_does_not_list_is_named(tmp_path):
  source = _source_with(tmp_path, lambda d: None)
  wnid = tiny_mini_imagenet_rows(CLASSES, PER_CLASS)["train"][0][1]
  with open(os.path.join(source, "train", wnid, "stray.jpg"), "wb") as f:
    f.write(b"")
  with pytest.raises(mi.MiniImageNetError, match="not listed.*stray.jpg"):
    mi.check_split(source, "train", 3, PER_CLASS)


def test_wrong_class_count_and_class_size_are_reported(tmp_path):
  source = _source_with(tmp_path, lambda d: d["train"].pop())
  with pytest.raises(mi.MiniImageNetError, match="needs 4 images.*3"):
    mi.check_split(source, "train", 3, PER_CLASS)
  with pytest.raises(mi.MiniImageNetError, match="lists 2 classes, expected 5"):
    mi.check_split(source, "validation", 5, PER_CLASS)


def test_missing_source_says_what_to_provide(tmp_path):
  builder, data_dir = tiny_mini_imagenet_builder(tmp_path, CLASSES, PER_CLASS), str(tmp_path / "tfds")
  with pytest.raises(mi.MiniImageNetError,
                     match="(?s)not prepared.*train.csv.*proc_images"):
    mi.load_mini_imagenet("train", data_dir, None, builder)
  with pytest.raises(mi.MiniImageNetError, match="does not exist"):
    mi.load_mini_imagenet("train", data_dir, str(tmp_path / "nowhere"),
                          builder)
  (tmp_path / "empty").mkdir()
  with pytest.raises(mi.MiniImageNetError, match="train.csv is missing"):
    mi.load_mini_imagenet("train", data_dir, str(tmp_path / "empty"), builder)
