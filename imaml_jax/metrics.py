"""How each metric reduces over tasks, devices and logging intervals.

A metric named ``<name>_max`` is a worst case from above and reduces by max,
``<name>_min`` a worst case from below and reduces by min; every other metric
is a mean. The name carries the reduction, so the sharded meta-step (over
devices) and :func:`imaml_jax.run` (over the meta-steps of a logging
interval) apply the same one, and a one-step spike of a worst case reaches the
log undiluted.
"""

from __future__ import annotations

from typing import Mapping, Optional

import jax.numpy as jnp

REDUCTIONS = ("mean", "max", "min")


def reduction(name: str) -> str:
  """``"max"``, ``"min"`` or ``"mean"``: how metric ``name`` reduces.

  Args:
    name: a metric name, e.g. ``"cg_relative_residual_max"``.

  Returns:
    One of :data:`REDUCTIONS`.

  Examples:
    >>> from imaml_jax import metrics
    >>> [metrics.reduction(n) for n in ("query_loss", "inner_grad_ratio_max",
    ...                                 "cg_curvature_min")]
    ['mean', 'max', 'min']
  """
  if name.endswith("_max"):
    return "max"
  if name.endswith("_min"):
    return "min"
  return "mean"


def accumulate(total: Optional[Mapping], metrics: Mapping) -> dict:
  """Adds one step's metrics to a running total: sums of means, max, min.

  Args:
    total: the running total (``None`` before the first step).
    metrics: one step's metrics (arrays or floats).

  Returns:
    The new running total; :func:`finish` turns it into the interval's values.

  Examples:
    >>> from imaml_jax import metrics
    >>> total = None
    >>> for step in ({"loss": 1.0, "ratio_max": 0.25},
    ...              {"loss": 3.0, "ratio_max": 0.75}):
    ...   total = metrics.accumulate(total, step)
    >>> metrics.finish(total, 2)
    {'loss': 2.0, 'ratio_max': 0.75}
  """
  if total is None:
    return dict(metrics)
  combine = {"mean": jnp.add, "max": jnp.maximum, "min": jnp.minimum}
  return {k: combine[reduction(k)](total[k], v) for k, v in metrics.items()}


def finish(total: Mapping, count: int) -> dict[str, float]:
  """The interval's values from a running total of ``count`` steps."""
  return {k: float(v) / count if reduction(k) == "mean" else float(v)
          for k, v in total.items()}
