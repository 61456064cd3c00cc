import os
import sys

import pytest
import torch

# the shared modules of the tests (helpers, probes, reference), imported by name
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(12345)
    yield
