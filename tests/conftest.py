"""Shared fixtures: tiny problems whose answers are known in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

# The tests check the mathematics to tight tolerances; accelerators default to
# reduced-precision (TF32) float32 matmuls and convolutions, so ask for full
# precision (a no-op on CPU).
jax.config.update("jax_default_matmul_precision", "highest")


def random_spd(key, n, low=0.5, high=3.0):
  """A symmetric matrix with eigenvalues spread in [low, high]."""
  q, _ = jnp.linalg.qr(jax.random.normal(key, (n, n)))
  return (q * jnp.linspace(low, high, n)) @ q.T


def cosine(a, b):
  a, b = np.ravel(a), np.ravel(b)
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


@pytest.fixture(scope="session")
def omniglot_data_dir(tmp_path_factory):
  """A TFDS data dir with the real Omniglot prepared (from ../shared/data)."""
  from experiments import common
  from imaml_jax.data import omniglot
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  omniglot.load_omniglot("validation", data_dir=data_dir,
                         source_dir=common.default_omniglot_dir())
  return data_dir
