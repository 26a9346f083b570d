"""The long stability check of issue 4: train, test at kept checkpoints, judge collapse.

    python -m benchmarks.stability --out runs/stability            # all runs
    python -m benchmarks.stability --out runs/stability --runs gd5w,hf5w
    python -m benchmarks.stability --out /tmp/smoke --scale 0.02   # a smoke run
    python -m benchmarks.stability --plot OUT.png --runs gd5w,hf5w \\
        --summaries S1.jsonl,S2.jsonl   # test accuracy against train minutes

Each named run is an Omniglot config with CPU-budget overrides (``RUNS``),
trained in ``<out>/<name>`` (rerunning resumes, so an interrupted check loses
at most one checkpoint interval). Afterwards each kept checkpoint is evaluated
on ``--episodes`` test episodes (``results_<step>.json``), the training
accuracy curve is judged by :func:`imaml_jax.drawdown` (collapse: a fall of
more than 10 points below its running maximum after the first 200 steps), and
one line per run goes to ``<out>/summary.jsonl`` and a markdown table to
stdout, with the training wall time at each evaluated checkpoint so runs can
be compared at equal wall-clock.
"""

from __future__ import annotations

import argparse
import json
import os

from absl import logging

import imaml_jax
from experiments import common
from experiments import evaluate as evaluate_lib
from experiments import train as train_lib
from experiments.configs import omniglot

# Budget settings shared by the CPU runs (docs/stability.md says how they
# differ from the paper's): 5 query images per class in training, lam 0.5.
_BUDGET = dict(train_queries=5, lam=0.5)
_HESSIAN_HF = dict(newton_curvature="hessian", newton_steps=3,
                   newton_cg_steps=5)
# The fastest CPU layout (docs/benchmarks.md): two CPU devices, each running
# its half of the tasks one at a time.
_CPU2 = dict(cpu_devices=2)
RUNS = {
    # name: (config argument, overrides, meta-steps, checkpoint to keep every)
    "gd5w": ("5way1shot-imaml_gd", dict(_BUDGET, meta_batch=8), 5000, 1000),
    "hf5w": ("5way1shot-imaml_hf", dict(_BUDGET, meta_batch=8), 5000, 1000),
    "gd5w_cpu2": ("5way1shot-imaml_gd", dict(_BUDGET, meta_batch=8, **_CPU2),
                  5000, 1000),
    "hf5w_cpu2": ("5way1shot-imaml_hf", dict(_BUDGET, meta_batch=8, **_CPU2),
                  5000, 1000),
    # iMAML-HF before Gauss-Newton inner curvature became its default
    "hf5w_hessian": ("5way1shot-imaml_hf", dict(_BUDGET, meta_batch=8,
                                                **_HESSIAN_HF), 5000, 1000),
    "gd20w": ("20way1shot-imaml_gd", dict(lam=0.5, meta_batch=2), 2000, 500),
    "hf20w": ("20way1shot-imaml_hf", dict(lam=0.5, meta_batch=2), 2000, 500),
    "hf20w_hessian": ("20way1shot-imaml_hf", dict(lam=0.5, meta_batch=2,
                                                  **_HESSIAN_HF), 2000, 500),
    "maml5w": ("5way1shot-maml", dict(meta_batch=32), 2500, 500),
    "maml5w_cpu2": ("5way1shot-maml", dict(meta_batch=32, **_CPU2), 2500,
                    500),
    "maml20w": ("20way1shot-maml", dict(meta_batch=2), 2000, 500),
}
COLLAPSE_DROP = 0.10


def config_for(name: str, scale: float = 1.0, data_dir: str = ""):
  arg, overrides, steps, keep = RUNS[name]
  c = omniglot.get_config(arg)
  c.update(overrides)
  c.meta_steps = max(1, round(steps * scale))
  c.keep_checkpoint_every = max(1, round(keep * scale))
  if scale != 1.0:
    c.checkpoint_every = c.eval_every = c.keep_checkpoint_every
    c.log_every = max(1, min(c.log_every, c.meta_steps // 4))
  if data_dir:
    c.data_dir = data_dir
  return c


def check(name: str, out: str, scale: float, episodes: int, data_dir: str,
          progress: bool) -> dict:
  c = config_for(name, scale, data_dir)
  workdir = os.path.join(out, name)
  train_lib.train(c, workdir, resume=True, progress=progress)
  steps, acc, seconds = common.train_curve(workdir)
  fall = imaml_jax.drawdown(steps, acc, warmup=200)
  tests = []
  for step in sorted(common.checkpoint_manager(workdir).all_steps()):
    r = evaluate_lib.evaluate(workdir, episodes=episodes, step=step)
    os.replace(os.path.join(workdir, "results.json"),
               os.path.join(workdir, f"results_{step}.json"))
    at = max((s for s in steps if s <= step), default=0)
    tests.append({"step": step, "accuracy": r["accuracy"], "ci95": r["ci95"],
                  "wide_accuracy": r["wide"]["accuracy"],
                  "wide_ci95": r["wide"]["ci95"],
                  "train_minutes": round(seconds[steps.index(at)] / 60, 2)
                  if at else 0.0})
  summary = {
      "run": name, "config": RUNS[name][0], "overrides": RUNS[name][1],
      "meta_steps": c.meta_steps, "meta_batch": c.meta_batch,
      "train_queries": c.train_queries, "test_protocol": "paper",
      "test_episodes": episodes, "collapsed": fall.drop > COLLAPSE_DROP,
      "max_drop": fall.drop, "drop_step": fall.step,
      "peak_step": fall.peak_step, "final_train_accuracy": acc[-1],
      "train_minutes": round(seconds[-1] / 60, 2), "tests": tests,
      "hardware": common.hardware(),
  }
  with open(os.path.join(out, "summary.jsonl"), "a") as f:
    f.write(json.dumps(summary) + "\n")
  return summary


def table(summaries) -> str:
  lines = ["| run | config | meta-steps | train min | max drop (step) | "
           "collapsed | test accuracy at kept checkpoints (step, train min) |",
           "|---|---|---:|---:|---|---|---|"]
  for s in summaries:
    tests = "; ".join(f"{100 * t['accuracy']:.2f} ± {100 * t['ci95']:.2f}% "
                      f"({t['step']}, {t['train_minutes']})"
                      for t in s["tests"])
    lines.append(f"| {s['run']} | {s['config']} {s['overrides']} | "
                 f"{s['meta_steps']} | {s['train_minutes']} | "
                 f"{100 * s['max_drop']:.1f} pts ({s['drop_step']}) | "
                 f"{'YES' if s['collapsed'] else 'no'} | {tests} |")
  return "\n".join(lines)


def read_summaries(paths) -> dict[str, dict]:
  """Run name -> summary line, from summary.jsonl files (later files win)."""
  summaries = {}
  for path in paths:
    with open(path) as f:
      summaries.update({s["run"]: s for s in map(json.loads, f)})
  return summaries


def plot_wall_clock(summaries, out: str) -> None:
  """Test accuracy ± 95% CI at kept checkpoints against training minutes."""
  import matplotlib   # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt   # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for s in summaries:
    tests = [t for t in s["tests"] if t["train_minutes"] > 0]
    ax.errorbar([t["train_minutes"] for t in tests],
                [100 * t["accuracy"] for t in tests],
                yerr=[100 * t["ci95"] for t in tests], marker="o",
                capsize=3, label=s["run"])
  ax.set_xlabel("training minutes (logged wall time of the meta-steps)")
  ax.set_ylabel(f"test accuracy, % ({summaries[0]['test_episodes']} episodes)")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(out, dpi=120)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="runs/stability")
  p.add_argument("--runs", default="gd5w,hf5w,gd20w,hf20w",
                 help=f"comma-separated, from {sorted(RUNS)}")
  p.add_argument("--scale", type=float, default=1.0,
                 help="multiplies meta-steps and intervals (smoke tests)")
  p.add_argument("--episodes", type=int, default=600)
  p.add_argument("--data_dir", default="", help="TFDS data dir")
  p.add_argument("--noprogress", dest="progress", action="store_false")
  p.add_argument("--plot", default="",
                 help="only plot --runs from --summaries into this PNG")
  p.add_argument("--summaries", default="",
                 help="comma-separated summary.jsonl files, for --plot")
  a = p.parse_args(argv)
  names = a.runs.split(",")
  if a.plot:
    found = read_summaries(a.summaries.split(",") if a.summaries else [])
    missing = [n for n in names if n not in found]
    if missing:
      p.error(f"runs {missing} are in none of the summaries; they hold "
              f"{sorted(found)}")
    plot_wall_clock([found[n] for n in names], a.plot)
    return
  unknown = sorted(set(names) - set(RUNS))
  if unknown:
    p.error(f"unknown runs {unknown}; choose from {sorted(RUNS)}")
  cpu = {RUNS[n][1].get("cpu_devices", 0) for n in names} - {0}
  if len(cpu) > 1:
    p.error(f"the runs ask for different cpu_devices {sorted(cpu)}; run them "
            f"in separate calls")
  if cpu:   # before JAX starts; one-device runs use the first CPU device
    train_lib.split_cpu(cpu.pop())
  logging.set_verbosity(logging.WARNING)
  os.makedirs(a.out, exist_ok=True)
  summaries = [check(n, a.out, a.scale, a.episodes, a.data_dir, a.progress)
               for n in names]
  print(table(summaries))
  if any(s["collapsed"] for s in summaries):
    raise SystemExit("collapse detected: " + ", ".join(
        s["run"] for s in summaries if s["collapsed"]))


if __name__ == "__main__":
  main()
