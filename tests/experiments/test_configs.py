"""Configs are plain data that import nothing heavy; bad values cost one line."""

import os
import subprocess
import sys

import pytest

from helpers import run_in_fresh_python

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_building_every_config_imports_neither_jax_nor_tfds_nor_orbax():
  code = (
      "import sys\n"
      "from experiments.configs import mini_imagenet, omniglot, sinusoid\n"
      "from experiments import paper\n"
      "for cell in paper.cells():\n"
      "  paper.default_config(cell); paper.paper_config(cell)\n"
      "sinusoid.get_config()\n"
      "heavy = [m for m in ('jax', 'tensorflow_datasets', 'orbax', 'optax')\n"
      "         if m in sys.modules]\n"
      "assert not heavy, heavy\n")
  run_in_fresh_python(code)


@pytest.mark.parametrize("flags,field", [
    (["--config.lam=-1"], "lam"), (["--config.ways=0"], "ways"),
    (["--config.meta_batch=9", "--config.cpu_devices=2"], "meta_batch"),
    (["--config.system=exakt"], "system"),
    (["--config.train_queries=20"], "train_queries"),
    (["--config=experiments/configs/omniglot.py:5way1shot-reptile",
      "--config.inner_minibatches=3"], "inner_minibatches")])
def test_bad_config_values_are_one_line_and_exit_status_2(tmp_path, flags,
                                                          field):
  cmd = [sys.executable, "-m", "experiments.train", "--workdir",
         str(tmp_path / "run")] + flags
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                       check=False)
  assert out.returncode == 2, out.stderr[-2000:]
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"error: --config.{field}=")
  assert not (tmp_path / "run").exists()   # nothing written
