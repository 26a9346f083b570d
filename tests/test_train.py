import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import imaml_jax


def setup(algorithm="imaml"):
  model = imaml_jax.MLP((16, 16))
  loss = imaml_jax.mse_loss(imaml_jax.apply_fn(model))
  if algorithm == "imaml":
    learner = imaml_jax.imaml(loss, imaml_jax.newton_cg(3, cg_steps=5),
                              lam=0.5, cg_steps=5, system="gauss_newton")
  else:
    learner = imaml_jax.maml(loss, steps=1, learning_rate=0.01)
  opt = optax.adam(3e-3)
  sample = lambda k, data: imaml_jax.sample_sinusoid_tasks(k, 8, 10, 10)
  step = imaml_jax.make_meta_step(learner, opt, sample)
  theta = imaml_jax.init_params(model, jax.random.key(0), jnp.zeros((1, 1)))
  return step, imaml_jax.init_train_state(theta, opt), learner, loss


@pytest.mark.parametrize("algorithm", ["imaml", "maml"])
def test_meta_training_reduces_post_adaptation_loss(algorithm):
  step, state, learner, loss = setup(algorithm)
  test_tasks = imaml_jax.sample_sinusoid_tasks(jax.random.key(99), 200, 10, 10)
  evaluate = jax.jit(lambda th: jnp.mean(imaml_jax.adapt_and_evaluate(
      learner.adapt, loss.metrics, th, test_tasks)["loss"]))
  before = float(evaluate(state.params))
  state, history = imaml_jax.run(step, state, jax.random.key(1), 500,
                                 log_every=100, progress=False)
  after = float(evaluate(state.params))
  assert int(state.step) == 500 and len(history) == 5
  assert after < 0.75 * before, (before, after)


def test_step_is_a_pure_function_of_state_and_key():
  """Resuming from a saved state replays the same trajectory."""
  step, state, _, _ = setup()
  key = jax.random.key(3)
  s1, _ = step(state, key)
  s2, m2 = step(s1, key)
  again, m2_again = step(jax.device_get(s1), key)
  chex.assert_trees_all_equal(s2, again)
  chex.assert_trees_all_equal(m2, m2_again)
  # Different steps draw different tasks.
  assert not np.allclose(jax.device_get(s1.params["Dense_0"]["kernel"]),
                         jax.device_get(s2.params["Dense_0"]["kernel"]))


def test_mean_ci95_needs_two_values():
  with pytest.raises(ValueError, match="at least 2"):
    imaml_jax.mean_ci95([1.0])
  mean, ci = imaml_jax.mean_ci95(np.r_[np.ones(50), np.zeros(50)])
  assert mean == 0.5
  np.testing.assert_allclose(ci, 1.96 * np.std(np.r_[np.ones(50), np.zeros(50)],
                                               ddof=1) / 10)


def test_run_stops_at_a_time_budget_and_runs_the_hooks_there():
  import time

  def step(state, key, data=None):
    time.sleep(0.01)
    return state._replace(step=state.step + 1), {"query_loss": jnp.zeros(())}

  state = imaml_jax.TrainState(jnp.zeros(()), (), jnp.zeros((), jnp.int32))
  saved = []
  final, history = imaml_jax.run(
      step, state, jax.random.key(0), 10_000, log_every=5, progress=False,
      hooks=[imaml_jax.Hook(1000, lambda s: saved.append(int(s.step)))],
      max_seconds=0.2)
  # Stops at the first logging interval whose cumulative time reaches 0.2 s:
  # steps take >= 10 ms, so by step 20 (not 10,000); the hook runs there.
  assert 5 <= int(final.step) <= 20 and int(final.step) % 5 == 0
  assert history[-1]["step"] == int(final.step)
  assert saved == [int(final.step)]


def test_a_one_step_spike_reaches_the_logged_worst_case_and_raises_its_flag():
  # inner_grad_ratio_max spikes at one step of a 5-step logging interval: the
  # log keeps the spike (a mean of the per-step maxima would read 0.188) and
  # stability_flags raises inner_unconverged; means stay means.
  spikes = {3: 0.9}

  def step(state, key, data):
    i = int(state.step) + 1
    return state._replace(step=state.step + 1), {
        "inner_grad_ratio_max": jnp.asarray(spikes.get(i, 0.01)),
        "cg_curvature_min": jnp.asarray(-1.0 if i == 2 else 1.0),
        "query_loss": jnp.asarray(float(i))}

  state = imaml_jax.init_train_state(jnp.zeros(()), optax.sgd(0.1))
  _, history = imaml_jax.run(step, state, jax.random.key(0), 5, log_every=5,
                             progress=False)
  logged = history[0]
  assert logged["inner_grad_ratio_max"] == pytest.approx(0.9)
  assert logged["cg_curvature_min"] == -1.0
  assert logged["query_loss"] == pytest.approx(3.0)
  assert "inner_unconverged" in imaml_jax.stability_flags(logged)


def test_a_non_finite_step_leaves_parameters_and_moments_and_is_counted():
  """Tasks poisoned with NaN on chosen steps: those steps change nothing but
  the step count; the counters say how many in a row; training recovers."""
  model = imaml_jax.MLP((8,))
  loss = imaml_jax.mse_loss(imaml_jax.apply_fn(model))
  opt = optax.adam(1e-2)

  def sample(key, poison):
    tasks = imaml_jax.sample_sinusoid_tasks(key, 4, 5, 5)
    return jax.tree.map(lambda x: x * jnp.where(poison, jnp.nan, 1.0), tasks)

  step = imaml_jax.make_meta_step(imaml_jax.fomaml(loss, 1, 0.01), opt, sample)
  theta = imaml_jax.init_params(model, jax.random.key(0), jnp.zeros((1, 1)))
  state = imaml_jax.init_train_state(theta, opt)
  key = jax.random.key(1)
  state, m = step(state, key, jnp.array(False))
  assert float(m["nonfinite"]) == 0.0
  good = state
  for in_a_row in (1, 2, 3):
    state, m = step(state, key, jnp.array(True))
    assert not np.isfinite(float(m["query_loss"]))
    assert float(m["nonfinite"]) == 1.0
    assert float(m["nonfinite_in_a_row_max"]) == in_a_row
    chex.assert_trees_all_equal(state.params, good.params)
    chex.assert_trees_all_equal(state.opt_state.inner_state,
                                good.opt_state.inner_state)
  assert int(state.step) == 4 and int(state.opt_state.total_notfinite) == 3
  state, m = step(state, key, jnp.array(False))
  assert float(m["nonfinite"]) == 0.0 and float(
      m["nonfinite_in_a_row_max"]) == 0.0
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))
  assert not jnp.allclose(jax.tree.leaves(state.params)[0],
                          jax.tree.leaves(good.params)[0])


def test_the_logged_interval_keeps_the_longest_non_finite_run():
  opt = optax.sgd(0.1)

  def step(state, key, data):   # steps 3-5 are non-finite, then finite again
    bad = (state.step >= 2) & (state.step < 5)
    direction = jnp.where(bad, jnp.nan, 1.0) * jnp.ones(2)
    return imaml_jax.train.meta_update(opt, state, direction,
                                       {"query_loss": jnp.array(1.0)})

  state = imaml_jax.init_train_state(jnp.zeros(2), opt)
  state, history = imaml_jax.run(step, state, jax.random.key(0), 8,
                                 log_every=8, progress=False)
  assert history[0]["nonfinite_in_a_row_max"] == 3.0
  assert history[0]["nonfinite"] == 3 / 8
  np.testing.assert_allclose(state.params, [-0.5, -0.5])   # 5 finite steps
