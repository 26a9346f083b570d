"""The sinusoid demo takes its config like the other scripts and learns."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_sinusoid_script_takes_config_overrides_and_reduces_the_mse():
  cmd = [sys.executable, "-m", "experiments.sinusoid",
         "--config.algorithm=maml", "--config.inner_steps=1",
         "--config.meta_steps=300", "--config.log_every=100",
         "--config.eval_tasks=100"]
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                       check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.startswith("maml on sinusoid regression")
  summary = json.loads(out.stdout.strip().splitlines()[-1])
  assert summary["algorithm"] == "maml" and summary["meta_steps"] == 300
  assert summary["mse_after"] < 0.5 * summary["mse_before"], summary


def test_sinusoid_script_rejects_unknown_fields():
  out = subprocess.run([sys.executable, "-m", "experiments.sinusoid",
                        "--config.no_such_field=1"], cwd=REPO,
                       capture_output=True, text=True, check=False)
  assert out.returncode != 0 and "no_such_field" in out.stderr
