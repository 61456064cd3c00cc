import io
import json
import logging
import os
import stat
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SAMPLES, copy_sample, requires

import tg_funcattn.datasets._readers as dio
from tg_funcattn.datasets import (DatasetFormatError, MeshOperatorRegression, MeshRegression,
                                  RNASurfaceSegmentation, ShapeNetPart, SyntheticParts)
from tg_funcattn.datasets.shapenet import SHAPENET_CATEGORIES, SHAPENET_PARTS
from tg_funcattn.transforms import transfer_to_vertices

SHAPENET_SAMPLE_CATEGORIES = ["Airplane", "Mug"]
#: the RNA and mesh-regression datasets read their meshes with trimesh (ShapeNet and
#: SyntheticParts need no optional package)
needs_trimesh = requires("trimesh")


def no_network(monkeypatch):
    def fail(url, folder, log=True):
        raise urllib.error.URLError("network unreachable")
    monkeypatch.setattr("torch_geometric.data.download_url", fail)


def count_process(monkeypatch, cls):
    calls = []
    real = cls.process

    def counting(self):
        calls.append(1)
        return real(self)
    monkeypatch.setattr(cls, "process", counting)
    return calls


# ------------------------------------------------------------------ ShapeNet part
def test_shapenet_part_sample_splits_and_categories(tmp_path):
    root = copy_sample("shapenet_part", tmp_path)
    sizes = {s: len(ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES, split=s))
             for s in ("train", "val", "test", "trainval")}
    assert sizes == {"train": 6, "val": 2, "test": 4, "trainval": 8}
    data = ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES, split="train")
    names = list(SHAPENET_CATEGORIES)
    for example in data:
        category = names[int(example.category)]
        assert category in SHAPENET_SAMPLE_CATEGORIES
        assert set(example.y.tolist()) <= set(SHAPENET_PARTS[category])
        assert example.pos.shape == example.x.shape == (example.y.shape[0], 3)
    assert ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES, include_normals=False)[0].x is None
    assert data.num_classes == 50


def test_shapenet_part_takes_pyg_shapenets_positional_order(tmp_path):
    """ShapeNet(root, categories, include_normals, split) as in PyG; a split in the
    place of include_normals is an error naming the order."""
    root = copy_sample("shapenet_part", tmp_path)
    data = ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES, False, "test")
    assert len(data) == 4 and data.split == "test" and data[0].x is None
    assert torch.equal(data.y_mask, data.part_mask) and data.y_mask.shape == (16, 50)
    assert all(data.y_mask[int(d.category)][d.y].all() for d in data)
    with pytest.raises(TypeError, match=r"'include_normals' must be a bool, got 'val' .*"
                                        r"ShapeNetPart\(root, categories, include_normals, split\)"):
        ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES, "val", False)
    with pytest.raises(TypeError, match=r"'include_normals' must be a bool, got 1 .*"
                                        r"ShapeNetPart\(root, categories, include_normals, split\)"):
        ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES, 1)


def test_single_non_airplane_category_keeps_its_global_index(tmp_path):
    """PyG's ShapeNet labels a lone 'Mug' as category 0 (Airplane); the index must be 11."""
    root = copy_sample("shapenet_part", tmp_path)
    mugs = ShapeNetPart(root, "mug", split="trainval")
    assert len(mugs) == 4 and all(int(d.category) == 11 for d in mugs)
    assert all(set(d.y.tolist()) <= {36, 37} for d in mugs)


def _zipped_sample(tmp_path, name, archive_name, folder):
    """``tmp_path/root`` holding only the sample of ``datasets/<name>`` zipped as
    the dataset's official archive ``archive_name`` (everything under ``folder/``)."""
    sample = SAMPLES / name / "sample"
    root = tmp_path / "root"
    root.mkdir()
    with zipfile.ZipFile(root / archive_name, "w") as zf:
        for path in sample.rglob("*"):
            zf.write(path, f"{folder}/{path.relative_to(sample)}")
    return root


def test_shapenet_part_from_the_zip_on_disk(tmp_path):
    root = _zipped_sample(tmp_path, "shapenet_part", ShapeNetPart.archive_name,
                          ShapeNetPart.folder_name)
    data = ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES, split="test")
    assert len(data) == 4 and (root / "raw" / "train_test_split").is_dir()
    assert (root / ShapeNetPart.archive_name).is_file()  # the user's zip is kept


def test_shapenet_part_without_data_or_network_names_the_layout(tmp_path, monkeypatch):
    no_network(monkeypatch)
    with pytest.raises(RuntimeError) as info:
        ShapeNetPart(tmp_path / "empty", "Airplane")
    message = str(info.value)
    assert "network unreachable" in message and "train_test_split" in message
    assert "kaggle" in message.lower() and "x y z nx ny nz part_label" in message
    root = copy_sample("shapenet_part", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no folder for the categories \['Bag'"):
        ShapeNetPart(root, ["Airplane", "Bag"])


def _damage_first_shape(root: Path, category="Airplane", line=3, text="0.1 0.2 0.3 0.0 0.0\n"):
    entry = json.loads((root / "train_test_split" / "shuffled_train_file_list.json").read_text())
    name = next(e for e in entry if SHAPENET_CATEGORIES[category] in e)
    path = root / (name.split("/", 1)[1] + ".txt")
    lines = path.read_text().splitlines(keepends=True)
    lines[line - 1] = text
    path.write_text("".join(lines))
    return path


def test_shapenet_part_malformed_line_names_file_and_line(tmp_path):
    root = copy_sample("shapenet_part", tmp_path)
    path = _damage_first_shape(root)
    with pytest.raises(DatasetFormatError, match=rf"{path.name}, line 3: expected 7 numbers, got 5"):
        ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES)
    _damage_first_shape(root, text="0.1 0.2 0.3 0.0 0.0 1.0 abc\n")
    with pytest.raises(DatasetFormatError, match=r"line 3: not a number"):
        ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES)
    _damage_first_shape(root, text="0.1 0.2 0.3 0.0 0.0 1.0 37\n")
    with pytest.raises(DatasetFormatError, match=r"part label 37 is not a part of Airplane"):
        ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES)


def test_shapenet_part_bad_split_files(tmp_path):
    root = copy_sample("shapenet_part", tmp_path)
    split = root / "train_test_split" / "shuffled_val_file_list.json"
    split.write_text("[]")
    with pytest.raises(DatasetFormatError, match=rf"{split.name} lists no shapes"):
        ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES)
    split.write_text("{not json")
    with pytest.raises(DatasetFormatError, match="is not valid JSON"):
        ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES)
    split.write_text(json.dumps(["shape_data/../../etc/passwd"]))
    with pytest.raises(DatasetFormatError, match="bad entry"):
        ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES)
    with pytest.raises(ValueError, match="unknown ShapeNet category 'Spoon'"):
        ShapeNetPart(root, ["Spoon"])
    with pytest.raises(ValueError, match="'split' must be one of"):
        ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES, split="validation")


def test_processed_files_are_reused_and_follow_the_pre_transform(tmp_path, monkeypatch):
    from torch_geometric.transforms import NormalizeScale, RandomJitter

    root = copy_sample("shapenet_part", tmp_path)
    calls = count_process(monkeypatch, ShapeNetPart)
    first = ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES)
    again = ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES)
    assert len(calls) == 1 and torch.equal(first[0].pos, again[0].pos)
    scaled = ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES, pre_transform=NormalizeScale())
    assert len(calls) == 2  # a new pre_transform is processed, not silently reused
    assert scaled[0].pos.abs().max() == pytest.approx(1.0, rel=1e-5)
    assert not torch.equal(scaled[0].pos, first[0].pos)
    ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES)  # the first version is still there
    ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES, pre_transform=NormalizeScale())
    assert len(calls) == 2
    ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES, pre_transform=RandomJitter(0.01))
    assert len(calls) == 3
    assert not (root / "processed" / "pre_transform.pt").exists()  # no pickled files


def test_interrupted_processing_is_redone(tmp_path, monkeypatch):
    root = copy_sample("shapenet_part", tmp_path)
    real = ShapeNetPart.save_split
    saved = []

    def crash_after_two(self, items, path):
        if len(saved) == 2:
            raise KeyboardInterrupt("killed")
        saved.append(path)
        return real(self, items, path)
    monkeypatch.setattr(ShapeNetPart, "save_split", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES)
    assert not list((root / "processed").glob("*.tmp"))
    monkeypatch.setattr(ShapeNetPart, "save_split", real)
    calls = count_process(monkeypatch, ShapeNetPart)
    data = ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES, split="test")
    assert len(calls) == 1 and len(data) == 4


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch EXPLOITED",))


def test_corrupt_or_malicious_processed_files_are_reprocessed_not_unpickled(tmp_path, monkeypatch, caplog):
    root = copy_sample("shapenet_part", tmp_path)
    data = ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES, split="val")
    path = Path(data.processed_paths[1])
    path.write_bytes(path.read_bytes()[:100])  # truncated
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING):
        again = ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES, split="val")
    assert len(again) == 2 and "unreadable" in caplog.text
    torch.save(_Exploit(), path)
    ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES, split="val")
    assert not (tmp_path / "EXPLOITED").exists()


def test_a_processed_split_with_labels_of_another_dtype_is_processed_again(tmp_path, caplog):
    root = copy_sample("rna_surface_segmentation", tmp_path)
    first = RNASurfaceSegmentation(root, split="train")
    path = Path(first.processed_paths[0])
    data, slices, cls = torch.load(path, weights_only=True)
    data["y"] = data["y"].float() + 0.5  # labels cast to float
    torch.save((data, slices, cls), path)
    with caplog.at_level(logging.WARNING):
        again = RNASurfaceSegmentation(root, split="train")
    assert f"processed file {path}: 'y' is torch.float32, but the dataset writes integer" in caplog.text
    assert again[0].y.dtype == torch.long and torch.equal(again[0].y, first[0].y)


# ------------------------------------------------------------------------ archives
def _zip_with(path: Path, name: str):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok/file.txt", "fine")
        zf.writestr(name, "evil")


@pytest.mark.parametrize("member", ["../evil.txt", "ok/../../evil.txt", "/abs/evil.txt", "C:/evil.txt"])
def test_zip_slip_is_refused(tmp_path, member):
    archive = tmp_path / "a.zip"
    _zip_with(archive, member)
    dest = tmp_path / "dest"
    with pytest.raises(DatasetFormatError, match="unsafe member"):
        dio.safe_extract(archive, dest)
    assert not (tmp_path / "evil.txt").exists()
    assert not dest.exists() or not any(dest.rglob("*"))  # nothing extracted at all


def test_tar_links_and_traversal_are_refused(tmp_path):
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("data/link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(DatasetFormatError, match="link or special file"):
        dio.safe_extract(archive, tmp_path / "dest")
    with tarfile.open(archive, "w:gz") as tf:
        data = b"evil"
        info = tarfile.TarInfo("../evil.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(DatasetFormatError, match="unsafe member"):
        dio.safe_extract(archive, tmp_path / "dest")
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DatasetFormatError, match="neither a zip nor a tar"):
        dio.safe_extract(tmp_path / "bad.zip", tmp_path / "dest")


def test_dataset_archive_with_a_dotdot_member_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    _zip_with(root / ShapeNetPart.archive_name, "../../outside.txt")
    with pytest.raises(DatasetFormatError, match="unsafe member '../../outside.txt'"):
        ShapeNetPart(root, "Airplane")
    assert not (tmp_path / "outside.txt").exists()


# -------------------------------------------------------------------- SyntheticParts
def test_synthetic_parts_is_deterministic_and_uses_shapenet_ids(tmp_path):
    kwargs = dict(num_train=2, num_val=1, num_test=1, num_points=64)
    a = SyntheticParts(tmp_path / "a", split="trainval", seed=3, **kwargs)
    b = SyntheticParts(tmp_path / "b", split="trainval", seed=3, **kwargs)
    c = SyntheticParts(tmp_path / "c", split="trainval", seed=4, **kwargs)
    assert len(a) == 12
    assert all(torch.equal(x.pos, y.pos) and torch.equal(x.y, y.y) for x, y in zip(a, b))
    assert not torch.equal(a[0].pos, c[0].pos)
    names = list(SHAPENET_CATEGORIES)
    seen = set()
    for example in a:
        category = names[int(example.category)]
        seen.add(category)
        assert set(example.y.tolist()) <= set(SHAPENET_PARTS[category])
        assert len(example.y.unique()) >= 2
        assert 38 <= example.num_nodes <= 90  # 0.6-1.4 x 64 points
    assert seen == {"Airplane", "Lamp", "Mug", "Table"}
    lamps = SyntheticParts(tmp_path / "a", split="test", categories="lamp", seed=3, **kwargs)
    assert len(lamps) == 1 and int(lamps[0].category) == 8
    with pytest.raises(ValueError, match="SyntheticParts has no category 'Chair'"):
        SyntheticParts(tmp_path / "a", categories=["Chair"], **kwargs)


@pytest.mark.parametrize("num_points", [2, 0, True])
def test_synthetic_parts_refuses_too_few_points_naming_the_argument(tmp_path, num_points):
    with pytest.raises(ValueError, match=f"'num_points' must be an int >= 8 .*got {num_points}"):
        SyntheticParts(tmp_path, num_points=num_points)
    assert not any(tmp_path.iterdir())  # nothing generated


def test_synthetic_parts_interrupted_generation_is_redone(tmp_path, monkeypatch):
    import tg_funcattn.datasets.synthetic_parts as module

    kwargs = dict(num_train=1, num_val=1, num_test=1, num_points=32)
    real = module.sample_shape
    calls = []

    def crash(*args, **kw):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt("killed")
        return real(*args, **kw)
    monkeypatch.setattr(module, "sample_shape", crash)
    with pytest.raises(KeyboardInterrupt):
        SyntheticParts(tmp_path, **kwargs)
    assert [p.name for p in tmp_path.iterdir()] == []  # no partial raw folder is left
    monkeypatch.setattr(module, "sample_shape", real)
    assert len(SyntheticParts(tmp_path, split="train", **kwargs)) == 4


def test_generated_raw_folder_keeps_the_copy_renamed_first(tmp_path):
    settings = {"seed": 0}

    def write(text):
        return lambda folder: (folder / "data.txt").write_text(text)

    inner = []

    def slow(folder):  # another process completes the same folder meanwhile
        (folder / "data.txt").write_text("second")
        inner.append(dio.generated_raw_folder(tmp_path, settings, write("first")))

    target = dio.generated_raw_folder(tmp_path, settings, slow)
    assert inner == [target] and target.name.startswith("raw_")
    assert (target / "data.txt").read_text() == "first"
    assert json.loads((target / "generator.json").read_text()) == settings
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no staging folder left
    assert dio.generated_raw_folder(tmp_path, settings, write("third")) == target
    assert (target / "data.txt").read_text() == "first"  # generated once


def test_atomic_write_failure_keeps_the_previous_file(tmp_path):
    from tg_funcattn._files import atomic_write

    path = tmp_path / "entry.bin"
    atomic_write(path, lambda f: f.write(b"complete"))

    def crash(f):
        f.write(b"partial")
        raise KeyboardInterrupt("killed")
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert path.read_bytes() == b"complete" and [p.name for p in tmp_path.iterdir()] == ["entry.bin"]


# ------------------------------------------------------------------------------ RNA
@needs_trimesh
def test_rna_sample_loads_messy_meshes_with_shifted_labels(tmp_path):
    root = copy_sample("rna_surface_segmentation", tmp_path)
    train = RNASurfaceSegmentation(root, split="train")
    test = RNASurfaceSegmentation(root, split="test")
    assert len(train) == 2 and len(test) == 1 and train.num_classes == 260
    for example in train:
        raw = np.loadtxt(root / "labels" / f"{example.name}.txt", dtype=np.int64)
        assert torch.equal(example.y, torch.from_numpy(raw + 1))
        assert example.pos.shape[0] == len(raw) == 85  # the duplicate vertex is kept
        assert example.face.shape[0] == 3 and 0 <= example.y.min() and example.y.max() <= 259


@pytest.mark.parametrize("damage, error, match", [
    ("short", DatasetFormatError, r"label file .*1ABC_X.txt has 84 labels but mesh .*1ABC_X.off has 85"),
    ("missing", FileNotFoundError, r"label file .*1ABC_X.txt does not exist"),
    ("range", DatasetFormatError, r"1ABC_X.txt, line 1: label 300 outside \[-1, 258\]"),
    ("text", DatasetFormatError, r"1ABC_X.txt, line 1: expected one integer"),
    ("empty_split", DatasetFormatError, r"split file .*train.txt lists no names"),
    ("bad_mesh", DatasetFormatError, r"mesh .*1ABC_X.off"),
    ("truncated", DatasetFormatError,
     r"mesh .*1ABC_X.off: the header says 161 faces but only 150 were read"),
])
@needs_trimesh
def test_rna_bad_files_name_the_file(tmp_path, damage, error, match):
    root = copy_sample("rna_surface_segmentation", tmp_path)
    labels = root / "labels" / "1ABC_X.txt"
    lines = labels.read_text().splitlines()
    if damage == "short":
        labels.write_text("\n".join(lines[:-1]) + "\n")
    elif damage == "missing":
        labels.unlink()
    elif damage == "range":
        labels.write_text("\n".join(["300"] + lines[1:]) + "\n")
    elif damage == "text":
        labels.write_text("\n".join(["1 2"] + lines[1:]) + "\n")
    elif damage == "empty_split":
        (root / "train.txt").write_text("\n# nothing\n")
    elif damage == "truncated":  # the last 11 face lines lost
        mesh = root / "off" / "1ABC_X.off"
        mesh.write_text("\n".join(mesh.read_text().splitlines()[:-11]) + "\n")
    else:
        (root / "off" / "1ABC_X.off").write_text("OFF\n3 1 0\n0 0 0\n")
    with pytest.raises(error, match=match):
        RNASurfaceSegmentation(root, split="train")


@needs_trimesh
def test_rna_point_sampling_and_transfer_back_to_vertices(tmp_path):
    root = copy_sample("rna_surface_segmentation", tmp_path)
    torch.manual_seed(0)
    data = RNASurfaceSegmentation(root, split="train", num_points=2000)[0]
    assert data.pos.shape == (2000, 3) and data.mesh_pos.shape == (85, 3) and "face" not in data
    # predicting each point's own label and carrying it back recovers most vertex labels
    back = transfer_to_vertices(data.y, data.pos, data.mesh_pos)
    assert (back == data.mesh_y).float().mean() > 0.9
    # transfer is a nearest-point lookup
    brute = data.y[torch.cdist(data.mesh_pos, data.pos).argmin(1)]
    assert torch.equal(back, brute)


@needs_trimesh
def test_rna_from_the_archive_on_disk(tmp_path):
    root = _zipped_sample(tmp_path, "rna_surface_segmentation",
                          RNASurfaceSegmentation.archive_name, "RNA-Surface-Segmentation-Dataset-main")
    assert len(RNASurfaceSegmentation(root, split="test")) == 1


@requires("trimesh", "potpourri3d")
def test_rna_meshes_get_eigenbases(tmp_path):
    from tg_funcattn.transforms import LaplacianEigenbasis

    root = copy_sample("rna_surface_segmentation", tmp_path)
    data = RNASurfaceSegmentation(root, split="train", pre_transform=LaplacianEigenbasis(8))
    for example in data:
        assert torch.isfinite(example.evecs).all() and (example.mass > 0).all()
        assert (example.evals[0, :2] < 1e-4).all()  # two components: two zero eigenvalues


@requires("trimesh", "potpourri3d")
def test_a_failing_pre_transform_names_the_mesh(tmp_path):
    from tg_funcattn.transforms import LaplacianEigenbasis

    root = copy_sample("rna_surface_segmentation", tmp_path)
    first = (root / "train.txt").read_text().split()[0].removesuffix(".off")
    with pytest.raises(ValueError, match=f"RNASurfaceSegmentation .*pre_transform failed on example "
                                         f"{first}: 'num_eigenpairs' = 500"):
        RNASurfaceSegmentation(root, split="train", pre_transform=LaplacianEigenbasis(500))


# -------------------------------------------------------------------- mesh regression
@needs_trimesh
def test_mesh_regression_sample_levels(tmp_path):
    root = copy_sample("mesh_regression", tmp_path)
    vertex = MeshRegression(root, split="train")[0]
    assert vertex.y.shape == (42,) and torch.allclose(vertex.y, vertex.pos[:, 2])
    shape = MeshRegression(root, split="per_shape")[0]
    assert shape.y.shape == (1, 3) and shape.x.shape == (8, 2)
    face = MeshRegression(root, split="per_face")[0]
    assert face.face_y.shape == (face.face.shape[1], 1) and "y" not in face
    assert MeshRegression(root, split="test")[0].pos.shape[0] == 240  # STL: unshared vertices


@pytest.mark.parametrize("damage, error, match", [
    ("length", DatasetFormatError, r"target .*sphere.npy has length 41, which matches neither the 42 "
                                   r"vertices nor the 80 faces"),
    ("x_rows", DatasetFormatError, r"input features 'x' in .*sphere.npz have 5 rows but .* has 42"),
    ("no_y", DatasetFormatError, r"sphere.npz has no array 'y'"),
    ("pickle", DatasetFormatError, r"cannot read target file for 'sphere'"),
    ("nan", DatasetFormatError, r"'y' in .*sphere.npy contains NaN"),
    ("no_mesh", FileNotFoundError, r"no mesh file for 'sphere'"),
    ("no_target", FileNotFoundError, r"no target for 'sphere'"),
    ("mixed", DatasetFormatError, r"targets of split 'train' differ"),
])
@needs_trimesh
def test_mesh_regression_bad_files_name_the_file(tmp_path, damage, error, match):
    root = copy_sample("mesh_regression", tmp_path)
    target = root / "targets" / "sphere.npy"
    if damage == "length":
        np.save(target, np.zeros(41, np.float32))
    elif damage == "x_rows":
        target.unlink()
        np.savez(root / "targets" / "sphere.npz", y=np.zeros(42, np.float32), x=np.zeros((5, 2)))
    elif damage == "no_y":
        target.unlink()
        np.savez(root / "targets" / "sphere.npz", z=np.zeros(42))
    elif damage == "pickle":
        np.save(target, np.array([_Exploit()], dtype=object), allow_pickle=True)
    elif damage == "nan":
        np.save(target, np.full(42, np.nan, np.float32))
    elif damage == "no_mesh":
        (root / "meshes" / "sphere.off").unlink()
    elif damage == "no_target":
        target.unlink()
    else:
        (root / "train.txt").write_text("sphere\nbox\n")
    with pytest.raises(error, match=match):
        MeshRegression(root, split="train")


@needs_trimesh
def test_mesh_operator_regression_is_nested_and_deterministic(tmp_path):
    kwargs = dict(levels=(1, 2), num_shapes=5, seed=1)
    coarse = MeshOperatorRegression(tmp_path, level=1, split="train", **kwargs)
    fine = MeshOperatorRegression(tmp_path, level=2, split="train", **kwargs)
    assert len(coarse) == 4 and coarse[0].pos.shape[0] == 42 and fine[0].pos.shape[0] == 162
    for a, b in zip(coarse, fine):
        assert torch.allclose(a.pos, b.pos[:42])  # nested: the same shape at both levels
        assert torch.allclose(a.x, b.x[:42])  # the input is a function of the surface
        source = int(a.x.argmax())
        assert a.y[source] == 0 and (a.y > 0).sum() == 41
        # geodesic distances agree across resolutions up to discretisation error
        assert (a.y - b.y[:42]).abs().max() < 0.25 * b.y.max()
    again = MeshOperatorRegression(tmp_path / "again", level=1, split="test", **kwargs)
    assert torch.equal(again[0].y, MeshOperatorRegression(tmp_path, level=1, split="test", **kwargs)[0].y)
    heat = MeshOperatorRegression(tmp_path, level=2, target="heat", **kwargs)
    assert torch.isfinite(heat[0].y).all() and heat[0].y.max() < heat[0].x.max()  # diffusion smooths
    with pytest.raises(ValueError, match="'level' must be one of 'levels'"):
        MeshOperatorRegression(tmp_path, level=3, **kwargs)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_and_generated_folders_follow_the_umask(tmp_path, umask):
    """tempfile makes private files (0600) and folders (0700) whatever the umask;
    other users of a shared data folder could not read them."""
    from tg_funcattn._files import atomic_write

    previous = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "a.bin", lambda f: f.write(b"x"))
        folder = dio.generated_raw_folder(tmp_path, {"n": umask},
                                          lambda d: (d / "f.txt").write_text("y"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
