import jax
import jax.numpy as jnp
import numpy as np
import pytest

import imaml_jax
from imaml_jax import proximal


def test_value_and_gradients_match_closed_form():
  loss = lambda p, b: jnp.sum(b * p["w"]) + jnp.sum(p["v"] ** 2)
  G = imaml_jax.proximal_loss(loss, lam=3.0)
  phi = {"w": jnp.array([1.0, 2.0]), "v": jnp.array([[0.5]])}
  theta = {"w": jnp.array([0.0, 1.0]), "v": jnp.array([[1.5]])}
  batch = jnp.array([2.0, -1.0])
  expected = (2.0 - 2.0) + 0.25 + 1.5 * (1.0 + 1.0 + 1.0)
  np.testing.assert_allclose(G(phi, theta, batch), expected, rtol=1e-6)
  g_phi, g_theta = jax.grad(G, argnums=(0, 1))(phi, theta, batch)
  np.testing.assert_allclose(g_phi["w"], batch + 3.0 * (phi["w"] - theta["w"]))
  np.testing.assert_allclose(g_phi["v"], 2 * phi["v"] + 3.0 * (phi["v"] - theta["v"]))
  np.testing.assert_allclose(g_theta["w"], -3.0 * (phi["w"] - theta["w"]))


@pytest.mark.parametrize("lam", [0.0, -1.0, "a", None])
def test_rejects_non_positive_lam(lam):
  with pytest.raises(ValueError, match="lam"):
    imaml_jax.proximal_loss(lambda p, b: 0.0, lam)


def test_mismatched_trees_are_named():
  G = imaml_jax.proximal_loss(lambda p, b: 0.0, 1.0)
  with pytest.raises(ValueError, match="structure"):
    G({"a": jnp.ones(2)}, {"b": jnp.ones(2)}, None)
  with pytest.raises(ValueError, match=r"shape \(3,\)"):
    G({"a": jnp.ones(3)}, {"a": jnp.ones(2)}, None)


def test_non_floating_params_are_rejected():
  with pytest.raises(ValueError, match=r"\['w'\].*int32"):
    proximal.check_params({"w": jnp.arange(3)})
  with pytest.raises(ValueError, match="empty"):
    proximal.check_params({})
