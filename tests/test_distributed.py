"""The sharded meta-step: one device = unsharded, several = the same average.

Several devices are forced on the CPU in a subprocess
(``--xla_force_host_platform_device_count``), since the flag must be set
before jax starts.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import imaml_jax
from experiments import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A tiny iMAML problem shared by this process and the subprocess: an MLP on
# sinusoid tasks, 4 tasks per device.
PROBLEM = """
import jax, jax.numpy as jnp, optax
import imaml_jax
model = imaml_jax.MLP((8,))
loss = imaml_jax.mse_loss(imaml_jax.apply_fn(model))
learner = imaml_jax.imaml(loss, imaml_jax.gradient_descent(3, 0.05), lam=1.0,
                          cg_steps=3, system="gauss_newton")
def sampler(tasks_per_device):
  return lambda key, data: imaml_jax.sample_sinusoid_tasks(
      key, tasks_per_device, 5, 5)
theta = imaml_jax.init_params(model, jax.random.key(0), jnp.zeros((1, 1)))
"""


def problem():
  namespace = {}
  exec(PROBLEM, namespace)   # pylint: disable=exec-used
  return namespace


def test_one_device_is_bit_for_bit_the_unsharded_step():
  p = problem()
  opt = optax.adam(1e-2)
  mesh = imaml_jax.task_mesh(1)
  plain = imaml_jax.make_meta_step(p["learner"], opt, p["sampler"](4))
  sharded = imaml_jax.make_sharded_meta_step(p["learner"], opt,
                                             p["sampler"](4), mesh)
  a = imaml_jax.init_train_state(p["theta"], opt)
  b = imaml_jax.replicate(a, mesh)
  key = jax.random.key(7)
  for _ in range(3):
    a, metrics_a = plain(a, key)
    b, metrics_b = sharded(b, key)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert metrics_a.keys() == metrics_b.keys()
  for name in metrics_a:
    np.testing.assert_array_equal(metrics_a[name], metrics_b[name], name)


def test_bad_meshes_and_shares_raise():
  with pytest.raises(ValueError, match="num_devices"):
    imaml_jax.task_mesh(len(jax.devices()) + 1)
  with pytest.raises(ValueError, match="divisible"):
    imaml_jax.device_share(6, types.SimpleNamespace(shape={"tasks": 4}))
  assert imaml_jax.device_share(8, imaml_jax.task_mesh(1)) == 8
  other = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("batch",))
  with pytest.raises(ValueError, match="'tasks' axis"):
    imaml_jax.make_sharded_meta_step(lambda *a: None, optax.sgd(1.0),
                                     lambda k, d: None, other)


FOUR_DEVICES = PROBLEM + """
import json, sys
import numpy as np
from experiments import common
assert len(jax.devices()) == 4, jax.devices()
mesh = imaml_jax.task_mesh(4)
opt = optax.sgd(1.0)   # new params = theta - direction
step = imaml_jax.make_sharded_meta_step(learner, opt, sampler(2), mesh)
state = imaml_jax.replicate(imaml_jax.init_train_state(theta, opt), mesh)
key = jax.random.key(3)
new, metrics = step(state, key)
# The same tasks on one device: each device's share, drawn with its key.
task_key, _ = jax.random.split(jax.random.fold_in(key, 0))
shares = [sampler(2)(jax.random.fold_in(task_key, d), None) for d in range(4)]
tasks = jax.tree.map(lambda *t: jnp.concatenate(t), *shares)
direction, reference = learner(theta, tasks)
sharded_direction = jax.tree.map(lambda a, b: a - b, theta, new.params)
flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])
# Checkpoint written from the 4-device run, restored by the parent process.
if sys.argv[1] != "-":
  manager = common.checkpoint_manager(sys.argv[1])
  manager.save(1, args=common.ocp.args.StandardSave(new))
  manager.wait_until_finished()
if jax.process_index() == 0:
  print(json.dumps({
      "sharded": flat(sharded_direction).tolist(),
      "reference": flat(direction).tolist(),
      "metrics": {k: float(v) for k, v in metrics.items()},
      "reference_metrics": {k: float(v) for k, v in reference.items()},
      "params": flat(new.params).tolist(),
      "replicated": all(x.sharding.is_fully_replicated
                        for x in jax.tree.leaves(new))}))
"""

# Two processes with two CPU devices each, joined by jax.distributed on the
# loopback interface: the mesh spans the 4 devices of both.
TWO_PROCESSES = """
import sys, jax
jax.distributed.initialize(coordinator_address=sys.argv[2], num_processes=2,
                           process_id=int(sys.argv[3]))
""" + FOUR_DEVICES


def forced_devices_env(count):
  return dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
              XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") +
                         f" --xla_force_host_platform_device_count={count}"))


def run_forced_devices(script, count, *args):
  out = subprocess.run([sys.executable, "-c", script, *args],
                       env=forced_devices_env(count), capture_output=True,
                       text=True, check=False, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


def check_against_reference(r):
  """The sharded direction and metrics equal those of one device."""
  assert r["replicated"]   # parameters and optimizer state stay replicated
  np.testing.assert_allclose(r["sharded"], r["reference"], rtol=1e-5,
                             atol=1e-6)
  assert np.linalg.norm(r["reference"]) > 1e-3
  for name, value in r["reference_metrics"].items():
    # Means of equal shares are the global mean; *_max / *_min the worst.
    np.testing.assert_allclose(r["metrics"][name], value, rtol=1e-5,
                               atol=1e-6, err_msg=name)


def test_four_devices_in_one_process_or_two_average_the_per_device_meta_gradients(
    tmp_path):
  r = run_forced_devices(textwrap.dedent(FOUR_DEVICES), 4, str(tmp_path))
  check_against_reference(r)
  # The checkpoint of the 4-device run restores on this 1-device process.
  p = problem()
  like = imaml_jax.init_train_state(p["theta"], optax.sgd(1.0))
  restored = common.restore(common.checkpoint_manager(str(tmp_path)), like)
  flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(restored.params)])
  np.testing.assert_array_equal(flat, np.asarray(r["params"], np.float32))
  assert int(restored.step) == 1

  # The same 4 devices as two processes of two, joined on the loopback
  # interface: the one-device reference and the one-process numbers.
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{s.getsockname()[1]}"
  workers = [subprocess.Popen(
      [sys.executable, "-c", TWO_PROCESSES, "-", address, str(i)],
      env=forced_devices_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, cwd=ROOT) for i in range(2)]
  outputs = [w.communicate(timeout=300) for w in workers]
  for w, (_, err) in zip(workers, outputs):
    assert w.returncode == 0, err[-3000:]
  two = json.loads(outputs[0][0].strip().splitlines()[-1])
  check_against_reference(two)
  np.testing.assert_allclose(two["sharded"], r["sharded"], rtol=1e-6,
                             atol=1e-7)


# 500 steps through imaml_jax.run on two CPU devices; a short rendezvous
# timeout makes a deadlocked collective abort within seconds, not hang. (The
# MLP above, with fewer and smaller products, did not deadlock.)
LONG_RUN = """
import json
import jax, jax.numpy as jnp, optax
import imaml_jax
model = imaml_jax.MLP((40, 40))
loss = imaml_jax.mse_loss(imaml_jax.apply_fn(model))
def sample(key, data=None):   # 4 tasks per device
  kx, kw = jax.random.split(key)
  x = jax.random.normal(kx, (4, 20, 3))
  y = jnp.sin(x @ jax.random.normal(kw, (4, 3, 1)))
  return imaml_jax.Task(imaml_jax.Batch(x[:, :10], y[:, :10]),
                        imaml_jax.Batch(x[:, 10:], y[:, 10:]))
learner = imaml_jax.imaml(loss, imaml_jax.gradient_descent(5, 0.1), 2.0, 5,
                          task_chunk=1)
opt = optax.adam(1e-3)
theta = imaml_jax.init_params(model, jax.random.key(0), jnp.ones((1, 3)))
mesh = imaml_jax.task_mesh(2)
step = imaml_jax.make_sharded_meta_step(learner, opt, sample, mesh)
state = imaml_jax.replicate(imaml_jax.init_train_state(theta, opt), mesh)
state, history = imaml_jax.run(step, state, jax.random.key(0), 500,
                               log_every=50, progress=False)
print(json.dumps({"step": int(state.step), "logs": len(history)}))
"""


def test_many_steps_on_two_cpu_devices_do_not_deadlock_the_collective():
  # Steps dispatched ahead of each other deadlocked XLA's CPU all_gather
  # (one device waiting for the other's part, which never started) within
  # 50 steps, 3 times out of 3, until the step waited for its result on CPUs.
  env = forced_devices_env(2)
  env["XLA_FLAGS"] += (
      " --xla_cpu_collective_call_warn_stuck_timeout_seconds=5"
      " --xla_cpu_collective_call_terminate_timeout_seconds=10")
  out = subprocess.run([sys.executable, "-c", LONG_RUN], env=env, cwd=ROOT,
                       capture_output=True, text=True, check=False,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert json.loads(out.stdout.strip().splitlines()[-1]) == {"step": 500,
                                                              "logs": 10}
