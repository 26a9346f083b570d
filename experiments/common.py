"""Pieces shared by the experiment entry points: learners, optimizers, data, checkpoints."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import subprocess

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

import imaml_jax
from experiments.configs import base
from imaml_jax.data import folder
from imaml_jax.data import mini_imagenet
from imaml_jax.data import omniglot

ALGORITHMS = base.ALGORITHMS
INNER_LOOPS = {"proximal": imaml_jax.gradient_descent,
               "pull_back": imaml_jax.pull_back_gradient_descent}
# The implicit system's linear solve a config's cg_method names.
LINEAR_SOLVES = {"jax": imaml_jax.solve_cg, "truncated": imaml_jax.truncated_cg}
INITS = ("default", "xavier_1.73")
IMAGE_SHAPES = {"omniglot": (28, 28, 1), "mini_imagenet": (84, 84, 3)}
REPO = pathlib.Path(__file__).resolve().parents[1]


def image_shape(c) -> tuple[int, int, int]:
  """``(H, W, channels)`` of a config's images (a folder's from its config)."""
  if c.dataset == "folder":
    return (c.image_size, c.image_size, c.channels)
  return IMAGE_SHAPES[c.dataset]


def build_learner(c, loss, test: bool = False) -> imaml_jax.Learner:
  """The learner a config names, with its inner-loop settings.

  The one place a learner is built from a config: training, evaluation and
  the benchmarks (``benchmarks/meta_step.py``) all call it, so a benchmark
  measures exactly what trains.

  With ``test``, the inner loop runs ``c.test_inner_steps`` steps (GD steps,
  or Newton steps for iMAML-HF) when that is set, as MAML's Mini-ImageNet
  evaluation does (5 steps in training, 10 at test).
  """
  if test and c.test_inner_steps:
    c = c.copy_and_resolve_references()
    c["newton_steps" if c.algorithm == "imaml_hf" else "inner_steps"] = (
        c.test_inner_steps)
  chunk = c.task_chunk or None   # 0: vmap over the whole batch
  if c.algorithm == "imaml_gd":
    inner_loop = c.inner_loop
    if inner_loop not in INNER_LOOPS:
      raise ValueError(f"inner_loop must be one of {tuple(INNER_LOOPS)}, got "
                       f"{inner_loop!r}.")
    solver = INNER_LOOPS[inner_loop](c.inner_steps, c.inner_lr)
  elif c.algorithm == "imaml_hf":
    solver = imaml_jax.newton_cg(
        c.newton_steps, cg_steps=c.newton_cg_steps,
        curvature=c.newton_curvature)
  elif c.algorithm == "reptile":
    return imaml_jax.reptile(loss, c.inner_steps, c.inner_lr,
                             minibatches=c.inner_minibatches,
                             task_chunk=chunk)
  elif c.algorithm in ("maml", "fomaml"):
    return getattr(imaml_jax, c.algorithm)(loss, c.inner_steps, c.inner_lr,
                                           task_chunk=chunk)
  else:
    raise ValueError(f"unknown algorithm {c.algorithm!r}; expected one of "
                     f"{', '.join(ALGORITHMS)}.")
  return imaml_jax.imaml(loss, solver, c.lam, c.cg_steps, c.system,
                         linear_solve=LINEAR_SOLVES[c.cg_method],
                         task_chunk=chunk)


def meta_optimizer(c) -> optax.GradientTransformation:
  """Adam (epsilon ``c.adam_eps``) at a constant rate (the paper's) or cosine-decayed."""
  eps = c.adam_eps
  if c.meta_lr_schedule == "constant":
    return optax.adam(c.meta_lr, eps=eps)
  if c.meta_lr_schedule == "cosine":
    return optax.adam(optax.cosine_decay_schedule(c.meta_lr, c.meta_steps),
                      eps=eps)
  raise ValueError(f"meta_lr_schedule must be 'constant' or 'cosine', got "
                   f"{c.meta_lr_schedule!r}.")


_SOURCE_ENV = {"omniglot": "OMNIGLOT_DIR", "mini_imagenet": "MINI_IMAGENET_DIR"}


def default_source_dir(dataset: str) -> str | None:
  """Where a data set's source files are on this project's machines, if there.

  ``$OMNIGLOT_DIR`` / ``$MINI_IMAGENET_DIR`` wins; else
  ``../shared/data/<dataset>`` beside the checkout; else ``None`` (Omniglot is
  then downloaded; Mini-ImageNet needs its files, see
  :mod:`imaml_jax.data.mini_imagenet`).
  """
  for path in (os.environ.get(_SOURCE_ENV[dataset]),
               REPO.parent / "shared" / "data" / dataset):
    if path and os.path.isdir(path):
      return os.fspath(path)
  return None


def initial_params(c, model, key: jax.Array, x: jax.Array):
  """The initial meta-parameters ``c.init`` asks for (see ``configs/base.py``).

  ``key`` draws flax's initialisation; the Xavier redraw takes its own key,
  ``fold_in(key, 1)``.
  """
  init = c.init
  if init not in INITS:
    raise ValueError(f"init must be one of {INITS}, got {init!r}.")
  theta = imaml_jax.init_params(model, key, x)
  if init == "xavier_1.73":
    theta = imaml_jax.xavier_uniform_init(theta, jax.random.fold_in(key, 1),
                                          gain=1.73, bias_range=(0.0, 0.05))
  return theta


def model_and_loss(c):
  """The Conv4 of the config's data set and its cross-entropy loss."""
  if c.dataset not in base.DATASETS:
    raise ValueError(f"unknown dataset {c.dataset!r}.")
  model = imaml_jax.Conv4(c.ways, filters=c.filters, max_pool=c.max_pool)
  return model, imaml_jax.cross_entropy_loss(imaml_jax.apply_fn(model))


def load_images(c, split: str):
  """A split as one uint8 device array ``(classes, examples, H, W[, C])``.

  Read from ``c.source_dir``, or where :func:`default_source_dir` finds the
  data set. Training classes get their rotations when ``c.rotations`` is set.
  A folder of your own images (``c.dataset == "folder"``) comes as an
  :class:`imaml_jax.ImageSet` (its classes may differ in size), checked to
  make the config's episodes: ``ways`` classes of ``shots + queries`` images,
  ``train_queries`` in training, the larger of ``test_queries`` and ``shots``
  (the paper protocol's) at validation and test.
  """
  data_dir = c.data_dir or None
  if c.dataset == "folder":
    if not c.source_dir:
      raise folder.FolderError("a folder dataset needs --config.source_dir, "
                               "the folder of class folders.")
    data = folder.load_folder(split, c.source_dir, c.image_size, c.channels,
                              data_dir, c.split_seed, c.split_fractions)
    examples = (base.train_shots(c) + c.train_queries if split == "train"
                else c.shots + max(c.test_queries, c.shots))
    folder.check_for_episodes(data, split, c.ways, examples)
    images = data.images
  elif c.dataset == "omniglot":
    images = omniglot.load_omniglot(split, data_dir=data_dir,
                                    source_dir=c.source_dir or
                                    default_source_dir(c.dataset))
  elif c.dataset == "mini_imagenet":
    images = mini_imagenet.load_mini_imagenet(
        split, data_dir=data_dir,
        source_dir=c.source_dir or default_source_dir(c.dataset))
  else:
    raise ValueError(f"no loader for dataset {c.dataset!r}; expected "
                     f"'omniglot', 'mini_imagenet' or 'folder'.")
  images = jax.device_put(images)
  if split == "train" and c.rotations:
    images = imaml_jax.with_rotations(images)
  return images


def training_sampler(c, num_tasks: int):
  """``sample(key, images) -> Task``: ``num_tasks`` training episodes of ``c``.

  Each has ``c.ways`` classes of ``base.train_shots(c)`` support examples
  and ``c.train_queries`` queries.
  """
  shots = base.train_shots(c)

  def sample(key, images):
    return imaml_jax.sample_episodes(key, images, num_tasks, c.ways, shots,
                                     c.train_queries)

  return sample


def test_adaptation(c, loss, p):
  """``adapt(theta, support) -> phi`` as protocol ``p`` adapts at test.

  ``p`` is an :class:`experiments.protocol.Protocol`: the learner's own inner
  loop run for ``p.test_inner_steps`` steps, or plain GD on the support loss
  (lam 0) at the config's inner learning rate for ``"gd_lam0"``.
  """
  if p.adaptation == "gd_lam0":
    return imaml_jax.finetune(
        loss, imaml_jax.gradient_descent(p.test_inner_steps, c.inner_lr))
  c = c.copy_and_resolve_references()
  c.test_inner_steps = p.test_inner_steps
  return build_learner(c, loss, test=True).adapt


def make_evaluator(c, adapt, loss, queries: int, rotate: bool = False,
                   chunk: int | None = None):
  """``evaluate(theta, images, key, episodes) -> per-episode accuracy (numpy)``.

  Episodes (``queries`` per class, each class rotated by a random multiple of
  90 degrees with ``rotate``) are drawn on device with ``key`` and evaluated
  ``chunk`` (default ``c.eval_chunk``) at a time: ``adapt(theta, support)``
  of each, vmapped, then accuracy on its query set. The same key and chunk
  give the same episodes whatever ``adapt`` is.
  """
  chunk = chunk or c.eval_chunk

  @jax.jit
  def one_chunk(theta, images, key):
    tasks = imaml_jax.sample_episodes(key, images, chunk, c.ways, c.shots,
                                      queries, rotate=rotate)
    return imaml_jax.adapt_and_evaluate(adapt, loss.metrics, theta,
                                        tasks)["accuracy"]

  def evaluate(theta, images, key, episodes: int):
    keys = jax.random.split(key, -(-episodes // chunk))
    acc = np.concatenate([np.asarray(one_chunk(theta, images, k)) for k in keys])
    return acc[:episodes]

  return evaluate


def checkpoint_manager(workdir: str, keep_period: int | None = None):
  """Orbax manager of ``<workdir>/checkpoints`` keeping the last two.

  With ``keep_period``, checkpoints at multiples of it are kept as well (to
  evaluate a run at several points of its training).
  """
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, "checkpoints")),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=2, keep_period=keep_period or None, create=True))


def state_like(c, model) -> imaml_jax.TrainState:
  """A train state with the structure of ``c``'s runs, to restore into."""
  x = np.zeros((1,) + image_shape(c), np.float32)
  return imaml_jax.init_train_state(
      imaml_jax.init_params(model, jax.random.key(0), x), meta_optimizer(c))


def _unguarded(like: imaml_jax.TrainState) -> imaml_jax.TrainState:
  """``like`` as checkpoints before the non-finite guard stored it (the
  meta-optimizer's own state, without ``optax.ApplyIfFiniteState``)."""
  return like._replace(opt_state=like.opt_state.inner_state)


def _guard(old: imaml_jax.TrainState,
           like: imaml_jax.TrainState) -> imaml_jax.TrainState:
  """An old state with the guard's counters of ``like`` (none skipped yet)."""
  return old._replace(opt_state=like.opt_state._replace(
      inner_state=old.opt_state))


def restore(manager, like: imaml_jax.TrainState,
            step: int | None = None) -> imaml_jax.TrainState:
  """The checkpoint at ``step`` (default latest), in the structure of ``like``.

  Checkpoints written before the non-finite guard (2026-12-01) are upgraded:
  their optimizer state is wrapped with fresh counters.
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {manager.directory}.")

  def restore_as(target):
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    return jax.tree.unflatten(jax.tree.structure(target),
                              jax.tree.leaves(restored))

  try:
    return restore_as(like)
  except ValueError:   # a tree without the guard's state: an older run
    return _guard(restore_as(_unguarded(like)), like)


def state_from_bytes(like: imaml_jax.TrainState,
                     data: bytes) -> imaml_jax.TrainState:
  """A state stored with ``flax.serialization.to_bytes`` (``checkpoint.msgpack``),
  in the structure of ``like``; older states are upgraded as in :func:`restore`."""
  raw = flax.serialization.msgpack_restore(data)
  if "inner_state" in raw["opt_state"]:
    state = flax.serialization.from_state_dict(like, raw)
  else:
    state = _guard(flax.serialization.from_state_dict(_unguarded(like), raw),
                   like)
  return jax.tree.map(jnp.asarray, state)


def _metrics_rows(workdir: str, kind: str):
  """The rows of one ``kind`` in a run's ``metrics.jsonl``, in order."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      row = json.loads(line)
      if row.get("kind") == kind:
        yield row


def train_curve(workdir: str) -> tuple[list[int], list[float], list[float]]:
  """(steps, training accuracies, cumulative training seconds) of a run.

  Read from ``metrics.jsonl``: each logged interval's ``seconds_per_step``
  times its steps (meta-steps only: validation and checkpoints excluded).
  """
  steps, acc, seconds, total, last = [], [], [], 0.0, 0
  for row in _metrics_rows(workdir, "train"):
    if row["step"] <= last:
      continue   # a resumed run repeats no step; skip if it ever does
    total += row["seconds_per_step"] * (row["step"] - last)
    steps.append(row["step"])
    acc.append(row["query_accuracy"])
    seconds.append(total)
    last = row["step"]
  return steps, acc, seconds


def training_hosts(workdir: str) -> list[tuple[int, str]]:
  """``[(step, hardware)]``: where each start or resume of a run began.

  From the ``start`` rows of ``metrics.jsonl`` (runs since 2026-12-02; older
  runs have none), consecutive starts on the same hardware merged.
  """
  hosts = []
  if os.path.exists(os.path.join(workdir, "metrics.jsonl")):
    for row in _metrics_rows(workdir, "start"):
      if not hosts or hosts[-1][1] != row["hardware"]:
        hosts.append((int(row["step"]), row["hardware"]))
  return hosts


def train_seconds(workdir: str) -> float | None:
  """Training wall time of a run's meta-steps so far (None without metrics)."""
  if not os.path.exists(os.path.join(workdir, "metrics.jsonl")):
    return None
  seconds = train_curve(workdir)[2]
  return round(seconds[-1], 1) if seconds else 0.0


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
  """The CPU model and core count, e.g. 'AMD EPYC (family 23 model 1), 2 cores'.

  Virtual machines often report a bare model name ('AMD EPYC') for CPU
  generations whose speed differs several-fold (2,048-square float32 matmuls
  ran at 67 GFLOP/s on a family-23 'AMD EPYC' on 2026-12-02 and at 475 on
  the 'AMD EPYC' of 2026-12-01), so the family and model numbers are kept
  with it where /proc/cpuinfo has them.
  """
  try:
    with open(cpuinfo) as f:
      fields = {}
      for line in f:
        if not line.strip():
          break                             # the first processor only
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    model = fields["model name"]
  except (OSError, KeyError):
    model = platform.processor() or platform.machine()
  else:
    if "cpu family" in fields and "model" in fields:
      model += f" (family {fields['cpu family']} model {fields['model']})"
  return f"{model}, {os.cpu_count()} cores"


def hardware() -> str:
  """The first device in words, e.g. 'CPU: Intel(R) Xeon(R) Processor, 2 cores'."""
  device = jax.devices()[0]
  if device.platform == "cpu":
    return f"CPU: {cpu_name()}"
  return f"{device.platform.upper()}: {device.device_kind}"




# The code a process runs is the checkout it imported at start: record that,
# not HEAD at the end of a long run (a later commit, or results files written
# meanwhile, would be misattributed). Dirty means the code differs from HEAD.
_CODE = ("imaml_jax", "experiments")


def _code_commit() -> str | None:
  try:
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"],
                            cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--",
         *_CODE], cwd=REPO, capture_output=True, text=True,
        check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None
  return commit + ("+dirty" if dirty else "")


_COMMIT_AT_IMPORT = _code_commit()


def provenance() -> dict:
  """``{"date": "YYYY-MM-DD" (UTC), "commit": git HEAD[+dirty] or None}``.

  The commit is the checkout's when this module was imported (the code this
  process runs); ``+dirty`` if ``imaml_jax/`` or ``experiments/`` differed
  from it then.
  """
  today = datetime.datetime.now(datetime.timezone.utc).date()
  return {"date": today.isoformat(), "commit": _COMMIT_AT_IMPORT}