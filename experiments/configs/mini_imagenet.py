"""Mini-ImageNet 5-way 1-shot configs (Table 3), one per algorithm.

    --config experiments/configs/mini_imagenet.py:imaml_gd

The argument is the algorithm: imaml_gd, imaml_hf, maml, fomaml, reptile.
Values follow ../shared/docs/PROTOCOL.md: 15 query images per class; the
32-filter Conv4 with max-pool; iMAML lam 0.5, 10 inner steps, 5 CG steps
(paper, Sec. 5); MAML meta-batch 4, 5 inner steps of 0.01 in training and 10
at test (MAML public code). Shared fields: ``base.py``. The data must be on
disk (``--config.source_dir`` or ``$MINI_IMAGENET_DIR``; see
:mod:`imaml_jax.data.mini_imagenet`).
"""

import ml_collections

from experiments.configs import base


def get_config(algorithm: str = "imaml_gd") -> ml_collections.ConfigDict:
  algorithm = algorithm.replace("-", "_")
  if algorithm not in base.ALGORITHMS:
    raise ValueError(f"config argument must be an algorithm, one of "
                     f"{base.ALGORITHMS}; got {algorithm!r}.")
  c = base.get_config(algorithm)
  c.name = f"mini_imagenet_5way1shot_{algorithm}"
  c.dataset = "mini_imagenet"
  c.ways, c.shots = 5, 1
  c.train_queries = 15
  c.test_queries = 15
  c.rotations = False
  c.filters, c.max_pool = 32, True   # the Conv4 of MAML's code (84x84 RGB)
  c.meta_batch = 4              # MAML public code
  c.meta_steps = 60_000         # MAML public code (iterations)
  c.lam = 0.5                   # paper, Sec. 5
  if algorithm in ("maml", "fomaml"):
    c.inner_steps, c.inner_lr, c.test_inner_steps = 5, 0.01, 10
  elif algorithm == "reptile":  # Reptile's paper uses Adam inner steps; we SGD
    c.inner_steps, c.inner_lr = 8, 0.01
    c.train_shots = 15          # Reptile's public code (Mini-ImageNet)
    c.inner_minibatches = 5     # of 15 (theirs: 8 minibatches of 10 of 75)
  else:
    # iMAML: 10 steps (paper). The paper gives no inner learning rate; at
    # initialisation 10 steps of 0.01 leave 3% of G's gradient
    # (benchmarks.inner_solvers; docs/runs/inner_solvers_mini_imagenet_init.jsonl).
    c.inner_steps, c.inner_lr = 10, 0.01
  c.eval_chunk = 20             # episodes per evaluation batch (memory)
  return c
