"""Mini-ImageNet configs, training and evaluation on a tiny generated data set."""

import functools
import json

import numpy as np
import pytest

from experiments import common
from experiments.configs import mini_imagenet as mi_config
from imaml_jax.data import mini_imagenet
from helpers import tiny_mini_imagenet_builder
from helpers import tiny_mini_imagenet_rows
from helpers import write_mini_imagenet_source


def test_configs_follow_the_protocol():
  for algorithm in common.ALGORITHMS:
    c = mi_config.get_config(algorithm)
    assert (c.ways, c.shots, c.train_queries, c.test_queries) == (5, 1, 15, 15)
    assert c.dataset == "mini_imagenet" and not c.rotations
  gd = mi_config.get_config("imaml_gd")
  assert (gd.lam, gd.inner_steps, gd.cg_steps) == (0.5, 10, 5)
  maml = mi_config.get_config("maml")
  assert (maml.meta_batch, maml.inner_steps, maml.inner_lr,
          maml.test_inner_steps) == (4, 5, 0.01, 10)
  with pytest.raises(ValueError, match="imaml_gd"):
    mi_config.get_config("protonet")


@pytest.fixture
def tiny_source(tmp_path, monkeypatch):
  """Source zips of 6/5/5 classes x 4 images; the loader uses their builder."""
  classes = {"train": 6, "validation": 5, "test": 5}
  source = tmp_path / "source"
  source.mkdir()
  write_mini_imagenet_source(str(source), "zips",
                             tiny_mini_imagenet_rows(classes, 4))
  builder = tiny_mini_imagenet_builder(tmp_path, classes, 4)
  monkeypatch.setattr(mini_imagenet, "load_mini_imagenet", functools.partial(
      mini_imagenet.load_mini_imagenet, builder_cls=builder))
  return str(source), str(tmp_path / "tfds")


# MAML on a time budget so small that training stops after its first logging
# interval of its 6 steps, with the hooks run there. (iMAML-HF's 4 trained
# Newton steps at test are the protocol's, checked in test_protocol; its
# training and test adaptation run in notebook 04 and the README.)
def test_training_and_evaluation_run_with_test_inner_steps(tiny_source,
                                                           tmp_path):
  from experiments import evaluate, train
  source, data_dir = tiny_source
  steps = 3
  c = mi_config.get_config("maml")
  c.inner_steps = 1   # a smaller graph to compile; the paper's 10 at test
  c.update(meta_steps=6, meta_batch=2, train_queries=2,
           test_queries=2, log_every=3, eval_every=6, val_episodes=4,
           checkpoint_every=6,
           test_episodes=8, eval_chunk=4, test_inner_steps=2, filters=8,
           max_train_minutes=1e-4,
           source_dir=source, data_dir=data_dir)
  workdir = tmp_path / "maml"
  train.train(c, str(workdir), progress=False)
  rows = [json.loads(l) for l in open(workdir / "metrics.jsonl")]
  assert [r["step"] for r in rows if r["kind"] == "train"] == [steps]
  assert all(np.isfinite(r["query_loss"]) for r in rows if r["kind"] == "train")
  assert [r["step"] for r in rows if r["kind"] == "validation"] == [steps]
  results = evaluate.evaluate(str(workdir), ("wide", "paper"))
  assert results["dataset"] == "mini_imagenet"
  assert results["setting"] == "5-way 1-shot"
  wide, paper = results["protocol"], results["paper"]["protocol"]
  assert results["episodes"] == 8 and wide["queries_per_class"] == 2
  assert wide["test_inner_steps"] == 2 and results["meta_steps"] == steps
  # The paper protocol: K = 1 query per class, no rotations on Mini-ImageNet,
  # MAML's published 10 test steps.
  assert paper["queries_per_class"] == 1 and not paper["rotate_test_classes"]
  assert paper["test_inner_steps"] == 10
