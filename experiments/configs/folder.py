"""Configs for your own images: a folder of class folders as few-shot tasks.

    --config experiments/configs/folder.py:5way1shot-imaml_gd \
        --config.source_dir=path/to/my_symbols

The argument is ``<N>way<K>shot-<algorithm>`` as for Omniglot. The folder is
``<source_dir>/<class>/<image>`` (classes split by ``split_seed`` and
``split_fractions``) or ``<source_dir>/<split>/<class>/<image>`` with
``<split>`` in train, val, test (:mod:`imaml_jax.data.folder`). Any other
config takes a folder too (``--config.dataset=folder
--config.source_dir=...``); this one adds settings sized for a small folder.
Images become ``image_size`` x ``image_size`` x ``channels``; the model is
the Conv4 with ``filters`` filters and stride-2 convs (``max_pool=False``,
Omniglot's, for small images) or 2x2 max-pools (Mini-ImageNet's, for larger
ones). The
training values are the CPU budget recipe that trains Omniglot 5-way 1-shot
(lam 0.5, meta-batch 8, the Gauss-Newton systems; README). Shared fields:
``base.py``.
"""

import ml_collections

from experiments.configs import base


def get_config(arg: str = "5way1shot-imaml_gd") -> ml_collections.ConfigDict:
  ways, shots, algorithm = base.parse_setting(arg)
  c = base.get_config(algorithm)
  c.name = f"folder_{ways}way{shots}shot_{algorithm}"
  c.dataset = "folder"
  c.ways, c.shots = ways, shots
  c.train_queries = shots
  c.test_queries = shots        # K queries per class (the paper's protocol)
  c.rotations = False           # True adds 90/180/270-degree turns as classes
  # image_size 28, channels 1, filters 64, max_pool False, split_seed 0 and
  # split_fractions (0.6, 0.2, 0.2) come from base.py.
  c.meta_batch = 8
  c.meta_steps = 2000
  c.lam = 0.5
  c.eval_every = 250
  c.val_episodes = 100
  c.test_episodes = 600
  if algorithm in ("maml", "fomaml"):
    c.inner_steps, c.inner_lr = 1, 0.4
  elif algorithm == "reptile":
    c.inner_steps, c.inner_lr = 5, 0.1
  else:
    c.inner_steps, c.inner_lr = 16, 0.1
  return c
