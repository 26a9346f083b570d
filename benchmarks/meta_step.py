"""Meta-step throughput per algorithm, in FLOP/s, against a Python-loop reference.

    python -m benchmarks.meta_step                    # 5-way 1-shot, meta-batch 32
    python -m benchmarks.meta_step --ways 20 --meta_batch 16 --inner_steps 25 \\
        --maml_steps 5 --maml_lr 0.1
    python -m benchmarks.meta_step --algorithms imaml_gd --batching   # issue 5.2/5.5
    python -m benchmarks.meta_step --batching --cpu_devices 2 --num_devices 2 \\
        --task_chunk 1          # the fastest layout on a 2-core CPU

Random images stand in for Omniglot (same shapes, same model and math), so
this measures speed only. Each algorithm's learner is the one its training
config builds (``experiments/configs/omniglot.py:<N>way<K>shot-<algorithm>``
through :func:`experiments.common.build_learner`), with only the learner
flags given on the command line changed: the benchmark measures what trains.
Until 2026-12-01 the flags had their own defaults (the exact system,
Newton-CG on the Hessian, 3 Newton steps of 5 CG): docs/benchmarks.md says
which recorded rows used them. For each algorithm, the jitted meta-step (task
sampling, adaptation, meta-gradient, Adam update) is compiled and timed
(median of ``--repeats`` after compilation). Its FLOPs are counted by
``model_flops`` from loop-free pieces costed by XLA's cost analysis (XLA's
count of the whole compiled step, ``xla_gflop_per_step``, counts each loop
body once and so undercounts inner loops). The achieved FLOP/s is compared
with a dense float32 matmul timed in the same run (``matmul_flops``, this
machine's practical peak). One JSON line per algorithm.

With ``--batching``, each algorithm is also timed

* at meta-batch 1, giving the batching efficiency
  time(T tasks) / (T x time(1 task)) (below 1: batching pays);
* as a Python-loop reference: a jitted single-task learner (meta-gradient
  and metrics) called once per task from Python, the directions and metrics
  averaged and Adam applied by a second jitted function -- the same model
  and math, without ``vmap`` over tasks.
  ``speedup_vs_loop`` is the reference's time over the batched step's. Like
  the step, the reference computes each task's metrics along with its
  meta-gradient, and averages them (worst cases included), so both do the
  same work.

``--cpu_devices N`` splits the host CPU into N JAX devices and
``--num_devices N`` shards the meta-batch over them
(:func:`imaml_jax.make_sharded_meta_step`): on a CPU each device runs its
share on its own thread, and ``--task_chunk 1`` takes those tasks one at a
time. With several devices, ``--batching`` also times the Python loop with
its tasks alternating between the devices (``speedup_vs_loop_devices``):
asynchronous dispatch lets it use every core as well.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import imaml_jax
from experiments import common
from experiments.common import hardware
from experiments.configs import base
from experiments.configs import omniglot

ALGORITHMS = ("imaml_gd", "imaml_hf", "maml", "fomaml", "reptile")


def synthetic_tasks(key, meta_batch, ways, shots, queries, size=28):
  ks, kq = jax.random.split(key)
  labels = lambda n: jnp.tile(jnp.arange(ways), (meta_batch, n))
  images = lambda k, n: jax.random.uniform(k, (meta_batch, ways * n, size,
                                               size, 1))
  return imaml_jax.Task(imaml_jax.Batch(images(ks, shots), labels(shots)),
                        imaml_jax.Batch(images(kq, queries), labels(queries)))


# Learner flags: config fields. None (the default) keeps the config's value.
_LEARNER_FLAGS = {"inner_steps": int, "inner_lr": float, "newton_steps": int,
                  "newton_cg_steps": int, "lam": float, "cg_steps": int,
                  "maml_steps": int, "maml_lr": float, "task_chunk": int}


def add_learner_args(p: argparse.ArgumentParser):
  """The setting (``--ways``, ``--shots``) and the learner flags :func:`learners` reads.

  A learner flag left out keeps the value of the algorithm's training config;
  ``--inner_steps`` / ``--inner_lr`` set the GD inner loops (iMAML-GD,
  Reptile), ``--maml_steps`` / ``--maml_lr`` MAML's and first-order MAML's.
  """
  p.add_argument("--ways", type=int, default=5)
  p.add_argument("--shots", type=int, default=1)
  for name, kind in _LEARNER_FLAGS.items():
    p.add_argument(f"--{name}", type=kind, default=None,
                   help="default: the training config's")
  p.add_argument("--newton_curvature", default=None,
                 choices=imaml_jax.solvers.CURVATURES)
  p.add_argument("--system", default=None,
                 choices=("exact", "damped", "gauss_newton"))


def learner_config(algorithm: str, ways: int, shots: int, **overrides):
  """The training config of ``algorithm`` at ``ways``-way ``shots``-shot,
  with ``overrides`` (config fields) on top."""
  c = omniglot.get_config(f"{ways}way{shots}shot-{algorithm}")
  c.update(overrides)
  return c


def flag_overrides(algorithm: str, a: argparse.Namespace) -> dict:
  """The config fields the learner flags in ``a`` set for ``algorithm``."""
  given = {k: getattr(a, k) for k in (*_LEARNER_FLAGS, "newton_curvature",
                                      "system")}
  maml_like = algorithm in ("maml", "fomaml")
  given["inner_steps"] = given["maml_steps"] if maml_like else given[
      "inner_steps"]
  given["inner_lr"] = given["maml_lr"] if maml_like else given["inner_lr"]
  del given["maml_steps"], given["maml_lr"]
  return {k: v for k, v in given.items() if v is not None}


def learner_configs(a: argparse.Namespace, algorithms=ALGORITHMS) -> dict:
  """``{algorithm: config}`` the benchmark builds its learners from."""
  return {name: learner_config(name, a.ways, a.shots,
                               **flag_overrides(name, a))
          for name in algorithms}


def learners(loss, a: argparse.Namespace, algorithms=ALGORITHMS) -> dict:
  """``{algorithm: learner}``, each built by :func:`experiments.common.build_learner`."""
  return {name: common.build_learner(c, loss)
          for name, c in learner_configs(a, algorithms).items()}


def median_time(fn, repeats: int) -> float:
  """Median wall time of ``fn()`` (which blocks until its result is ready)."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def flops_of(compiled) -> float:
  """FLOPs of a compiled XLA computation from its cost analysis (0 if unknown)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):   # older jax: one dict per computation
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", 0.0))


def model_flops(loss, theta, tasks, a) -> dict[str, float]:
  """FLOPs per meta-step of each algorithm, counted from loop-free pieces.

  XLA's cost analysis counts the body of a loop once, whatever its trip
  count, so the compiled step's count misses (K - 1) of K inner steps and
  most CG steps. Here the pieces are costed without loops -- one gradient of
  the task loss on the support set, the linear map ``v -> H v`` that
  ``jax.linearize`` of that gradient returns (the CG steps of iMAML's
  implicit gradient and of Newton-CG apply it; the gradient it is linearized
  from is counted once per linearization), one forward-over-reverse
  Hessian-vector product (MAML's backward pass through an inner step), one
  query gradient -- and combined per algorithm:

  * iMAML-GD: K gradients + (1 gradient + cg H v products) + 1 query
    gradient;
  * iMAML-HF: newton_steps x (1 gradient + cg H v products), + (1 gradient
    + cg H v products) + 1 query gradient (line-search forward passes not
    counted);
  * MAML: K gradients forward, K HVP-like products back, + 1 query gradient;
  * FOMAML: K gradients + 1 query gradient; Reptile: K gradients on
    minibatches of ``ways x train_shots / inner_minibatches`` examples,
    costed as the K-shot support gradient scaled by the examples (the final
    forward pass on the whole support set not counted);

  times the meta-batch. Sampling, metrics, CG's residual checks and Adam are
  not counted, and Gauss-Newton products are counted as H v products (they
  cost somewhat less).
  """
  cfg = learner_configs(a)
  one = lambda b: jax.tree.map(lambda x: x[0], b)
  cost = lambda f, *args: flops_of(jax.jit(f).lower(*args).compile())
  support, query_batch = one(tasks.support), one(tasks.query)
  support_grad = lambda p: jax.grad(loss)(p, support)
  grad = cost(support_grad, theta)
  # the linearized map alone: its residuals are inputs, not recomputed
  hv = cost(lambda lin, v: lin(v), jax.linearize(support_grad, theta)[1],
            theta)
  hvp = cost(lambda p, b, v: imaml_jax.hvp(loss, p, b, v), theta, support,
             theta)   # v a separate argument: no CSE
  query = cost(lambda p, b: jax.grad(loss)(p, b), theta, query_batch)
  solve = lambda cg_steps: grad + cg_steps * hv
  gd, hf = cfg["imaml_gd"], cfg["imaml_hf"]
  reptile_examples = (a.ways * base.train_shots(cfg["reptile"])
                      / cfg["reptile"].inner_minibatches)
  per_task = {
      "imaml_gd": gd.inner_steps * grad + solve(gd.cg_steps) + query,
      "imaml_hf": hf.newton_steps * solve(hf.newton_cg_steps)
                  + solve(hf.cg_steps) + query,
      "maml": cfg["maml"].inner_steps * (grad + hvp) + query,
      "fomaml": cfg["fomaml"].inner_steps * grad + query,
      "reptile": cfg["reptile"].inner_steps * grad * reptile_examples
                 / (a.ways * a.shots),
  }
  return {k: v * a.meta_batch for k, v in per_task.items()}


def matmul_flops(n: int = 2048, repeats: int = 10) -> float:
  """Measured float32 FLOP/s of one dense n x n matmul on the default device."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  matmul = jax.jit(lambda x, y: x @ y)
  matmul(a, a).block_until_ready()
  return 2 * n ** 3 / median_time(
      lambda: matmul(a, a).block_until_ready(), repeats)


def time_meta_step(learner, opt, theta, sample, repeats, mesh=None):
  """(compile seconds, median seconds per step, FLOPs per step).

  With a ``mesh``, the step is :func:`imaml_jax.make_sharded_meta_step` and
  ``sample`` draws one device's share of the tasks.
  """
  state = imaml_jax.init_train_state(theta, opt)
  if mesh is None:
    step = imaml_jax.make_meta_step(learner, opt, sample)
  else:
    step = imaml_jax.make_sharded_meta_step(learner, opt, sample, mesh)
    state = imaml_jax.replicate(state, mesh)
  key = jax.random.key(2)
  start = time.perf_counter()
  compiled = step.lower(state, key).compile()
  compile_s = time.perf_counter() - start
  jax.block_until_ready(compiled(state, key))   # warm-up
  seconds = median_time(
      lambda: jax.block_until_ready(compiled(state, key)), repeats)
  return compile_s, seconds, flops_of(compiled)


def python_loop_reference(learner, opt, theta, sample, meta_batch,
                          devices=None):
  """One meta-step that loops over tasks in Python: ``step(state, key)``.

  Tasks are drawn by a jitted sampler; a jitted single-task learner is
  called for each (the task picked inside the jitted function, so no extra
  dispatch), and a jitted Adam step applies the mean direction and averages
  the metrics: the batched step's work (whose worst-case metrics are maxima
  and minima rather than means). With several
  ``devices``, task i goes to device i mod D: the calls are dispatched
  asynchronously, so the devices work on their tasks concurrently.
  """
  sample = jax.jit(sample)
  devices = devices or [jax.devices()[0]]

  @jax.jit
  def one_task(params, tasks, i):
    task = jax.tree.map(
        lambda x: jax.lax.dynamic_slice_in_dim(x, i, 1, axis=0), tasks)
    return learner(params, task)

  @jax.jit
  def update(state, outputs):
    direction, metrics = jax.tree.map(lambda *d: sum(d) / len(d), *outputs)
    return imaml_jax.train.meta_update(opt, state, direction, metrics)

  def step(state, key):   # the tasks make_meta_step draws
    task_key, _ = jax.random.split(jax.random.fold_in(key, state.step))
    tasks = sample(task_key)
    if len(devices) == 1:
      outputs = [one_task(state.params, tasks, i) for i in range(meta_batch)]
      return update(state, outputs)
    on = [jax.device_put((state.params, tasks), d) for d in devices]
    outputs = [one_task(*on[i % len(devices)], i) for i in range(meta_batch)]
    return update(state, jax.device_put(outputs, devices[0]))

  return step


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--queries", type=int, default=1)
  p.add_argument("--meta_batch", type=int, default=32)
  add_learner_args(p)
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--algorithms", default="imaml_gd,imaml_hf,maml,fomaml,reptile")
  p.add_argument("--flops_only", action="store_true",
                 help="only print the loop-free FLOP model per algorithm")
  p.add_argument("--batching", action="store_true",
                 help="also time meta-batch 1 and the Python-loop reference")
  p.add_argument("--cpu_devices", type=int, default=0,
                 help="split the host CPU into this many JAX devices "
                      "(jax_num_cpu_devices; 0: JAX's default)")
  p.add_argument("--num_devices", type=int, default=1,
                 help="shard the meta-batch over this many devices "
                      "(make_sharded_meta_step; 0: all)")
  a = p.parse_args(argv)
  if a.cpu_devices:   # before anything initialises the CPU backend
    jax.config.update("jax_num_cpu_devices", a.cpu_devices)

  model = imaml_jax.omniglot_conv4(a.ways)
  loss = imaml_jax.cross_entropy_loss(imaml_jax.apply_fn(model))
  # Reptile adapts on train_shots (10) examples per class, the others on K.
  sampler = lambda batch, shots=a.shots: (lambda k, data=None: synthetic_tasks(
      k, batch, a.ways, shots, a.queries))
  sample = sampler(a.meta_batch)
  mesh = imaml_jax.task_mesh(a.num_devices)
  devices = mesh.shape[imaml_jax.distributed.TASKS]
  share = imaml_jax.device_share(a.meta_batch, mesh)
  theta = imaml_jax.init_params(model, jax.random.key(0),
                                sample(jax.random.key(1)).support.x[0])
  opt = optax.adam(1e-3)
  useful = model_flops(loss, theta, sample(jax.random.key(1)), a)
  if a.flops_only:
    print(json.dumps({k: round(v / 1e9, 2) for k, v in useful.items()}))
    return
  peak = matmul_flops()
  print(json.dumps({"hardware": hardware(), "matmul_gflops": round(peak / 1e9, 1),
                    "jax": jax.__version__}), flush=True)
  configs = learner_configs(a, a.algorithms.split(","))
  for name, c in configs.items():
    learner = common.build_learner(c, loss)
    shots = base.train_shots(c)
    compile_s, seconds, flops = time_meta_step(
        learner, opt, theta, sampler(share, shots), a.repeats,
        mesh if devices > 1 else None)
    row = {
        "algorithm": name, "ways": a.ways, "shots": a.shots,
        "train_shots": shots,
        "meta_batch": a.meta_batch, "task_chunk": c.task_chunk or None,
        "devices": devices,
        "system": c.system if "imaml" in name else None,
        "hardware": hardware(), "compile_s": round(compile_s, 2),
        "s_per_step": round(seconds, 4),
        "tasks_per_s": round(a.meta_batch / seconds, 1),
        "xla_gflop_per_step": round(flops / 1e9, 2),   # loop bodies once,
                                                        # one device's share
        "gflop_per_step": round(useful[name] / 1e9, 2),  # model_flops
        "gflops": round(useful[name] / seconds / 1e9, 1),
        "fraction_of_matmul": round(useful[name] / seconds / peak, 3)}
    if a.batching:
      _, one, _ = time_meta_step(learner, opt, theta, sampler(1, shots),
                                 a.repeats)
      state = imaml_jax.init_train_state(theta, opt)
      key = jax.random.key(2)

      def time_loop(on):
        loop = python_loop_reference(learner, opt, theta,
                                     sampler(a.meta_batch, shots),
                                     a.meta_batch, on)
        jax.block_until_ready(loop(state, key))   # compile
        return median_time(lambda: jax.block_until_ready(loop(state, key)),
                           a.repeats)

      loop_s = time_loop(None)
      row.update({"s_per_step_1_task": round(one, 4),
                  "batching_efficiency": round(seconds / (a.meta_batch * one),
                                               3),
                  "s_per_step_python_loop": round(loop_s, 4),
                  "speedup_vs_loop": round(loop_s / seconds, 2)})
      if devices > 1:   # the loop may spread its tasks over the devices too
        loop_d = time_loop(list(mesh.devices.flat))
        row.update({"s_per_step_python_loop_devices": round(loop_d, 4),
                    "speedup_vs_loop_devices": round(loop_d / seconds, 2)})
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
  main()
