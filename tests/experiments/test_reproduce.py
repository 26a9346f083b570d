"""One command per cell: stored results re-evaluate, render and resume anywhere."""

import json
import os
import shutil

import chex
import pytest

from experiments import common
from experiments import evaluate
from experiments import paper
from experiments import protocol
from experiments import reproduce
from experiments import results_page
from experiments import train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CELL = "omniglot-5w1s-maml"


def tiny(data_dir, **extra):
  # 16 filters: the cell's pipeline at a quarter of Omniglot's channels.
  return {"meta_steps": 6, "meta_batch": 2, "filters": 16, "log_every": 2,
          "eval_every": 2, "val_episodes": 4, "checkpoint_every": 2,
          "keep_checkpoint_every": 2, "cpu_devices": 0, "eval_chunk": 5,
          "data_dir": data_dir, **extra}


def theta(folder):
  return evaluate.load_run(folder).state.params


def make_best(folder, step):
  """Makes ``step`` the best validation of a stored cell's curve, whatever
  the tiny net scored there."""
  path = os.path.join(folder, "metrics.jsonl")
  rows = [json.loads(l) for l in open(path)]
  with open(path, "w") as f:
    for r in rows:
      if r["kind"] == "validation" and r["step"] == step:
        r["accuracy"] = 1.0
      f.write(json.dumps(r) + "\n")


def test_a_cell_stores_theta_that_reevaluates_renders_and_resumes_elsewhere(
    omniglot_data_dir, tmp_path):
  results, runs = str(tmp_path / "results"), str(tmp_path / "runs")
  out = reproduce.reproduce(CELL, results, runs, episodes=10,
                            overrides=tiny(omniglot_data_dir), progress=False)
  folder = os.path.join(results, CELL)
  assert sorted(os.listdir(folder)) == ["config.json", "metrics.jsonl",
                                        "results.json", "theta.msgpack"]
  stored = json.load(open(os.path.join(folder, "results.json")))
  assert stored == json.loads(json.dumps(out))
  assert stored["protocol"] == {
      "name": "paper", "queries_per_class": 1, "rotate_test_classes": True,
      "test_inner_steps": 3, "adaptation": "trained", "test_lam": None,
      "checkpoint": "validation"}
  assert stored["wide"]["protocol"]["queries_per_class"] == 5
  # The reported checkpoint is the one with the best validation accuracy.
  validation = protocol.validation_curve(os.path.join(runs, CELL))
  assert sorted(validation) == [2, 4, 6]
  best = max(validation, key=lambda s: (validation[s], s))
  assert stored["meta_steps"] == best and stored["trained_meta_steps"] == 6
  assert stored["protocol"]["checkpoint"] == "validation"
  assert stored["episodes"] == 10
  assert stored["differs_from_paper"]["meta_batch"] == [2, 32]
  assert "variant: " in stored["recipe"] and "'meta_batch': 2" in stored["recipe"]
  for key in ("accuracy", "ci95", "meta_batch", "train_minutes", "hardware",
              "date", "commit", "recipe"):
    assert key in stored

  # The stored theta alone re-evaluates to the stored figure.
  again = evaluate.evaluate(folder, ("paper",), 10, output=None)
  assert again["accuracy"] == stored["accuracy"]
  assert again["meta_steps"] == best

  # results.json round-trips through the renderer.
  page = results_page.render(results)
  line = next(l for l in page.splitlines() if l.startswith("| MAML | 98.7"))
  assert f"**{100 * stored['accuracy']:.2f} ± {100 * stored['ci95']:.2f}**" in line
  verdict = paper.verdict(100 * stored["accuracy"], paper.parse_cell(CELL))
  assert f"| {verdict} |" in line and "meta_batch 2 (32)" in line

  # A budget stop stores a checkpoint; a fresh machine (no runs/) resumes it.
  results2, runs2 = str(tmp_path / "results2"), str(tmp_path / "runs2")
  status = reproduce.reproduce(
      CELL, results2, runs2, episodes=10, progress=False,
      overrides=tiny(omniglot_data_dir), session_minutes=1e-6)
  assert status["status"] == "training" and status["meta_steps"] == 2
  folder2 = os.path.join(results2, CELL)
  assert reproduce.CHECKPOINT in os.listdir(folder2)
  so_far = protocol.validation_curve(folder2)[2]
  line = next(l for l in results_page.render(results2).splitlines()
              if l.startswith("| MAML | 98.7"))
  assert "training: 2 of 6" in line
  assert f"validation {100 * so_far:.2f} at step 2 (best so far)" in line
  results_page.plot(results2, str(tmp_path / "training.png"))   # dashed curve
  # The best kept checkpoint must travel with the cell as well (below).
  make_best(folder2, 2)
  shutil.rmtree(runs2)
  # Resuming it with other training settings stops before anything trains.
  with pytest.raises(train.ResumeMismatch,
                     match="meta_lr=0.001 there, 0.002 here"):
    reproduce.reproduce(CELL, results2, runs2, episodes=10, progress=False,
                        overrides=tiny(omniglot_data_dir, meta_lr=2e-3))
  # A stop at step 4 stores step 2 beside the latest; a second fresh machine
  # still reports step 2.
  status = reproduce.reproduce(
      CELL, results2, runs2, episodes=10, progress=False,
      overrides=tiny(omniglot_data_dir), session_minutes=1e-6)
  assert status["meta_steps"] == 4
  assert reproduce.BEST_CHECKPOINT in os.listdir(folder2)
  at_2 = evaluate.load_run(os.path.join(runs2, CELL), 2).state.params
  shutil.rmtree(runs2)
  out2 = reproduce.reproduce(CELL, results2, runs2, episodes=10,
                             overrides=tiny(omniglot_data_dir), progress=False)
  assert sorted(os.listdir(folder2)) == sorted(os.listdir(folder))
  assert out2["meta_steps"] == 2 and out2["trained_meta_steps"] == 6
  chex.assert_trees_all_equal(theta(folder2), at_2)
  # Twice moved, training ended where the uninterrupted run ended.
  chex.assert_trees_all_equal(
      evaluate.load_run(os.path.join(runs, CELL), 6).state,
      evaluate.load_run(os.path.join(runs2, CELL), 6).state)
  # Its stored curve says where each session's meta-steps ran.
  starts = [json.loads(l) for l in open(os.path.join(folder2, "metrics.jsonl"))]
  starts = [r for r in starts if r["kind"] == "start"]
  assert [r["step"] for r in starts] == [0, 2, 4]
  assert {r["hardware"] for r in starts} == {common.hardware()}


def test_a_stopping_rule_stores_the_validation_chosen_checkpoint_so_far(
    omniglot_data_dir, tmp_path):
  results, runs = str(tmp_path / "results"), str(tmp_path / "runs")
  run = dict(episodes=10, progress=False, overrides=tiny(omniglot_data_dir))
  with pytest.raises(reproduce.NothingToStop, match="needs a run to stop"):
    reproduce.reproduce(CELL, results, runs, stop_early="a rule", **run)
  folder = os.path.join(results, CELL)
  for step in (2, 4):   # two sessions stop on their budget, on two machines
    status = reproduce.reproduce(CELL, results, runs, session_minutes=1e-6,
                                 **run)
    assert status["meta_steps"] == step
    if step == 2:
      make_best(folder, 2)
      shutil.rmtree(runs)
  at_2 = evaluate.load_run(os.path.join(runs, CELL), 2).state.params
  shutil.rmtree(runs)   # stopped on a third machine, from the stored cell
  with pytest.raises(train.ResumeMismatch, match="meta_lr"):
    reproduce.reproduce(CELL, results, runs, stop_early="a rule",
                        **{**run, "overrides": tiny(omniglot_data_dir,
                                                    meta_lr=2e-3)})
  out = reproduce.reproduce(CELL, results, runs, stop_early="a rule", **run)
  # Nothing trained: the stored cell is the run at step 4, reported at its
  # validation-chosen checkpoint, with the stop and its reason.
  assert out["stopped_early"] == {"step": 4, "planned_meta_steps": 6,
                                  "reason": "a rule"}
  assert out["trained_meta_steps"] == 4 and out["meta_steps"] == 2
  assert sorted(os.listdir(folder)) == ["config.json", "metrics.jsonl",
                                        "results.json", "theta.msgpack"]
  chex.assert_trees_all_equal(theta(folder), at_2)
  page = results_page.render(results)
  line = next(l for l in page.splitlines() if l.startswith("| MAML | 98.7"))
  assert "| 2 of 4 (stopped early; 6 planned) x 2 |" in line
  assert "Stopped early at step 4 of 6: a rule" in page
  listed = next(l for l in reproduce.status(results) if l.startswith(CELL))
  assert "2 meta-steps (stopped early at 4 of 6)" in listed


def test_committed_results_page_and_readme_rows_are_a_fresh_render():
  results = os.path.join(REPO, reproduce.RESULTS)
  with open(os.path.join(REPO, results_page.PAGE)) as f:
    assert f.read() == results_page.render(results), (
        "docs/results.md is stale: run python -m experiments.results_page")
  with open(os.path.join(REPO, results_page.README)) as f:
    readme = f.read()
  assert results_page.with_headline(readme, results) == readme, (
      "README's result rows are stale: run python -m experiments.results_page")


def test_set_flags_take_the_fields_types_and_reject_bad_items_in_one_line():
  assert reproduce.parse_sets(CELL, ["meta_lr=5e-4", "meta_batch=16",
                                     "rotations=false"]) == {
      "meta_lr": 5e-4, "meta_batch": 16, "rotations": False}
  assert type(reproduce.parse_sets(CELL, ["meta_lr=1"])["meta_lr"]) is float
  c = reproduce.cell_config(CELL, reproduce.parse_sets(CELL, ["meta_lr=5e-4"]))
  assert c.meta_lr == 5e-4 and c.meta_batch == reproduce.cell_config(
      CELL).meta_batch
  for bad, says in [("meta_batch=1.5", "type int"), ("no_such=1", "FIELD"),
                    ("meta_lr", "FIELD=VALUE"), ("rotations=yes", "type bool")]:
    with pytest.raises(ValueError, match=says) as e:
      reproduce.parse_sets(CELL, [bad])
    assert "\n" not in str(e.value)


def test_every_recipe_names_a_cell_and_only_fields_of_its_config():
  for name, (fields, why) in reproduce.RECIPES.items():
    c = reproduce.cell_config(name)
    assert why and all(c[k] == v for k, v in fields.items()), name
  # A misspelt field would otherwise be added silently and train the default.
  with pytest.raises(ValueError, match="sets inner_step, expected") as e:
    reproduce.cell_config(CELL, {"inner_step": 32, "meta_lr": 1e-3})
  assert "\n" not in str(e.value)


def test_a_run_resumed_on_another_host_names_each_host_in_its_row(tmp_path):
  starts = [(0, "CPU: A, 2 cores"), (2000, "CPU: A, 2 cores"),
            (4000, "CPU: B, 2 cores")]
  with open(tmp_path / "metrics.jsonl", "w") as f:
    for step, hardware in starts:
      f.write(json.dumps({"kind": "start", "step": step,
                          "hardware": hardware}) + "\n")
      f.write(json.dumps({"kind": "train", "step": step + 50,
                          "query_accuracy": 0.5, "seconds_per_step": 1.0})
              + "\n")
  hosts = common.training_hosts(str(tmp_path))
  assert hosts == [(0, "CPU: A, 2 cores"), (4000, "CPU: B, 2 cores")]
  hardware = results_page._hardware   # pylint: disable=protected-access
  r = {"hardware": "CPU: B, 2 cores", "training_hosts": hosts}
  assert hardware(r) == ("CPU: A, 2 cores from step 0, then "
                         "CPU: B, 2 cores from step 4,000")
  assert hardware(dict(r, training_hosts=hosts[:1])) == "CPU: B, 2 cores"


def test_a_curve_on_hardware_no_other_run_used_says_so():
  a, b = "CPU: A, 2 cores", "CPU: B, 2 cores"
  notes = results_page.host_notes
  # All on the same hardware: nothing to say.
  assert notes({"x": ({a}, True), "y": ({a}, True)}) == {"x": "", "y": ""}
  # One run wholly elsewhere; one moved there; one whose record of its first
  # meta-steps is missing cannot claim to have run wholly elsewhere.
  assert notes({"x": ({a}, True), "y": ({b}, True)}) == {"x": "on A",
                                                         "y": "on B"}
  assert notes({"x": ({a}, True), "y": ({a}, True), "z": ({b}, True)})["z"] \
      == "on B"
  assert notes({"x": ({a}, True), "z": ({a, b}, True)})["z"] == "partly on B"
  assert notes({"x": ({a}, True), "z": ({b}, False)})["z"] == "partly on B"
  assert notes({"x": ({a}, True)}) == {"x": ""}   # alone in its panel
