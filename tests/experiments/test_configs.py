"""Configs are plain data: building any of them imports nothing heavy."""

import os
import subprocess
import sys

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
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO,
                       capture_output=True, text=True, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
