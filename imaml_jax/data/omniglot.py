"""Omniglot (Lake et al. 2015) as a TFDS dataset that builds and reads without TensorFlow.

Each example is one 28x28 drawing (uint8, strokes bright, resized from 105x105
with PIL's LANCZOS filter as in MAML's data scripts), with its character index
within the split and the drawer. The 1,623 characters are split by a recorded
seed into 1,100 meta-training, 100 validation and 423 test characters
(Finn et al. 2017; the paper trains on 1,200 = train + validation).

Sources, in order: an already prepared TFDS ``data_dir``; a local directory
with ``images_background.zip`` and ``images_evaluation.zip`` (verified by the
content digest of their PNG members, so re-packed archives are accepted);
otherwise the canonical archives of github.com/brendenlake/omniglot, checked
against the checksums registered in ``checksums.tsv``.

    images = load_omniglot("train", source_dir="../shared/data/omniglot")
    images.shape   # (1100, 20, 28, 28) uint8: classes x drawings x H x W
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from typing import Optional

import numpy as np
import tensorflow_datasets as tfds

from imaml_jax.data import split_cache

ARCHIVES = ("images_background", "images_evaluation")
URLS = {name: f"https://github.com/brendenlake/omniglot/raw/master/python/"
              f"{name}.zip" for name in ARCHIVES}
# sha256 of the lines "<sha256 of PNG bytes>  <path in zip>\n" sorted by path: equal
# for the canonical archives and any re-packing of the same members.
CONTENT_DIGESTS = {
    "images_background":
        "deaa02f758afda524b3a045c7af40311f2d9ded3e2a39f715ece8470d474bc6a",
    "images_evaluation":
        "3d5e035f27423c362bf9a181af649b43cda64c1008f842177ddc5203269c901e",
}
NUM_CHARACTERS = 1623
DRAWINGS = 20
IMAGE_SIZE = 28
SPLIT_SEED = 0
SPLIT_SIZES = {"train": 1100, "validation": 100, "test": 423}
_MEMBER = re.compile(r"^[^/]+/([^/]+)/(character\d+)/(\d{4})_(\d{2})\.png$")


class OmniglotError(ValueError):
  """A missing, incomplete or corrupt Omniglot archive."""


def content_digest(zip_path: str) -> str:
  """The sha256 of the "<sha256 of member>  <path>" lines of the PNGs, by path."""
  with zipfile.ZipFile(zip_path) as z:
    lines = [f"{hashlib.sha256(z.read(n)).hexdigest()}  {n}\n"
             for n in sorted(z.namelist()) if n.endswith(".png")]
  return hashlib.sha256("".join(lines).encode()).hexdigest()


def character_split(num_characters: int = NUM_CHARACTERS,
                    seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
  """Character ids (0-based, by the archives' global index) of each split.

  A seeded permutation of all characters: the first 1,100 train, the next
  100 validation, the last 423 test (scaled for other ``num_characters``).
  """
  order = np.random.default_rng(seed).permutation(num_characters)
  n_test = round(num_characters * SPLIT_SIZES["test"] / NUM_CHARACTERS)
  n_val = round(num_characters * SPLIT_SIZES["validation"] / NUM_CHARACTERS)
  n_train = num_characters - n_test - n_val
  split = {"train": np.sort(order[:n_train]),
           "validation": np.sort(order[n_train:n_train + n_val]),
           "test": np.sort(order[n_train + n_val:])}
  ids = [set(v.tolist()) for v in split.values()]
  assert all(not (a & b) for i, a in enumerate(ids) for b in ids[i + 1:])
  return split


def _members(zip_path: str) -> dict[int, list[tuple[int, str]]]:
  """Maps global character id (0-based) -> [(drawer, member name)]."""
  characters: dict[int, list[tuple[int, str]]] = {}
  with zipfile.ZipFile(zip_path) as z:
    for name in z.namelist():
      m = _MEMBER.match(name)
      if m:
        characters.setdefault(int(m.group(3)) - 1, []).append(
            (int(m.group(4)), name))
  return characters


def preprocess(png: bytes, size: int = IMAGE_SIZE) -> np.ndarray:
  """PNG bytes -> (size, size) uint8, LANCZOS-resized, strokes bright."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = Image.open(io.BytesIO(png)).convert("L")
  image = image.resize((size, size), Image.LANCZOS)
  return 255 - np.asarray(image, dtype=np.uint8)


class Omniglot(tfds.core.GeneratorBasedBuilder):
  """Omniglot characters for few-shot learning, split by character."""

  name = "imaml_omniglot"
  VERSION = tfds.core.Version("1.0.0")
  NUM_CHARACTERS = NUM_CHARACTERS      # subclasses change these for tests
  CONTENT_DIGESTS = CONTENT_DIGESTS
  RELEASE_NOTES = {"1.0.0": "28x28 LANCZOS, 1100/100/423 characters, seed 0."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Optional: a directory holding images_background.zip and "
      "images_evaluation.zip from github.com/brendenlake/omniglot (python/). "
      "Without it the archives are downloaded.")

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__.splitlines()[0],
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE),
                                          dtype=np.uint8),
            "label": tfds.features.Scalar(dtype=np.int32),
            "character": tfds.features.Scalar(dtype=np.int32),
            "drawer": tfds.features.Scalar(dtype=np.int32),
        }),
        homepage="https://github.com/brendenlake/omniglot",
        citation="Lake, Salakhutdinov, Tenenbaum. Human-level concept learning "
                 "through probabilistic program induction. Science, 2015.",
    )

  def _split_generators(self, dl_manager):
    archives = _local_archives(dl_manager, self.CONTENT_DIGESTS)
    if archives is None:
      archives = {k: os.fspath(v) for k, v in dl_manager.download(URLS).items()}
    characters: dict[int, tuple[str, list[tuple[int, str]]]] = {}
    for name in ARCHIVES:
      for char, drawings in _members(archives[name]).items():
        characters[char] = (archives[name], sorted(drawings))
    _check_complete(characters, self.NUM_CHARACTERS)
    split = character_split(self.NUM_CHARACTERS)
    return {name: self._generate_examples(characters, ids)
            for name, ids in split.items()}

  def _generate_examples(self, characters, ids):
    open_zips: dict[str, zipfile.ZipFile] = {}
    try:
      for label, char in enumerate(ids):
        path, drawings = characters[int(char)]
        if path not in open_zips:
          open_zips[path] = zipfile.ZipFile(path)
        z = open_zips[path]
        for drawer, member in drawings:
          yield f"{char}_{drawer}", {
              "image": preprocess(z.read(member)), "label": label,
              "character": int(char), "drawer": drawer}
    finally:
      for z in open_zips.values():
        z.close()


def _local_archives(dl_manager, digests: dict[str, str]
                    ) -> Optional[dict[str, str]]:
  """The verified archives of the manual directory, or None if it has none."""
  try:
    manual = dl_manager.manual_dir
  except AssertionError:  # no manual_dir configured
    return None
  if manual is None or not os.path.isdir(os.fspath(manual)):
    return None
  paths = {n: os.path.join(os.fspath(manual), f"{n}.zip") for n in ARCHIVES}
  present = [n for n, p in paths.items() if os.path.exists(p)]
  if not present:
    return None
  for name, path in paths.items():
    if not os.path.exists(path):
      raise OmniglotError(f"{path} is missing: the Omniglot source directory "
                          f"must hold both {ARCHIVES[0]}.zip and "
                          f"{ARCHIVES[1]}.zip.")
    try:
      digest = content_digest(path)
    except (zipfile.BadZipFile, OSError) as e:
      raise OmniglotError(f"{path} is not a readable zip archive ({e}).") from e
    if digest != digests[name]:
      raise OmniglotError(
          f"{path} does not hold the canonical Omniglot PNGs: content digest "
          f"{digest}, expected {digests[name]} (sha256 of the sorted "
          f"'<sha256 of PNG>  <path>' lines).")
  return paths


def _check_complete(characters, num_characters: int) -> None:
  missing = sorted(set(range(num_characters)) - set(characters))
  if missing:
    raise OmniglotError(f"The archives hold {len(characters)} characters, "
                        f"expected {num_characters}; missing ids start "
                        f"{missing[:5]}.")
  short = {c: len(d) for c, (_, d) in characters.items() if len(d) != DRAWINGS}
  if short:
    raise OmniglotError(f"Every character needs {DRAWINGS} drawings; got "
                        f"{dict(list(short.items())[:5])} (character: count).")


def load_omniglot(split: str, data_dir: Optional[str] = None,
                  source_dir: Optional[str] = None,
                  builder_cls: type = Omniglot) -> np.ndarray:
  """A whole split as one array ``(characters, 20, 28, 28)`` of uint8.

  Prepares the dataset on first use (32,460 PNGs decoded and resized: under
  a minute from local archives on a 2-core CPU). The first read of a split
  parses its examples (seconds) and keeps the array beside the TFDS files
  (:mod:`imaml_jax.data.split_cache`); later reads load that in milliseconds.

  Args:
    split: ``"train"``, ``"validation"`` or ``"test"``.
    data_dir: TFDS data directory (default: TFDS's, ``~/tensorflow_datasets``).
    source_dir: directory holding the two archives; ``None`` downloads them.
    builder_cls: the builder (tests pass one for a small synthetic archive).
  """
  if split not in SPLIT_SIZES:
    raise ValueError(f"split must be one of {sorted(SPLIT_SIZES)}, got "
                     f"{split!r}.")
  builder = builder_cls(data_dir=data_dir, file_format="array_record")
  if source_dir is not None and not os.path.isdir(source_dir):
    raise OmniglotError(f"Omniglot source directory {source_dir} does not "
                        f"exist.")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=source_dir))
  return split_cache.cached_split(builder, split,
                                  lambda: _read_split(builder, split))


def _read_split(builder, split: str) -> np.ndarray:
  """The split through TFDS, ordered by character, then drawer."""
  source = builder.as_data_source(split=split)
  examples = source.__getitems__(range(len(source)))
  labels = np.array([e["label"] for e in examples])
  drawers = np.array([e["drawer"] for e in examples])
  num_classes = int(labels.max()) + 1
  per_class = len(examples) // num_classes
  if not np.array_equal(np.bincount(labels), np.full(num_classes, per_class)):
    raise OmniglotError(f"Split {split!r} is unbalanced: drawings per class "
                        f"{np.bincount(labels).tolist()[:10]}...")
  images = np.stack([e["image"] for e in examples])
  return images[np.lexsort((drawers, labels))].reshape(
      num_classes, per_class, IMAGE_SIZE, IMAGE_SIZE)
