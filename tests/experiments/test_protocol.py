"""The evaluation protocols: the paper's test-time settings and checkpoint choice."""

import json

import pytest

from experiments import paper
from experiments import protocol


@pytest.mark.parametrize("cell", paper.cells(), ids=lambda c: c.name)
def test_paper_protocol_has_k_queries_per_class_and_rotates_omniglot_only(cell):
  c = paper.default_config(cell)
  p = protocol.protocol("paper", c)
  assert p.queries_per_class == cell.shots
  assert p.rotate_test_classes == (cell.dataset == "omniglot")
  wide = protocol.protocol("wide", c)
  assert wide.queries_per_class == c.test_queries
  assert not wide.rotate_test_classes


@pytest.mark.parametrize("cell,steps", [
    ("omniglot-5w1s-maml", 3), ("omniglot-5w5s-fomaml", 3),
    ("omniglot-20w1s-maml", 5), ("omniglot-20w5s-fomaml", 5),
    ("mini_imagenet-5w1s-maml", 10), ("mini_imagenet-5w1s-fomaml", 10),
    ("omniglot-5w1s-reptile", 50), ("mini_imagenet-5w1s-reptile", 50),
    ("omniglot-5w1s-imaml_gd", 16), ("omniglot-20w1s-imaml_gd", 25),
    ("omniglot-5w1s-imaml_hf", 4), ("mini_imagenet-5w1s-imaml_gd", 10),
    ("mini_imagenet-5w1s-imaml_hf", 4)])
def test_test_time_steps_follow_the_published_ones(cell, steps):
  c = paper.default_config(paper.parse_cell(cell))
  p = protocol.protocol("paper", c)
  assert p.test_inner_steps == steps and p.adaptation == "trained"
  assert p.test_lam == (c.lam if c.algorithm.startswith("imaml") else None)


def test_the_authors_lam0_adaptation_is_a_switch_for_imaml_only():
  gd = paper.default_config(paper.parse_cell("omniglot-5w1s-imaml_hf"))
  p = protocol.protocol("paper", gd, adaptation="gd_lam0")
  assert (p.adaptation, p.test_inner_steps, p.test_lam) == ("gd_lam0", 16, 0.0)
  maml = paper.default_config(paper.parse_cell("omniglot-5w1s-maml"))
  p = protocol.protocol("paper", maml, adaptation="gd_lam0")
  assert (p.adaptation, p.test_inner_steps) == ("trained", 3)


def test_wide_protocol_keeps_the_configs_test_settings():
  c = paper.default_config(paper.parse_cell("mini_imagenet-5w1s-maml"))
  p = protocol.protocol("wide", c)
  assert (p.queries_per_class, p.test_inner_steps) == (15, 10)


def test_bad_protocol_names_are_rejected():
  c = paper.default_config(paper.parse_cell("omniglot-5w1s-maml"))
  with pytest.raises(ValueError, match="protocol must be one of"):
    protocol.protocol("widest", c)
  with pytest.raises(ValueError, match="adaptation must be one of"):
    protocol.protocol("paper", c, adaptation="lam0")


def test_checkpoint_selection_reads_validation_and_never_test_accuracy(
    tmp_path):
  rows = [{"kind": "train", "step": 500, "query_accuracy": 1.0},
          {"kind": "validation", "step": 500, "accuracy": 0.90},
          {"kind": "test", "step": 1000, "accuracy": 0.99},
          {"kind": "validation", "step": 1000, "accuracy": 0.80},
          {"kind": "validation", "step": 1500, "accuracy": 0.95}]
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.write("".join(json.dumps(r) + "\n" for r in rows))
  curve = protocol.validation_curve(str(tmp_path))
  assert curve == {500: 0.90, 1000: 0.80, 1500: 0.95}
  kept = [500, 1000]   # 1500 was validated but its checkpoint is gone
  assert protocol.select_checkpoint(kept, curve, "validation") == 500
  assert protocol.select_checkpoint(kept, curve, "final") == 1000
  with pytest.raises(ValueError, match="validation accuracy"):
    protocol.select_checkpoint([700], curve, "validation")
