"""Shared fixtures (helpers that tests import live in helpers.py)."""

import fcntl
import os

# The suite compiles far more than it runs (tiny models, a few steps each), so
# it asks XLA's CPU backend to compile fast:
# - optimisation level 0: about 60% of the compile time (22 -> 13 s for an
#   implicit meta-gradient of a tiny Conv4), compiled code up to 1.3x slower
#   (notebook 02's dense solves);
# - XLA's classic loop emitters instead of its MLIR fusion emitters: 35-45% of
#   the remaining compile time (beside a training run on the 2-core CI host,
#   2026-12-03: the 64-filter iMAML-HF test adaptation 11.6 -> 5.2 s, an
#   Omniglot MAML step 14.5 -> 5.0 s, an iMAML-GD step 17.1 -> 6.3 s), run
#   times 0.9-1.4x, within that host's noise.
# Same operations; sums may associate differently (meta-gradients agree to
# 1e-5). Set before JAX creates its backend, and inherited by the training
# subprocesses and notebook kernels. Users' runs keep XLA's defaults.
for flag in ("--xla_backend_optimization_level=0",
             "--xla_cpu_use_fusion_emitters=false"):
  if flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " "
                               + flag).strip()

import jax  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

# One persistent XLA compilation cache for the whole run: the pytest-xdist
# workers, the training subprocesses and the notebook kernels (which inherit
# this environment) compile many of the same steps; each is compiled once.
# Executables only, keyed by computation, flags and jax version: results are
# unchanged.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    ".pytest_cache", "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
jax.config.update("jax_compilation_cache_dir",
                  os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))

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
  """A TFDS data dir with the real Omniglot prepared (from ../shared/data).

  Prepared once per run: pytest-xdist's workers share it (their base temp
  folders have one parent), the first to need it preparing it under a file
  lock (under a minute on a 2-core host) while the other waits, then reads
  it.
  """
  from experiments import common
  from imaml_jax.data import omniglot
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent
  data_dir = root / "tfds-omniglot"
  with open(root / "tfds-omniglot.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    omniglot.load_omniglot("validation", data_dir=str(data_dir),
                           source_dir=common.default_source_dir("omniglot"))
  return str(data_dir)
