"""Meta-steps per second with the task batch sharded over 1, 2, 4 devices.

    python -m benchmarks.scaling                       # forced CPU devices
    python -m benchmarks.scaling --devices 1,2,4 --algorithm imaml_gd
    python -m benchmarks.scaling --real                # the machine's own devices

Each device count runs in its own subprocess. Without ``--real`` the CPU is
split into N devices by ``--xla_force_host_platform_device_count=N``: the N
devices then share the same cores, so this measures the overhead of
sharding, not a speed-up. With ``--real`` the process sees the machine's
devices (e.g. GPUs) and uses the first N. The meta-batch (default 32) is
split evenly. The tasks are Omniglot-shaped synthetic ones, from
``benchmarks.meta_step``. Prints one JSON line per device count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from benchmarks import meta_step


def measure(a, devices: int) -> dict:
  import jax   # pylint: disable=import-outside-toplevel
  import optax   # pylint: disable=import-outside-toplevel
  import imaml_jax   # pylint: disable=import-outside-toplevel
  from experiments.common import hardware   # pylint: disable=import-outside-toplevel

  mesh = imaml_jax.task_mesh(devices)
  share = imaml_jax.device_share(a.meta_batch, mesh)
  model = imaml_jax.omniglot_conv4(a.ways)
  loss = imaml_jax.cross_entropy_loss(imaml_jax.apply_fn(model))
  sample = lambda k, data=None: meta_step.synthetic_tasks(k, share, a.ways,
                                                          a.shots, a.shots)
  theta = imaml_jax.init_params(model, jax.random.key(0),
                                sample(jax.random.key(1)).support.x[0])
  learner = meta_step.learners(loss, a, [a.algorithm])[a.algorithm]
  opt = optax.adam(1e-3)
  step = imaml_jax.make_sharded_meta_step(learner, opt, sample, mesh)
  state = imaml_jax.replicate(imaml_jax.init_train_state(theta, opt), mesh)
  key = jax.random.key(2)
  jax.block_until_ready(step(state, key))   # compile
  seconds = meta_step.median_time(
      lambda: jax.block_until_ready(step(state, key)), a.repeats)
  return {"algorithm": a.algorithm, "devices": devices,
          "tasks_per_device": share, "meta_batch": a.meta_batch,
          "hardware": hardware(), "forced_cpu_devices": not a.real,
          "s_per_step": round(seconds, 4),
          "steps_per_s": round(1 / seconds, 2)}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--devices", default="1,2,4")
  p.add_argument("--algorithm", default="imaml_gd")
  p.add_argument("--real", action="store_true",
                 help="use the machine's devices instead of forced CPU ones")
  p.add_argument("--meta_batch", type=int, default=32)
  p.add_argument("--repeats", type=int, default=10)
  meta_step.add_learner_args(p)   # --ways, --shots, the learner flags
  p.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)
  a = p.parse_args(argv)
  if a.one:
    print(json.dumps(measure(a, a.one)), flush=True)
    return
  passed = list(argv if argv is not None else sys.argv[1:])
  for n in map(int, a.devices.split(",")):
    env = dict(os.environ)
    if not a.real:
      env["JAX_PLATFORMS"] = "cpu"
      env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                          f" --xla_force_host_platform_device_count={n}")
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.scaling", *passed, "--one", str(n)],
        env=env, capture_output=True, text=True, check=False)
    if child.returncode:
      raise SystemExit(f"{n} devices failed:\n{child.stderr[-3000:]}")
    print(child.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
  main()
