"""Small helpers shared by the test modules (imported like ``probes`` and
``reference``: ``tests/conftest.py`` puts this folder on ``sys.path``)."""
from pathlib import Path

#: the repository root (examples/, datasets/, benchmarks/, README.md)
ROOT = Path(__file__).resolve().parent.parent
