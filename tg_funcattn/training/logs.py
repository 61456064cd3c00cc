"""The layout of a run's Lightning logs: the first run into an output folder logs
in ``<out>/logs``, each later run into it (e.g. a resume) in
``<out>/logs/version_N``, N = 1, 2, ..., so that no run rewrites the logs of an
earlier one."""
from __future__ import annotations

from pathlib import Path
from typing import List, Union

LOGS = "logs"


def _versions(logs: Path) -> List[int]:
    return sorted(int(p.name[8:]) for p in logs.glob("version_*") if p.name[8:].isdigit())


def new_version(out: Union[str, Path]) -> Union[str, int]:
    """The log version of a new run into ``out``: ``""`` (``<out>/logs``
    itself) for the first, else one more than the last ``version_N``."""
    logs = Path(out) / LOGS
    if not logs.is_dir() or not any(logs.iterdir()):
        return ""
    return max(_versions(logs), default=0) + 1


def metrics_files(out: Union[str, Path]) -> List[Path]:
    """The ``metrics.csv`` of every run into ``out`` that wrote one, in order."""
    logs = Path(out) / LOGS
    files = [logs / "metrics.csv"] + [logs / f"version_{v}" / "metrics.csv" for v in _versions(logs)]
    return [f for f in files if f.is_file()]
