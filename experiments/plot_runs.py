"""Plot training curves of runs from their metrics.jsonl files into one PNG.

    python -m experiments.plot_runs OUT.png RUN.metrics.jsonl[=LABEL] ... \\
        [--metrics query_accuracy,cg_relative_residual,meta_grad_norm]

Any field of the train rows is a metric; ``validation_accuracy`` is the
accuracy of the validation rows (the curve a recipe is chosen on).
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

LOG_SCALE = {"cg_relative_residual", "cg_relative_residual_max",
             "meta_grad_norm", "inner_grad_norm", "inner_grad_norm_max",
             "inner_grad_ratio", "inner_grad_ratio_max", "support_loss_after"}
ZERO_LINE = {"cg_curvature", "cg_curvature_min"}   # below 0: indefinite system
VALIDATION = "validation_accuracy"
COLUMNS = 4


def points(rows: list[dict], name: str) -> list[tuple[int, float]]:
  """``(step, value)`` of metric ``name`` in a run's metrics.jsonl rows."""
  if name == VALIDATION:
    return [(r["step"], r["accuracy"]) for r in rows
            if r.get("kind") == "validation"]
  return [(r["step"], r[name]) for r in rows
          if r.get("kind", "train") == "train" and name in r]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("out")
  p.add_argument("runs", nargs="+", help="metrics.jsonl[=label]")
  p.add_argument("--metrics", default="query_accuracy,cg_relative_residual,"
                 "meta_grad_norm,support_loss_after")
  p.add_argument("--title", default="")
  a = p.parse_args(argv)
  names = a.metrics.split(",")
  cols = min(COLUMNS, len(names))
  nrows = -(-len(names) // cols)
  fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows),
                           squeeze=False)
  for ax in axes.flat[len(names):]:
    ax.axis("off")
  axes = axes.flat[:len(names)]
  for run in a.runs:
    path, _, label = run.partition("=")
    rows = [json.loads(l) for l in open(path)]
    for ax, name in zip(axes, names):
      pts = points(rows, name)
      if pts:
        ax.plot(*zip(*pts), label=label or path,
                marker="o" if name == VALIDATION else None)
  for ax, name in zip(axes, names):
    ax.set_title(name.replace("_", " "))
    ax.set_xlabel("meta-step")
    if name in LOG_SCALE:
      ax.set_yscale("log")
    if name in ZERO_LINE:
      ax.axhline(0.0, color="k", lw=0.8, ls="--")
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize="small", framealpha=0.5)
  if a.title:
    fig.suptitle(a.title)
  fig.tight_layout()
  fig.savefig(a.out, dpi=110)


if __name__ == "__main__":
  main()
