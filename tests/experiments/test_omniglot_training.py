"""Training and evaluation entry points on the real Omniglot data."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import train
from experiments.configs import omniglot as omniglot_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_overrides(data_dir, steps):
  # 16 filters per conv instead of Omniglot's 64: the same pipeline at a
  # quarter of the channels (the suite's time goes to compiling and running).
  return {"meta_steps": steps, "meta_batch": 4, "filters": 16, "log_every": 5,
          "eval_every": 1000, "val_episodes": 20, "checkpoint_every": 10,
          "test_episodes": 50, "data_dir": data_dir}


def command(workdir, data_dir, steps, resume=False):
  cmd = [sys.executable, "-m", "experiments.train", "--noprogress",
         "--config", "experiments/configs/omniglot.py:5way1shot-maml",
         "--workdir", workdir]
  cmd += [f"--config.{k}={v}" for k, v in tiny_overrides(data_dir, steps).items()]
  return cmd + (["--resume"] if resume else [])


def test_config_names_are_checked():
  c = omniglot_config.get_config("20way5shot-imaml_hf")
  assert (c.ways, c.shots, c.meta_batch, c.algorithm) == (20, 5, 16, "imaml_hf")
  with pytest.raises(ValueError, match="5way1shot-imaml_gd"):
    omniglot_config.get_config("5way1shot-protonet")


def test_meta_steps_reduce_training_loss_and_evaluation_writes_results(
    omniglot_data_dir, tmp_path):
  from experiments import evaluate, train
  c = omniglot_config.get_config("5way1shot-maml")
  c.update(tiny_overrides(omniglot_data_dir, 60))
  # 16 tasks a step at meta_lr 1e-2: the 16-filter Conv4's query loss falls to
  # 0.67x in 60 steps (to 0.77x at 3e-3; 64 filters at 1e-3: 0.49x in twice
  # the time).
  c.meta_batch, c.meta_lr = 16, 1e-2
  train.train(c, str(tmp_path), progress=False)
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  losses = [r["query_loss"] for r in rows if r["kind"] == "train"]
  assert len(losses) == 12
  assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
  assert any(r["kind"] == "validation" for r in rows)
  assert os.listdir(tmp_path / "tb")
  results = evaluate.evaluate(str(tmp_path), episodes=100)
  saved = json.load(open(tmp_path / "results.json"))
  assert saved == results
  for key in ("algorithm", "setting", "accuracy", "ci95", "episodes",
              "protocol", "wide", "meta_steps", "seed", "train_seconds",
              "hardware", "date", "commit"):
    assert key in saved
  # The headline figure is the paper protocol's; the wide one is beside it.
  assert saved["protocol"]["name"] == "paper"
  assert saved["protocol"]["queries_per_class"] == 1
  assert saved["protocol"]["rotate_test_classes"]
  assert saved["protocol"]["test_inner_steps"] == 3   # MAML, 5-way Omniglot
  assert saved["wide"]["protocol"]["queries_per_class"] == 5
  assert saved["episodes"] == saved["wide"]["episodes"] == 100
  assert saved["meta_steps"] == 60
  for figure in (saved, saved["wide"]):
    assert 0.3 < figure["accuracy"] <= 1.0   # chance is 0.2


def final_params(workdir):
  from experiments import evaluate
  return evaluate.load_run(workdir).state


def test_a_config_asking_for_cpu_devices_jax_lacks_fails_with_the_fix(
    tmp_path):
  from experiments import train
  c = omniglot_config.get_config("5way1shot-maml")
  c.cpu_devices = 3   # this process's JAX has already started with one
  c.meta_batch = 6
  with pytest.raises(ValueError, match="cpu_devices=3.*split_cpu"):
    train.train(c, str(tmp_path), progress=False)
  assert not os.listdir(tmp_path)   # nothing written


def test_non_finite_training_stops_with_one_line_and_finite_checkpoints(
    omniglot_data_dir, tmp_path):
  workdir = str(tmp_path / "nan")
  cmd = command(workdir, omniglot_data_dir, 20) + [
      "--config.inner_lr=nan", "--config.max_nonfinite_steps=3",
      "--config.log_every=1", "--config.checkpoint_every=2"]
  done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                        check=False)
  assert done.returncode == 1, done.stderr[-2000:]
  last = done.stderr.strip().splitlines()[-1]
  assert last.startswith("error: stopped at step 3: 3 meta-steps in a row"), last
  state = final_params(workdir)
  assert int(state.step) == 2   # the checkpoint before the stop
  import jax
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))
  assert int(state.opt_state.total_notfinite) == 2
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [r["kind"] for r in rows] == ["start"] + 3 * ["train"]
  rows = rows[1:]
  assert [r["nonfinite_in_a_row_max"] for r in rows] == [1.0, 2.0, 3.0]
  assert all("nonfinite_steps" in r["flags"] for r in rows)


def test_only_imaml_inner_solves_are_flagged_unconverged():
  """MAML's, first-order MAML's and Reptile's inner loops are a few steps by
  design: a large final-over-initial gradient ratio is flagged for iMAML only."""
  class Log:
    def __init__(self):
      self.lines = []

    def show(self, line):
      self.lines.append(line)

    def write(self, kind, step, metrics):
      del kind, step, metrics

  for algorithm, flagged in (("imaml_gd", True), ("imaml_hf", True),
                             ("maml", False), ("reptile", False)):
    log = Log()
    on_log = train._monitor(
        omniglot_config.get_config(f"5way1shot-{algorithm}"), log)
    on_log(50, {"seconds_per_step": 0.1, "inner_grad_ratio_max": 0.9})
    assert any("inner solve not converged" in line
               for line in log.lines) == flagged, algorithm

