"""Config -> components: the authors' recipe switches build what they name."""

import jax
import jax.numpy as jnp
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
