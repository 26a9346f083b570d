"""Omniglot configs, one per (Table 2 setting x algorithm).

    --config experiments/configs/omniglot.py:5way1shot-imaml_gd

The argument is ``<N>way<K>shot-<algorithm>``, with N in {5, 20}, K in {1, 5}
and algorithm in imaml_gd, imaml_hf, maml, fomaml, reptile. Any field can be
overridden on the command line, e.g. ``--config.meta_steps=2000``. Values
follow ../shared/docs/PROTOCOL.md (the iMAML and MAML public code); Adam 1e-3
as meta-optimizer for every algorithm. Shared fields: ``base.py``.
"""

import ml_collections

from experiments.configs import base


def get_config(arg: str = "5way1shot-imaml_gd") -> ml_collections.ConfigDict:
  ways, shots, algorithm = base.parse_setting(arg)
  five_way = ways <= 5

  c = base.get_config(algorithm)
  c.name = f"omniglot_{ways}way{shots}shot_{algorithm}"
  c.dataset = "omniglot"
  c.ways, c.shots = ways, shots
  c.train_queries = shots       # K query examples per class (MAML, iMAML code)
  c.test_queries = 5            # per class at validation and test (report it)
  c.rotations = True            # 90/180/270 rotations as extra train classes
  c.meta_batch = 32 if five_way else 16
  c.meta_steps = 20_000
  # iMAML (paper, Table 2 caption; authors' README)
  c.lam = 2.0
  c.newton_steps = 4 if five_way else 6   # iMAML-HF (base.py, measured)
  if algorithm in ("maml", "fomaml"):   # MAML public code
    c.inner_steps, c.inner_lr = (1, 0.4) if five_way else (5, 0.1)
  elif algorithm == "reptile":
    # Reptile's public code: 10 training examples per class, one pass over
    # them in minibatches of 10 (5-way) or 20 (20-way).
    c.train_shots = 10
    c.inner_steps = c.inner_minibatches = 5 if five_way else 10
    c.inner_lr = 0.1
  else:
    c.inner_steps, c.inner_lr = (16 if five_way else 25), 0.1
  return c
