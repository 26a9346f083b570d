"""Task losses against hand computation; the Gauss-Newton product against J^T H J."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import imaml_jax

W = jnp.array([[0.5, -1.0, 0.2], [1.5, 0.3, -0.7]])   # 2 inputs -> 3 classes
X = jnp.array([[1.0, 2.0], [-1.0, 0.5], [0.3, -0.2], [2.0, 1.0]])
Y = jnp.array([0, 2, 1, 2])
LINEAR = lambda w, x: x @ w


def test_cross_entropy_and_accuracy_equal_hand_computation():
  loss = imaml_jax.cross_entropy_loss(LINEAR)
  logits = np.asarray(X @ W, np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected = -np.mean(logp[np.arange(4), np.asarray(Y)])
  batch = imaml_jax.Batch(X, Y)
  np.testing.assert_allclose(loss(W, batch), expected, rtol=1e-6)
  metrics = loss.metrics(W, batch)
  assert float(metrics["accuracy"]) == np.mean(logits.argmax(-1) == np.asarray(Y))


def test_mse_is_the_mean_over_examples_of_the_squared_error():
  loss = imaml_jax.mse_loss(LINEAR)
  targets = jnp.ones((4, 3))
  expected = np.mean(np.sum((np.asarray(X @ W) - 1.0) ** 2, axis=-1))
  np.testing.assert_allclose(loss(W, imaml_jax.Batch(X, targets)), expected,
                             rtol=1e-6)


def test_labels_outside_the_classes_are_rejected():
  loss = imaml_jax.cross_entropy_loss(LINEAR)
  with pytest.raises(ValueError, match="label"):
    loss(W, imaml_jax.Batch(X, jnp.array([0, 1, 2, 3])))


def test_gauss_newton_product_equals_dense_jacobian_form(x64):
  loss = imaml_jax.cross_entropy_loss(lambda w, x: jnp.tanh(x @ w))
  w, x = W.astype(jnp.float64), X.astype(jnp.float64)
  batch = imaml_jax.Batch(x, Y)
  predict, output_loss = imaml_jax.losses.split_loss(loss)
  ggn = imaml_jax.gauss_newton_product(predict, output_loss, w, batch)
  J = jax.jacobian(lambda p: predict(p, batch))(w).reshape(12, 6)
  H = jax.hessian(lambda o: output_loss(o.reshape(4, 3), batch))(
      predict(w, batch).ravel())
  v = jax.random.normal(jax.random.key(0), w.shape, jnp.float64)
  np.testing.assert_allclose(ggn(v).ravel(), J.T @ H @ J @ v.ravel(),
                             rtol=1e-10)
