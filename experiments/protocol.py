"""Evaluation protocols: how test episodes are drawn, adapted to and chosen.

Two named protocols (``../shared/docs/PROTOCOL.md``, "Evaluation: the paper's
protocol"):

* ``paper``: what the public code behind Tables 2 and 3 did at test time
  (MAML's ``main.py`` / ``data_generator.py``, the iMAML authors' code):
  K query examples per class (1 for 1-shot, 5 for 5-shot, Omniglot and
  Mini-ImageNet alike); each Omniglot test class rotated by a random multiple
  of 90 degrees; each baseline adapted with its published test-time steps
  (MAML and first-order MAML: 3 steps on 5-way Omniglot, 5 on 20-way, 10 on
  Mini-ImageNet; Reptile: 50); iMAML adapted as it was trained, or, with
  ``adaptation="gd_lam0"``, as the authors' README evaluates it (plain
  gradient descent on the support loss, lam 0, 16 steps).
* ``wide``: the config's ``test_queries`` (5 on Omniglot, 15 on
  Mini-ImageNet), no rotations, the config's ``test_inner_steps`` (else the
  training ones). More queries per episode give a smaller interval; with
  transductive batch norm they also change the accuracy, so it is a second
  figure, never one to compare with the paper.

Either way the checkpoint is the final one or the one with the best
*validation* accuracy (:func:`select_checkpoint`); test accuracy never
chooses anything.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

PROTOCOLS = ("paper", "wide")
ADAPTATIONS = ("trained", "gd_lam0")
CHECKPOINT_RULES = ("final", "validation")
# Test-time steps of the authors' README for iMAML's gd_lam0 adaptation.
GD_LAM0_STEPS = 16


class Protocol(NamedTuple):
  """Everything that defines how a figure was measured (goes to results.json).

  Attributes:
    name: ``"paper"`` or ``"wide"``.
    queries_per_class: query examples per class in each test episode.
    rotate_test_classes: rotate each test class by a random multiple of 90
      degrees.
    test_inner_steps: adaptation steps at test (GD steps; Newton steps for
      iMAML-HF adapting as trained).
    adaptation: ``"trained"`` (the learner's own inner loop) or ``"gd_lam0"``
      (plain GD on the support loss, no proximal term).
    test_lam: the proximal strength of the test-time adaptation (``None`` for
      the baselines, which have none).
    checkpoint: ``"final"`` or ``"validation"`` (best validation accuracy).
  """
  name: str
  queries_per_class: int
  rotate_test_classes: bool
  test_inner_steps: int
  adaptation: str
  test_lam: float | None
  checkpoint: str


def trained_steps(c) -> int:
  """The inner steps a config trains with (Newton steps for iMAML-HF)."""
  return c.newton_steps if c.algorithm == "imaml_hf" else c.inner_steps


def paper_test_steps(c) -> int:
  """The test-time adaptation steps the paper's baselines were published with.

  MAML and first-order MAML (Finn et al. 2017): 3 on 5-way Omniglot (trained
  with 1), 5 on 20-way, 10 on Mini-ImageNet; Reptile (Nichol et al. 2018,
  Table 4 "eval inner iterations"): 50; iMAML: as trained.

  Examples:
    >>> from experiments.configs import omniglot
    >>> [paper_test_steps(omniglot.get_config(f"{n}way1shot-maml"))
    ...  for n in (5, 20)]
    [3, 5]
  """
  if c.algorithm in ("maml", "fomaml"):
    if c.dataset == "mini_imagenet":
      return 10
    return 3 if c.ways <= 5 else 5
  if c.algorithm == "reptile":
    return 50
  return trained_steps(c)


def protocol(name: str, c, adaptation: str = "trained",
             checkpoint: str = "final") -> Protocol:
  """The protocol ``name`` applied to config ``c``.

  Args:
    name: ``"paper"`` or ``"wide"``.
    c: the run's config.
    adaptation: iMAML's test-time adaptation, ``"trained"`` or ``"gd_lam0"``
      (ignored for the baselines, which adapt by plain GD anyway).
    checkpoint: ``"final"`` or ``"validation"``.

  Returns:
    A :class:`Protocol`.

  Examples:
    >>> from experiments.configs import omniglot
    >>> p = protocol("paper", omniglot.get_config("5way1shot-maml"))
    >>> p.queries_per_class, p.rotate_test_classes, p.test_inner_steps
    (1, True, 3)
  """
  if name not in PROTOCOLS:
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {name!r}.")
  if adaptation not in ADAPTATIONS:
    raise ValueError(f"adaptation must be one of {ADAPTATIONS}, got "
                     f"{adaptation!r}.")
  if checkpoint not in CHECKPOINT_RULES:
    raise ValueError(f"checkpoint must be one of {CHECKPOINT_RULES}, got "
                     f"{checkpoint!r}.")
  is_imaml = c.algorithm.startswith("imaml")
  if not is_imaml:
    adaptation = "trained"
  if name == "paper":
    queries, rotate, steps = c.shots, c.dataset == "omniglot", (
        paper_test_steps(c))
  else:
    queries, rotate, steps = c.test_queries, False, (
        c.test_inner_steps or trained_steps(c))
  lam = None
  if adaptation == "gd_lam0":
    steps, lam = GD_LAM0_STEPS, 0.0
  elif is_imaml:
    lam = c.lam
  return Protocol(name, queries, rotate, steps, adaptation, lam, checkpoint)


def validation_curve(workdir: str) -> dict[int, float]:
  """Step -> validation accuracy, from a run's ``metrics.jsonl``.

  Reads the ``"validation"`` rows only: whatever else the file holds, no
  other figure can reach checkpoint selection.
  """
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return {}
  curve = {}
  with open(path) as f:
    for line in f:
      row = json.loads(line)
      if row.get("kind") == "validation":
        curve[int(row["step"])] = float(row["accuracy"])
  return curve


def select_checkpoint(kept_steps, validation: dict[int, float],
                      rule: str = "final") -> int:
  """The checkpoint step to report, chosen without looking at test accuracy.

  Args:
    kept_steps: steps of the checkpoints on disk.
    validation: step -> validation accuracy (:func:`validation_curve`).
    rule: ``"final"`` (the last checkpoint) or ``"validation"`` (the kept
      checkpoint with the best validation accuracy; the later on ties).

  Returns:
    A step from ``kept_steps``.

  Examples:
    >>> select_checkpoint([500, 1000], {500: 0.9, 1000: 0.8}, "validation")
    500
    >>> select_checkpoint([500, 1000], {500: 0.9, 1000: 0.8})
    1000
  """
  kept = sorted(int(s) for s in kept_steps)
  if not kept:
    raise ValueError("no checkpoint to choose from.")
  if rule == "final":
    return kept[-1]
  if rule != "validation":
    raise ValueError(f"rule must be one of {CHECKPOINT_RULES}, got {rule!r}.")
  scored = [s for s in kept if s in validation]
  if not scored:
    raise ValueError(f"none of the kept checkpoints {kept} has a validation "
                     f"accuracy; validate at checkpoint steps (eval_every).")
  return max(scored, key=lambda s: (validation[s], s))
