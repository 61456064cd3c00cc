"""Smoke runs of the scripts in examples/ that need no optional package (the
training examples run in tests/training/)."""
import json
import subprocess
import sys

import pytest
from helpers import ROOT


@pytest.mark.slow
def test_quickstart_runs_and_reports_metrics(tmp_path):
    cmd = [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--epochs", "2",
           "--shapes", "8", "--points", "128", "--device", "cpu", "--root", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    losses = [float(line.split()[3]) for line in lines if line.startswith("epoch")]
    assert len(losses) == 2 and losses[1] < losses[0]
    result = json.loads(lines[-1])
    assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 <= result["instance_miou"] <= 1.0
    assert result["epochs"] == 2
