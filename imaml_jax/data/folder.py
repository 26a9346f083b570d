"""Your own images as few-shot tasks: a folder of class folders as a TFDS dataset.

Two layouts of ``source_dir``:

* ``<source_dir>/<split>/<class>/<image>``, with ``<split>`` in ``train``,
  ``val`` (or ``validation``) and ``test``: the split you chose;
* ``<source_dir>/<class>/<image>``: the classes are split by a recorded rule,
  as Omniglot's characters are: sorted by name, shuffled with ``split_seed``
  and cut by ``split_fractions`` (train, validation, test). Which class went
  where is stored with the dataset (:func:`load_folder` returns the names).

Images (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.gif``; other files and
hidden ones are skipped) are read with PIL, made grey (``channels=1``) or RGB
(``channels=3``) and resized with LANCZOS to ``image_size`` x ``image_size``.
All images of a folder must share one size: mixed sizes usually mean mixed
sources, and the error names the file. Classes may differ in size; every
class must have at least ``shots + queries`` images for the episodes asked of
it (:func:`check_for_episodes`).

The dataset is built once per source folder content, image size and split
rule (its TFDS config name holds a digest of them) and read without
TensorFlow (``array_record`` files, ``tfds.data_source``), as Omniglot and
Mini-ImageNet are.

    split = load_folder("train", "my_symbols", image_size=28, channels=1)
    split.images.images.shape   # (classes, largest class, 28, 28, 1) uint8
    split.images.counts         # images of each class
    split.classes               # their folder names
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from typing import Iterator, NamedTuple, Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds

from imaml_jax.data.episodes import ImageSet

SPLITS = ("train", "validation", "test")
# Accepted folder names of each split in the split layout.
SPLIT_FOLDERS = {"train": ("train",), "validation": ("val", "validation"),
                 "test": ("test",)}
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)


class FolderError(ValueError):
  """A source folder that cannot make few-shot tasks: says which file or class."""


class FolderSplit(NamedTuple):
  """One split of a folder dataset.

  Attributes:
    images: the :class:`imaml_jax.ImageSet` (padded uint8 images, counts).
    classes: the class (folder) names, in label order.
  """
  images: ImageSet
  classes: list[str]


def _is_image(name: str) -> bool:
  return not name.startswith(".") and name.lower().endswith(EXTENSIONS)


def class_folders(folder: str) -> dict[str, list[str]]:
  """``{class name: [image paths]}`` of the class folders in ``folder``.

  Classes and files are sorted by name; hidden entries and non-images are
  skipped.

  Examples:
    >>> import os, tempfile
    >>> from imaml_jax.data import folder
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(f"{root}/b"); os.makedirs(f"{root}/a")
    >>> for name in ("a/2.png", "a/1.png", "a/notes.txt", "b/x.jpg"):
    ...   open(f"{root}/{name}", "w").close()
    >>> {c: [os.path.basename(f) for f in files]
    ...  for c, files in folder.class_folders(root).items()}
    {'a': ['1.png', '2.png'], 'b': ['x.jpg']}
  """
  classes = {}
  for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    if name.startswith(".") or not os.path.isdir(path):
      continue
    classes[name] = [os.path.join(path, f) for f in sorted(os.listdir(path))
                     if _is_image(f) and os.path.isfile(os.path.join(path, f))]
  return classes


def split_classes(names: Sequence[str], seed: int,
                  fractions: Sequence[float] = DEFAULT_FRACTIONS
                  ) -> dict[str, list[str]]:
  """The recorded split rule: names sorted, shuffled with ``seed``, cut.

  Each split gets ``round(fraction * classes)`` classes (train takes the
  rest), and at least one.

  Args:
    names: class names.
    seed: the shuffle's seed (numpy ``default_rng``).
    fractions: train, validation, test; positive, summing to 1.

  Returns:
    ``{split: [class names]}``, each sorted.

  Examples:
    >>> from imaml_jax.data import folder
    >>> parts = folder.split_classes([f"c{i}" for i in range(10)], seed=0)
    >>> [len(parts[s]) for s in folder.SPLITS]
    [6, 2, 2]
  """
  if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
    raise FolderError(f"split_fractions must be 3 positive numbers (train, "
                      f"validation, test) summing to 1, got {tuple(fractions)}.")
  names = sorted(names)
  if len(names) < 3:
    raise FolderError(f"splitting classes needs at least 3 (one per split), "
                      f"got {len(names)}: {names}.")
  order = np.random.default_rng(seed).permutation(len(names))
  val = max(1, round(fractions[1] * len(names)))
  test = max(1, round(fractions[2] * len(names)))
  if len(names) - val - test < 1:
    raise FolderError(f"{len(names)} classes leave none for training with "
                      f"split_fractions {tuple(fractions)}.")
  shuffled = [names[i] for i in order]
  parts = {"validation": shuffled[:val], "test": shuffled[val:val + test],
           "train": shuffled[val + test:]}
  return {s: sorted(parts[s]) for s in SPLITS}


def find_splits(source_dir: str, seed: int = 0,
                fractions: Sequence[float] = DEFAULT_FRACTIONS
                ) -> dict[str, dict[str, list[str]]]:
  """``{split: {class: [image paths]}}`` of a source folder, in either layout.

  Raises :class:`FolderError` for a missing or empty folder, a split layout
  without one of its splits, or a class folder without images.
  """
  if not os.path.isdir(source_dir):
    raise FolderError(f"source folder {source_dir!r} does not exist.")
  present = {s: [f for f in SPLIT_FOLDERS[s]
                 if os.path.isdir(os.path.join(source_dir, f))]
             for s in SPLITS}
  if any(present.values()):   # the split layout
    missing = [s for s in SPLITS if not present[s]]
    if missing:
      raise FolderError(
          f"{source_dir} has split folders but none for "
          f"{', '.join(missing)}: expected "
          f"{' and '.join('/'.join(SPLIT_FOLDERS[s]) for s in missing)}/ "
          f"beside {', '.join(f[0] for f in present.values() if f)}/ (or put "
          f"all class folders directly in {source_dir} to split them by "
          f"seed).")
    splits = {s: class_folders(os.path.join(source_dir, present[s][0]))
              for s in SPLITS}
  else:
    classes = class_folders(source_dir)
    if not classes:
      raise FolderError(f"{source_dir} holds no class folders: expected "
                        f"<class>/<image> or <split>/<class>/<image>.")
    parts = split_classes(list(classes), seed, fractions)
    splits = {s: {c: classes[c] for c in parts[s]} for s in SPLITS}
  for split, classes in splits.items():
    if not classes:
      raise FolderError(f"the {split} split of {source_dir} holds no class "
                        f"folders.")
    empty = [c for c, files in classes.items() if not files]
    if empty:
      raise FolderError(f"class folder(s) {', '.join(empty[:3])} of the "
                        f"{split} split of {source_dir} hold no images "
                        f"({', '.join(EXTENSIONS)}).")
  return splits


def read_image(path: str, image_size: int, channels: int,
               expected_size: Optional[tuple[int, int]] = None
               ) -> tuple[np.ndarray, tuple[int, int]]:
  """``(image uint8 (S, S, channels), source (width, height))`` of one file.

  Raises :class:`FolderError` naming the file when PIL cannot read it, or
  when its size is not ``expected_size``.
  """
  from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as image:
      image.load()
      size = image.size
      image = image.convert("L" if channels == 1 else "RGB")
  except (UnidentifiedImageError, OSError, ValueError) as e:
    raise FolderError(f"cannot read image {path}: {e}") from None
  if expected_size is not None and size != expected_size:
    raise FolderError(f"{path} is {size[0]}x{size[1]} but the folder's other "
                      f"images are {expected_size[0]}x{expected_size[1]}: one "
                      f"dataset takes one image size.")
  if image.size != (image_size, image_size):
    image = image.resize((image_size, image_size), Image.LANCZOS)
  array = np.asarray(image, dtype=np.uint8)
  return array.reshape(image_size, image_size, channels), size


def content_digest(splits: dict[str, dict[str, list[str]]], root: str) -> str:
  """sha256 of every image's path (relative to ``root``), split and byte size."""
  h = hashlib.sha256()
  for split in SPLITS:
    for name, files in splits[split].items():
      for f in files:
        h.update(f"{split}\t{name}\t{os.path.relpath(f, root)}\t"
                 f"{os.path.getsize(f)}\n".encode())
  return h.hexdigest()


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
  """Which folder, at which size, split how (the dataset's config)."""
  source_dir: str = ""
  image_size: int = 28
  channels: int = 1
  split_seed: int = 0
  split_fractions: tuple[float, float, float] = DEFAULT_FRACTIONS


class Folder(tfds.core.GeneratorBasedBuilder):
  """A user's folder of class folders, one config per folder content."""

  name = "imaml_folder"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Class folders as few-shot classes."}

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    return self.dataset_info_from_configs(
        description=f"Class folders of {c.source_dir}.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(
                shape=(c.image_size, c.image_size, c.channels),
                dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB),
            "label": tfds.features.Scalar(dtype=np.int32),  # class in split
            "index": tfds.features.Scalar(dtype=np.int32),  # image in class
        }),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    c = self.builder_config
    splits = find_splits(c.source_dir, c.split_seed, c.split_fractions)
    first = next(iter(next(iter(splits["train"].values()))))
    _, size = read_image(first, c.image_size, c.channels)
    self.info.metadata["classes"] = {s: list(splits[s]) for s in SPLITS}
    self.info.metadata["source_size"] = list(size)
    return {s: self._generate_examples(splits[s], size) for s in SPLITS}

  def _generate_examples(self, classes: dict[str, list[str]],
                         size: tuple[int, int]) -> Iterator[tuple[str, dict]]:
    c = self.builder_config
    for label, files in enumerate(classes.values()):
      for index, path in enumerate(files):
        image, _ = read_image(path, c.image_size, c.channels, size)
        yield f"{label}_{index}", {"image": image, "label": label,
                                   "index": index}


def _config_name(source_dir: str, digest: str, image_size: int, channels: int,
                 seed: int, fractions: Sequence[float]) -> str:
  rule = hashlib.sha256(json.dumps([digest, seed, list(fractions)]).encode())
  stem = re.sub(r"[^a-z0-9]+", "_",
                os.path.basename(os.path.abspath(source_dir)).lower()) or "data"
  return f"{stem}_{image_size}x{image_size}x{channels}_{rule.hexdigest()[:12]}"


def load_folder(split: str, source_dir: str, image_size: int = 28,
                channels: int = 1, data_dir: Optional[str] = None,
                split_seed: int = 0,
                split_fractions: Sequence[float] = DEFAULT_FRACTIONS
                ) -> FolderSplit:
  """One split of a folder of class folders, built into TFDS on first use.

  Args:
    split: ``"train"``, ``"validation"`` or ``"test"``.
    source_dir: the folder (either layout of the module docstring).
    image_size: side of the square images to make.
    channels: 1 (grey) or 3 (RGB).
    data_dir: TFDS data directory (default: TFDS's).
    split_seed, split_fractions: the split rule of the one-folder layout.

  Returns:
    A :class:`FolderSplit`: the split's :class:`imaml_jax.ImageSet` and class
    names.

  Examples:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from imaml_jax.data import folder
    >>> root = tempfile.mkdtemp()
    >>> for c in range(6):                           # 6 classes, 3 images each
    ...   os.makedirs(f"{root}/src/class{c}")
    ...   for i in range(3):
    ...     Image.fromarray(np.full((8, 8), 40 * c, np.uint8)).save(
    ...         f"{root}/src/class{c}/{i}.png")
    >>> train = folder.load_folder("train", f"{root}/src", image_size=8,
    ...                            data_dir=f"{root}/tfds")  # doctest: +ELLIPSIS
    Downloading and preparing dataset ...
    >>> train.images.images.shape, train.images.counts.tolist(), train.classes
    ((4, 3, 8, 8, 1), [3, 3, 3, 3], ['class0', 'class1', 'class4', 'class5'])
  """
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
  if channels not in (1, 3):
    raise FolderError(f"channels must be 1 (grey) or 3 (RGB), got "
                      f"{channels!r}.")
  if not isinstance(image_size, int) or image_size < 1:
    raise FolderError(f"image_size must be a positive integer, got "
                      f"{image_size!r}.")
  fractions = tuple(float(f) for f in split_fractions)
  splits = find_splits(source_dir, split_seed, fractions)
  name = _config_name(source_dir, content_digest(splits, source_dir),
                      image_size, channels, split_seed, fractions)
  config = FolderConfig(name=name, source_dir=os.path.abspath(source_dir),
                        image_size=image_size, channels=channels,
                        split_seed=split_seed, split_fractions=fractions)
  builder = Folder(config=config, data_dir=data_dir,
                   file_format="array_record")
  if not builder.is_prepared():
    builder.download_and_prepare()
  classes = builder.info.metadata["classes"][split]
  source = builder.as_data_source(split=split)
  counts = np.zeros(len(classes), np.int32)
  examples = source.__getitems__(range(len(source)))
  for e in examples:
    counts[e["label"]] = max(counts[e["label"]], e["index"] + 1)
  images = np.zeros((len(classes), counts.max(), image_size, image_size,
                     channels), np.uint8)
  for e in examples:
    images[e["label"], e["index"]] = e["image"]
  return FolderSplit(ImageSet(images, counts), list(classes))


def check_for_episodes(data: FolderSplit, split: str, ways: int,
                       examples: int) -> None:
  """Raises :class:`FolderError` unless ``data`` makes ``ways``-way episodes
  of ``examples`` (shots + queries) images per class.

  Examples:
    >>> import numpy as np
    >>> from imaml_jax.data import folder, ImageSet
    >>> data = folder.FolderSplit(ImageSet(np.zeros((3, 4, 2, 2, 1), np.uint8),
    ...                                    np.array([4, 2, 4])), ["a", "b", "c"])
    >>> folder.check_for_episodes(data, "train", ways=3, examples=3)
    Traceback (most recent call last):
    ...
    imaml_jax.data.folder.FolderError: class 'b' of the train split has 2 images, fewer than shots + queries = 3.
  """
  if len(data.classes) < ways:
    raise FolderError(f"the {split} split has {len(data.classes)} classes, "
                      f"fewer than ways = {ways}.")
  counts = np.asarray(data.images.counts)
  small = [(c, int(n)) for c, n in zip(data.classes, counts) if n < examples]
  if small:
    more = f" (and {len(small) - 1} more)" if len(small) > 1 else ""
    raise FolderError(f"class {small[0][0]!r} of the {split} split has "
                      f"{small[0][1]} images, fewer than shots + queries = "
                      f"{examples}{more}.")
