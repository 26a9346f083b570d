"""The README's Python code blocks run as written."""

import os
import pathlib
import re

from helpers import write_class_folders

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
  # The user's folder the README adapts to: five class folders of drawings.
  test = tmp_path / "my_symbols" / "test"
  write_class_folders(str(test), [3] * 5, image_size=40)
  for i, name in enumerate(["alpha", "beta", "gamma", "delta", "eps"]):
    os.rename(test / f"class{i:02d}", test / name)
  os.symlink(REPO / "results", tmp_path / "results")
  monkeypatch.chdir(tmp_path)
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
  assert len(blocks) >= 3
  namespace = {}
  for block in blocks:   # later blocks build on earlier ones
    exec(compile(block, str(README), "exec"), namespace)
  assert "cg_residual" in namespace["metrics"]
  assert namespace["names"] == ["alpha", "beta", "gamma", "delta", "eps"]
  assert namespace["labels"].shape == (10,)
