import jax
import jax.numpy as jnp
import numpy as np
import pytest

import imaml_jax
from helpers import random_spd


def test_gradient_descent_matches_closed_form_iterates():
  A = random_spd(jax.random.key(0), 4)
  b = jnp.arange(4.0)
  f = lambda x: 0.5 * x @ A @ x - b @ x
  x_star = jnp.linalg.solve(A, b)
  x0 = jnp.ones(4)
  x, info = imaml_jax.gradient_descent(steps=7, learning_rate=0.2)(f, x0)
  M = jnp.eye(4) - 0.2 * A
  expected = x_star + jnp.linalg.matrix_power(M, 7) @ (x0 - x_star)
  np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)
  assert int(info.steps) == 7
  np.testing.assert_allclose(info.losses[0], f(x0), rtol=1e-6)
  np.testing.assert_allclose(info.grad_norm, jnp.linalg.norm(A @ x - b),
                             rtol=1e-4)


def test_gradient_descent_tol_stops_moving():
  f = lambda x: jnp.sum((x - 1.0) ** 2)
  x, info = imaml_jax.gradient_descent(50, 0.25, tol=1e-3)(f, jnp.zeros(3))
  assert 0 < int(info.steps) < 50
  assert float(info.grad_norm) <= 1e-3


def _logistic_G(key, n=20, d=5, lam=0.5):
  kx, ky, kt = jax.random.split(key, 3)
  X = jax.random.normal(kx, (n, d))
  y = jax.random.bernoulli(ky, 0.5, (n,)).astype(jnp.float32)
  theta = jax.random.normal(kt, (d,))
  L = lambda w: jnp.mean(jnp.logaddexp(0.0, X @ w) - y * (X @ w))
  return lambda w: L(w) + 0.5 * lam * jnp.sum((w - theta) ** 2), theta


def test_newton_cg_reaches_strongly_convex_minimum_in_few_steps():
  G, theta = _logistic_G(jax.random.key(1))
  x, info = imaml_jax.newton_cg(steps=5, cg_steps=5)(G, theta)
  assert float(info.grad_norm) < 1e-5
  # Strong convexity (mu >= lam): ||x - x*|| <= ||grad|| / lam; GD agrees.
  x_gd, _ = imaml_jax.gradient_descent(3000, 0.5)(G, theta)
  np.testing.assert_allclose(x, x_gd, atol=1e-4)


def rosenbrock(x):
  return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


@pytest.mark.parametrize("f,x0", [
    (rosenbrock, jnp.array([-1.2, 1.0])),
    (lambda x: x[0] ** 2 - x[1] ** 2 + x[1] ** 4, jnp.array([1.0, 0.1])),
])
def test_newton_cg_line_search_never_increases_objective(f, x0):
  x, info = imaml_jax.newton_cg(steps=25, cg_steps=2)(f, x0)
  values = np.append(np.asarray(info.losses), float(info.loss))
  assert np.all(np.diff(values) <= 1e-7), values
  assert values[-1] < values[0]


def test_newton_cg_vmaps_over_tasks():
  Gs, thetas = zip(*[_logistic_G(jax.random.key(i)) for i in range(3)])
  solver = imaml_jax.newton_cg(steps=3, cg_steps=4)
  key = jax.random.key(7)
  X = jax.random.normal(key, (3, 10, 4))
  y = (X[..., 0] > 0).astype(jnp.float32)

  def G(w, Xi, yi):
    return jnp.mean(jnp.logaddexp(0.0, Xi @ w) - yi * (Xi @ w)) + 0.1 * w @ w

  batched = jax.jit(jax.vmap(
      lambda Xi, yi: solver(lambda w: G(w, Xi, yi), jnp.zeros(4))[0]))(X, y)
  for i in range(3):
    single = solver(lambda w: G(w, X[i], y[i]), jnp.zeros(4))[0]
    np.testing.assert_allclose(batched[i], single, rtol=1e-5, atol=1e-6)


def test_truncated_cg_solves_spd_system_and_reports_curvature():
  A = random_spd(jax.random.key(2), 6, low=1.0, high=4.0)
  b = jnp.arange(1.0, 7.0)
  x, info = imaml_jax.truncated_cg(lambda v: A @ v, b, steps=6)
  np.testing.assert_allclose(x, jnp.linalg.solve(A, b), rtol=1e-4)
  assert float(info.residual) < 1e-4 * float(jnp.linalg.norm(b))
  assert not bool(info.negative_curvature)
  assert 1.0 - 1e-4 <= float(info.min_curvature) <= 4.0 + 1e-4


def test_truncated_cg_stops_at_negative_curvature_with_descent_direction():
  A = jnp.diag(jnp.array([-1.0, 2.0]))
  b = jnp.array([1.0, 0.1])   # b^T A b < 0: first direction has negative curvature
  x, info = imaml_jax.truncated_cg(lambda v: A @ v, b, steps=5)
  np.testing.assert_allclose(x, b)
  assert bool(info.negative_curvature)
  assert float(info.min_curvature) < 0
  assert int(info.iterations) == 0


def test_plain_cg_mode_matches_jax_cg_and_records_negative_curvature():
  A = jnp.diag(jnp.array([-1.0, 2.0, 3.0]))
  b = jnp.array([0.3, 1.0, 1.0])   # b^T A b > 0, but A is indefinite
  x, info = imaml_jax.truncated_cg(lambda v: A @ v, b, steps=3,
                                   stop_at_nonpositive=False)
  x_jax, _ = jax.scipy.sparse.linalg.cg(lambda v: A @ v, b, maxiter=3,
                                        tol=0.0)
  np.testing.assert_allclose(x, x_jax, rtol=1e-4, atol=1e-5)
  assert bool(info.negative_curvature) and float(info.min_curvature) < 0


@pytest.mark.parametrize("solver", [imaml_jax.gradient_descent(4, 0.1),
                                    imaml_jax.newton_cg(4, cg_steps=2)],
                         ids=["gd", "newton_cg"])
def test_solver_history_records_loss_and_gradient_norm_before_each_step(
    solver):
  f = lambda x: jnp.sum(jnp.array([1.0, 4.0]) * (x - 1.0) ** 2) + jnp.sum(
      x ** 4)
  x0 = jnp.array([2.0, -1.0])
  _, info = solver(f, x0)
  assert info.losses.shape == info.grad_norms.shape == (4,)
  np.testing.assert_allclose(info.losses[0], f(x0), rtol=1e-6)
  np.testing.assert_allclose(info.grad_norms[0],
                             jnp.linalg.norm(jax.grad(f)(x0)), rtol=1e-6)
  assert float(info.grad_norm) < float(info.grad_norms[0])


@pytest.mark.parametrize("make", [
    lambda: imaml_jax.gradient_descent(0, 0.1),
    lambda: imaml_jax.gradient_descent(3, 0.0),
    lambda: imaml_jax.newton_cg(3, cg_steps=0),
    lambda: imaml_jax.newton_cg(3, damping=-1.0),
    lambda: imaml_jax.newton_cg(3, shrink=1.5),
    lambda: imaml_jax.newton_cg(3, curvature="fisher"),
])
def test_bad_solver_settings_raise(make):
  with pytest.raises(ValueError):
    make()


def _mlp_objective(key, lam=0.5, n=12, d=3, hidden=4, classes=3):
  kx, ky, k1, k2 = jax.random.split(key, 4)
  apply = lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]
  loss = imaml_jax.cross_entropy_loss(apply)
  batch = imaml_jax.Batch(x=jax.random.normal(kx, (n, d)),
                          y=jax.random.randint(ky, (n,), 0, classes))
  theta = {"w1": jax.random.normal(k1, (d, hidden)),
           "w2": jax.random.normal(k2, (hidden, classes))}
  return imaml_jax.TaskObjective(loss, lam, theta, batch), theta


def test_gauss_newton_newton_cg_is_exact_newton_on_least_squares():
  # A linear model with squared error: Gauss-Newton = Hessian, so one step
  # with enough CG iterations lands on the closed-form minimiser of G.
  kx, ky, kt = jax.random.split(jax.random.key(4), 3)
  x, y = jax.random.normal(kx, (8, 3)), jax.random.normal(ky, (8, 1))
  theta, lam = jax.random.normal(kt, (3, 1)), 0.7
  loss = imaml_jax.mse_loss(lambda w, x: x @ w)
  objective = imaml_jax.TaskObjective(loss, lam, theta,
                                      imaml_jax.Batch(x=x, y=y))
  phi, info = imaml_jax.newton_cg(1, cg_steps=3, curvature="gauss_newton")(
      objective, theta)
  # G = |xw - y|^2 / n + lam/2 |w - theta|^2
  A = 2 * x.T @ x / 8 + lam * jnp.eye(3)
  expected = jnp.linalg.solve(A, 2 * x.T @ y / 8 + lam * theta)
  np.testing.assert_allclose(phi, expected, rtol=1e-4, atol=1e-5)
  assert float(info.grad_norm) < 1e-4


def test_gauss_newton_newton_cg_descends_to_the_minimum_of_a_nonconvex_task():
  objective, theta = _mlp_objective(jax.random.key(5))
  # Gauss-Newton drops the network's second derivatives, so away from a
  # zero-residual fit it converges linearly, not quadratically: more steps.
  phi, info = jax.jit(imaml_jax.newton_cg(
      60, cg_steps=8, curvature="gauss_newton"))(objective, theta)
  values = np.append(np.asarray(info.losses), float(info.loss))
  assert np.all(np.diff(values) <= 1e-6), values
  assert float(info.grad_norm) < 1e-3 * float(info.grad_norms[0])
  phi_exact, _ = imaml_jax.newton_cg(12, cg_steps=8)(objective, theta)
  for a, b in zip(jax.tree.leaves(phi), jax.tree.leaves(phi_exact)):
    np.testing.assert_allclose(a, b, atol=2e-3)


def test_gauss_newton_curvature_needs_an_objective_that_has_it():
  with pytest.raises(TypeError, match="gauss_newton"):
    imaml_jax.newton_cg(2, curvature="gauss_newton")(
        lambda x: jnp.sum(x ** 2), jnp.ones(2))


def test_pull_back_gd_is_gd_on_the_task_loss_then_one_proximal_step():
  X = jnp.array([[1.0, 2.0], [0.5, -1.0], [2.0, 0.0]])
  y = jnp.array([1.0, 0.0, -1.0])
  loss = lambda w, b: 0.5 * jnp.mean((b[0] @ w - b[1]) ** 2)
  theta = jnp.array([0.3, -0.2])
  objective = imaml_jax.TaskObjective(loss, 2.0, theta, (X, y))
  phi, info = imaml_jax.pull_back_gradient_descent(5, 0.1)(objective, theta)
  w = np.asarray(theta, np.float64)
  Xn, yn = np.asarray(X, np.float64), np.asarray(y, np.float64)
  for _ in range(5):
    w = w - 0.1 * Xn.T @ (Xn @ w - yn) / 3
  w = w - 0.1 * 2.0 * (w - np.asarray(theta))
  np.testing.assert_allclose(phi, w, rtol=1e-5)
  assert int(info.steps) == 6
  np.testing.assert_allclose(info.loss, objective(phi), rtol=1e-6)


def test_pull_back_gd_needs_the_task_objective():
  with pytest.raises(TypeError, match="TaskObjective"):
    imaml_jax.pull_back_gradient_descent(2, 0.1)(lambda p: jnp.sum(p ** 2),
                                                 jnp.ones(2))
