"""Evaluation: the 95% interval, and vmapped adaptation equal to a loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import imaml_jax


def test_ci95_is_1_96_sample_std_over_sqrt_n():
  values = np.random.default_rng(0).binomial(1, 0.9, size=600).astype(float)
  mean, ci = imaml_jax.mean_ci95(values)
  assert mean == pytest.approx(values.mean())
  assert ci == pytest.approx(1.96 * values.std(ddof=1) / np.sqrt(600))


def test_ci95_needs_two_values():
  with pytest.raises(ValueError, match="at least 2"):
    imaml_jax.mean_ci95([1.0])


def test_adapt_and_evaluate_equals_a_loop_over_tasks():
  loss = imaml_jax.cross_entropy_loss(lambda w, x: x @ w)
  adapt = imaml_jax.finetune(loss, imaml_jax.gradient_descent(5, 0.5))
  k = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(k[0], (6, 10, 4))          # 6 tasks of 10 examples
  y = jax.random.randint(k[1], (6, 10), 0, 3)
  tasks = imaml_jax.Task(imaml_jax.Batch(x, y), imaml_jax.Batch(-x, y))
  theta = 0.1 * jax.random.normal(k[2], (4, 3))
  batched = imaml_jax.adapt_and_evaluate(adapt, loss.metrics, theta, tasks)
  for i in range(6):
    one = loss.metrics(adapt(theta, imaml_jax.Batch(x[i], y[i])),
                       imaml_jax.Batch(-x[i], y[i]))
    np.testing.assert_allclose(batched["loss"][i], one["loss"], rtol=1e-5)
    assert float(batched["accuracy"][i]) == float(one["accuracy"])
