"""The benchmark harness's bookkeeping, on hand-written logs (no training)."""

import json

import pytest

from benchmarks import meta_step
from benchmarks import stability
from experiments import common
from experiments import plot_runs


def write_log(path, rows):
  with open(path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)


def test_train_curve_accumulates_interval_times_and_skips_replayed_steps(
    tmp_path):
  rows = [{"kind": "train", "step": 50, "query_accuracy": 0.5,
           "seconds_per_step": 0.2},
          {"kind": "validation", "step": 50, "accuracy": 0.4},
          {"kind": "train", "step": 100, "query_accuracy": 0.7,
           "seconds_per_step": 0.4},
          # A resumed run restarts after its last checkpoint and may log a
          # step it already logged: counted once.
          {"kind": "train", "step": 100, "query_accuracy": 0.1,
           "seconds_per_step": 9.0},
          {"kind": "train", "step": 200, "query_accuracy": 0.6,
           "seconds_per_step": 0.1}]
  write_log(tmp_path / "metrics.jsonl", rows)
  steps, acc, seconds = common.train_curve(str(tmp_path))
  assert steps == [50, 100, 200]
  assert acc == [0.5, 0.7, 0.6]
  assert seconds == [10.0, 30.0, 40.0]   # 50 x 0.2, + 50 x 0.4, + 100 x 0.1


def test_stability_table_names_collapsed_runs():
  summary = {"run": "gd5w", "config": "5way1shot-imaml_gd", "overrides": {},
             "meta_steps": 5000, "train_minutes": 20.5, "max_drop": 0.15,
             "drop_step": 3000, "collapsed": True,
             "tests": [{"step": 1000, "accuracy": 0.9, "ci95": 0.01,
                        "train_minutes": 4.1}]}
  table = stability.table([summary])
  assert "| gd5w |" in table and "YES" in table and "15.0 pts (3000)" in table
  assert "90.00 ± 1.00% (1000, 4.1)" in table


def test_every_stability_run_meets_the_issue_step_counts():
  # Issue 4's acceptance: 5-way runs >= 5,000 meta-steps, 20-way >= 2,000.
  for name in ("gd5w", "hf5w", "gd20w", "hf20w"):
    c = stability.config_for(name)
    assert c.meta_steps >= (5000 if c.ways == 5 else 2000), name
    assert c.algorithm == {"gd": "imaml_gd", "hf": "imaml_hf"}[name[:2]]


def test_cost_analysis_counts_a_matmul():
  import jax
  import jax.numpy as jnp
  x = jnp.ones((8, 16))
  compiled = jax.jit(lambda a, b: a @ b).lower(x, x.T).compile()
  assert meta_step.flops_of(compiled) == 2 * 8 * 16 * 8


def test_plot_runs_writes_a_png_with_curvature_panels(tmp_path):
  rows = [{"kind": "train", "step": s, "query_accuracy": 0.1 * s,
           "cg_curvature_min": 1.0 - s, "cg_relative_residual": 0.1}
          for s in (1, 2, 3)]
  write_log(tmp_path / "a.jsonl", rows)
  out = tmp_path / "a.png"
  plot_runs.main([str(out), f"{tmp_path / 'a.jsonl'}=run a", "--metrics",
                  "query_accuracy,cg_curvature_min,cg_relative_residual,"
                  "query_accuracy,query_accuracy"])
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_runs_reads_validation_accuracy_from_the_validation_rows():
  rows = [{"kind": "start", "step": 0},
          {"kind": "train", "step": 50, "query_accuracy": 0.5},
          {"kind": "validation", "step": 100, "accuracy": 0.9},
          {"step": 100, "query_accuracy": 0.6}]   # older logs: no kind
  assert plot_runs.points(rows, "validation_accuracy") == [(100, 0.9)]
  assert plot_runs.points(rows, "query_accuracy") == [(50, 0.5), (100, 0.6)]


_LOOP_SCRIPT = """
import jax
jax.config.update("jax_num_cpu_devices", 2)
import jax.numpy as jnp, numpy as np, optax
import imaml_jax
from benchmarks import meta_step

loss = imaml_jax.mse_loss(imaml_jax.apply_fn(imaml_jax.MLP((8,))))
def sample(key, data=None):   # 4 linear-regression tasks
  kx, kw = jax.random.split(key)
  x = jax.random.normal(kx, (4, 20, 3))
  y = x @ jax.random.normal(kw, (4, 3, 1))
  return imaml_jax.Task(imaml_jax.Batch(x[:, :10], y[:, :10]),
                        imaml_jax.Batch(x[:, 10:], y[:, 10:]))
learner = imaml_jax.imaml(loss, imaml_jax.gradient_descent(5, 0.1), 2.0, 5)
opt = optax.sgd(0.1)   # Adam's first step, sign(direction), is too coarse
theta = imaml_jax.init_params(imaml_jax.MLP((8,)), jax.random.key(0),
                              jnp.ones((1, 3)))
state = imaml_jax.init_train_state(theta, opt)
key = jax.random.key(1)
batched = imaml_jax.make_meta_step(learner, opt, sample)(state, key)
for devices in (None, jax.devices()):
  looped = meta_step.python_loop_reference(learner, opt, theta, sample, 4,
                                           devices)(state, key)
  assert int(looped[0].step) == 1
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  jax.tree.map(close, batched[0], looped[0])   # the new state
  # Metrics that are task means (the loop averages worst cases too).
  means = [k for k in batched[1] if not k.endswith(("_max", "_min"))
           and k != "meta_grad_norm"]
  assert len(means) > 5, means
  for k in means:
    close(batched[1][k], looped[1][k])
print("ok", len(jax.devices()))
"""


def test_python_loop_reference_takes_the_batched_step_on_one_or_two_devices():
  # The reference of speedup_vs_loop must do the batched step's math: same
  # tasks, directions, update and task metrics, whether its tasks go to one
  # device or alternate between two.
  import os
  import subprocess
  import sys
  repo = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  out = subprocess.run([sys.executable, "-c", _LOOP_SCRIPT], cwd=repo,
                       env=dict(os.environ, PYTHONPATH=repo,
                                JAX_PLATFORMS="cpu"),
                       capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.split() == ["ok", "2"]


def test_wall_clock_plot_reads_summaries_later_files_winning(tmp_path):
  def summary(run, acc):
    return {"run": run, "test_episodes": 600,
            "tests": [{"step": 0, "accuracy": 0.2, "ci95": 0.0,
                       "train_minutes": 0.0},   # before training: not drawn
                      {"step": 500, "accuracy": acc, "ci95": 0.01,
                       "train_minutes": 2.5}]}
  write_log(tmp_path / "old.jsonl", [summary("a", 0.5), summary("b", 0.6)])
  write_log(tmp_path / "new.jsonl", [summary("a", 0.9)])
  files = [str(tmp_path / "old.jsonl"), str(tmp_path / "new.jsonl")]
  found = stability.read_summaries(files)
  assert found["a"]["tests"][1]["accuracy"] == 0.9 and set(found) == {"a", "b"}
  out = tmp_path / "wall.png"
  stability.main(["--plot", str(out), "--summaries", ",".join(files),
                  "--runs", "a,b"])
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(SystemExit):   # a run no summary holds
    stability.main(["--plot", str(out), "--summaries", files[0],
                    "--runs", "a,c"])


def parse_meta_step_flags(argv):
  import argparse
  p = argparse.ArgumentParser()
  meta_step.add_learner_args(p)
  return p.parse_args(argv)


def test_benchmark_learners_are_the_training_configs_learners():
  from experiments.configs import omniglot
  configs = meta_step.learner_configs(parse_meta_step_flags([]))
  assert set(configs) == set(meta_step.ALGORITHMS)
  for name, c in configs.items():
    assert c.to_dict() == omniglot.get_config(f"5way1shot-{name}").to_dict()


def test_benchmark_flags_change_only_the_fields_they_name():
  from experiments.configs import omniglot
  a = parse_meta_step_flags(["--ways", "20", "--maml_steps", "3",
                             "--inner_steps", "7", "--system", "exact"])
  configs = meta_step.learner_configs(a)
  assert configs["maml"].inner_steps == configs["fomaml"].inner_steps == 3
  assert configs["imaml_gd"].inner_steps == configs["reptile"].inner_steps == 7
  assert configs["imaml_hf"].system == configs["imaml_gd"].system == "exact"
  default = omniglot.get_config("20way1shot-imaml_hf").to_dict()
  changed = {k for k, v in configs["imaml_hf"].to_dict().items()
             if default[k] != v}
  assert changed == {"system", "inner_steps"}
