"""The training script killed in one process and resumed in two.

One run is the reference: one process with its CPU split into two devices.
The same run, killed after its first checkpoint and resumed as two processes
of one device each (jax.distributed on 127.0.0.1), ends where the reference
ended, bit for bit: a kill at any moment and a restore onto another process
layout lose nothing. (A one-process resume on another machine is tested in
test_reproduce, in process.) Every run compiles the same first-order MAML
step, so the XLA cache serves most of them.
"""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

import chex

from experiments import evaluate

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 20


def command(workdir, data_dir, cpu_devices, resume=False, extra=()):
  # First-order MAML with 16 filters, one validation at the end: the cheapest
  # step and hooks to compile and run, 4 times; what is tested is the
  # processes, not the algorithm.
  settings = {"meta_steps": STEPS, "meta_batch": 4, "filters": 16,
              "log_every": 5, "eval_every": STEPS, "val_episodes": 20,
              "checkpoint_every": 5, "cpu_devices": cpu_devices,
              "data_dir": data_dir}
  return ([sys.executable, "-m", "experiments.train", "--noprogress",
           "--config", "experiments/configs/omniglot.py:5way1shot-fomaml",
           "--workdir", workdir]
          + [f"--config.{k}={v}" for k, v in settings.items()]
          + (["--resume"] if resume else []) + list(extra))


def free_address():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return f"127.0.0.1:{s.getsockname()[1]}"


def resume_in_two(workdir, data_dir):
  address = free_address()
  return [subprocess.Popen(
      command(workdir, data_dir, 1, True, ["--coordinator_address", address,
                                           "--num_processes", "2",
                                           "--process_id", str(i)]),
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]


def finish(workers):
  outputs = [w.communicate(timeout=600) for w in workers]
  for w, (_, err) in zip(workers, outputs):
    assert w.returncode == 0, err[-3000:]
  return outputs


def rows(workdir):
  return [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]


def kill_after_first_checkpoint(worker, workdir):
  """SIGKILLs ``worker`` once its run in ``workdir`` has a checkpoint."""
  first = os.path.join(workdir, "checkpoints", "5")
  deadline = time.time() + 300
  while not os.path.isdir(first) and time.time() < deadline:
    assert worker.poll() is None, worker.communicate()[1][-2000:]
    time.sleep(0.05)
  worker.send_signal(signal.SIGKILL)
  worker.communicate()
  saved = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints"))
                 if d.isdigit())
  assert saved and max(saved) < STEPS, saved   # interrupted mid-run


def test_a_run_killed_in_one_process_and_resumed_in_two_ends_as_the_straight_run(
    omniglot_data_dir, tmp_path):
  one, two = (str(tmp_path / name) for name in ("one", "two"))
  straight = subprocess.run(command(one, omniglot_data_dir, 2), cwd=REPO,
                            check=True, capture_output=True, text=True)
  assert "x 2 devices (2 tasks each)" in straight.stdout
  assert [r["step"] for r in rows(one) if r["kind"] == "train"] == [5, 10, 15,
                                                                   20]
  assert all(math.isfinite(r["query_loss"]) for r in rows(one)
             if r["kind"] == "train")
  # This process has one device: the replicated checkpoint restores here.
  results = evaluate.evaluate(one, ("wide",), episodes=20, output=None)
  assert results["meta_steps"] == STEPS and 0.0 < results["accuracy"] <= 1.0

  # The same run killed after a checkpoint, resumed as two processes of one
  # device each.
  kill_after_first_checkpoint(subprocess.Popen(
      command(two, omniglot_data_dir, 2), cwd=REPO, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True), two)
  outputs = finish(resume_in_two(two, omniglot_data_dir))
  assert "resumed from step" in outputs[0][0]
  quiet = [l for l in outputs[1][0].splitlines()
           if l.strip() and not l.startswith("[Gloo]")]   # gloo's own note
  assert quiet == [] and "step" in outputs[0][0]   # only process 0 reports

  reference = evaluate.load_run(one).state
  assert int(reference.step) == STEPS
  # One log, written once (process 0's): train rows replayed after a resume
  # count once.
  train = lambda w: {r["step"]: r["query_loss"] for r in rows(w)
                     if r["kind"] == "train"}
  val = lambda w: [(r["step"], r["accuracy"]) for r in rows(w)
                   if r["kind"] == "validation"]
  chex.assert_trees_all_equal(evaluate.load_run(two).state, reference)
  assert train(two) == train(one)
  assert val(two)[-1] == val(one)[-1]


def test_a_partial_process_spec_is_one_line():
  done = subprocess.run(
      [sys.executable, "-m", "experiments.train", "--num_processes", "2"],
      cwd=REPO, capture_output=True, text=True, check=False)
  assert done.returncode == 2
  assert done.stderr.strip().splitlines()[-1].startswith(
      "error: a multi-process run needs all of --coordinator_address")
