"""The paper's Tables 2 and 3, its cells, and the training settings behind them.

Numbers: Rajeswaran et al. 2019, Table 2 (Omniglot) and Table 3
(Mini-ImageNet 5-way 1-shot), mean ± 95% CI in percent. Settings: the paper
where it states them, else the public code it compares with
(``../shared/docs/PROTOCOL.md``, "Hyperparameters known from public code").

A *cell* is one number of those tables, named ``<dataset>-<N>w<K>s-<algorithm>``,
e.g. ``omniglot-5w1s-imaml_hf`` or ``mini_imagenet-5w1s-maml``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import ml_collections

from experiments.configs import mini_imagenet as mini_imagenet_config
from experiments.configs import omniglot as omniglot_config

# Row order of the paper's tables.
ALGORITHMS = ("maml", "fomaml", "reptile", "imaml_gd", "imaml_hf")
ALGORITHM_NAMES = {"maml": "MAML", "fomaml": "first-order MAML",
                   "reptile": "Reptile", "imaml_gd": "iMAML, GD",
                   "imaml_hf": "iMAML, Hessian-free"}
OMNIGLOT_SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))

TABLE2 = {   # (ways, shots) -> algorithm -> the paper's "mean ± ci95" (%)
    (5, 1): {"maml": "98.7 ± 0.4", "fomaml": "98.3 ± 0.5",
             "reptile": "97.68 ± 0.04", "imaml_gd": "99.16 ± 0.35",
             "imaml_hf": "99.50 ± 0.26"},
    (5, 5): {"maml": "99.9 ± 0.1", "fomaml": "99.2 ± 0.2",
             "reptile": "99.48 ± 0.06", "imaml_gd": "99.67 ± 0.12",
             "imaml_hf": "99.74 ± 0.11"},
    (20, 1): {"maml": "95.8 ± 0.3", "fomaml": "89.4 ± 0.5",
              "reptile": "89.43 ± 0.14", "imaml_gd": "94.46 ± 0.42",
              "imaml_hf": "96.18 ± 0.36"},
    (20, 5): {"maml": "98.9 ± 0.2", "fomaml": "97.9 ± 0.1",
              "reptile": "97.12 ± 0.32", "imaml_gd": "98.69 ± 0.1",
              "imaml_hf": "99.14 ± 0.1"},
}
TABLE3 = {"maml": "48.70 ± 1.84", "fomaml": "48.07 ± 1.75",
          "reptile": "49.97 ± 0.32", "imaml_gd": "48.96 ± 1.84",
          "imaml_hf": "49.30 ± 1.88"}

# Training fields compared with the paper's in results.json / docs/results.md.
COMMON_FIELDS = ("meta_batch", "meta_steps", "meta_lr", "meta_lr_schedule",
                 "train_queries")
FIELDS = {
    "maml": COMMON_FIELDS + ("inner_steps", "inner_lr"),
    "fomaml": COMMON_FIELDS + ("inner_steps", "inner_lr"),
    "reptile": ("meta_batch", "meta_steps", "inner_steps", "inner_lr",
                "train_shots", "inner_minibatches"),
    "imaml_gd": COMMON_FIELDS + ("inner_steps", "inner_lr", "lam", "cg_steps",
                                 "system"),
    "imaml_hf": COMMON_FIELDS + ("lam", "cg_steps", "system",
                                 "newton_curvature", "newton_cg_steps"),
}


class Cell(NamedTuple):
  """One number of the paper's tables."""
  dataset: str     # "omniglot" | "mini_imagenet"
  ways: int
  shots: int
  algorithm: str

  @property
  def name(self) -> str:
    return f"{self.dataset}-{self.ways}w{self.shots}s-{self.algorithm}"

  @property
  def paper_text(self) -> str:
    """The paper's figure as printed, e.g. ``"99.50 ± 0.26"`` (percent)."""
    if self.dataset == "omniglot":
      return TABLE2[(self.ways, self.shots)][self.algorithm]
    return TABLE3[self.algorithm]

  @property
  def paper(self) -> tuple[float, float]:
    """The paper's (mean, ci95) in percent."""
    mean, ci = self.paper_text.split(" ± ")
    return float(mean), float(ci)


def cells() -> list[Cell]:
  """Every cell of Table 2 (20) and Table 3 (5), in the tables' order."""
  table2 = [Cell("omniglot", w, s, a) for w, s in OMNIGLOT_SETTINGS
            for a in ALGORITHMS]
  return table2 + [Cell("mini_imagenet", 5, 1, a) for a in ALGORITHMS]


def parse_cell(name: str) -> Cell:
  """The :class:`Cell` named ``name``; raises ValueError listing the valid names.

  Examples:
    >>> parse_cell("omniglot-20w1s-imaml_hf").paper
    (96.18, 0.36)
  """
  m = re.fullmatch(r"(omniglot|mini_imagenet)-(\d+)w(\d+)s-(\w+)", name)
  cell = m and Cell(m.group(1), int(m.group(2)), int(m.group(3)), m.group(4))
  if not cell or cell not in cells():
    raise ValueError(f"unknown cell {name!r}; expected one of "
                     f"{', '.join(c.name for c in cells())}.")
  return cell


def default_config(cell: Cell) -> ml_collections.ConfigDict:
  """The project's config of a cell (the public code's settings)."""
  if cell.dataset == "omniglot":
    return omniglot_config.get_config(
        f"{cell.ways}way{cell.shots}shot-{cell.algorithm}")
  return mini_imagenet_config.get_config(cell.algorithm)


def paper_config(cell: Cell) -> ml_collections.ConfigDict:
  """The cell's config with the paper's own training settings.

  The project's configs follow the public code but default to the stable
  Gauss-Newton systems; here the paper's: the exact system (I + H/lam) and,
  for iMAML-HF, Newton-CG on the Hessian with 5 CG steps. MAML and
  first-order MAML trained 60,000 iterations, Reptile 100,000 with
  meta-batch 5 (Nichol et al. 2018, Omniglot; its inner loop was Adam).
  """
  c = default_config(cell)
  if cell.algorithm.startswith("imaml"):
    c.system = "exact"
    c.newton_curvature, c.newton_cg_steps = "hessian", 5
  elif cell.algorithm in ("maml", "fomaml"):
    c.meta_steps = 60_000
  else:
    c.meta_steps, c.meta_batch = 100_000, 5
  return c


def differences(cell: Cell, c) -> dict[str, list]:
  """``{field: [ours, paper's]}`` for the training fields where ``c`` differs.

  Examples:
    >>> cell = parse_cell("omniglot-5w1s-maml")
    >>> c = default_config(cell)
    >>> c.meta_batch = 8
    >>> differences(cell, c)
    {'meta_batch': [8, 32], 'meta_steps': [20000, 60000]}
  """
  paper = paper_config(cell)
  return {f: [c.get(f), paper.get(f)] for f in FIELDS[cell.algorithm]
          if c.get(f) != paper.get(f)}


def verdict(mean: float | None, cell: Cell) -> str:
  """``above`` / ``within`` / ``below`` the paper's mean ± CI, or ``not run``.

  ``mean`` is in percent. A cell counts as reproduced when it is ``within`` or
  ``above`` (mean at least the paper's mean minus its CI).

  Examples:
    >>> cell = parse_cell("omniglot-5w1s-maml")   # 98.7 ± 0.4
    >>> [verdict(m, cell) for m in (99.2, 98.4, 98.2, None)]
    ['above', 'within', 'below', 'not run']
  """
  if mean is None:
    return "not run"
  paper_mean, ci = cell.paper
  if mean > paper_mean + ci:
    return "above"
  return "within" if mean >= paper_mean - ci else "below"

