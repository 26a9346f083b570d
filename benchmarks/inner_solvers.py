"""Inner solvers compared on real few-shot tasks: how well they solve, at what cost.

    python -m benchmarks.inner_solvers --workdir runs/stability/hf5w --step 2000
    python -m benchmarks.inner_solvers --config 5way1shot-imaml_hf   # at init
    python -m benchmarks.inner_solvers --dataset mini_imagenet --config imaml_gd \\
        --solvers gd:10:0.01,gd:10:0.05,gd:10:0.1
    python -m benchmarks.inner_solvers --workdir ... \\
        --solvers gd:16:0.1,newton:3:5:hessian,newton:3:5:gauss_newton

Each solver spec is ``gd:<steps>:<lr>`` or
``newton:<steps>:<cg steps>:<hessian|gauss_newton>``. All solvers minimise
the proximal loss G(., theta; D_tr) of the same ``--tasks`` training episodes
(the run's ways, shots, query count and lam), from theta restored from a run's
checkpoint (or a fresh initialisation). Per solver, one JSON line: the median
time of the jitted, vmapped solve after compilation, the fraction of the
initial gradient norm left (task mean and worst task; the `inner_grad_ratio`
of training), G before and after the solve, and the query accuracy and loss
of the adapted parameters.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

import imaml_jax
from benchmarks.meta_step import median_time
from experiments import common
from experiments import evaluate
from experiments.configs import mini_imagenet
from experiments.configs import omniglot

CONFIGS = {"omniglot": omniglot, "mini_imagenet": mini_imagenet}


def parse_solver(spec: str):
  """``gd:16:0.1`` or ``newton:3:5:gauss_newton`` -> an inner solver."""
  kind, *args = spec.split(":")
  try:
    if kind == "gd" and len(args) == 2:
      return imaml_jax.gradient_descent(int(args[0]), float(args[1]))
    if kind == "newton" and len(args) == 3:
      return imaml_jax.newton_cg(int(args[0]), cg_steps=int(args[1]),
                                 curvature=args[2])
  except ValueError as e:
    raise ValueError(f"bad solver spec {spec!r}: {e}") from None
  raise ValueError(f"solver spec must be gd:<steps>:<lr> or newton:<steps>:"
                   f"<cg steps>:<hessian|gauss_newton>; got {spec!r}.")


def load_theta(a):
  """(config, loss, theta, tasks): theta from a run's checkpoint, or a fresh
  init of --config; ``--tasks`` training episodes of the run's setting."""
  if a.workdir:
    run = evaluate.load_run(a.workdir, a.step)
    c, loss, theta = run.config, run.loss, run.state.params
  else:
    c = CONFIGS[a.dataset].get_config(a.config)
    model, loss = common.model_and_loss(c)
    x = np.zeros((1,) + common.image_shape(c), np.float32)
    theta = imaml_jax.init_params(model, jax.random.key(c.seed), x)
  if a.data_dir:
    c.data_dir = a.data_dir
  images = common.load_images(c, "train")
  tasks = imaml_jax.sample_episodes(jax.random.key(a.seed), images, a.tasks,
                                    c.ways, c.shots, c.train_queries)
  return c, loss, theta, tasks


def measure(spec: str, c, loss, theta, tasks, repeats: int) -> dict:
  adapt = imaml_jax.implicit_adapt(loss, parse_solver(spec), c.lam)

  @jax.jit
  def solve(theta, tasks):
    def one(task):
      phi, info = adapt.solve(theta, task.support)
      return info, loss.metrics(phi, task.query)
    return jax.vmap(one)(tasks)

  info, query = jax.block_until_ready(solve(theta, tasks))
  seconds = median_time(
      lambda: jax.block_until_ready(solve(theta, tasks)), repeats)
  ratio = np.asarray(info.grad_norm / info.grad_norms[:, 0])
  return {
      "solver": spec, "tasks": int(ratio.size),
      "seconds_per_solve": round(seconds, 4),
      "ms_per_task": round(1e3 * seconds / ratio.size, 2),
      "grad_ratio_mean": float(ratio.mean()),
      "grad_ratio_max": float(ratio.max()),
      "G_before": float(jnp.mean(info.losses[:, 0])),
      "G_after": float(jnp.mean(info.loss)),
      "query_loss": float(jnp.mean(query["loss"])),
      "query_accuracy": float(jnp.mean(query["accuracy"])),
  }


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--workdir", default="", help="a training run (its config "
                 "and checkpoint); empty: a fresh init of --config")
  p.add_argument("--step", type=int, default=None,
                 help="checkpoint step (default: latest)")
  p.add_argument("--dataset", default="omniglot", choices=sorted(CONFIGS))
  p.add_argument("--config", default="5way1shot-imaml_hf",
                 help="the config argument, e.g. 5way1shot-imaml_hf (Omniglot) "
                 "or imaml_gd (Mini-ImageNet)")
  p.add_argument("--solvers", default="gd:16:0.1,newton:3:5:hessian,"
                 "newton:3:5:gauss_newton")
  p.add_argument("--tasks", type=int, default=32)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--data_dir", default="", help="TFDS data dir")
  p.add_argument("--json", default="", help="append the rows here")
  a = p.parse_args(argv)
  c, loss, theta, tasks = load_theta(a)
  print(f"# {c.ways}-way {c.shots}-shot, {c.train_queries} queries/class, "
        f"lam {c.lam}, {a.tasks} tasks, theta from "
        f"{a.workdir or 'init'} step {a.step}; {common.hardware()}")
  for spec in a.solvers.split(","):
    row = measure(spec, c, loss, theta, tasks, a.repeats)
    row.update(workdir=a.workdir, step=a.step, lam=c.lam, ways=c.ways,
               shots=c.shots, hardware=common.hardware())
    print(json.dumps(row), flush=True)
    if a.json:
      with open(a.json, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
  main()
