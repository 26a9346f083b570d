import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import imaml_jax
from helpers import cosine, random_spd

LINEAR_SOLVES = {"jax": imaml_jax.solve_cg, "truncated": imaml_jax.truncated_cg}

# A multi-leaf parameter tree of 7 numbers.
TEMPLATE = {"a": jnp.zeros(3), "b": {"c": jnp.zeros((2, 2))}}
_, unravel = ravel_pytree(TEMPLATE)
DIM = 7


def quad_loss(params, batch):
  """L(phi; (A, c)) = 1/2 z^T A z - c^T z with z = ravel(phi)."""
  A, c = batch
  z = ravel_pytree(params)[0]
  return 0.5 * z @ A @ z - c @ z


def query_loss(params, batch):
  B, t = batch
  z = ravel_pytree(params)[0]
  return 0.5 * (z - t) @ B @ (z - t)


def closed_form_meta_grad(theta, support, query, lam):
  """lam (A + lam I)^-1 B (phi* - t), phi* = (A + lam I)^-1 (c + lam theta)."""
  (A, c), (B, t) = support, query
  th = ravel_pytree(theta)[0]
  M = A + lam * jnp.eye(DIM)
  phi = jnp.linalg.solve(M, c + lam * th)
  return lam * jnp.linalg.solve(M, B @ (phi - t))


def make_tasks(key, n):
  keys = jax.random.split(key, 5)
  A = jax.vmap(lambda k: random_spd(k, DIM))(jax.random.split(keys[0], n))
  B = jax.vmap(lambda k: random_spd(k, DIM))(jax.random.split(keys[1], n))
  c = jax.random.normal(keys[2], (n, DIM))
  t = jax.random.normal(keys[3], (n, DIM))
  theta = unravel(jax.random.normal(keys[4], (DIM,)))
  return theta, (A, c), (B, t)


@pytest.mark.parametrize("solver", [
    imaml_jax.newton_cg(steps=3, cg_steps=DIM),
    imaml_jax.gradient_descent(steps=300, learning_rate=0.15),
], ids=["newton_cg", "gd"])
def test_meta_gradient_matches_closed_form_under_jit_and_vmap(solver):
  lam = 2.0
  theta, support, query = make_tasks(jax.random.key(0), 4)
  adapt = imaml_jax.implicit_adapt(quad_loss, solver, lam, cg_steps=2 * DIM)

  def meta_grad(th, s, q):
    return jax.grad(lambda t: query_loss(adapt(t, s), q))(th)

  grads = jax.jit(jax.vmap(meta_grad, in_axes=(None, 0, 0)))(
      theta, support, query)
  for i in range(4):
    pick = lambda tree: jax.tree.map(lambda x: x[i], tree)
    expected = closed_form_meta_grad(theta, pick(support), pick(query), lam)
    got = ravel_pytree(pick(grads))[0]
    rel = float(jnp.linalg.norm(got - expected) / jnp.linalg.norm(expected))
    assert rel < 1e-5, rel
  assert jax.tree.structure(grads) == jax.tree.structure(TEMPLATE)


def test_a_users_linear_solve_is_the_one_used():
  """A dense direct solve (any solve(matvec, b, steps, tol) -> (x, CGInfo))
  plugged in gives the closed form with a single CG step's budget, where the
  default CG with that budget does not."""
  lam = 2.0
  theta, support, query = make_tasks(jax.random.key(5), 1)
  pick = lambda tree: jax.tree.map(lambda x: x[0], tree)
  support, query = pick(support), pick(query)
  calls = []

  def dense_solve(matvec, b, steps, tol):
    calls.append(steps)
    A = jax.vmap(matvec)(jnp.eye(b.shape[0])).T
    x = jnp.linalg.solve(A, b)
    return x, imaml_jax.CGInfo(jnp.linalg.norm(b - A @ x),
                               jnp.linalg.eigvalsh(A).min(),
                               jnp.linalg.eigvalsh(A).min() <= 0,
                               jnp.asarray(1, jnp.int32))

  expected = closed_form_meta_grad(theta, support, query, lam)
  solver = imaml_jax.newton_cg(steps=3, cg_steps=DIM)
  rel = {}
  for name, solve in [("dense", dense_solve), ("cg", imaml_jax.solve_cg)]:
    adapt = imaml_jax.implicit_adapt(quad_loss, solver, lam, cg_steps=1,
                                     linear_solve=solve)
    got = ravel_pytree(jax.grad(lambda t: query_loss(adapt(t, support),
                                                     query))(theta))[0]
    rel[name] = float(jnp.linalg.norm(got - expected)
                      / jnp.linalg.norm(expected))
  assert calls == [1]
  assert rel["dense"] < 1e-5 and rel["cg"] > 1e-3, rel


def test_data_gradient_matches_closed_form():
  """d/dc of the query loss at phi* = (A + lam I)^-1 (c + lam theta)."""
  lam = 1.5
  theta, support, query = make_tasks(jax.random.key(1), 1)
  pick = lambda tree: jax.tree.map(lambda x: x[0], tree)
  (A, c), (B, t) = pick(support), pick(query)
  adapt = imaml_jax.implicit_adapt(
      quad_loss, imaml_jax.newton_cg(3, cg_steps=DIM), lam, cg_steps=2 * DIM)
  got = jax.grad(lambda c_: query_loss(adapt(theta, (A, c_)), (B, t)))(c)
  M = A + lam * jnp.eye(DIM)
  phi = jnp.linalg.solve(M, c + lam * ravel_pytree(theta)[0])
  np.testing.assert_allclose(got, jnp.linalg.solve(M, B @ (phi - t)),
                             rtol=1e-4, atol=1e-5)


# --- a small nonlinear model -------------------------------------------------

def mlp_loss(params, batch):
  x, y = batch
  h = jnp.tanh(x @ params["w1"] + params["b1"])
  return jnp.mean((h @ params["w2"] - y) ** 2)


def nonlinear_problem():
  k = jax.random.split(jax.random.key(3), 6)
  theta = {"w1": jax.random.normal(k[0], (2, 6)), "b1": jnp.zeros(6),
           "w2": 0.5 * jax.random.normal(k[1], (6, 1))}
  support = (jax.random.normal(k[2], (10, 2)), jax.random.normal(k[3], (10, 1)))
  query = (jax.random.normal(k[4], (10, 2)), jax.random.normal(k[5], (10, 1)))
  return theta, support, query


def test_nonlinear_matches_unrolled_and_finite_differences(x64):
  lam = 2.0
  theta, support, query = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                                       nonlinear_problem())
  adapt = imaml_jax.implicit_adapt(
      mlp_loss, imaml_jax.newton_cg(steps=30, cg_steps=40, tol=1e-12), lam,
      cg_steps=60)
  outer = jax.jit(lambda th: mlp_loss(adapt(th, support), query))
  implicit = jax.grad(outer)(theta)
  _, info = adapt.solve(theta, support)
  assert float(info.grad_norm) < 1e-9

  # Differentiate through a long unrolled inner gradient descent.
  G = imaml_jax.proximal_loss(mlp_loss, lam)
  gd = imaml_jax.gradient_descent(steps=1500, learning_rate=0.1)
  unrolled = jax.grad(lambda th: mlp_loss(
      gd(lambda p: G(p, th, support), th)[0], query))(theta)
  flat_imp = ravel_pytree(implicit)[0]
  assert cosine(flat_imp, ravel_pytree(unrolled)[0]) >= 0.999

  # Central finite difference along a random direction.
  u = unravel_like(theta, jax.random.normal(jax.random.key(9), (flat_imp.size,),
                                            jnp.float64))
  eps = 1e-5
  shift = lambda s: jax.tree.map(lambda a, b: a + s * b, theta, u)
  fd = (outer(shift(eps)) - outer(shift(-eps))) / (2 * eps)
  directional = flat_imp @ ravel_pytree(u)[0]
  np.testing.assert_allclose(directional, fd, rtol=1e-5)


def unravel_like(tree, flat):
  return ravel_pytree(tree)[1](flat)


# --- the linear systems ------------------------------------------------------

def dense_hessian(loss_fn, params, batch):
  flat, unr = ravel_pytree(params)
  return jax.hessian(lambda z: loss_fn(unr(z), batch))(flat)


def test_systems_match_their_dense_matrices():
  theta, support, _ = nonlinear_problem()
  lam = 0.7
  H = dense_hessian(mlp_loss, theta, support)
  n = H.shape[0]
  v = jax.random.normal(jax.random.key(4), (n,))
  flat, unr = ravel_pytree(theta)
  cases = {
      "exact": jnp.eye(n) + H / lam,
      "damped": 2.0 * jnp.eye(n) + H / (lam + 10.0),
  }
  for name, matrix in cases.items():
    objective = imaml_jax.TaskObjective(mlp_loss, lam, theta, support)
    matvec = imaml_jax.implicit.resolve_system(name)(objective, theta)
    np.testing.assert_allclose(ravel_pytree(matvec(unr(v)))[0], matrix @ v,
                               rtol=1e-4, atol=1e-4, err_msg=name)


def test_gauss_newton_is_jt_ho_j_and_positive_definite_where_exact_is_not():
  loss, params, batch = bilinear_problem()
  lam = 1.0
  H = jax.hessian(loss)(params, batch)
  exact = jnp.eye(2) + H / lam
  assert float(jnp.linalg.eigvalsh(exact).min()) < 0

  J = jax.jacobian(lambda p: loss.predict(p, batch).ravel())(params)
  Ho = jax.hessian(lambda o: loss.output_loss(o.reshape(4, 1), batch))(
      jnp.zeros(4))
  gn_dense = jnp.eye(2) + J.T @ Ho @ J / lam
  matvec = imaml_jax.gauss_newton_system()(
      imaml_jax.TaskObjective(loss, lam, params, batch), params)
  basis = jnp.eye(2)
  gn = jnp.stack([matvec(basis[i]) for i in range(2)], axis=1)
  np.testing.assert_allclose(gn, gn_dense, rtol=1e-5, atol=1e-6)
  assert float(jnp.linalg.eigvalsh(gn).min()) >= 1.0 - 1e-6


def test_gauss_newton_needs_a_split_loss():
  with pytest.raises(ValueError, match="predict_fn"):
    imaml_jax.gauss_newton_system()(
        imaml_jax.TaskObjective(lambda p, b: jnp.sum(p), 1.0, jnp.ones(2),
                                None), jnp.ones(2))


def test_cg_residual_is_reported_and_shrinks_with_cg_steps():
  theta, support, query = nonlinear_problem()
  lam = 2.0
  g = jax.grad(mlp_loss)(theta, query)
  H = dense_hessian(mlp_loss, theta, support)
  A = jnp.eye(H.shape[0]) + H / lam
  residuals = []
  for steps in (1, 3, 40):
    adapt = imaml_jax.implicit_adapt(
        mlp_loss, imaml_jax.gradient_descent(1, 0.1), lam, cg_steps=steps)
    v, info = adapt.implicit_gradient(theta, support, g)
    dense = jnp.linalg.norm(ravel_pytree(g)[0] - A @ ravel_pytree(v)[0])
    np.testing.assert_allclose(info.residual, dense, rtol=1e-3, atol=1e-6)
    residuals.append(float(info.relative_residual))
  assert residuals[0] > residuals[1] > residuals[2]
  assert residuals[2] < 1e-4


def bilinear_problem():
  """y = p0 p1 x: at p = (0.1, -0.1) the exact system I + H/lam is indefinite."""
  loss = imaml_jax.mse_loss(lambda p, x: p[0] * p[1] * x)
  batch = imaml_jax.Batch(jnp.ones((4, 1)), jnp.full((4, 1), 2.0))
  return loss, jnp.array([0.1, -0.1]), batch


def test_curvature_diagnostics_match_dense_matrix():
  theta, support, query = nonlinear_problem()
  lam = 2.0
  g = jax.grad(mlp_loss)(theta, query)
  H = dense_hessian(mlp_loss, theta, support)
  A = jnp.eye(H.shape[0]) + H / lam
  solver = imaml_jax.gradient_descent(1, 0.1)
  # jax's CG: curvature is the Rayleigh quotient of the solution.
  v, info = imaml_jax.implicit_adapt(mlp_loss, solver, lam, cg_steps=3
                                     ).implicit_gradient(theta, support, g)
  z = ravel_pytree(v)[0]
  np.testing.assert_allclose(info.curvature, z @ A @ z / (z @ z), rtol=1e-4)
  # Truncated CG: the smallest curvature of its directions lies within A's
  # spectrum, and on this positive definite A it solves as plain CG does.
  eig = jnp.linalg.eigvalsh(A)
  assert float(eig.min()) > 0
  v_t, info_t = imaml_jax.implicit_adapt(
      mlp_loss, solver, lam, cg_steps=3, linear_solve=imaml_jax.truncated_cg
  ).implicit_gradient(theta, support, g)
  assert float(eig.min()) - 1e-5 <= float(info_t.curvature) <= float(
      eig.max()) + 1e-5
  np.testing.assert_allclose(ravel_pytree(v_t)[0], z, rtol=1e-4, atol=1e-6)
  assert not bool(info.negative_curvature) and not bool(
      info_t.negative_curvature)
  assert int(info.iterations) == int(info_t.iterations) == 3


def test_negative_curvature_is_flagged_and_truncated_cg_bounds_the_gradient():
  loss, params, batch = bilinear_problem()
  exact_matrix = jnp.eye(2) + jax.hessian(loss)(params, batch)   # lam = 1
  eig, vecs = jnp.linalg.eigh(exact_matrix)
  assert float(eig[0]) < 0
  g = vecs[:, 0]   # CG's first direction has curvature eig[0] < 0
  solver = imaml_jax.gradient_descent(1, 0.1)
  infos = {}
  for system, method in [("exact", "jax"), ("exact", "truncated"),
                         ("gauss_newton", "jax")]:
    adapt = imaml_jax.implicit_adapt(loss, solver, 1.0, cg_steps=2,
                                     system=system,
                                     linear_solve=LINEAR_SOLVES[method])
    infos[system, method] = adapt.implicit_gradient(params, batch, g)
  _, exact = infos["exact", "truncated"]
  assert bool(exact.negative_curvature) and float(exact.curvature) <= 0
  v, _ = infos["exact", "truncated"]
  # Stopped at the first direction of non-positive curvature: returns g,
  # without a CG update.
  np.testing.assert_allclose(v, g)
  assert int(exact.iterations) == 0
  v_gn, gn = infos["gauss_newton", "jax"]
  assert not bool(gn.negative_curvature) and float(gn.curvature) >= 1.0 - 1e-6
  assert float(jnp.linalg.norm(v_gn)) <= float(jnp.linalg.norm(g)) + 1e-6


@pytest.mark.parametrize("kwargs,match", [
    (dict(lam=0.0), "lam"),
    (dict(lam=-2.0), "lam"),
    (dict(lam=1.0, cg_steps=0), "cg_steps"),
    (dict(lam=1.0, cg_steps=2.5), "cg_steps"),
    (dict(lam=1.0, system="newton"), "system"),
])
def test_bad_arguments_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    imaml_jax.implicit_adapt(quad_loss, imaml_jax.gradient_descent(1, 0.1),
                             **kwargs)


def test_a_linear_solve_that_is_not_a_function_is_refused():
  with pytest.raises(TypeError, match="linear_solve must be callable"):
    imaml_jax.implicit_adapt(quad_loss, imaml_jax.gradient_descent(1, 0.1),
                             1.0, linear_solve="truncated")


def test_bad_inputs_raise_clear_errors():
  adapt = imaml_jax.implicit_adapt(
      lambda p, b: jnp.mean((b.x @ p - b.y) ** 2),
      imaml_jax.gradient_descent(2, 0.1), lam=1.0)
  empty = imaml_jax.Batch(jnp.zeros((0, 3)), jnp.zeros((0, 1)))
  with pytest.raises(ValueError, match="support set is empty"):
    adapt(jnp.zeros((3, 1)), empty)
  ok = imaml_jax.Batch(jnp.ones((2, 3)), jnp.ones((2, 1)))
  with pytest.raises(ValueError, match="floating"):
    adapt(jnp.zeros((3, 1), jnp.int32), ok)
