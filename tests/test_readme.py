"""The README's Python examples run as written."""
import os
import re

import pytest
import torch
from helpers import requires

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
BLOCKS = re.findall(r"```python\n(.*?)```", open(README).read(), re.S)


@pytest.mark.parametrize("index", [pytest.param(i, marks=requires("trimesh")) if "trimesh" in block else i
                                   for i, block in enumerate(BLOCKS)])
def test_readme_example_runs(index):
    namespace = {}
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), namespace)
    # every block ends with the output of a layer or network of width 128 on its nodes:
    # finite, and varying across the nodes (a layer that ignored its input would not)
    out = namespace["out"]
    assert out.shape[-1] == 128 and torch.isfinite(out).all()
    assert out.reshape(-1, 128).std(0).mean() > 1e-3
