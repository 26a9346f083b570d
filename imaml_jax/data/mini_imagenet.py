"""Mini-ImageNet (Vinyals et al. 2016; split of Ravi & Larochelle 2017) as a TFDS dataset.

100 ImageNet classes, 600 images each, 84x84 RGB: 64 classes for
meta-training, 16 for validation, 20 for test, as listed by Ravi &
Larochelle's ``train.csv``, ``val.csv`` and ``test.csv``. ImageNet's terms
forbid redistribution, so this is a manual-download dataset: point
``source_dir`` at a directory holding the three CSVs and the images in one of
the layouts found in the wild,

* ``<split>/<wnid>/<file>.jpg`` folders (MAML's ``proc_images.py`` output);
* one zip per split, ``<split>.zip`` or ``mini_imagenet_84x84_<split>.zip``,
  holding ``<split>/<wnid>/<file>.jpg`` (or ``<wnid>/<file>.jpg``);
* Ravi & Larochelle's flat ``images/<file>.jpg`` folder,

with ``<split>`` in ``train``, ``val``, ``test``. Every image the CSVs name
must be there, in its class's folder; images of other sizes are resized to
84x84 with PIL's LANCZOS filter, as ``proc_images.py`` does. Builds and reads
without TensorFlow (``array_record`` files, ``tfds.data_source``).

    images = load_mini_imagenet("train", source_dir="../shared/data/mini_imagenet")
    images.shape   # (64, 600, 84, 84, 3) uint8: classes x images x H x W x RGB
"""

from __future__ import annotations

import csv
import io
import os
import re
import zipfile
from typing import Iterator, NamedTuple, Optional

import numpy as np
import tensorflow_datasets as tfds
import tqdm

from imaml_jax.data import split_cache

IMAGE_SIZE = 84
# TFDS split -> the Ravi & Larochelle file stem (CSV, folder and zip names)
STEMS = {"train": "train", "validation": "val", "test": "test"}
NUM_CLASSES = {"train": 64, "validation": 16, "test": 20}
PER_CLASS = 600
_IN_CLASS_FOLDER = re.compile(r"(?:^|/)(n\d{8})/([^/]+\.jpe?g)$", re.I)

INSTRUCTIONS = """\
Mini-ImageNet cannot be downloaded automatically (ImageNet's terms forbid
redistribution). Put in one directory:
  train.csv, val.csv, test.csv      Ravi & Larochelle's split (header
                                     "filename,label"; github.com/twitter/
                                     meta-learning-lstm, data/miniImagenet)
and the images, as either
  train/<wnid>/<file>.jpg, val/..., test/...         (MAML's proc_images.py)
  train.zip, val.zip, test.zip (or mini_imagenet_84x84_<split>.zip)
  images/<file>.jpg                                  (all 60,000, any size)
then pass that directory as source_dir (--config.source_dir, or set
$MINI_IMAGENET_DIR)."""


class MiniImageNetError(ValueError):
  """Missing source data, or images that disagree with the split CSVs."""


class _Image(NamedTuple):
  """Where one image is: a zip (``member`` inside it) or a file (``path``)."""
  path: str
  member: Optional[str]
  wnid: Optional[str]   # the class folder it sits in (None: flat layout)


def read_split_csv(path: str) -> list[tuple[str, str]]:
  """``[(filename, wnid)]`` of a Ravi & Larochelle CSV, in file order."""
  if not os.path.exists(path):
    raise MiniImageNetError(f"{path} is missing.\n{INSTRUCTIONS}")
  with open(path, newline="") as f:
    rows = list(csv.reader(f))
  if not rows or [h.strip() for h in rows[0]] != ["filename", "label"]:
    raise MiniImageNetError(f"{path} must start with the header "
                            f"'filename,label'; got {rows[:1]}.")
  bad = [r for r in rows[1:] if len(r) != 2]
  if bad:
    raise MiniImageNetError(f"{path}: rows need 2 fields; got {bad[:3]}.")
  return [(name.strip(), wnid.strip()) for name, wnid in rows[1:]]


def _find_images(source_dir: str, stem: str) -> tuple[str, dict[str, _Image]]:
  """(layout description, ``{filename: _Image}``) of one split's images."""
  folder = os.path.join(source_dir, stem)
  if os.path.isdir(folder):
    found = {}
    for wnid in sorted(os.listdir(folder)):
      class_dir = os.path.join(folder, wnid)
      if os.path.isdir(class_dir):
        for name in os.listdir(class_dir):
          found[name] = _Image(os.path.join(class_dir, name), None, wnid)
    return f"folder {folder}", found
  for zip_name in (f"{stem}.zip", f"mini_imagenet_84x84_{stem}.zip"):
    path = os.path.join(source_dir, zip_name)
    if os.path.exists(path):
      try:
        with zipfile.ZipFile(path) as z:
          names = z.namelist()
      except (zipfile.BadZipFile, OSError) as e:
        raise MiniImageNetError(f"{path} is not a readable zip ({e}).") from e
      found = {}
      for member in names:
        m = _IN_CLASS_FOLDER.search(member)
        if m:
          found[m.group(2)] = _Image(path, member, m.group(1))
      return f"zip {path}", found
  flat = os.path.join(source_dir, "images")
  if os.path.isdir(flat):
    return f"folder {flat}", {n: _Image(os.path.join(flat, n), None, None)
                              for n in os.listdir(flat)}
  raise MiniImageNetError(f"No images for split {stem!r} in {source_dir}: "
                          f"expected {stem}/<wnid>/, {stem}.zip, "
                          f"mini_imagenet_84x84_{stem}.zip or images/.\n"
                          f"{INSTRUCTIONS}")


def _first(items, n=3) -> str:
  items = list(items)
  more = f" and {len(items) - n} more" if len(items) > n else ""
  return ", ".join(str(i) for i in items[:n]) + more


def check_split(source_dir: str, split: str, num_classes: int,
                per_class: int) -> tuple[list[str], list[list[_Image]]]:
  """The split's wnids (CSV order) and each class's images, all checked.

  Raises :class:`MiniImageNetError` naming the class or file that disagrees
  with the CSV: a CSV image that is missing, or sits in another class's
  folder; an image in a split folder or zip that the CSV does not list; or a
  class count or class size other than expected.
  """
  stem = STEMS[split]
  rows = read_split_csv(os.path.join(source_dir, f"{stem}.csv"))
  wnids = list(dict.fromkeys(w for _, w in rows))
  sizes = {w: 0 for w in wnids}
  for _, w in rows:
    sizes[w] += 1
  if len(wnids) != num_classes:
    raise MiniImageNetError(f"{stem}.csv lists {len(wnids)} classes, expected "
                            f"{num_classes} for the {split} split.")
  wrong = {w: n for w, n in sizes.items() if n != per_class}
  if wrong:
    raise MiniImageNetError(f"{stem}.csv: every class needs {per_class} "
                            f"images; got {_first(wrong.items())} "
                            f"(class, count).")
  layout, found = _find_images(source_dir, stem)
  missing = [(n, w) for n, w in rows if n not in found]
  if missing:
    raise MiniImageNetError(
        f"{len(missing)} images of {stem}.csv are not in {layout}: "
        f"{_first(missing)} (file, class).")
  misplaced = [(n, w, found[n].wnid) for n, w in rows
               if found[n].wnid not in (None, w)]
  if misplaced:
    raise MiniImageNetError(
        f"{len(misplaced)} images sit in another class's folder than "
        f"{stem}.csv says, in {layout}: {_first(misplaced)} "
        f"(file, CSV class, folder class).")
  listed = {n for n, _ in rows}
  extra = sorted((n, im.wnid) for n, im in found.items()
                 if n not in listed and im.wnid is not None)
  if extra:
    raise MiniImageNetError(
        f"{len(extra)} images in {layout} are not listed in {stem}.csv: "
        f"{_first(extra)} (file, class folder).")
  by_class = {w: [] for w in wnids}
  for n, w in rows:
    by_class[w].append(found[n])
  return wnids, [by_class[w] for w in wnids]


def decode(data: bytes, size: int = IMAGE_SIZE) -> np.ndarray:
  """JPEG bytes -> ``(size, size, 3)`` uint8 RGB, LANCZOS-resized if needed."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = Image.open(io.BytesIO(data)).convert("RGB")
  if image.size != (size, size):
    image = image.resize((size, size), Image.LANCZOS)
  return np.asarray(image, dtype=np.uint8)


class MiniImageNet(tfds.core.GeneratorBasedBuilder):
  """Mini-ImageNet, Ravi & Larochelle split, 84x84 RGB uint8."""

  name = "imaml_mini_imagenet"
  VERSION = tfds.core.Version("1.0.0")
  NUM_CLASSES = NUM_CLASSES   # subclasses change these for tests
  PER_CLASS = PER_CLASS
  RELEASE_NOTES = {"1.0.0": "Ravi & Larochelle split, 84x84 RGB uint8."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__.splitlines()[0],
        features=tfds.features.FeaturesDict({
            # zlib-compressed bytes: without it uint8 pixels are stored as
            # int64 varints (30 KB an image), and the 38,400 training images
            # outgrow TFDS's 1 GB in-memory shuffle buffer, whose spill to
            # disk needs TensorFlow.
            "image": tfds.features.Tensor(
                shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8,
                encoding=tfds.features.Encoding.ZLIB),
            "label": tfds.features.Scalar(dtype=np.int32),   # CSV class order
            "index": tfds.features.Scalar(dtype=np.int32),   # CSV row in class
        }),
        homepage="https://github.com/twitter/meta-learning-lstm",
        citation="Vinyals et al., Matching Networks for One Shot Learning, "
                 "NeurIPS 2016; Ravi & Larochelle, Optimization as a Model "
                 "for Few-Shot Learning, ICLR 2017.",
    )

  def _split_generators(self, dl_manager):
    try:
      source = os.fspath(dl_manager.manual_dir)
    except AssertionError:   # no manual_dir configured
      source = None
    if not source or not os.path.isdir(source):
      raise MiniImageNetError(f"Mini-ImageNet source directory {source!r} "
                              f"does not exist or is empty.\n{INSTRUCTIONS}")
    # Check every split before writing any, so a bad source fails fast.
    checked = {split: check_split(source, split, self.NUM_CLASSES[split],
                                  self.PER_CLASS)
               for split in STEMS}
    return {split: self._generate_examples(classes)
            for split, (_, classes) in checked.items()}

  def _generate_examples(self, classes) -> Iterator[tuple[str, dict]]:
    open_zips: dict[str, zipfile.ZipFile] = {}
    try:
      for label, images in enumerate(classes):
        for index, image in enumerate(images):
          if image.member is None:
            with open(image.path, "rb") as f:
              data = f.read()
          else:
            if image.path not in open_zips:
              open_zips[image.path] = zipfile.ZipFile(image.path)
            data = open_zips[image.path].read(image.member)
          yield f"{label}_{index}", {"image": decode(data), "label": label,
                                     "index": index}
    finally:
      for z in open_zips.values():
        z.close()


def load_mini_imagenet(split: str, data_dir: Optional[str] = None,
                       source_dir: Optional[str] = None,
                       builder_cls: type = MiniImageNet,
                       progress: bool = False) -> np.ndarray:
  """A whole split as one array ``(classes, 600, 84, 84, 3)`` of uint8.

  Prepares the dataset on first use (all three splits, 60,000 JPEGs: 44 s on
  a 2-core CPU from the stored zips), then reads the split with
  ``tfds.data_source``; the first read keeps the array beside the TFDS files
  (:mod:`imaml_jax.data.split_cache`) and later reads load that.

  Args:
    split: ``"train"``, ``"validation"`` or ``"test"``.
    data_dir: TFDS data directory (default: TFDS's, ``~/tensorflow_datasets``).
    source_dir: the manual directory (CSVs and images, see the module
      docstring). Only needed until the dataset is prepared.
    builder_cls: the builder (tests pass one for a small generated dataset).
    progress: show a progress bar while reading.
  """
  if split not in STEMS:
    raise ValueError(f"split must be one of {sorted(STEMS)}, got {split!r}.")
  builder = builder_cls(data_dir=data_dir, file_format="array_record")
  if not builder.is_prepared():
    if source_dir is None:
      raise MiniImageNetError(f"Mini-ImageNet is not prepared in "
                              f"{builder.data_dir} and no source_dir was "
                              f"given.\n{INSTRUCTIONS}")
    if not os.path.isdir(source_dir):
      raise MiniImageNetError(f"Mini-ImageNet source directory {source_dir} "
                              f"does not exist.\n{INSTRUCTIONS}")
    for stem in STEMS.values():   # the CSVs first: the clearest error
      read_split_csv(os.path.join(source_dir, f"{stem}.csv"))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=source_dir))
  return split_cache.cached_split(
      builder, split, lambda: _read_split(builder, split, progress))


def _read_split(builder, split: str, progress: bool) -> np.ndarray:
  """The split through TFDS, at (class, index)."""
  source = builder.as_data_source(split=split)
  classes, per_class = type(builder).NUM_CLASSES[split], type(builder).PER_CLASS
  if len(source) != classes * per_class:
    raise MiniImageNetError(f"split {split!r} holds {len(source)} images, "
                            f"expected {classes} x {per_class}.")
  images = np.zeros((classes, per_class, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
  seen = np.zeros((classes, per_class), bool)
  bar = tqdm.tqdm(total=len(source), disable=not progress, unit="image",
                  desc=f"mini_imagenet {split}")
  for start in range(0, len(source), 2000):
    for e in source.__getitems__(range(start, min(start + 2000, len(source)))):
      images[e["label"], e["index"]] = e["image"]
      seen[e["label"], e["index"]] = True
      bar.update()
  bar.close()
  if not seen.all():
    raise MiniImageNetError(f"split {split!r} lacks {int((~seen).sum())} "
                            f"(class, index) slots; rebuild the dataset.")
  return images
