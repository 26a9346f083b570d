"""Guards for meta-training: flag the diagnostics that precede a collapse.

iMAML's meta-gradient (I + H/lam)^-1 g is only as good as (a) the inner
solution phi ~= argmin G(., theta) it is evaluated at and (b) the CG solve of
the linear system. docs/stability.md shows the collapse of the paper's setting
announced by both: an inner solve that stops converging and a CG residual
above ||g|| on an indefinite system. :func:`stability_flags` turns the
learners' metrics into named warnings; the training script prints them when
they appear and records them in its log. :func:`drawdown` is the collapse
criterion the long stability check (``benchmarks/stability.py``) applies.
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple, Sequence


class StabilityThresholds(NamedTuple):
  """When :func:`stability_flags` raises each flag.

  Attributes:
    inner_grad_ratio: final over initial ``||grad G||`` of the worst task's
      inner solve above which it counts as not converged (0.5: the solve
      removed less than half the gradient).
    cg_relative_residual: ``||g - A v|| / ||g||`` of the worst task above which
      the CG answer is untrustworthy (1.0: no better than ``v = 0``).
    cg_negative_curvature: fraction of tasks whose CG met ``p^T A p <= 0``
      above which to flag (0: any task).
  """
  inner_grad_ratio: float = 0.5
  cg_relative_residual: float = 1.0
  cg_negative_curvature: float = 0.0


def _worst(metrics: Mapping[str, float], name: str, suffix: str):
  return metrics.get(f"{name}_{suffix}", metrics.get(name))


def stability_flags(metrics: Mapping[str, float],
                    thresholds: StabilityThresholds = StabilityThresholds()
                    ) -> dict[str, str]:
  """Named warnings for the metrics of a learner (or their interval average).

  Reads ``inner_grad_ratio[_max]``, ``cg_relative_residual[_max]``,
  ``cg_negative_curvature`` and ``nonfinite`` (skipped meta-steps, any is
  flagged) where present (MAML-type learners have no CG metrics) and returns
  ``{flag: message}`` for each threshold exceeded; an empty dict means nothing
  to report.

  Args:
    metrics: a learner's metrics (floats), e.g. a logged interval's.
    thresholds: when to raise each flag.

  Returns:
    ``{flag name: message}``.

  Examples:
    >>> import imaml_jax
    >>> imaml_jax.stability_flags({"inner_grad_ratio_max": 0.9,
    ...                            "cg_negative_curvature": 0.0})
    {'inner_unconverged': 'inner solve not converged: worst task kept 0.9 of its initial gradient norm (threshold 0.5)'}
  """
  flags = {}
  ratio = _worst(metrics, "inner_grad_ratio", "max")
  if ratio is not None and not ratio <= thresholds.inner_grad_ratio:
    flags["inner_unconverged"] = (
        f"inner solve not converged: worst task kept {ratio:.3g} of its "
        f"initial gradient norm (threshold {thresholds.inner_grad_ratio})")
  residual = _worst(metrics, "cg_relative_residual", "max")
  if residual is not None and not residual <= thresholds.cg_relative_residual:
    flags["cg_unconverged"] = (
        f"implicit CG failed: worst relative residual {residual:.3g} "
        f"(threshold {thresholds.cg_relative_residual})")
  skipped = metrics.get("nonfinite")
  if skipped is not None and not skipped <= 0.0:
    flags["nonfinite_steps"] = (
        f"{100 * skipped:.3g}% of meta-steps skipped: non-finite "
        f"meta-gradient or query loss (parameters left unchanged)")
  negative = metrics.get("cg_negative_curvature")
  if negative is not None and not negative <= thresholds.cg_negative_curvature:
    flags["cg_negative_curvature"] = (
        f"implicit system indefinite: CG met non-positive curvature in "
        f"{100 * negative:.3g}% of tasks; try system='gauss_newton' or "
        f"linear_solve=imaml_jax.truncated_cg (--config.cg_method=truncated)")
  return flags


class Drawdown(NamedTuple):
  """Largest fall of a curve below its running maximum (see :func:`drawdown`)."""
  drop: float        # running maximum minus value, at its largest
  step: int          # where it happened (-1 if no point after the warm-up)
  peak_step: int     # where the running maximum was set


def drawdown(steps: Sequence[int], values: Sequence[float],
             warmup: int = 200) -> Drawdown:
  r"""The collapse criterion of docs/stability.md: the largest drop
  :math:`\max_{t > \text{warmup}} (\max_{s \le t} a_s - a_t)` of a
  training-accuracy curve: falls are judged after ``warmup`` meta-steps, the
  running maximum is taken over the whole curve.

  A run "collapses" when the drop exceeds 0.10 (ten accuracy points). NaN
  values count as a total collapse (drop = inf).

  Args:
    steps: meta-steps of the curve, increasing.
    values: training accuracy at those steps.
    warmup: falls before this step are not judged.

  Returns:
    A :class:`Drawdown`: the drop, the step it was measured at and the step
    of the peak it fell from.

  Examples:
    >>> import imaml_jax
    >>> imaml_jax.drawdown([100, 200, 300, 400, 500], [0.5, 0.9, 0.7, 0.6, 0.8])
    Drawdown(drop=0.30000000000000004, step=400, peak_step=200)
  """
  if len(steps) != len(values):
    raise ValueError(f"steps and values must have the same length, got "
                     f"{len(steps)} and {len(values)}.")
  best, best_step, worst = -math.inf, -1, Drawdown(0.0, -1, -1)
  for step, value in zip(steps, values):
    if math.isnan(value):
      if step > warmup:
        return Drawdown(math.inf, int(step), best_step)
      continue
    if value > best:
      best, best_step = value, int(step)
    if step > warmup and (best - value > worst.drop or worst.step < 0):
      worst = Drawdown(best - value, int(step), best_step)
  return worst
