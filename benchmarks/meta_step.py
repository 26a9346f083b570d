"""Times one jitted meta-step per algorithm on Omniglot-shaped synthetic tasks.

    python -m benchmarks.meta_step                    # 5-way 1-shot, meta-batch 32
    python -m benchmarks.meta_step --ways 20 --meta_batch 16 --inner_steps 25

Random images stand in for Omniglot (same shapes, same model and math), so
this measures speed only. Prints compile time, median seconds per meta-step
after compilation and tasks per second, one JSON line per algorithm.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import optax

import imaml_jax
from experiments.common import cpu_name


def synthetic_tasks(key, meta_batch, ways, shots, queries, size=28):
  ks, kq = jax.random.split(key)
  labels = lambda n: jax.numpy.tile(jax.numpy.arange(ways), (meta_batch, n))
  images = lambda k, n: jax.random.uniform(k, (meta_batch, ways * n, size,
                                               size, 1))
  return imaml_jax.Task(imaml_jax.Batch(images(ks, shots), labels(shots)),
                        imaml_jax.Batch(images(kq, queries), labels(queries)))


def learners(loss, a):
  return {
      "imaml_gd": imaml_jax.imaml(
          loss, imaml_jax.gradient_descent(a.inner_steps, a.inner_lr), a.lam,
          a.cg_steps),
      "imaml_hf": imaml_jax.imaml(
          loss, imaml_jax.newton_cg(a.newton_steps, cg_steps=a.cg_steps),
          a.lam, a.cg_steps),
      "maml": imaml_jax.maml(loss, a.maml_steps, a.maml_lr),
      "fomaml": imaml_jax.fomaml(loss, a.maml_steps, a.maml_lr),
      "reptile": imaml_jax.reptile(loss, a.inner_steps, a.inner_lr),
  }


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--ways", type=int, default=5)
  p.add_argument("--shots", type=int, default=1)
  p.add_argument("--queries", type=int, default=1)
  p.add_argument("--meta_batch", type=int, default=32)
  p.add_argument("--inner_steps", type=int, default=16)
  p.add_argument("--inner_lr", type=float, default=0.1)
  p.add_argument("--newton_steps", type=int, default=3)
  p.add_argument("--lam", type=float, default=2.0)
  p.add_argument("--cg_steps", type=int, default=5)
  p.add_argument("--maml_steps", type=int, default=1)
  p.add_argument("--maml_lr", type=float, default=0.4)
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--algorithms", default="imaml_gd,imaml_hf,maml,fomaml,reptile")
  a = p.parse_args(argv)

  model = imaml_jax.omniglot_conv4(a.ways)
  loss = imaml_jax.cross_entropy_loss(imaml_jax.apply_fn(model))
  sample = lambda k, data=None: synthetic_tasks(k, a.meta_batch, a.ways, a.shots,
                                     a.queries)
  theta = imaml_jax.init_params(model, jax.random.key(0),
                                sample(jax.random.key(1)).support.x[0])
  opt = optax.adam(1e-3)
  device = jax.devices()[0]
  hardware = device.device_kind if device.platform != "cpu" else cpu_name()
  for name, learner in learners(loss, a).items():
    if name not in a.algorithms.split(","):
      continue
    step = imaml_jax.make_meta_step(learner, opt, sample)
    state = imaml_jax.init_train_state(theta, opt)
    key = jax.random.key(2)
    start = time.perf_counter()
    state, metrics = step(state, key)
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(a.repeats):
      start = time.perf_counter()
      state, metrics = step(state, key)
      jax.block_until_ready(state)
      times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(json.dumps({
        "algorithm": name, "ways": a.ways, "shots": a.shots,
        "meta_batch": a.meta_batch, "platform": device.platform,
        "hardware": hardware, "compile_s": round(compile_s, 2),
        "s_per_step": round(median, 4),
        "tasks_per_s": round(a.meta_batch / median, 1),
        "query_loss": round(float(metrics["query_loss"]), 4)}), flush=True)


if __name__ == "__main__":
  main()
