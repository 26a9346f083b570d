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


def test_task_objective_is_G_and_its_gauss_newton_matrix_is_dense_jt_ho_j():
  kx, ky, kp, kt = jax.random.split(jax.random.key(0), 4)
  apply = lambda p, x: jnp.tanh(x @ p)
  loss = imaml_jax.cross_entropy_loss(apply)
  batch = imaml_jax.Batch(x=jax.random.normal(kx, (5, 3)),
                          y=jax.random.randint(ky, (5,), 0, 2))
  theta, phi, lam = (jax.random.normal(kt, (3, 2)),
                     jax.random.normal(kp, (3, 2)), 0.3)
  objective = imaml_jax.TaskObjective(loss, lam, theta, batch)
  np.testing.assert_allclose(
      objective(phi), imaml_jax.proximal_loss(loss, lam)(phi, theta, batch),
      rtol=1e-6)
  J = jax.jacobian(lambda p: apply(p, batch.x).ravel())(phi).reshape(10, 6)
  outputs = apply(phi, batch.x)
  Ho = jax.hessian(lambda o: loss.output_loss(o.reshape(5, 2), batch))(
      outputs.ravel())
  dense = J.T @ Ho @ J + lam * jnp.eye(6)
  matvec = objective.gauss_newton(phi)
  got = jnp.stack([matvec(e.reshape(3, 2)).ravel() for e in jnp.eye(6)], 1)
  np.testing.assert_allclose(got, dense, rtol=1e-5, atol=1e-6)
  assert float(jnp.linalg.eigvalsh(got).min()) >= lam - 1e-6


def test_task_objective_hessian_is_the_dense_hessian_of_G_for_any_theta():
  apply = lambda p, x: jnp.tanh(x @ p)
  loss = imaml_jax.cross_entropy_loss(apply)
  kx, ky, kt, kp = jax.random.split(jax.random.key(3), 4)
  batch = imaml_jax.Batch(x=jax.random.normal(kx, (5, 3)),
                          y=jax.random.randint(ky, (5,), 0, 2))
  phi, lam = jax.random.normal(kp, (3, 2)), 0.3
  G = lambda z, th: imaml_jax.proximal_loss(loss, lam)(z.reshape(3, 2), th,
                                                         batch)
  for theta in (jnp.zeros((3, 2)), jax.random.normal(kt, (3, 2))):
    dense = jax.hessian(G)(phi.ravel(), theta)
    matvec = imaml_jax.TaskObjective(loss, lam, theta, batch).hessian(phi)
    got = jnp.stack([matvec(e.reshape(3, 2)).ravel() for e in jnp.eye(6)], 1)
    np.testing.assert_allclose(got, dense, rtol=1e-5, atol=1e-6)
