"""N-way K-shot episodes sampled on device with ``jax.random``.

A data set is one array ``images[class, example, ...]`` of uint8 loaded onto
the device once; :func:`sample_episodes` draws whole task batches inside the
jitted meta-step (no host work, no data loader on the hot path). Classes of
different sizes (a user's own folder of images) come as an :class:`ImageSet`:
the array padded to the largest class, with each class's count.
"""

from __future__ import annotations

from typing import NamedTuple, Union

import jax
import jax.numpy as jnp

from imaml_jax.tasks import Batch, Task


class ImageSet(NamedTuple):
  """Classes of different sizes: ``images[c, :counts[c]]`` are class c's.

  Attributes:
    images: uint8 ``(classes, largest class, H, W[, C])``, zero-padded.
    counts: int32 ``(classes,)``, the examples of each class.
  """
  images: jax.Array
  counts: jax.Array


def with_rotations(images: Union[jax.Array, ImageSet]
                   ) -> Union[jax.Array, ImageSet]:
  """Adds 90, 180 and 270 degree rotations of every class as new classes.

  ``(C, E, H, W[, ch]) -> (4C, E, H, W[, ch])``; class ``r * C + c`` is class
  ``c`` rotated by ``r * 90`` degrees (Santoro et al. 2016; Finn et al. 2017).

  Args:
    images: ``(classes, examples, H, W[, channels])`` with ``H == W``, or an
      :class:`ImageSet` of such images (its counts repeat with the classes).

  Returns:
    Four times the classes: the originals, then each rotation.

  Examples:
    >>> import jax.numpy as jnp
    >>> from imaml_jax.data import with_rotations
    >>> images = jnp.arange(4).reshape(1, 1, 2, 2)   # one class, one image
    >>> with_rotations(images)[:, 0].tolist()
    [[[0, 1], [2, 3]], [[1, 3], [0, 2]], [[3, 2], [1, 0]], [[2, 0], [3, 1]]]
  """
  if isinstance(images, ImageSet):
    return ImageSet(with_rotations(images.images), jnp.tile(images.counts, 4))
  if images.shape[2] != images.shape[3]:
    raise ValueError(f"rotations need square images, got shape "
                     f"{images.shape[2:4]}.")
  return jnp.concatenate([jnp.rot90(images, r, axes=(2, 3)) for r in range(4)])


def _rot90(x: jax.Array, turns: jax.Array) -> jax.Array:
  """``x`` of shape ``(n, H, W[, C])`` rotated by ``turns`` (traced) x 90 degrees."""
  return jax.lax.switch(turns, [
      lambda x, r=r: jnp.rot90(x, r, axes=(1, 2)) for r in range(4)], x)


def sample_episodes(key: jax.Array, images: Union[jax.Array, ImageSet],
                    num_tasks: int,
                    ways: int, shots: int, queries: int,
                    rotate: bool = False) -> Task:
  """A batch of N-way K-shot tasks from ``images[class, example, H, W[, C]]``.

  Each task draws ``ways`` distinct classes, labelled 0..N-1 in random order,
  and ``shots + queries`` distinct examples of each: the first ``shots`` form
  the support set, the rest the query set. Pixels become float32 in [0, 1]
  (a channel axis is added to grey images).

  Args:
    key: PRNG key of this batch of episodes.
    images: uint8 array ``(classes, examples, H, W[, C])``, or an
      :class:`ImageSet` whose every count is at least ``shots + queries``
      (its loader checks; counts are data here, not checked again).
    num_tasks: episodes in the batch.
    ways, shots, queries: N, K and the query examples per class.
    rotate: rotate each drawn class (all its examples alike) by an
      independent random multiple of 90 degrees, as MAML's and the iMAML
      authors' test episodes do on Omniglot. The classes and examples drawn
      do not depend on it.

  Returns:
    A :class:`Task` with ``x`` of shape ``(num_tasks, ways * n, H, W, C)`` and
    ``y`` of shape ``(num_tasks, ways * n)`` (int32), class-major.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from imaml_jax.data import sample_episodes
    >>> images = jnp.zeros((10, 20, 28, 28), jnp.uint8)
    >>> tasks = sample_episodes(jax.random.key(0), images, 4, 5, 1, 3)
    >>> tasks.support.x.shape, tasks.query.y.shape
    ((4, 5, 28, 28, 1), (4, 15))
  """
  counts = None
  if isinstance(images, ImageSet):
    images, counts = images
  num_classes, per_class = images.shape[:2]
  if not 1 <= ways <= num_classes:
    raise ValueError(f"ways must lie in [1, {num_classes}] (classes in the "
                     f"data), got {ways}.")
  if shots < 1 or queries < 1 or shots + queries > per_class:
    raise ValueError(f"need shots >= 1, queries >= 1 and shots + queries <= "
                     f"{per_class} (examples per class); got shots={shots}, "
                     f"queries={queries}.")
  if num_tasks < 1:
    raise ValueError(f"num_tasks must be >= 1, got {num_tasks}.")
  if rotate and images.shape[2] != images.shape[3]:
    raise ValueError(f"rotate=True needs square images, got shape "
                     f"{images.shape[2:4]}.")

  n = shots + queries

  def distinct_examples(k, count):
    if counts is None:
      return jax.random.choice(k, per_class, (n,), replace=False)
    # n distinct examples among the class's first `count`: the smallest n
    # of iid uniforms, the padding slots pushed past every real one.
    u = jax.random.uniform(k, (per_class,))
    return jnp.argsort(jnp.where(jnp.arange(per_class) < count, u, 2.0))[:n]

  def one_task(key):
    class_key, example_key = jax.random.split(key)
    classes = jax.random.choice(class_key, num_classes, (ways,), replace=False)
    class_counts = (jnp.full((ways,), per_class) if counts is None
                    else counts[classes])
    examples = jax.vmap(distinct_examples)(
        jax.random.split(example_key, ways), class_counts)
    x = images[classes[:, None], examples]   # (ways, shots + queries, ...)
    if rotate:   # its own key: the classes and examples stay as without
      turns = jax.random.randint(jax.random.fold_in(key, 1), (ways,), 0, 4)
      x = jax.vmap(_rot90)(x, turns)
    return x

  x = jax.vmap(one_task)(jax.random.split(key, num_tasks))
  x = x.astype(jnp.float32) / 255.0
  if x.ndim == 5:   # (tasks, ways, n, H, W): grey images get a channel axis
    x = x[..., None]
  labels = jnp.broadcast_to(jnp.arange(ways, dtype=jnp.int32)[None, :, None],
                            x.shape[:3])

  def part(sl):
    xs, ys = x[:, :, sl], labels[:, :, sl]
    return Batch(xs.reshape((num_tasks, -1) + xs.shape[3:]),
                 ys.reshape(num_tasks, -1))

  return Task(part(slice(0, shots)), part(slice(shots, None)))
