import jax
import jax.numpy as jnp
import pytest

import imaml_jax


def linear_tasks(n=4, scale=1.0):
  x = scale * jax.random.normal(jax.random.key(0), (n, 6, 3))
  w = jax.random.normal(jax.random.key(1), (n, 3, 1))
  y = x @ w
  return imaml_jax.Task(imaml_jax.Batch(x, y), imaml_jax.Batch(x, y))


LOSS = imaml_jax.mse_loss(lambda w, x: x @ w)


def test_unconverged_inner_solve_is_flagged_and_a_converged_one_is_not():
  tasks = linear_tasks()
  theta = jnp.zeros((3, 1))
  flags = {}
  for steps in (1, 200):
    learner = imaml_jax.imaml(LOSS, imaml_jax.gradient_descent(steps, 0.05),
                              lam=1.0)
    _, metrics = learner(theta, tasks)
    metrics = {k: float(v) for k, v in metrics.items()}
    assert metrics["inner_grad_ratio_max"] >= metrics["inner_grad_ratio"]
    flags[steps] = imaml_jax.stability_flags(metrics)
  assert "inner_unconverged" in flags[1]
  assert flags[200] == {}


def bilinear_tasks(n=3):
  # y = p0 p1 x at p = (0.1, 0.1) with support targets 4: the support loss
  # has curvature far below -lam along (1, 1), the direction of the query
  # gradient, so CG on I + H/lam meets it at once.
  x = jnp.ones((n, 4, 1))
  support = imaml_jax.Batch(x, jnp.full((n, 4, 1), 4.0))
  query = imaml_jax.Batch(x, jnp.full((n, 4, 1), -4.0))
  return imaml_jax.Task(support, query)


@pytest.mark.parametrize("system,method,flagged", [
    ("exact", imaml_jax.solve_cg, True),
    ("exact", imaml_jax.truncated_cg, True),
    ("gauss_newton", imaml_jax.solve_cg, False),
])
def test_negative_curvature_is_flagged_only_for_indefinite_systems(
    system, method, flagged):
  loss = imaml_jax.mse_loss(lambda p, x: p[0] * p[1] * x)
  learner = imaml_jax.imaml(loss, imaml_jax.gradient_descent(1, 1e-3),
                            lam=0.5, cg_steps=3, system=system,
                            linear_solve=method)
  _, metrics = learner(jnp.array([0.1, 0.1]), bilinear_tasks())
  metrics = {k: float(v) for k, v in metrics.items()}
  flags = imaml_jax.stability_flags(metrics)
  assert ("cg_negative_curvature" in flags) == flagged
  assert (metrics["cg_curvature_min"] <= 0) == flagged
  assert metrics["cg_negative_curvature"] == (1.0 if flagged else 0.0)


def test_thresholds_and_nan_metrics():
  bad_cg = {"cg_relative_residual_max": 3.0, "cg_negative_curvature": 0.25}
  assert set(imaml_jax.stability_flags(bad_cg)) == {"cg_unconverged",
                                                    "cg_negative_curvature"}
  relaxed = imaml_jax.StabilityThresholds(cg_relative_residual=5.0,
                                          cg_negative_curvature=0.5)
  assert imaml_jax.stability_flags(bad_cg, relaxed) == {}
  assert "inner_unconverged" in imaml_jax.stability_flags(
      {"inner_grad_ratio": float("nan")})
  # MAML-type metrics carry no CG diagnostics: nothing to flag there.
  assert imaml_jax.stability_flags({"inner_grad_ratio_max": 0.1}) == {}


def test_drawdown_is_the_largest_fall_below_the_running_maximum():
  steps = [100, 200, 300, 400, 500, 600]
  acc = [0.2, 0.9, 0.6, 0.8, 0.7, 0.75]
  # Falls are judged after the warm-up, against the maximum of the whole
  # curve: 0.9 at step 200 still counts as the peak.
  d = imaml_jax.drawdown(steps, acc, warmup=200)
  assert d.peak_step == 200 and d.step == 300
  assert d.drop == pytest.approx(0.3)
  # With the warm-up past that fall, the worst is 0.7 at step 500, still
  # measured against the peak of 0.9.
  d = imaml_jax.drawdown(steps, acc, warmup=300)
  assert (d.step, d.peak_step) == (500, 200) and d.drop == pytest.approx(0.2)
  assert imaml_jax.drawdown(steps, sorted(acc), warmup=0).drop == 0.0
  assert imaml_jax.drawdown([300, 400], [0.5, float("nan")]).drop == float(
      "inf")
  with pytest.raises(ValueError, match="same length"):
    imaml_jax.drawdown([1, 2], [0.1])
