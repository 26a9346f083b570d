"""Guards for meta-training: flag the diagnostics that precede a collapse.

iMAML's meta-gradient (I + H/lam)^-1 g is only as good as (a) the inner
solution phi ~= argmin G(., theta) it is evaluated at and (b) the CG solve of
the linear system. docs/stability.md shows the collapse of the paper's setting
announced by both: an inner solve that stops converging and a CG residual
above ||g|| on an indefinite system. :func:`stability_flags` turns the
learners' metrics into named warnings; the training script prints them when
they appear and records them in its log.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple


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

  Reads ``inner_grad_ratio[_max]``, ``cg_relative_residual[_max]`` and
  ``cg_negative_curvature`` where present (MAML-type learners have no CG
  metrics) and returns ``{flag: message}`` for each threshold exceeded; an
  empty dict means nothing to report.

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
  negative = metrics.get("cg_negative_curvature")
  if negative is not None and not negative <= thresholds.cg_negative_curvature:
    flags["cg_negative_curvature"] = (
        f"implicit system indefinite: CG met non-positive curvature in "
        f"{100 * negative:.3g}% of tasks; try system='gauss_newton' or "
        f"cg_method='truncated'")
  return flags
