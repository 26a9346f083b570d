"""Compute and memory of one meta-gradient versus inner steps (paper, Figure 2).

    python -m benchmarks.inner_steps --out docs/figures/inner_steps.png
    python -m benchmarks.inner_steps --steps 1,5 --repeats 1 --out /tmp/x.png

On 20-way 5-shot Omniglot-shaped tasks (random images; 5 query images per
class) with the Omniglot Conv4, one jitted meta-gradient (``learner(theta,
tasks)`` over ``--meta_batch`` tasks) is compiled and timed for each algorithm
and each number of inner steps K:

* iMAML-GD: K gradient steps of 0.1 on G, lam 2, 5 CG steps (exact system);
* iMAML-HF: K Newton-CG steps (5 CG steps each, line search), same backward;
* MAML: K unrolled gradient steps of 0.1, differentiated by reverse mode;
* first-order MAML: K gradient steps of 0.1, query gradient at phi.

Memory is measured twice: XLA's memory analysis of the compiled computation
(arguments + outputs + temporaries, the buffers the program needs at once),
and the peak resident set size while it runs, in a fresh process that
compiles and runs only that one configuration (each (algorithm, K) runs in its
own subprocess, so the peaks do not mix). The peak is reset after compilation
(``/proc/self/clear_refs``; compiling alone takes hundreds of MB), so
``rss_growth_mb`` = peak RSS during the runs minus the RSS before them. One JSON line per configuration, then a PNG with seconds and
both memories against K.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

ALGORITHMS = ("imaml_gd", "imaml_hf", "maml", "fomaml")
LABELS = {"imaml_gd": "iMAML-GD", "imaml_hf": "iMAML-HF", "maml": "MAML",
          "fomaml": "first-order MAML"}


def _status_mb(field: str) -> float:
  """``VmRSS`` (resident now) or ``VmHWM`` (peak) of this process, in MB."""
  with open("/proc/self/status") as f:
    kb = next(l.split()[1] for l in f if l.startswith(field + ":"))
  return int(kb) / 1024


def _reset_peak_rss() -> None:
  """Resets VmHWM to the current RSS (Linux >= 4.0), so later peaks exclude
  what compilation used."""
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")


def settings(algorithm: str, steps: int, inner_lr: float, lam: float,
             cg_steps: int) -> dict:
  """Config fields for K inner steps of ``algorithm``'s kind (GD, Newton-CG
  on the Hessian with ``cg_steps`` CG steps, unrolled), one learning rate,
  the paper's exact system."""
  if algorithm == "imaml_hf":
    return dict(newton_steps=steps, newton_curvature="hessian",
                newton_cg_steps=cg_steps, lam=lam, cg_steps=cg_steps,
                system="exact")
  fields = dict(inner_steps=steps, inner_lr=inner_lr)
  if algorithm == "imaml_gd":
    fields.update(lam=lam, cg_steps=cg_steps, system="exact")
  return fields


def xla_memory_mb(compiled) -> float:
  """MB of buffers a compiled computation needs at once (XLA's analysis):
  arguments + outputs + temporaries - aliased."""
  mem = compiled.memory_analysis()
  return (mem.argument_size_in_bytes + mem.output_size_in_bytes +
          mem.temp_size_in_bytes - mem.alias_size_in_bytes) / 2 ** 20


def measure(algorithm: str, steps: int, a) -> dict:
  """Compiles and times one (algorithm, K) in this process."""
  import jax   # pylint: disable=import-outside-toplevel
  import imaml_jax   # pylint: disable=import-outside-toplevel
  from benchmarks import meta_step   # pylint: disable=import-outside-toplevel
  from experiments import common   # pylint: disable=import-outside-toplevel
  from experiments.common import hardware   # pylint: disable=import-outside-toplevel

  model = imaml_jax.omniglot_conv4(a.ways)
  loss = imaml_jax.cross_entropy_loss(imaml_jax.apply_fn(model))
  tasks = meta_step.synthetic_tasks(jax.random.key(1), a.meta_batch, a.ways,
                                    a.shots, a.queries)
  theta = imaml_jax.init_params(model, jax.random.key(0), tasks.support.x[0])
  c = meta_step.learner_config(
      algorithm, a.ways, a.shots,
      **settings(algorithm, steps, a.inner_lr, a.lam, a.cg_steps))
  learner = common.build_learner(c, loss)
  meta_gradient = jax.jit(lambda th, t: learner(th, t)[0])
  start = time.perf_counter()
  compiled = meta_gradient.lower(theta, tasks).compile()
  compile_s = time.perf_counter() - start
  mem = compiled.memory_analysis()
  _reset_peak_rss()
  rss_before = _status_mb("VmRSS")
  jax.block_until_ready(compiled(theta, tasks))   # warm-up
  seconds = meta_step.median_time(
      lambda: jax.block_until_ready(compiled(theta, tasks)), a.repeats)
  return {"algorithm": algorithm, "inner_steps": steps, "ways": a.ways,
          "shots": a.shots, "queries": a.queries, "meta_batch": a.meta_batch,
          "hardware": hardware(), "compile_s": round(compile_s, 2),
          "seconds": round(seconds, 4),
          "xla_memory_mb": round(xla_memory_mb(compiled), 2),
          "xla_temp_mb": round(mem.temp_size_in_bytes / 2 ** 20, 2),
          "rss_peak_mb": round(_status_mb("VmHWM"), 1),
          "rss_growth_mb": round(_status_mb("VmHWM") - rss_before, 1)}


def plot(rows, out: str, title: str) -> None:
  import matplotlib   # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt   # pylint: disable=import-outside-toplevel

  panels = (("seconds", "seconds per meta-gradient"),
            ("xla_memory_mb", "compiled buffers (MB, XLA analysis)"),
            ("rss_growth_mb", "process peak RSS growth (MB)"))
  fig, axes = plt.subplots(1, len(panels), figsize=(13, 3.8))
  for ax, (key, label) in zip(axes, panels):
    for alg in ALGORITHMS:
      pts = sorted((r["inner_steps"], r[key]) for r in rows
                   if r["algorithm"] == alg)
      if pts:
        ax.plot(*zip(*pts), marker="o", label=LABELS[alg])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("inner steps K")
    ax.set_title(label)
    ax.grid(alpha=0.3, which="both")
  axes[0].legend()
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(out, dpi=110)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="runs/inner_steps.png", help="PNG to write")
  p.add_argument("--json", default="", help="also write the rows here")
  p.add_argument("--steps", default="1,5,10,25,50,100")
  p.add_argument("--algorithms", default=",".join(ALGORITHMS))
  p.add_argument("--ways", type=int, default=20)
  p.add_argument("--shots", type=int, default=5)
  p.add_argument("--queries", type=int, default=5)
  p.add_argument("--meta_batch", type=int, default=1)
  p.add_argument("--inner_lr", type=float, default=0.1)
  p.add_argument("--lam", type=float, default=2.0)
  p.add_argument("--cg_steps", type=int, default=5)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--one", default="", help=argparse.SUPPRESS)  # ALG:K, child
  a = p.parse_args(argv)
  if a.one:
    algorithm, steps = a.one.split(":")
    print(json.dumps(measure(algorithm, int(steps), a)), flush=True)
    return
  unknown = set(a.algorithms.split(",")) - set(ALGORITHMS)
  if unknown:
    p.error(f"unknown algorithms {sorted(unknown)}; choose from {ALGORITHMS}")
  rows = []
  passed = [x for x in (argv if argv is not None else sys.argv[1:])]
  for algorithm in a.algorithms.split(","):
    for steps in map(int, a.steps.split(",")):
      child = subprocess.run(
          [sys.executable, "-m", "benchmarks.inner_steps", *passed,
           "--one", f"{algorithm}:{steps}"],
          capture_output=True, text=True, check=False)
      if child.returncode:
        raise SystemExit(f"{algorithm} K={steps} failed:\n{child.stderr}")
      row = json.loads(child.stdout.strip().splitlines()[-1])
      print(json.dumps(row), flush=True)
      rows.append(row)
  if a.json:
    with open(a.json, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
  plot(rows, a.out, f"One meta-gradient, {a.ways}-way {a.shots}-shot Omniglot "
       f"Conv4, {a.meta_batch} task(s); {rows[0]['hardware']}")


if __name__ == "__main__":
  main()
