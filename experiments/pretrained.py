"""Meta-trained starting points: stored meta-parameters adapted to your own task.

Every Table cell stores its meta-parameters in ``results/<cell>/``
(``theta.msgpack`` with its ``config.json``); so does any training run in its
workdir. :func:`load` turns one into a :class:`StartingPoint` that adapts to
a new N-way K-shot task in one call and predicts its labels:

    sp = pretrained.load("results/omniglot-5w1s-imaml_hf")
    task = pretrained.task_from_folder("my_symbols", shots=1, like=sp)
    phi = sp.adapt(task.support)            # the learner's own adaptation
    sp.predict(phi, task.query.x)           # labels 0..N-1 (class folder order)

The adaptation is the one the cell is evaluated with under the paper
protocol (:mod:`experiments.protocol`): iMAML's proximal inner solve, MAML's
published test-time steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

import imaml_jax
from experiments import common
from experiments import evaluate
from experiments import protocol as protocol_lib
from imaml_jax.data import folder

PyTree = Any


@dataclasses.dataclass(frozen=True)
class StartingPoint:
  """Meta-parameters with the model and adaptation they were trained for.

  Attributes:
    config: the run's config (ways, image size, inner loop).
    model: the flax model.
    loss: its cross-entropy loss (``loss.predict`` gives the logits).
    theta: the meta-parameters.
    adapt_fn: ``(theta, support) -> phi``, jitted.
    meta_steps: the meta-step ``theta`` comes from.
  """
  config: Any
  model: Any
  loss: Any
  theta: PyTree
  adapt_fn: Callable[[PyTree, imaml_jax.Batch], PyTree]
  meta_steps: int

  @property
  def ways(self) -> int:
    return self.config.ways

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return common.image_shape(self.config)

  def images(self, x) -> jax.Array:
    """``x`` as the model's input: float32 ``(n, H, W, C)`` in [0, 1].

    Takes uint8 (0-255) or float images, with or without the channel axis.
    """
    x = jnp.asarray(x)
    if x.dtype == jnp.uint8:
      x = x.astype(jnp.float32) / 255.0
    if x.ndim == 3:
      x = x[..., None]
    if x.shape[1:] != self.image_shape:
      raise ValueError(f"images must be {self.image_shape} (H, W, channels) "
                       f"for this model; got {x.shape[1:]}. "
                       f"task_from_folder() resizes them.")
    return x.astype(jnp.float32)

  def adapt(self, support: imaml_jax.Batch, theta: Optional[PyTree] = None
            ) -> PyTree:
    """Adapted parameters ``phi`` for one task's ``support`` set.

    Args:
      support: a :class:`imaml_jax.Batch` of images (see :meth:`images`) and
        labels ``0..ways-1``.
      theta: start from these parameters instead (e.g. a random init, to
        compare).

    Returns:
      ``phi``, structured like ``theta``.
    """
    labels = np.asarray(support.y)
    if labels.size and (labels.min() < 0 or labels.max() >= self.ways):
      raise ValueError(f"this model was meta-trained for {self.ways}-way tasks "
                       f"(its classifier has {self.ways} outputs): labels "
                       f"must lie in 0..{self.ways - 1}, got "
                       f"{sorted(set(labels.tolist()))}.")
    batch = imaml_jax.Batch(self.images(support.x), jnp.asarray(labels,
                                                                jnp.int32))
    return self.adapt_fn(self.theta if theta is None else theta, batch)

  def logits(self, phi: PyTree, x) -> jax.Array:
    """The classifier's outputs ``(n, ways)`` for images ``x`` under ``phi``."""
    return self.loss.predict(phi, imaml_jax.Batch(self.images(x), None))

  def predict(self, phi: PyTree, x) -> np.ndarray:
    """Predicted labels ``(n,)`` for images ``x`` under ``phi``."""
    return np.asarray(jnp.argmax(self.logits(phi, x), axis=-1))


def load(path: str, step: Optional[int] = None) -> StartingPoint:
  """The starting point stored in ``path``: one call.

  Args:
    path: a results folder (``results/<cell>``, with ``theta.msgpack``) or a
      training workdir (its checkpoint; ``step`` picks one, default latest).
    step: a workdir checkpoint's step.

  Returns:
    A :class:`StartingPoint`.

  Examples:
    >>> from experiments import pretrained
    >>> sp = pretrained.load("results/omniglot-5w1s-fomaml")
    >>> sp.config.name, sp.ways, sp.image_shape
    ('omniglot_5way1shot_fomaml', 5, (28, 28, 1))
  """
  run = evaluate.load_run(path, step)
  p = protocol_lib.protocol("paper", run.config)
  adapt = jax.jit(common.test_adaptation(run.config, run.loss, p))
  return StartingPoint(run.config, run.model, run.loss, run.state.params,
                       adapt, int(run.state.step))


def task_from_folder(source: str, shots: int, like: StartingPoint,
                     classes: Optional[list[str]] = None
                     ) -> tuple[imaml_jax.Task, list[str]]:
  """One N-way K-shot task from a folder of class folders, sized for ``like``.

  Each class folder of ``source`` (or the ``classes`` named) is a class,
  labelled in sorted order; its first ``shots`` images (by file name) form
  the support set, the rest the query set. Images are read as
  :func:`imaml_jax.data.folder.read_image` reads a dataset's (one size per
  folder, made the model's size and channels).

  Args:
    source: the folder (``<source>/<class>/<image>``).
    shots: K, support images per class.
    like: the starting point the task is for (its ways and image shape).
    classes: the class folders to use (default: all).

  Returns:
    ``(task, class names)``: a :class:`imaml_jax.Task` with uint8 images.

  Examples:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from experiments import pretrained
    >>> root = tempfile.mkdtemp()
    >>> for c in "abcde":                       # 5 symbols, 3 drawings each
    ...   os.makedirs(f"{root}/{c}")
    ...   for i in range(3):
    ...     Image.fromarray(np.eye(40, dtype=np.uint8) * 255).save(
    ...         f"{root}/{c}/{i}.png")
    >>> sp = pretrained.load("results/omniglot-5w1s-fomaml")
    >>> task, names = pretrained.task_from_folder(root, shots=1, like=sp)
    >>> names, task.support.x.shape, task.query.x.shape
    (['a', 'b', 'c', 'd', 'e'], (5, 28, 28, 1), (10, 28, 28, 1))
    >>> sp.predict(sp.adapt(task.support), task.query.x).shape
    (10,)
  """
  found = folder.class_folders(source)
  names = sorted(found) if classes is None else list(classes)
  missing = [n for n in names if n not in found]
  if missing:
    raise folder.FolderError(f"no class folder {missing[0]!r} in {source}.")
  if len(names) != like.ways:
    raise folder.FolderError(
        f"{source} has {len(names)} classes ({', '.join(names[:6])}); this "
        f"model was meta-trained for {like.ways}-way tasks: pass {like.ways} "
        f"of them as classes=[...].")
  size, channels = like.image_shape[0], like.image_shape[2]
  parts = {"support": ([], []), "query": ([], [])}
  expected = None
  for label, name in enumerate(names):
    files = found[name]
    if len(files) < shots + 1:
      raise folder.FolderError(f"class {name!r} of {source} has {len(files)} "
                               f"images; a task needs shots + 1 = {shots + 1}"
                               f" (K support images and a query).")
    for i, path in enumerate(files):
      image, found_size = folder.read_image(path, size, channels, expected)
      expected = found_size
      part = parts["support" if i < shots else "query"]
      part[0].append(image)
      part[1].append(label)
  batch = lambda p: imaml_jax.Batch(np.stack(p[0]), np.asarray(p[1], np.int32))
  return imaml_jax.Task(batch(parts["support"]), batch(parts["query"])), names
