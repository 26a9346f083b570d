"""Config -> components: the authors' recipe switches build what they name."""

import os

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import imaml_jax
from experiments import common
from experiments.configs import omniglot as omniglot_config


def test_adam_epsilon_comes_from_the_config():
  c = omniglot_config.get_config("5way1shot-imaml_gd")
  c.adam_eps = 1e-3
  grad = {"w": jnp.array([1e-4, -2e-3, 0.5])}
  ours, _ = common.meta_optimizer(c).update(
      grad, common.meta_optimizer(c).init(grad))
  theirs, _ = optax.adam(1e-3, eps=1e-3).update(
      grad, optax.adam(1e-3, eps=1e-3).init(grad))
  np.testing.assert_allclose(ours["w"], theirs["w"], rtol=1e-6)
  default, _ = optax.adam(1e-3).update(grad, optax.adam(1e-3).init(grad))
  assert not np.allclose(ours["w"], default["w"])   # eps matters here


def test_pull_back_inner_loop_and_xavier_init_are_built_from_the_config():
  c = omniglot_config.get_config("5way1shot-imaml_gd")
  c.update(inner_loop="pull_back", system="damped", init="xavier_1.73")
  model, loss = common.model_and_loss(c)
  x = jnp.zeros((5, 28, 28, 1))
  theta = common.initial_params(c, model, jax.random.key(0), x)
  default = imaml_jax.init_params(model, jax.random.key(0), x)
  bias = np.asarray(theta["Conv_0"]["bias"])
  assert bias.min() >= 0 and bias.max() <= 0.05 and bias.any()
  assert not np.allclose(theta["Dense_0"]["kernel"], default["Dense_0"]["kernel"])
  learner = common.build_learner(c, loss)
  assert isinstance(learner.adapt.solver,
                    imaml_jax.solvers.PullBackGradientDescent)


def test_every_data_set_builds_the_conv4_its_config_names():
  from experiments.configs import base
  from experiments.configs import mini_imagenet as mi_config
  count = lambda m, shape: sum(p.size for p in jax.tree.leaves(
      imaml_jax.init_params(m, jax.random.key(0), jnp.zeros(shape))))
  omniglot = omniglot_config.get_config("5way1shot-maml")
  mini = mi_config.get_config("maml")
  for c, shape, paper in [
      (omniglot, (1, 28, 28, 1), imaml_jax.omniglot_conv4),
      (mini, (1, 84, 84, 3), imaml_jax.mini_imagenet_conv4)]:
    model, _ = common.model_and_loss(c)
    assert model == paper(5)   # the defaults: MAML's Conv4 of the data set
    c.filters = 8
    model, _ = common.model_and_loss(c)
    assert count(model, shape) < count(paper(5), shape) / 10
  # A config.json from before every data set read these fields: Omniglot's
  # lacked them, Mini-ImageNet's held 64 and False for MAML's 32 and max-pools.
  old = omniglot.to_dict()
  del old["filters"], old["max_pool"]
  assert base.upgrade(ml_collections.ConfigDict(old)).filters == 64
  old = dict(mini.to_dict(), filters=64, max_pool=False)
  new = base.upgrade(ml_collections.ConfigDict(old))
  assert common.model_and_loss(new)[0] == imaml_jax.mini_imagenet_conv4(5)


@pytest.mark.parametrize("field,value", [("inner_loop", "newton"),
                                         ("init", "xavier")])
def test_unknown_recipe_switches_are_rejected(field, value):
  c = omniglot_config.get_config("5way1shot-imaml_gd")
  c[field] = value
  model, loss = common.model_and_loss(c)
  build = {"inner_loop": lambda: common.build_learner(c, loss),
           "init": lambda: common.initial_params(
               c, model, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))}
  with pytest.raises(ValueError, match=f"{field} must be one of"):
    build[field]()


def old_state(params, optimizer, step=7):
  """A train state as checkpoints before the non-finite guard stored it."""
  opt_state = optimizer.init(params)
  opt_state = jax.tree.map(lambda x: x + 1 if x.dtype == jnp.float32 else x,
                           opt_state)   # moments that differ from a fresh init
  return imaml_jax.TrainState(params, opt_state, jnp.asarray(step, jnp.int32))


@pytest.mark.parametrize("how", ["orbax", "msgpack"])
def test_checkpoints_from_before_the_non_finite_guard_still_restore(
    how, tmp_path):
  import flax.serialization
  import orbax.checkpoint as ocp
  c = omniglot_config.get_config("5way1shot-maml")
  optimizer = common.meta_optimizer(c)
  params = {"w": jnp.arange(3.0), "b": {"c": jnp.ones((2, 2))}}
  old = old_state(params, optimizer)
  like = imaml_jax.init_train_state(jax.tree.map(jnp.zeros_like, params),
                                    optimizer)
  if how == "orbax":
    manager = common.checkpoint_manager(str(tmp_path))
    manager.save(7, args=ocp.args.StandardSave(old))
    manager.wait_until_finished()
    restored = common.restore(manager, like)
  else:
    restored = common.state_from_bytes(like, flax.serialization.to_bytes(old))
  assert jax.tree.structure(restored) == jax.tree.structure(like)
  chex.assert_trees_all_equal(restored.params, params)
  chex.assert_trees_all_equal(restored.opt_state.inner_state, old.opt_state)
  assert int(restored.step) == 7
  assert int(restored.opt_state.notfinite_count) == 0
  assert bool(restored.opt_state.last_finite)
  # and today's states round-trip unchanged
  new = restored._replace(step=jnp.asarray(9, jnp.int32))
  chex.assert_trees_all_equal(
      common.state_from_bytes(like, flax.serialization.to_bytes(new)), new)


def test_training_episodes_take_train_shots_and_evaluation_keeps_k():
  """Reptile's configs adapt on 10 examples per class in training, as its
  public code does; evaluation episodes keep K (the paper's protocol)."""
  c = omniglot_config.get_config("5way1shot-reptile")
  assert (c.shots, c.train_shots) == (1, 10)
  images = jnp.zeros((12, 20, 4, 4), jnp.uint8)
  tasks = common.training_sampler(c, 3)(jax.random.key(0), images)
  assert tasks.support.x.shape[:2] == (3, 5 * 10)
  assert tasks.query.x.shape[:2] == (3, 5 * c.train_queries)
  # Its 5 inner steps take minibatches of 10 (Reptile's inner batch), each
  # with 2 examples of every class.
  one_task = jax.tree.map(lambda a: a[0], tasks.support)
  labels = imaml_jax.minibatches(one_task, c.inner_minibatches).y
  assert labels.shape == (5, 10)
  for batch in labels:
    assert sorted(batch.tolist()) == sorted(list(range(5)) * 2)
  maml = omniglot_config.get_config("5way1shot-maml")   # 0: K in training too
  tasks = common.training_sampler(maml, 3)(jax.random.key(0), images)
  assert tasks.support.x.shape[:2] == (3, 5)


def test_cpu_name_keeps_the_first_processors_family_and_model(tmp_path):
  info = tmp_path / "cpuinfo"
  info.write_text("processor\t: 0\ncpu family\t: 23\nmodel\t\t: 1\n"
                  "model name\t: AMD EPYC\n\nprocessor\t: 1\ncpu family\t: 25\n"
                  "model\t\t: 17\nmodel name\t: AMD EPYC\n")
  cores = f"{os.cpu_count()} cores"
  assert common.cpu_name(str(info)) == f"AMD EPYC (family 23 model 1), {cores}"
  info.write_text("processor\t: 0\nmodel name\t: Apple M2\n")   # no family
  assert common.cpu_name(str(info)) == f"Apple M2, {cores}"
  fallback = common.cpu_name(str(tmp_path / "missing"))
  assert fallback.endswith(cores) and "family" not in fallback
