"""benchmarks/gpu_suite.sh, the run prepared for a lent GPU: every file it names
exists, and its dry run (every step on the CPU at tiny sizes) passes."""
import os
import re
import subprocess

import pytest
from helpers import ROOT, requires

SUITE = ROOT / "benchmarks" / "gpu_suite.sh"


def test_every_file_the_suite_names_exists():
    named = set(re.findall(r"(?:tests|benchmarks)/[\w/]+\.(?:py|sh)", SUITE.read_text()))
    assert any(name.startswith("tests/") for name in named)
    assert any(name.startswith("benchmarks/bench_") for name in named)
    missing = sorted(name for name in named if not (ROOT / name).is_file())
    assert not missing, f"gpu_suite.sh names files that do not exist: {missing}"


@pytest.mark.slow
@requires("triton")
def test_the_dry_run_passes_and_writes_every_result(tmp_path):
    env = {**os.environ, "GPU_SUITE_DRY_RUN": "1", "OUT": str(tmp_path)}
    run = subprocess.run(["bash", str(SUITE)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(r"\d+ passed", run.stdout) and "failed" not in run.stdout
    for name in ("bench_kernels_cpu", "bench_scale_cpu"):
        assert (tmp_path / f"{name}.md").is_file() and (tmp_path / f"{name}.json").is_file()
    kernels = (tmp_path / "bench_kernels_cpu.md").read_text()
    assert "triton" in kernels  # the Triton kernels ran, through the interpreter
