"""Fields every few-shot image config shares (Omniglot, Mini-ImageNet).

A data set's config starts from :func:`get_config` and sets the setting
(ways, shots, queries), the inner loops and the meta-batch; the values here
are the paper's or the training script's defaults.
"""

import re

import ml_collections

ALGORITHMS = ("imaml_gd", "imaml_hf", "maml", "fomaml", "reptile")
DATASETS = ("omniglot", "mini_imagenet", "folder")


def parse_setting(arg: str) -> tuple[int, int, str]:
  """``"5way1shot-imaml_gd"`` -> ``(5, 1, "imaml_gd")`` (a config's argument).

  Examples:
    >>> parse_setting("20way5shot-imaml-hf")
    (20, 5, 'imaml_hf')
  """
  m = re.fullmatch(r"(\d+)way(\d+)shot-([\w-]+)", arg)
  if not m or m.group(3).replace("-", "_") not in ALGORITHMS:
    raise ValueError(f"config argument must look like '5way1shot-imaml_gd' "
                     f"with algorithm in {ALGORITHMS}; got {arg!r}.")
  return int(m.group(1)), int(m.group(2)), m.group(3).replace("-", "_")


def get_config(algorithm: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.algorithm = algorithm
  c.seed = 0
  c.meta_lr = 1e-3              # Adam, every algorithm
  c.meta_lr_schedule = "constant"   # constant (paper) | cosine (decay to 0)
  c.adam_eps = 1e-8             # Adam's epsilon (optax's; the authors' code 1e-3)
  # Initial meta-parameters: "default" (flax: LeCun-normal kernels, zero
  # biases) | "xavier_1.73" (the authors' public iMAML code: Xavier-uniform
  # kernels with gain 1.73, biases uniform in [0, 0.05]).
  c.init = "default"
  # iMAML-GD's inner loop: "proximal" (GD on G, the paper's Algorithm 2) |
  # "pull_back" (the authors' public code: GD on L alone, then one step on the
  # proximal term; imaml_jax.pull_back_gradient_descent). The authors' whole
  # recipe adds system="damped", adam_eps=1e-3, init="xavier_1.73", lam 2.
  c.inner_loop = "proximal"
  c.num_devices = 1             # devices on the "tasks" mesh axis; 0 = all
  c.task_chunk = 0              # vmap this many tasks per lax.map step; 0 =
                                # all (the choice for a GPU)
  # When JAX runs on the CPU (no accelerator): split the CPU into this many
  # JAX devices before JAX starts, shard the meta-batch over them and take
  # each device's tasks one at a time (num_devices and task_chunk are then
  # ignored). Measured on a 2-core CPU: 2 devices run about 2x the
  # meta-steps per second of one plain vmap at meta-batch 32 (0.86 s -> 0.42 s,
  # docs/benchmarks.md), 1.9x in the make train run (docs/stability.md).
  # Ignored on a GPU/TPU.
  # 0 = JAX's default (one CPU device; num_devices and task_chunk apply).
  c.cpu_devices = 0
  c.cg_steps = 5                # implicit-gradient CG steps (paper)
  # The paper's system is "exact". Measured (README, Omniglot results): with
  # it, and with the authors' "damped" one, 5-way 1-shot iMAML-GD collapses
  # (42% / 49% test accuracy on an H100) while "gauss_newton" trains (95.0%
  # after 10,000 meta-steps). Pass --config.system=exact for the paper's.
  c.system = "gauss_newton"     # exact | damped | gauss_newton
  c.cg_method = "jax"           # jax (plain CG, paper) | truncated (stops at
                                # non-positive curvature)
  # iMAML-HF inner solver. Paper: Newton-CG on the Hessian of G (its CG step
  # count is not stated; we used 3 Newton steps of 5 CG). Measured
  # (docs/stability.md §2b): on the network's Hessian, truncated CG keeps
  # meeting negative curvature and the solve leaves 7-78% of the gradient;
  # Gauss-Newton curvature (Martens' Hessian-free) with 2 CG steps per Newton
  # step leaves 1.6% (5-way) / 20% (20-way) in less time.
  c.newton_curvature = "gauss_newton"   # hessian | gauss_newton
  c.newton_steps = 4
  c.newton_cg_steps = 2         # CG steps per Newton system
  # Support examples per class in training episodes; 0 = shots (K). Reptile's
  # public code trains on 10 whatever K it is evaluated at.
  c.train_shots = 0
  # Reptile: its inner steps cycle through this many disjoint minibatches of
  # the training support set (imaml_jax.minibatches); 1 = full batch.
  c.inner_minibatches = 1
  c.test_inner_steps = 0        # inner (GD or Newton) steps at validation and
                                # test; 0 = the training ones
  # Stability guards (imaml_jax.StabilityThresholds): flags are printed when
  # they appear and logged with every interval.
  c.warn_inner_grad_ratio = 0.5
  c.warn_cg_relative_residual = 1.0
  # A meta-step with a non-finite meta-gradient or query loss is skipped
  # (parameters unchanged); training stops once this many come in a row.
  c.max_nonfinite_steps = 5
  c.log_every = 50
  c.eval_every = 500
  c.val_episodes = 200
  c.checkpoint_every = 500
  c.keep_checkpoint_every = 0   # also keep checkpoints at multiples of this
  c.max_train_minutes = 0.0     # stop (with a checkpoint) once the meta-steps
                                # took this long, resumed sessions included;
                                # 0 = run all meta_steps
  c.test_episodes = 600
  c.eval_chunk = 100            # episodes per evaluation batch (memory)
  c.data_dir = ""               # TFDS data dir; "" = TFDS default
  # The data set's source files. "" = $OMNIGLOT_DIR / $MINI_IMAGENET_DIR, else
  # ../shared/data/<dataset> beside the checkout if there, else (Omniglot)
  # the canonical download; resolved when the data are loaded, so building a
  # config reads no disk and imports nothing heavy.
  c.source_dir = ""
  # The Conv4 of every data set: its filters per conv and its downsampling
  # (stride-2 convs, Omniglot's, or 2x2 max-pools, Mini-ImageNet's config's).
  c.filters = 64
  c.max_pool = False
  # Your own images (dataset="folder"; experiments/configs/folder.py): the
  # image size and channels they are made, and the one-folder layout's class
  # split. Omniglot and Mini-ImageNet fix their own.
  c.image_size = 28
  c.channels = 1                # 1 grey | 3 RGB
  c.split_seed = 0
  c.split_fractions = (0.6, 0.2, 0.2)   # train, validation, test
  return c


_CHOICES = {
    "algorithm": ALGORITHMS,
    "dataset": DATASETS,
    "channels": (1, 3),
    "system": ("exact", "damped", "gauss_newton"),
    "cg_method": ("jax", "truncated"),
    "newton_curvature": ("hessian", "gauss_newton"),
    "meta_lr_schedule": ("constant", "cosine"),
    "inner_loop": ("proximal", "pull_back"), "init": ("default", "xavier_1.73"),
}
_AT_LEAST = {   # field: smallest allowed value
    "ways": 2, "shots": 1, "train_queries": 1, "test_queries": 1,
    "meta_batch": 1, "meta_steps": 0, "inner_steps": 1, "cg_steps": 1,
    "newton_steps": 1, "newton_cg_steps": 1, "log_every": 1, "eval_every": 1,
    "checkpoint_every": 1, "val_episodes": 2, "test_episodes": 2,
    "cpu_devices": 0, "num_devices": 0, "task_chunk": 0,
    "keep_checkpoint_every": 0, "test_inner_steps": 0, "max_train_minutes": 0,
    "max_nonfinite_steps": 1, "image_size": 4, "filters": 1, "train_shots": 0,
    "inner_minibatches": 1,
}
_POSITIVE = ("lam", "meta_lr", "inner_lr", "adam_eps")
# The smallest split's classes and the examples per class of each data set.
_CLASSES = {"omniglot": 100, "mini_imagenet": 16}
_PER_CLASS = {"omniglot": 20, "mini_imagenet": 600}


def train_shots(c: ml_collections.ConfigDict) -> int:
  """Support examples per class in training episodes: ``train_shots``, or K.

  Reptile's public code adapts on 10 examples per class in training whatever
  K it is evaluated at; every other recipe trains on K (``train_shots = 0``).
  """
  return c.get("train_shots") or c.get("shots", 1)


def parse_sets(c: ml_collections.ConfigDict, sets, what: str = "the config"
               ) -> dict:
  """``{field: value}`` from ``["field=value", ...]`` (``--set`` flags).

  Each value takes the type of the field in ``c``: ``true`` / ``false`` for
  a boolean, any number notation for a number (``5e-4``; an int field takes
  whole numbers only, ``1e4`` included).

  Args:
    c: the config the values go on top of.
    sets: ``"FIELD=VALUE"`` strings.
    what: names ``c`` in errors (e.g. a cell's name).

  Raises:
    ValueError: one line naming the bad item and what was expected.

  Examples:
    >>> parse_sets(get_config("maml"), ["meta_lr=5e-4", "cg_steps=1e1"])
    {'meta_lr': 0.0005, 'cg_steps': 10}
  """
  out = {}
  for item in sets:
    field, eq, text = item.partition("=")
    if not eq or field not in c:
      raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD a "
                       f"config field of {what} (e.g. meta_lr=5e-4)")
    kind = type(c[field])
    parse = {bool: lambda t: {"true": True, "false": False}[t.lower()],
             int: lambda t: int(float(t)) if float(t).is_integer() else None,
             float: float, str: str}.get(kind)
    try:
      value = parse(text) if parse else None
    except (KeyError, ValueError, OverflowError):
      value = None
    if value is None:
      raise ValueError(f"--set {item!r}: expected a value of type "
                       f"{kind.__name__} for {field}, got {text!r}")
    out[field] = value
  return out


def check(c: ml_collections.ConfigDict) -> None:
  """Raises ``ValueError`` naming the first bad field, its value and the rule.

  Run before anything compiles, so a typo on the command line costs one line
  of output, not a traceback from inside the library.

  Examples:
    >>> c = get_config("imaml_gd")
    >>> c.update(dataset="omniglot", ways=5, shots=1, train_queries=1,
    ...          test_queries=5, meta_batch=8, meta_steps=10, lam=-1.0,
    ...          inner_steps=16, inner_lr=0.1)
    >>> check(c)
    Traceback (most recent call last):
    ...
    ValueError: --config.lam=-1.0: must be a number > 0
  """
  def bad(field, rule):
    raise ValueError(f"--config.{field}={c.get(field)!r}: {rule}")

  for field, choices in _CHOICES.items():
    if field in c and c[field] not in choices:
      bad(field, f"must be one of {', '.join(choices)}")
  for field, low in _AT_LEAST.items():
    value = c.get(field)
    if field in c and (not isinstance(value, (int, float))
                       or isinstance(value, bool) or value < low):
      bad(field, f"must be a number >= {low}")
  for field in _POSITIVE:
    value = c.get(field)
    if field in c and (not isinstance(value, (int, float)) or value <= 0):
      bad(field, "must be a number > 0")
  dataset = c.get("dataset")
  if dataset in _CLASSES:
    if c.ways > _CLASSES[dataset]:
      bad("ways", f"must be at most {_CLASSES[dataset]}, the classes of "
                  f"{dataset}'s smallest split")
    for field in ("train_queries", "test_queries"):
      shots = train_shots(c) if field == "train_queries" else c.shots
      if shots + c[field] > _PER_CLASS[dataset]:
        bad(field, f"shots + {field} must be at most {_PER_CLASS[dataset]}, "
                   f"the examples per class of {dataset}")
  support = c.get("ways", 1) * train_shots(c)
  if c.get("algorithm") == "reptile" and support % c.get("inner_minibatches", 1):
    bad("inner_minibatches", f"must divide the {support} training support "
                             f"examples (ways x train_shots)")
  devices = c.get("cpu_devices", 0) or c.get("num_devices", 1)
  if devices and c.get("meta_batch", 1) % devices:
    field = "cpu_devices" if c.get("cpu_devices", 0) else "num_devices"
    bad("meta_batch", f"must be divisible by the {devices} devices of "
                      f"--config.{field}")


# What a run behaved as before each newer field existed: config.json files
# written then lack the field, and upgrade() fills it in with this value (not
# today's default, where the two differ: iMAML-HF's Newton steps used the
# Hessian until the Gauss-Newton default).
BEFORE_FIELD = {
    "adam_eps": 1e-8, "init": "default", "inner_loop": "proximal",
    "meta_lr_schedule": "constant", "cg_method": "jax", "task_chunk": 0,
    "num_devices": 1, "cpu_devices": 0, "newton_curvature": "hessian",
    "test_inner_steps": 0, "keep_checkpoint_every": 0,
    "max_train_minutes": 0.0, "warn_inner_grad_ratio": 0.5,
    "warn_cg_relative_residual": 1.0, "eval_chunk": 100, "source_dir": "",
    "rotations": False, "max_nonfinite_steps": 5, "train_shots": 0,
    "inner_minibatches": 1, "filters": 64, "max_pool": False,
}


def upgrade(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A config read from an older config.json, with every newer field filled in.

  The one place that knows what old runs did (:data:`BEFORE_FIELD`; a missing
  ``newton_cg_steps`` was ``cg_steps``). Code then reads fields directly.

  Examples:
    >>> import ml_collections
    >>> old = ml_collections.ConfigDict({"algorithm": "imaml_hf",
    ...                                  "cg_steps": 5})
    >>> c = upgrade(old)
    >>> c.newton_curvature, c.newton_cg_steps, c.adam_eps
    ('hessian', 5, 1e-08)
  """
  c = ml_collections.ConfigDict(c.to_dict())
  for field, value in BEFORE_FIELD.items():
    if field not in c:
      c[field] = value
  if "newton_cg_steps" not in c and "cg_steps" in c:
    c.newton_cg_steps = c.cg_steps
  # Until 2026-12-02 only folders read filters and max_pool: a Mini-ImageNet
  # run's config.json held the defaults above, 64 and False, while its model
  # was MAML's 32 filters with max-pools (that combination is read as such).
  if (c.get("dataset") == "mini_imagenet"
      and (c.get("filters"), c.get("max_pool")) == (64, False)):
    c.filters, c.max_pool = 32, True
  return c
