"""Where a meta-gradient's time goes on this backend: XLA ops grouped by kind.

    python -m benchmarks.op_profile                    # one task, 5-way 1-shot
    python -m benchmarks.op_profile --tasks 2          # vmap over 2 tasks
    taskset -c 0 python -m benchmarks.op_profile       # on one core

Traces ``--runs`` calls of the jitted meta-gradient of ``--algorithm``
(``benchmarks.meta_step``'s learners and flags; by default iMAML-GD with
the protocol's 16 GD steps of 0.1, lam 2, 5 CG steps; random
Omniglot-shaped images) with ``jax.profiler`` and sums the traced XLA ops
per kind (the op name without its numeric suffix: ``ynn_fusion``, ``dot``,
``pad_slice_fusion``...). Prints one JSON line per kind, largest first, with
milliseconds and calls per meta-gradient; the profiler's own overhead is
included, so totals exceed an untraced run's.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile

import jax

import imaml_jax
from benchmarks import meta_step

_NOT_OPS = ("Thunk", "$", "Pjit", "PjRt", "Execute", "while", "end: ")


def op_times(trace_file: str, runs: int) -> list[dict]:
  """Per op kind: ms and calls per run, from a perfetto JSON trace."""
  with gzip.open(trace_file) as f:
    events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  total = collections.defaultdict(lambda: [0.0, 0])
  for e in events:
    if e.get("ph") != "X" or any(s in e["name"] for s in _NOT_OPS):
      continue
    kind = re.sub(r"\.\d+$", "", e["name"])
    total[kind][0] += e.get("dur", 0.0)   # microseconds
    total[kind][1] += 1
  rows = [{"op": k, "ms_per_run": round(us / 1000 / runs, 3),
           "calls_per_run": round(n / runs, 1),
           "us_per_call": round(us / n, 2)} for k, (us, n) in total.items()]
  return sorted(rows, key=lambda r: -r["ms_per_run"])


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--tasks", type=int, default=1)
  p.add_argument("--runs", type=int, default=3)
  p.add_argument("--top", type=int, default=12)
  p.add_argument("--algorithm", default="imaml_gd",
                 help="imaml_gd, imaml_hf, maml, fomaml or reptile")
  meta_step.add_learner_args(p)
  a = p.parse_args(argv)
  model = imaml_jax.omniglot_conv4(a.ways)
  loss = imaml_jax.cross_entropy_loss(imaml_jax.apply_fn(model))
  tasks = meta_step.synthetic_tasks(jax.random.key(1), a.tasks, a.ways,
                                    a.shots, a.shots)
  theta = imaml_jax.init_params(model, jax.random.key(0), tasks.support.x[0])
  learner = meta_step.learners(loss, a, [a.algorithm])[a.algorithm]
  grad = jax.jit(lambda th, t: learner(th, t)[0])
  jax.block_until_ready(grad(theta, tasks))   # compile outside the trace
  with tempfile.TemporaryDirectory() as out:
    jax.profiler.start_trace(out, create_perfetto_trace=True)
    for _ in range(a.runs):
      jax.block_until_ready(grad(theta, tasks))
    jax.profiler.stop_trace()
    trace, = glob.glob(os.path.join(out, "**", "perfetto_trace.json.gz"),
                       recursive=True)
    rows = op_times(trace, a.runs)
  print(json.dumps({"tasks": a.tasks, "ms_per_run": round(
      sum(r["ms_per_run"] for r in rows), 2), "calls_per_run": round(
          sum(r["calls_per_run"] for r in rows))}))
  for r in rows[:a.top]:
    print(json.dumps(r))


if __name__ == "__main__":
  main()
