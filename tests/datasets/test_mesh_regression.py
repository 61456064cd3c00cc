"""MeshRegression targets that are complex, truncated or of the other kind: a DatasetFormatError naming the file and what
was expected."""
import io
import zipfile

import numpy as np
import pytest
from helpers import copy_sample, requires

from tg_funcattn.datasets import DatasetFormatError, MeshRegression

pytestmark = requires("trimesh")


def npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize("damage, match", [
    ("complex_npy", r"'y' in .*targets/sphere.npy must be real numbers \(integer or floating "
                    r"point\), got dtype complex64"),
    ("complex_npz_x", r"'x' in .*targets/sphere.npz must be real numbers \(integer or floating "
                      r"point\), got dtype complex64"),
    ("truncated_npz", r"cannot read target file for 'sphere', .*targets/sphere.npz: File is not a "
                      r"zip file \(expected an .npz archive with an array 'y' and optionally 'x' "
                      r"in numpy's format, read without pickle; a truncated or damaged file\?\)"),
    ("truncated_npy", r"cannot read target file for 'sphere', .*targets/sphere.npy: .*\(expected "
                      r"an .npy array in numpy's format"),
    ("npy_as_npz", r"target .*targets/sphere.npz is a single .npy array; expected an .npz "
                   r"archive with an array 'y'"),
    ("npz_as_npy", r"target .*targets/sphere.npy is an .npz archive; expected an .npy array"),
])
def test_bad_target_names_the_file_and_what_was_expected(tmp_path, damage, match):
    root = copy_sample("mesh_regression", tmp_path)
    npy, npz = root / "targets" / "sphere.npy", root / "targets" / "sphere.npz"
    y = np.load(npy)
    if damage == "complex_npy":
        np.save(npy, y * (1 + 1j))
    elif damage == "complex_npz_x":
        npy.unlink()
        np.savez(npz, y=y, x=np.ones((len(y), 2), np.complex64))
    elif damage == "truncated_npz":
        npy.unlink()
        npz.write_bytes(npz_bytes(y=y)[:200])
    elif damage == "truncated_npy":
        npy.write_bytes(npy.read_bytes()[:100])
    elif damage == "npy_as_npz":
        npy.rename(npz)
    else:
        npy.write_bytes(npz_bytes(y=y))
    with pytest.raises(DatasetFormatError, match=match):
        MeshRegression(root, split="train")


@pytest.mark.parametrize("kind", ["npy", "npz"])
def test_a_target_header_claiming_a_huge_array_is_refused_before_allocating(tmp_path, kind):
    """The header says 3e12 float32 values (12 TB); the file holds a few bytes
    (it was a MemoryError)."""
    root = copy_sample("mesh_regression", tmp_path)
    npy, npz = root / "targets" / "sphere.npy", root / "targets" / "sphere.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (1000000, 3000000)})
    content = header.getvalue() + b"\0" * 64  # magic, header, a little data
    if kind == "npy":
        npy.write_bytes(content)
        path = npy
    else:
        npy.unlink()
        with zipfile.ZipFile(npz, "w") as archive:
            archive.writestr("y.npy", content)
        path = npz
    with pytest.raises(DatasetFormatError, match=rf"cannot read target file for 'sphere', {path}: 'y' "
                                                 r"claims 12000000000000 bytes but the file has \d+"):
        MeshRegression(root, split="train")
