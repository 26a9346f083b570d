"""The Omniglot TFDS builder on a tiny generated archive and on the real data."""

import io
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from imaml_jax.data import omniglot
from imaml_jax.data import split_cache

ALPHABETS = {"images_background": {"Alpha": 2, "Beta": 2, "Gamma": 2},
             "images_evaluation": {"Delta": 2, "Epsilon": 2}}


def write_archives(directory, seed=0):
  """Two zips in the canonical layout: 10 characters x 20 drawings."""
  rng = np.random.default_rng(seed)
  char_id = 1
  for archive, alphabets in ALPHABETS.items():
    with zipfile.ZipFile(os.path.join(directory, f"{archive}.zip"), "w") as z:
      for alphabet, count in alphabets.items():
        for n in range(1, count + 1):
          for drawer in range(1, 21):
            pixels = rng.random((105, 105)) > 0.1
            buf = io.BytesIO()
            Image.fromarray(pixels).convert("1").save(buf, format="PNG")
            z.writestr(f"{archive}/{alphabet}/character{n:02d}/"
                       f"{char_id:04d}_{drawer:02d}.png", buf.getvalue())
          char_id += 1


@pytest.fixture
def tiny(tmp_path):
  source = tmp_path / "source"
  source.mkdir()
  write_archives(source)
  digests = {name: omniglot.content_digest(str(source / f"{name}.zip"))
             for name in omniglot.ARCHIVES}

  class TinyOmniglot(omniglot.Omniglot):
    __module__ = omniglot.__name__   # TFDS finds checksums.tsv beside it
    name = f"tiny_omniglot_{abs(hash(str(tmp_path))) % 10**8}"
    NUM_CHARACTERS = 10
    CONTENT_DIGESTS = digests

  return TinyOmniglot, str(source), str(tmp_path / "tfds")


def test_tiny_archive_builds_splits_of_the_right_sizes(tiny):
  builder_cls, source, data_dir = tiny
  splits = {s: omniglot.load_omniglot(s, data_dir, source, builder_cls)
            for s in ("train", "validation", "test")}
  assert {s: x.shape for s, x in splits.items()} == {
      "train": (6, 20, 28, 28), "validation": (1, 20, 28, 28),
      "test": (3, 20, 28, 28)}
  assert all(x.dtype == np.uint8 for x in splits.values())
  # The images are the LANCZOS-resized, inverted source drawings.
  ids = omniglot.character_split(10)
  first = int(ids["test"][0])
  archive = "images_background" if first < 6 else "images_evaluation"
  with zipfile.ZipFile(os.path.join(source, f"{archive}.zip")) as z:
    name = next(n for n in sorted(z.namelist())
                if n.endswith(f"{first + 1:04d}_01.png"))
    png = z.read(name)
  expected = 255 - np.asarray(Image.open(io.BytesIO(png)).convert("L").resize(
      (28, 28), Image.LANCZOS))
  np.testing.assert_array_equal(splits["test"][0, 0], expected)


def test_a_second_read_loads_the_kept_array_and_a_broken_one_is_replaced(
    tiny, monkeypatch):
  builder_cls, source, data_dir = tiny
  first = omniglot.load_omniglot("train", data_dir, source, builder_cls)
  kept = split_cache.path(builder_cls(data_dir=data_dir), "train")
  np.testing.assert_array_equal(np.load(kept), first)

  read = omniglot._read_split   # pylint: disable=protected-access
  calls = []
  monkeypatch.setattr(omniglot, "_read_split",
                      lambda *a: calls.append(a) or read(*a))
  np.testing.assert_array_equal(
      omniglot.load_omniglot("train", data_dir, source, builder_cls), first)
  assert not calls   # TFDS was not read again
  with open(kept, "r+b") as f:   # a write cut short
    f.truncate(100)
  np.testing.assert_array_equal(
      omniglot.load_omniglot("train", data_dir, source, builder_cls), first)
  assert len(calls) == 1
  np.testing.assert_array_equal(np.load(kept), first)
  assert os.listdir(os.path.dirname(kept)) == ["train.npy"]   # no leftovers


def test_split_is_seeded_disjoint_and_complete():
  split = omniglot.character_split()
  assert {k: len(v) for k, v in split.items()} == {
      "train": 1100, "validation": 100, "test": 423}
  all_ids = np.concatenate(list(split.values()))
  assert len(set(all_ids.tolist())) == 1623 == len(all_ids)
  again = omniglot.character_split()
  for k in split:
    np.testing.assert_array_equal(split[k], again[k])
  assert not np.array_equal(omniglot.character_split(seed=1)["test"],
                            split["test"])


def test_corrupt_archive_names_the_file(tiny, tmp_path):
  builder_cls, source, data_dir = tiny
  bad = os.path.join(source, "images_evaluation.zip")
  with open(bad, "r+b") as f:
    f.truncate(1000)
  with pytest.raises(omniglot.OmniglotError, match="images_evaluation.zip"):
    omniglot.load_omniglot("train", data_dir, source, builder_cls)


def test_changed_member_fails_the_content_digest(tiny):
  builder_cls, source, data_dir = tiny
  path = os.path.join(source, "images_background.zip")
  with zipfile.ZipFile(path, "a") as z:
    z.writestr("images_background/Alpha/character01/0001_99.png", b"x")
  with pytest.raises(omniglot.OmniglotError, match="content digest .* expected"):
    omniglot.load_omniglot("train", data_dir, source, builder_cls)


def test_missing_archive_is_named(tiny):
  builder_cls, source, data_dir = tiny
  os.remove(os.path.join(source, "images_background.zip"))
  with pytest.raises(omniglot.OmniglotError,
                     match="images_background.zip is missing"):
    omniglot.load_omniglot("train", data_dir, source, builder_cls)


def test_real_omniglot_splits(omniglot_data_dir):
  sizes, characters = {}, {}
  builder = omniglot.Omniglot(data_dir=omniglot_data_dir)
  for split in ("train", "validation", "test"):
    images = omniglot.load_omniglot(split, data_dir=omniglot_data_dir)
    sizes[split] = images.shape
    assert 15 < images.mean() < 30   # strokes are ~8% of the page
    source = builder.as_data_source(split=split)
    characters[split] = {int(e["character"])
                         for e in source.__getitems__(range(len(source)))}
  assert sizes == {"train": (1100, 20, 28, 28),
                   "validation": (100, 20, 28, 28),
                   "test": (423, 20, 28, 28)}
  # The stored splits are the recorded ones, pairwise disjoint.
  expected = omniglot.character_split()
  for split, ids in characters.items():
    assert ids == set(expected[split].tolist())
  assert not characters["train"] & characters["test"]
  assert not characters["validation"] & characters["test"]
  assert not characters["train"] & characters["validation"]


def test_download_path_knows_the_canonical_checksums(tmp_path):
  infos = omniglot.Omniglot(data_dir=str(tmp_path)).url_infos
  assert set(infos) == set(omniglot.URLS.values())
  background = infos[omniglot.URLS["images_background"]]
  assert background.size == 9_464_212
  assert background.checksum == (
      "ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640")
