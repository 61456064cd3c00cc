"""The command line starts quickly and refuses data folders that are not there."""
import subprocess
import sys

import pytest
from helpers import ROOT

from tg_funcattn.cli import main

HELPS = (["--help"], ["train", "segmentation", "--help"], ["train", "regression", "--help"],
         ["evaluate", "segmentation", "--help"], ["visualize", "--help"], ["precompute", "--help"])


def test_help_imports_neither_torch_nor_pyg():
    """``--help`` of every command builds the parser from plain-Python
    modules: torch and PyG (seconds to import) load only to run a command."""
    probe = ("import sys\nfrom tg_funcattn.cli import main\n"
             f"for argv in {HELPS!r}:\n"
             "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0\n"
             "print(sorted(m for m in ('torch', 'torch_geometric', 'lightning') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("argv", [
    ["train", "segmentation"], ["train", "regression"], ["evaluate", "segmentation", "--ckpt", "a.ckpt"],
    ["visualize", "--ckpt", "a.ckpt"], ["precompute", "--dataset", "synthetic"]])
def test_a_missing_root_is_an_error_not_a_new_dataset(tmp_path, capsys, argv):
    missing = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ["--root", str(missing)])
    assert exit_info.value.code == 2
    assert f"--root {missing}: no such folder" in capsys.readouterr().err
    assert not missing.exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "segmentation", "--mlp-ratio", "nan"], "'mlp_ratio' (--mlp-ratio) must be a finite number, got nan"),
    (["train", "segmentation", "--lr", "inf"], "'lr' (--lr) must be a finite number, got inf"),
    (["visualize", "--ckpt", "a.ckpt", "--num-pictures", "-3"], "--num-pictures: must be a positive int, got -3"),
    (["precompute", "--dataset", "synthetic", "--num-eigenpairs", "0"], "must be a positive int, got 0"),
])
def test_nonsense_numbers_are_usage_errors_naming_the_option(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
