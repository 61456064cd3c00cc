"""The README's Python examples run as written."""
import os
import re

import pytest
from helpers import requires

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
BLOCKS = re.findall(r"```python\n(.*?)```", open(README).read(), re.S)


@pytest.mark.parametrize("index", [pytest.param(i, marks=requires("trimesh")) if "trimesh" in block else i
                                   for i, block in enumerate(BLOCKS)])
def test_readme_example_runs(index):
    namespace = {}
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), namespace)
    assert "out" in namespace and namespace["out"].shape[-1] == 128
