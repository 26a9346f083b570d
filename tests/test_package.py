"""The library stands alone: no experiment-only dependency is imported."""

from helpers import run_in_fresh_python


def test_library_imports_and_steps_without_the_experiments_extra():
  code = (
      "import sys\n"
      "for m in ('orbax', 'orbax.checkpoint', 'tensorboardX',\n"
      "          'ml_collections'):\n"
      "  sys.modules[m] = None   # as if the 'experiments' extra were absent\n"
      "import jax, jax.numpy as jnp, optax\n"
      "import imaml_jax\n"
      "loss = imaml_jax.mse_loss(lambda w, x: x @ w)\n"
      "learner = imaml_jax.imaml(loss, imaml_jax.gradient_descent(3, 0.1), 1.0)\n"
      "sample = lambda k, d: imaml_jax.Task(\n"
      "    imaml_jax.Batch(jnp.ones((2, 4, 3)), jnp.ones((2, 4, 1))),\n"
      "    imaml_jax.Batch(jnp.ones((2, 4, 3)), jnp.ones((2, 4, 1))))\n"
      "step = imaml_jax.make_meta_step(learner, optax.adam(1e-3), sample)\n"
      "state = imaml_jax.init_train_state(jnp.zeros((3, 1)), optax.adam(1e-3))\n"
      "state, metrics = step(state, jax.random.key(0))\n"
      "assert int(state.step) == 1 and 'cg_residual' in metrics\n")
  run_in_fresh_python(code)
