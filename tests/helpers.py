"""Helpers the tests import: tiny problems and generated data sets."""

import io
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from imaml_jax.data import mini_imagenet


def random_spd(key, n, low=0.5, high=3.0):
  """A symmetric matrix with eigenvalues spread in [low, high]."""
  q, _ = jnp.linalg.qr(jax.random.normal(key, (n, n)))
  return (q * jnp.linspace(low, high, n)) @ q.T


def cosine(a, b):
  a, b = np.ravel(a), np.ravel(b)
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def tiny_mini_imagenet_rows(classes, per_class, seed=0):
  """``{csv stem: [(filename, wnid, jpeg bytes)]}`` for a generated Mini-ImageNet.

  ``classes`` maps split -> class count. Each class's first image is 100x90
  (the builder resizes it), the others 84x84.
  """
  rng = np.random.default_rng(seed)
  out, wnid = {}, 1000
  for split, n_classes in classes.items():
    rows = []
    for _ in range(n_classes):
      wnid += 1
      for i in range(per_class):
        size = (84, 84) if i else (100, 90)
        pixels = rng.integers(0, 256, size[::-1] + (3,), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG")
        rows.append((f"n{wnid:08d}{i:08d}.jpg", f"n{wnid:08d}",
                     buf.getvalue()))
    out[mini_imagenet.STEMS[split]] = rows
  return out


def write_mini_imagenet_source(directory, layout, data):
  """The CSVs and images of ``data`` in a layout: folders, zips or flat."""
  for stem, rows in data.items():
    with open(os.path.join(directory, f"{stem}.csv"), "w") as f:
      f.write("filename,label\n" + "".join(f"{n},{w}\n" for n, w, _ in rows))
    if layout == "zips":   # both zip names found in the wild
      name = f"mini_imagenet_84x84_{stem}.zip" if stem == "train" else (
          f"{stem}.zip")
      with zipfile.ZipFile(os.path.join(directory, name), "w") as z:
        for file, wnid, jpeg in rows:
          z.writestr(f"{stem}/{wnid}/{file}", jpeg)
      continue
    for file, wnid, jpeg in rows:
      path = (os.path.join(directory, stem, wnid, file) if layout == "folders"
              else os.path.join(directory, "images", file))
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "wb") as f:
        f.write(jpeg)


def tiny_mini_imagenet_builder(tmp_path, classes, per_class):
  """A Mini-ImageNet builder with fewer, smaller classes, named for tmp_path."""

  class TinyMiniImageNet(mini_imagenet.MiniImageNet):
    __module__ = mini_imagenet.__name__
    name = f"tiny_mini_imagenet_{abs(hash(str(tmp_path))) % 10**8}"
    NUM_CLASSES = classes
    PER_CLASS = per_class

  return TinyMiniImageNet


def run_in_fresh_python(code: str) -> None:
  """Runs ``python -c code`` from the repository root; fails with its stderr."""
  import subprocess   # pylint: disable=import-outside-toplevel
  import sys   # pylint: disable=import-outside-toplevel
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, "-c", code], cwd=repo,
                       capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr[-3000:]


def write_class_folders(root, sizes, image_size=8, mode="L", split=None):
  """Class folders ``root[/split]/class<c>/<i>.png`` with ``sizes[c]`` images.

  Image i of class c is uniform with value 10 c + i + 1 (never 0: a zero
  image is padding), so a loaded image names its class and index.
  """
  base = os.path.join(root, split) if split else root
  for c, n in enumerate(sizes):
    os.makedirs(os.path.join(base, f"class{c:02d}"), exist_ok=True)
    for i in range(n):
      value = 10 * c + i + 1
      shape = (image_size, image_size) + ((3,) if mode == "RGB" else ())
      Image.fromarray(np.full(shape, value, np.uint8), mode).save(
          os.path.join(base, f"class{c:02d}", f"{i}.png"))
  return root
