"""Meta-train on sinusoid regression and report post-adaptation MSE with a 95% CI.

    python -m experiments.sinusoid                      # iMAML-HF, defaults
    python -m experiments.sinusoid --config.algorithm=maml --config.meta_steps=1000

``--config`` is ``experiments/configs/sinusoid.py`` by default; any field can
be overridden as ``--config.<field>=<value>``, as for the other scripts.
"""

from __future__ import annotations

import json
import time

from absl import app
import jax
from ml_collections import config_flags
import optax

import imaml_jax
from experiments.common import build_learner


def run(c) -> dict:
  """Meta-trains the sinusoid config ``c``; prints and returns the summary."""
  model = imaml_jax.MLP(tuple(c.hidden), outputs=1)
  loss = imaml_jax.mse_loss(imaml_jax.apply_fn(model))
  learner = build_learner(c, loss)
  key = jax.random.key(c.seed)
  init_key, train_key, eval_key = jax.random.split(key, 3)
  theta = imaml_jax.init_params(model, init_key, jax.numpy.zeros((1, 1)))
  optimizer = optax.adam(c.meta_lr)
  sample = lambda k, data: imaml_jax.sample_sinusoid_tasks(
      k, c.meta_batch, c.support_size, c.query_size)
  step = imaml_jax.make_meta_step(learner, optimizer, sample)
  state = imaml_jax.init_train_state(theta, optimizer)

  test_tasks = imaml_jax.sample_sinusoid_tasks(
      eval_key, c.eval_tasks, c.support_size, c.query_size)
  evaluate = jax.jit(lambda th: imaml_jax.adapt_and_evaluate(
      learner.adapt, loss.metrics, th, test_tasks)["loss"])

  def report(name, params):
    losses = evaluate(params)
    mean, ci = imaml_jax.mean_ci95(losses)
    diverged = int(jax.numpy.sum(~jax.numpy.isfinite(losses)))
    print(f"{name}: query MSE after adaptation {mean:.3f} ± {ci:.3f} "
          f"({c.eval_tasks} test tasks"
          + (f"; the inner solve diverged on {diverged})" if diverged else ")"))
    return mean, ci

  print(f"{c.algorithm} on sinusoid regression, {c.support_size}-shot, "
        f"meta-batch {c.meta_batch}, {c.meta_steps} meta-steps, "
        f"{jax.devices()[0].platform}")
  before = report("before meta-training", theta)
  log = lambda i, m: print(
      f"step {i:5d}  query_loss {m['query_loss']:.3f}  support_loss "
      f"{m['support_loss_before']:.3f} -> {m['support_loss_after']:.3f}  "
      + (f"cg_rel_residual {m['cg_relative_residual']:.2e}  "
         if "cg_residual" in m else "")
      + f"meta_grad_norm {m['meta_grad_norm']:.3f}", flush=True)
  start = time.perf_counter()
  state, _ = imaml_jax.run(step, state, train_key, c.meta_steps,
                           log_every=c.log_every, on_log=log)
  seconds = time.perf_counter() - start
  after = report("after meta-training", state.params)
  summary = {"algorithm": c.algorithm, "meta_steps": c.meta_steps,
             "seconds": round(seconds, 1), "mse_before": round(before[0], 4),
             "mse_after": round(after[0], 4), "ci95_after": round(after[1], 4)}
  print(json.dumps(summary))
  return summary


def main(argv):
  del argv
  run(_CONFIG.value)


if __name__ == "__main__":   # flags are defined here so run() imports cleanly
  _CONFIG = config_flags.DEFINE_config_file(
      "config", "experiments/configs/sinusoid.py",
      "Config file, e.g. experiments/configs/sinusoid.py.")
  app.run(main)
