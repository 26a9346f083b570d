"""Learners against hand-derived formulas on linear regression, and vmap = loop."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import imaml_jax
from imaml_jax.models import PatchConv

D, NS, NQ, T = 3, 5, 4, 3
LOSS = imaml_jax.mse_loss(lambda w, x: x @ w)   # L(w) = 1/n ||Xw - y||^2


def regression_tasks(key):
  k = jax.random.split(key, 5)
  xs = jax.random.normal(k[0], (T, NS, D))
  xq = jax.random.normal(k[1], (T, NQ, D))
  w_true = jax.random.normal(k[2], (T, D, 1))
  tasks = imaml_jax.Task(imaml_jax.Batch(xs, xs @ w_true),
                         imaml_jax.Batch(xq, xq @ w_true + 0.1))
  theta = jax.random.normal(k[3], (D, 1))
  return theta, tasks


def grad_and_hessian(X, y, w):
  n = X.shape[0]
  return 2 / n * X.T @ (X @ w - y), 2 / n * X.T @ X


def hand_inner(Xs, ys, theta, steps, lr):
  w = theta
  for _ in range(steps):
    w = w - lr * grad_and_hessian(Xs, ys, w)[0]
  return w


def per_task_formula(name, theta, Xs, ys, Xq, yq, steps, lr, lam=None):
  Hs = grad_and_hessian(Xs, ys, theta)[1]
  if name == "imaml":
    phi = np.linalg.solve(Hs + lam * np.eye(D),
                          2 / NS * Xs.T @ ys + lam * theta)
    gq = grad_and_hessian(Xq, yq, phi)[0]
    return lam * np.linalg.solve(Hs + lam * np.eye(D), gq)
  phi = hand_inner(Xs, ys, theta, steps, lr)
  if name == "authors":
    # The authors' public code: GD on L, one pull-back step on the proximal
    # term, then CG on the damped system 2 v + H v / (lam + 10) = g.
    phi = phi - lr * lam * (phi - theta)
    gq = grad_and_hessian(Xq, yq, phi)[0]
    H = grad_and_hessian(Xs, ys, phi)[1]
    return np.linalg.solve(2 * np.eye(D) + H / (lam + 10), gq)
  gq = grad_and_hessian(Xq, yq, phi)[0]
  if name == "maml":
    return np.linalg.matrix_power(np.eye(D) - lr * Hs, steps) @ gq
  if name == "fomaml":
    return gq
  return theta - phi   # reptile


LEARNERS = {
    "maml": lambda: imaml_jax.maml(LOSS, steps=2, learning_rate=0.1),
    "fomaml": lambda: imaml_jax.fomaml(LOSS, steps=2, learning_rate=0.1),
    "reptile": lambda: imaml_jax.reptile(LOSS, steps=2, learning_rate=0.1),
    "imaml": lambda: imaml_jax.imaml(
        LOSS, imaml_jax.newton_cg(steps=2, cg_steps=D), lam=1.5, cg_steps=D),
    "authors": lambda: imaml_jax.imaml(
        LOSS, imaml_jax.pull_back_gradient_descent(2, 0.1), lam=1.5,
        cg_steps=D, system="damped"),
}


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_updates_equal_hand_derived_formulas(name):
  theta, tasks = regression_tasks(jax.random.key(0))
  direction, metrics = jax.jit(LEARNERS[name]())(theta, tasks,
                                                 jax.random.key(1))
  to64 = lambda a: np.asarray(a, np.float64)
  expected = np.mean([
      per_task_formula(name, to64(theta), to64(tasks.support.x[i]),
                       to64(tasks.support.y[i]), to64(tasks.query.x[i]),
                       to64(tasks.query.y[i]), 2, 0.1, lam=1.5)
      for i in range(T)], axis=0)
  np.testing.assert_allclose(direction, expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(metrics["meta_grad_norm"],
                             np.linalg.norm(expected), rtol=1e-4)
  assert metrics["support_loss_after"] < metrics["support_loss_before"]


class OneBlockConv(nn.Module):
  """One [patch conv, batch norm, ReLU] block of the Conv4, then its linear
  classifier: the operations whose batching vmap changes (a task-batched
  matrix product, per-task batch statistics), at a quarter of the Conv4's
  compile time."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.BatchNorm(use_running_average=False, momentum=0.0)(
        PatchConv(4, 3, 2)(x)))
    return nn.Dense(3)(x.reshape(x.shape[0], -1))


def tiny_classification_tasks(key, num_tasks=3, ways=3):
  kx, kq = jax.random.split(key)
  labels = jnp.tile(jnp.arange(ways), (num_tasks, 2))
  return imaml_jax.Task(
      imaml_jax.Batch(jax.random.normal(kx, (num_tasks, 2 * ways, 8, 8, 1)),
                      labels),
      imaml_jax.Batch(jax.random.normal(kq, (num_tasks, 2 * ways, 8, 8, 1)),
                      labels))


@pytest.mark.parametrize("make", [
    lambda loss, **kw: imaml_jax.imaml(
        loss, imaml_jax.gradient_descent(3, 0.1), lam=2.0, cg_steps=3, **kw),
    lambda loss, **kw: imaml_jax.imaml(
        loss, imaml_jax.newton_cg(2, cg_steps=2), lam=2.0, cg_steps=3,
        system="gauss_newton", **kw),
    lambda loss, **kw: imaml_jax.maml(loss, 2, 0.1, **kw),
    lambda loss, **kw: imaml_jax.fomaml(loss, 2, 0.1, **kw),
    lambda loss, **kw: imaml_jax.reptile(loss, 2, 0.1, **kw),
], ids=["imaml_gd", "imaml_hf_gn", "maml", "fomaml", "reptile"])
def test_vmap_over_tasks_equals_loop_over_tasks(make):
  # vmap over the 3 tasks against task_chunk=1: a lax.map that computes each
  # task alone (2 compiles per learner; compiling dominates this test).
  model = OneBlockConv()
  tasks = tiny_classification_tasks(jax.random.key(2))
  theta = imaml_jax.init_params(model, jax.random.key(3),
                                tasks.support.x[0])
  loss = imaml_jax.cross_entropy_loss(imaml_jax.apply_fn(model))
  batched, metrics = jax.jit(make(loss))(theta, tasks, None)
  looped, loop_metrics = jax.jit(make(loss, task_chunk=1))(theta, tasks, None)
  # Batched and single-task convolutions sum in different orders: compare the
  # whole meta-gradient to float32 round-off relative to its norm.
  diff = np.linalg.norm(_flat(batched) - _flat(looped))
  assert diff <= 1e-4 * np.linalg.norm(_flat(looped)), diff
  assert 0.0 <= float(metrics["query_accuracy"]) <= 1.0
  assert loop_metrics.keys() == metrics.keys()
  for name in metrics:   # task means and worst cases (e.g. *_max)
    np.testing.assert_allclose(loop_metrics[name], metrics[name], rtol=1e-4,
                               atol=1e-5, err_msg=name)


def test_chunks_that_do_not_divide_the_batch_give_the_same_step():
  # Chunks of 2 of 3 tasks (a lax.map over vmapped chunks, with a remainder);
  # the chunking is the same for every learner, so the cheapest one checks it.
  model = OneBlockConv()
  tasks = tiny_classification_tasks(jax.random.key(2))
  theta = imaml_jax.init_params(model, jax.random.key(3),
                                tasks.support.x[0])
  loss = imaml_jax.cross_entropy_loss(imaml_jax.apply_fn(model))
  batched, metrics = jax.jit(imaml_jax.fomaml(loss, 2, 0.1))(theta, tasks)
  chunked, chunk_metrics = jax.jit(imaml_jax.fomaml(loss, 2, 0.1,
                                                    task_chunk=2))(theta, tasks)
  diff = np.linalg.norm(_flat(chunked) - _flat(batched))
  assert diff <= 1e-4 * np.linalg.norm(_flat(batched)), diff
  for name in metrics:
    np.testing.assert_allclose(chunk_metrics[name], metrics[name], rtol=1e-4,
                               atol=1e-5, err_msg=name)


def _flat(tree):
  return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def test_reptile_minibatches_cycle_disjoint_strided_batches():
  # 6 support examples in 3 minibatches {0, 3}, {1, 4}, {2, 5}; 4 steps take
  # minibatches 0, 1, 2, 0. One minibatch: every step on the whole set.
  theta, tasks = regression_tasks(jax.random.key(7))
  xs = jnp.concatenate([tasks.support.x, tasks.query.x[:, :1]], axis=1)
  ys = jnp.concatenate([tasks.support.y, tasks.query.y[:, :1]], axis=1)
  tasks = tasks._replace(support=imaml_jax.Batch(xs, ys))
  to64 = lambda a: np.asarray(a, np.float64)
  for count in (1, 3):
    direction, metrics = jax.jit(imaml_jax.reptile(
        LOSS, 4, 0.1, minibatches=count))(theta, tasks)
    expected = []
    for i in range(T):
      w = to64(theta)
      for k in range(4):
        rows = slice(k % count, None, count)
        w = w - 0.1 * grad_and_hessian(to64(xs[i, rows]), to64(ys[i, rows]),
                                       w)[0]
      expected.append(to64(theta) - w)
    np.testing.assert_allclose(direction, np.mean(expected, 0), rtol=1e-4,
                               atol=1e-5, err_msg=f"minibatches={count}")
    # The loss after is the whole support set's.
    after = np.mean([np.mean((to64(xs[i]) @ (to64(theta) - e)
                              - to64(ys[i])) ** 2)
                     for i, e in enumerate(expected)])
    np.testing.assert_allclose(metrics["support_loss_after"], after,
                               rtol=1e-4)
  with pytest.raises(ValueError, match="dividing the 6 examples"):
    imaml_jax.reptile(LOSS, 4, 0.1, minibatches=4)(theta, tasks)
  with pytest.raises(ValueError, match="minibatches"):
    imaml_jax.reptile(LOSS, 4, 0.1, minibatches=0)


def test_imaml_reports_cg_residual_and_composes_with_adam():
  theta, tasks = regression_tasks(jax.random.key(4))
  learner = imaml_jax.imaml(LOSS, imaml_jax.gradient_descent(5, 0.1), lam=1.0,
                            cg_steps=1)
  grad, metrics = learner(theta, tasks, None)
  assert float(metrics["cg_residual"]) > 0   # 1 CG step cannot solve a 3x3 system
  opt = optax.adam(1e-2)
  updates, _ = opt.update(grad, opt.init(theta), theta)
  assert jax.tree.structure(updates) == jax.tree.structure(theta)


def test_task_chunk_must_be_a_positive_integer():
  for bad in (0, -1, 2.5):
    with pytest.raises(ValueError, match="task_chunk"):
      imaml_jax.maml(LOSS, 1, 0.1, task_chunk=bad)


def test_learners_reject_bad_input():
  theta, tasks = regression_tasks(jax.random.key(5))
  learner = LEARNERS["imaml"]()
  empty = tasks._replace(support=jax.tree.map(lambda a: a[:, :0],
                                              tasks.support))
  with pytest.raises(ValueError, match="support set is empty"):
    learner(theta, empty, None)
  with pytest.raises(ValueError, match="floating"):
    learner(theta.astype(jnp.int32), tasks, None)
  with pytest.raises(TypeError, match="Task"):
    learner(theta, (tasks.support, tasks.query), None)
  ragged = tasks._replace(query=jax.tree.map(lambda a: a[:2], tasks.query))
  with pytest.raises(ValueError, match="task axis"):
    learner(theta, ragged, None)


def test_labels_out_of_range_raise():
  model = imaml_jax.Conv4(num_classes=3, filters=4)
  tasks = tiny_classification_tasks(jax.random.key(6))
  theta = imaml_jax.init_params(model, jax.random.key(0), tasks.support.x[0])
  loss = imaml_jax.cross_entropy_loss(imaml_jax.apply_fn(model))
  bad = imaml_jax.Batch(tasks.support.x[0], tasks.support.y[0] + 1)
  with pytest.raises(ValueError, match=r"\[0, 3\).*\[1, 3\]"):
    loss(theta, bad)
  with pytest.raises(ValueError, match="integers"):
    loss(theta, bad._replace(y=bad.y.astype(jnp.float32)))
