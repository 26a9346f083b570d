"""Shared fixtures (helpers that tests import live in helpers.py)."""

import jax
import pytest

# The tests check the mathematics to tight tolerances; accelerators default to
# reduced-precision (TF32) float32 matmuls and convolutions, so ask for full
# precision (a no-op on CPU).
jax.config.update("jax_default_matmul_precision", "highest")


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
                         source_dir=common.default_source_dir("omniglot"))
  return data_dir
