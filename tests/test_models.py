import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import imaml_jax


def n_params(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("model,shape,count", [
    # 640 + 3 * 36,928 conv, 4 * 128 batch norm, 2*2*64*5 + 5 dense
    (imaml_jax.omniglot_conv4(5), (6, 28, 28, 1), 113_221),
    # 896 + 3 * 9,248 conv, 4 * 64 batch norm, 5*5*32*5 + 5 dense
    (imaml_jax.mini_imagenet_conv4(5), (2, 84, 84, 3), 32_901),
])
def test_conv4_shapes_and_parameter_counts(model, shape, count):
  x = jnp.ones(shape)
  params = imaml_jax.init_params(model, jax.random.key(0), x)
  assert n_params(params) == count
  assert imaml_jax.apply_fn(model)(params, x).shape == (shape[0], 5)


def test_batch_norm_is_transductive_and_stateless():
  model = imaml_jax.Conv4(num_classes=3, filters=8)
  x = jax.random.normal(jax.random.key(1), (6, 12, 12, 1))
  params = imaml_jax.init_params(model, jax.random.key(2), x)
  assert set(params) == {f"Conv_{i}" for i in range(4)} | {
      f"BatchNorm_{i}" for i in range(4)} | {"Dense_0"}
  f = jax.jit(imaml_jax.apply_fn(model))
  full = f(params, x)
  # Statistics come from the batch given: a row's output depends on the rest.
  assert not np.allclose(f(params, x[:3])[0], full[0], atol=1e-4)
  # ... and from nothing else: repeated calls agree, whatever ran in between.
  f(params, 10.0 * x)
  np.testing.assert_array_equal(f(params, x), full)
  # Per-channel normalisation: shifting and scaling the input is invisible.
  np.testing.assert_allclose(f(params, 3.0 * x + 0.0), full, atol=1e-3)


def test_conv4_rejects_flat_input():
  model = imaml_jax.omniglot_conv4(5)
  with pytest.raises(ValueError, match="height, width, channels"):
    model.init(jax.random.key(0), jnp.ones((4, 784)))


def test_mlp():
  model = imaml_jax.MLP((40, 40), outputs=1)
  x = jnp.ones((7, 1))
  params = imaml_jax.init_params(model, jax.random.key(0), x)
  assert n_params(params) == 2 * 40 + 40 * 41 + 41
  assert imaml_jax.apply_fn(model)(params, x).shape == (7, 1)


@pytest.mark.parametrize("max_pool,size", [(False, 28), (True, 21)])
def test_patch_conv_equals_lax_conv(max_pool, size):
  x = jax.random.normal(jax.random.key(4), (3, size, size, 2))
  fast = imaml_jax.Conv4(5, filters=6, max_pool=max_pool, conv="patches")
  ref = imaml_jax.Conv4(5, filters=6, max_pool=max_pool, conv="lax")
  params = imaml_jax.init_params(fast, jax.random.key(5), x)
  ref_params = imaml_jax.init_params(ref, jax.random.key(5), x)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, ref_params)
  np.testing.assert_allclose(imaml_jax.apply_fn(fast)(params, x),
                             imaml_jax.apply_fn(ref)(params, x),
                             rtol=1e-4, atol=1e-4)


def test_xavier_init_redraws_kernels_and_biases_and_keeps_batch_norm():
  model = imaml_jax.omniglot_conv4(num_classes=5)
  params = imaml_jax.init_params(model, jax.random.key(0),
                                 jnp.ones((2, 28, 28, 1)))
  new = imaml_jax.xavier_uniform_init(params, jax.random.key(1), 1.73,
                                      (0.0, 0.05))
  for name in ("Conv_1", "Conv_2", "Dense_0"):
    kernel = np.asarray(new[name]["kernel"])
    receptive = int(np.prod(kernel.shape[:-2]))
    fans = receptive * (kernel.shape[-2] + kernel.shape[-1])
    bound = 1.73 * np.sqrt(6 / fans)
    assert np.abs(kernel).max() <= bound
    # U[-a, a] has standard deviation a / sqrt(3).
    np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.05)
    bias = np.asarray(new[name]["bias"])
    assert bias.min() >= 0.0 and bias.max() <= 0.05 and bias.std() > 0.01
  chex.assert_trees_all_equal(new["BatchNorm_0"],
               params["BatchNorm_0"])
  again = imaml_jax.xavier_uniform_init(params, jax.random.key(1), 1.73,
                                        (0.0, 0.05))
  chex.assert_trees_all_equal(new, again)
