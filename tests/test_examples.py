"""Runs of the scripts in examples/ that need no optional package (the
training examples run in tests/training/)."""
import collections
import json
import subprocess
import sys

import pytest
from helpers import ROOT


@pytest.mark.slow
def test_quickstart_learns_more_than_the_most_frequent_part(tmp_path):
    sizes = dict(num_train=8, num_val=1, num_test=2, num_points=128, seed=0)
    cmd = [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--epochs", "14",
           "--shapes", "8", "--points", "128", "--device", "cpu", "--root", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    losses = [float(line.split()[3]) for line in lines if line.startswith("epoch")]
    assert len(losses) == 14 and losses[-1] < losses[0]
    result = json.loads(lines[-1])
    assert result["epochs"] == 14
    # the baseline: every point of a test shape labelled with the part most frequent in the
    # training shapes of its category (0.62 here; the quickstart's 14 epochs reach 0.72; after 6,
    # 0.58 to 0.71 over seeds: too early to test)
    from tg_funcattn.datasets import SyntheticParts

    frequent = {}
    for data in SyntheticParts(tmp_path, split="train", **sizes):
        frequent.setdefault(int(data.category), collections.Counter()).update(data.y.tolist())
    test = SyntheticParts(tmp_path, split="test", **sizes)
    hits = sum(int((d.y == frequent[int(d.category)].most_common(1)[0][0]).sum()) for d in test)
    baseline = hits / sum(d.num_nodes for d in test)
    assert result["accuracy"] > baseline + 0.03, (result, baseline)
    assert 0.0 < result["instance_miou"] <= 1.0
