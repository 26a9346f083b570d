"""The README's Python code blocks run as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
  assert len(blocks) >= 2
  namespace = {}
  for block in blocks:   # later blocks build on earlier ones
    exec(compile(block, str(README), "exec"), namespace)
  assert "cg_residual" in namespace["metrics"]
