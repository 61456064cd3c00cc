"""Foreign eigenbasis cache entries: every array's dtype and
shape are checked from its header before anything is allocated, and anything
unexpected is a corrupt entry: a warning naming the file, then recomputed and
overwritten."""
import io
import logging
import re
import zipfile

import numpy as np
import pytest
import torch
from helpers import icosphere, requires
from torch_geometric.data import Data

from tg_funcattn.geometry import eigen as eigen_module
from tg_funcattn.geometry.cache import FORMAT_VERSION
from tg_funcattn.transforms import LaplacianEigenbasis

pytestmark = requires("trimesh", "potpourri3d")


def sphere():
    vertices, faces = icosphere(2)
    return Data(pos=torch.tensor(vertices, dtype=torch.float32), face=torch.tensor(faces))


def npy_bytes(array=None, header=None):
    buffer = io.BytesIO()
    if header is None:
        np.save(buffer, array, allow_pickle=False)
    else:  # a header alone, with a few bytes of data
        np.lib.format.write_array_header_1_0(buffer, header)
        buffer.write(b"\0" * 64)
    return buffer.getvalue()


def rewrite(entry, damage):
    with np.load(entry) as z:
        fields = {key: npy_bytes(value) for key, value in z.items()}
    if damage == "string_evals":
        with np.load(entry) as z:
            fields["evals"] = npy_bytes(z["evals"].astype(str))
    elif damage == "version_array":
        fields["version"] = npy_bytes(np.array([1, 1]))
    elif damage == "old_version":
        fields["version"] = npy_bytes(np.int64(0))
    elif damage == "random_evecs":  # right geometry, right shapes, not its eigenbasis
        with np.load(entry) as z:
            fields["evecs"] = npy_bytes(np.random.default_rng(0).standard_normal(
                z["evecs"].shape).astype(np.float32))
    elif damage == "complex_evecs":
        with np.load(entry) as z:
            fields["evecs"] = npy_bytes(z["evecs"] * (1 + 1j))
    elif damage == "huge_evecs":  # 3e12 float32 elements claimed (11 TiB)
        fields["evecs"] = npy_bytes(header={"descr": "<f4", "fortran_order": False,
                                            "shape": (1000000, 3000000)})
    elif damage == "huge_evals":  # a shape the entry cannot check against the geometry
        fields["evals"] = npy_bytes(header={"descr": "<f8", "fortran_order": False,
                                            "shape": (3000000000000,)})
    if damage == "npy_not_npz":
        entry.write_bytes(fields["evecs"])
        return
    with zipfile.ZipFile(entry, "w") as archive:
        for key, data in fields.items():
            archive.writestr(f"{key}.npy", data)


@pytest.mark.parametrize("damage, reason", [
    ("string_evals", r"'evals' is <U\d+ of shape \(8,\), expected float64"),
    ("version_array", r"'version' is int64 of shape \(2,\), expected int64 of shape \(\)"),
    ("old_version", f"format version 0, expected {FORMAT_VERSION}"),
    ("complex_evecs", r"'evecs' is complex64 of shape \(162, 8\), expected float32 of shape "
                      r"\(162, 8\)"),
    ("huge_evecs", r"'evecs' is float32 of shape \(1000000, 3000000\), expected float32 of "
                   r"shape \(162, 8\)"),
    ("huge_evals", r"'evals' claims 24000000000000 bytes but the file has \d+"),
    ("npy_not_npz", "File is not a zip file"),
    ("random_evecs", r"eigenvectors not orthonormal in the stored masses \(an entry of "
                     r"evecs\^T M evecs - I is \d"),
])
def test_foreign_entry_is_reported_recomputed_and_overwritten(tmp_path, monkeypatch, caplog,
                                                               damage, reason):
    solves = []
    real = eigen_module.mesh_eigenbasis
    monkeypatch.setattr(eigen_module, "mesh_eigenbasis",
                        lambda *args, **kwargs: solves.append(1) or real(*args, **kwargs))
    transform = LaplacianEigenbasis(8, cache_dir=tmp_path)
    first = transform(sphere())
    (entry,) = tmp_path.rglob("*.npz")
    rewrite(entry, damage)
    with caplog.at_level(logging.WARNING):
        again = transform(sphere())
    assert len(solves) == 2
    assert f"unreadable cache entry {entry}" in caplog.text and "recomputing it" in caplog.text
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.WARNING
    assert re.search(reason, caplog.text), caplog.text
    assert torch.equal(again.evecs, first.evecs) and torch.equal(again.mass, first.mass)
    transform(sphere())  # the entry was overwritten with a valid one
    assert len(solves) == 2


def test_a_killed_writers_temporary_file_is_removed_when_the_cache_is_opened(tmp_path):
    """atomic_write names its temporary file after its process; one of a process that
    no longer exists is removed, a live writer's is kept."""
    import os
    import subprocess
    import sys

    from tg_funcattn._files import owner_tag
    from tg_funcattn.geometry.cache import EigenbasisCache

    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    host = owner_tag().split("@")[1]
    (tmp_path / "ab").mkdir()  # where the entries and their temporary files live
    dead = tmp_path / "ab" / f"abc.npz.{gone.pid}@{host}.x1y2.tmp"
    live = tmp_path / "ab" / f"abd.npz.{os.getpid()}@{host}.x3y4.tmp"
    for path in (dead, live):
        path.write_bytes(b"partial")
    EigenbasisCache(tmp_path)
    assert not dead.exists() and live.exists()
