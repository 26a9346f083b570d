"""Episode sampling: the N-way K-shot protocol invariants."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import imaml_jax

C, E = 12, 20


def coded_images():
  """images[c, e] carries its class in pixel (0, 0) and example in (0, 1)."""
  images = np.zeros((C, E, 4, 4), np.uint8)
  images[:, :, 0, 0] = np.arange(C)[:, None]
  images[:, :, 0, 1] = np.arange(E)[None, :]
  return jnp.asarray(images)


@pytest.mark.parametrize("ways,shots,queries", [(5, 1, 1), (5, 5, 15), (12, 1, 3)])
def test_episodes_follow_the_protocol(ways, shots, queries):
  tasks = jax.jit(imaml_jax.sample_episodes, static_argnums=(2, 3, 4, 5))(
      jax.random.key(0), coded_images(), 16, ways, shots, queries)
  assert tasks.support.x.shape == (16, ways * shots, 4, 4, 1)
  assert tasks.query.x.shape == (16, ways * queries, 4, 4, 1)
  assert tasks.support.y.dtype == jnp.int32
  decode = lambda x: np.rint(np.asarray(x)[..., 0, :2, 0] * 255).astype(int)
  sup, qry = decode(tasks.support.x), decode(tasks.query.x)
  for t in range(16):
    ys, yq = np.asarray(tasks.support.y[t]), np.asarray(tasks.query.y[t])
    assert sorted(set(ys.tolist())) == list(range(ways)) == sorted(set(yq.tolist()))
    label_to_class = {}
    for (cls, ex), y in zip(np.r_[sup[t], qry[t]], np.r_[ys, yq]):
      assert label_to_class.setdefault(y, cls) == cls   # one class per label
    assert len(set(label_to_class.values())) == ways    # distinct classes
    for y in range(ways):
      s_ex = set(sup[t][ys == y][:, 1].tolist())
      q_ex = set(qry[t][yq == y][:, 1].tolist())
      assert len(s_ex) == shots and len(q_ex) == queries
      assert not s_ex & q_ex                            # disjoint examples
  assert float(tasks.support.x.max()) <= 1.0


def test_tasks_differ_and_are_reproducible():
  a = imaml_jax.sample_episodes(jax.random.key(1), coded_images(), 8, 5, 1, 1)
  b = imaml_jax.sample_episodes(jax.random.key(1), coded_images(), 8, 5, 1, 1)
  chex.assert_trees_all_equal(a, b)
  assert len({tuple(np.asarray(x).ravel()) for x in a.support.x}) == 8


def test_rotations_add_rotated_classes():
  images = jax.random.randint(jax.random.key(2), (3, 2, 5, 5), 0, 255
                              ).astype(jnp.uint8)
  rotated = imaml_jax.with_rotations(images)
  assert rotated.shape == (12, 2, 5, 5)
  for r in range(4):
    np.testing.assert_array_equal(rotated[r * 3 + 1, 0],
                                  np.rot90(np.asarray(images[1, 0]), r))


@pytest.mark.parametrize("ways,shots,queries,match", [
    (13, 1, 1, "ways"), (5, 0, 1, "shots"), (5, 10, 11, "examples per class")])
def test_bad_episode_settings(ways, shots, queries, match):
  with pytest.raises(ValueError, match=match):
    imaml_jax.sample_episodes(jax.random.key(0), coded_images(), 2, ways,
                              shots, queries)


def asymmetric_images():
  """images[c, e]: a 6x6 ramp, no rotation of which equals another, + c + e."""
  ramp = np.arange(36, dtype=np.uint8).reshape(6, 6)
  return jnp.asarray(ramp[None, None] + 40 * np.arange(C)[:, None, None, None]
                     + 2 * np.arange(E)[None, :, None, None]).astype(jnp.uint8)


def turns_of(task_x, plain_x):
  """The multiple of 90 degrees that maps each plain image to the rotated one."""
  out = []
  for a, b in zip(np.asarray(plain_x)[..., 0], np.asarray(task_x)[..., 0]):
    out.append([r for r in range(4) if np.array_equal(np.rot90(a, r), b)])
  return out


def test_rotated_episodes_draw_the_same_examples_and_turn_each_class_as_one():
  images = asymmetric_images()
  key = jax.random.key(3)
  plain = imaml_jax.sample_episodes(key, images, 64, 5, 1, 1)
  rotated = imaml_jax.sample_episodes(key, images, 64, 5, 1, 1, rotate=True)
  # Labels and the drawn examples are those of the unrotated episodes.
  chex.assert_trees_all_equal(plain.support.y,
               rotated.support.y)
  seen = set()
  for t in range(64):
    for c in range(5):   # support and query of class c: one rotation
      s = turns_of(rotated.support.x[t, c:c + 1], plain.support.x[t, c:c + 1])
      q = turns_of(rotated.query.x[t, c:c + 1], plain.query.x[t, c:c + 1])
      assert len(s[0]) == 1 and s == q, (t, c, s, q)
      seen.add(s[0][0])
  assert seen == {0, 1, 2, 3}   # all four multiples of 90 degrees occur


def test_episodes_are_not_rotated_unless_asked():
  images = asymmetric_images()
  tasks = imaml_jax.sample_episodes(jax.random.key(4), images, 16, 5, 1, 1)
  flat = np.rint(np.asarray(tasks.support.x)[..., 0] * 255).astype(np.uint8)
  originals = {np.asarray(images[c, e]).tobytes() for c in range(C)
               for e in range(E)}
  assert all(x.tobytes() in originals for x in flat.reshape(-1, 6, 6))


def test_rotation_needs_square_images():
  with pytest.raises(ValueError, match="square"):
    imaml_jax.sample_episodes(jax.random.key(0), jnp.zeros((6, 4, 3, 5)),
                              2, 5, 1, 1, rotate=True)
