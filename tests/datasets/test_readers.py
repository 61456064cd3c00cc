"""Raw and processed files that are not what a reader expects:
errors name the file and what was expected; a processed file of
another kind is processed again."""
import collections
import logging
import re
from pathlib import Path

import pytest
import torch
from helpers import copy_sample, requires

import tg_funcattn.datasets._readers as dio
from tg_funcattn.datasets import DatasetFormatError, ShapeNetPart

SHAPENET_SAMPLE_CATEGORIES = ["Airplane", "Mug"]
#: the start of a PNG file: bytes that are not UTF-8
BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00\x10" * 8


@pytest.mark.parametrize("read, expected", [
    (lambda path: dio.read_table(path, 7), "expected lines of 7 numbers"),
    (dio.read_int_lines, "expected one integer per line"),
    (dio.read_name_list, "expected one name per line"),
])
def test_binary_text_files_name_the_file_and_the_format(tmp_path, read, expected):
    path = tmp_path / "file.txt"
    path.write_bytes(BINARY)
    with pytest.raises(DatasetFormatError, match=rf"file\.txt, line 1: not text \(byte 0x89 is not "
                                                 rf"UTF-8; a binary file\?\); {expected}"):
        read(path)


@pytest.mark.parametrize("name, message", [
    ("02691156/5f82c2d9cfeb0fa321d7d982f8bd1045.txt", "{path}, line 1: not text"),
    ("train_test_split/shuffled_train_file_list.json", "split file {path} is not valid JSON text")])
def test_binary_shapenet_files_name_the_file(tmp_path, name, message):
    root = copy_sample("shapenet_part", tmp_path)
    path = root / name
    path.write_bytes(BINARY)
    with pytest.raises(DatasetFormatError, match=message.format(path=path)):
        ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES)


@requires("trimesh")
def test_truncated_ply_names_the_file(tmp_path):
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=1)  # 42 vertices, 80 faces
    text = trimesh.exchange.ply.export_ply(sphere, encoding="ascii")
    path = tmp_path / "sphere.ply"
    path.write_bytes(text)
    vertices, faces = dio.read_mesh(path)
    assert vertices.shape == (42, 3) and faces.shape == (80, 3)
    path.write_bytes(text[:len(text) - 200])  # the last faces are missing
    with pytest.raises(DatasetFormatError, match=f"mesh {path}: the header says 80 faces but only "
                                                 r"\d+ were read \(truncated or damaged file\)"):
        dio.read_mesh(path)
    binary = trimesh.exchange.ply.export_ply(sphere, encoding="binary")
    path.write_bytes(binary[:len(binary) - 200])  # trimesh refuses it; the error names the file
    with pytest.raises(DatasetFormatError, match=f"cannot read mesh {path}"):
        dio.read_mesh(path)
    path.write_bytes(text.replace(b"element vertex 42", b"element vertex 43"))
    with pytest.raises(DatasetFormatError, match=f"mesh {path}: the header says"):  # counts disagree
        dio.read_mesh(path)


@requires("trimesh")
def test_truncated_binary_stl_says_so(tmp_path):
    """Its size disagrees with its triangle count (it said 'has no vertices');
    complete binary and ASCII STL files read as before."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=1)  # 80 faces: 84 + 50 * 80 bytes
    path = tmp_path / "sphere.stl"
    for encoding in ("stl", "stl_ascii"):
        sphere.export(path, file_type=encoding)
        assert dio.read_mesh(path)[1].shape == (80, 3)
    sphere.export(path, file_type="stl")
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(DatasetFormatError, match=f"mesh {path}: a binary STL file of 3584 bytes, but its "
                                                 r"header says 80 triangles, 4084 bytes \(truncated"):
        dio.read_mesh(path)


def _split_of(path):
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("foreign, problem", [
    (lambda split: collections.OrderedDict(weight=torch.ones(2, 2), bias=torch.ones(2),
                                           running_mean=torch.zeros(2)), "got OrderedDict"),
    (lambda split: torch.zeros(3, 4), "got Tensor"),
    (lambda split: (split[0], split[2], split[1]), "the class is"),
    (lambda split: ({**split[0], "pos": split[0]["pos"][:-5]}, split[1], split[2]),
     r"slices\['pos'\] end at \d+ but 'pos' has \d+ entries"),
    (lambda split: ({**split[0], "pos": split[0]["pos"].to(torch.complex64)}, split[1], split[2]),
     "'pos' is a torch.complex64 tensor"),
    (lambda split: (split[0], {**split[1], "y": split[1]["y"].float()}, split[2]),
     r"slices\['y'\] is not a non-decreasing 1-D int64 tensor from 0"),
])
def test_processed_file_of_another_kind_is_processed_again(tmp_path, caplog, foreign, problem):
    root = copy_sample("shapenet_part", tmp_path)
    expected = ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES, split="train")
    path = Path(expected.processed_paths[0])
    torch.save(foreign(_split_of(path)), path)
    with caplog.at_level(logging.WARNING):
        again = ShapeNetPart(root, SHAPENET_SAMPLE_CATEGORIES, split="train")
    assert f"processed file {path} is not a collated split" in caplog.text
    assert re.search(problem, caplog.text) and len(caplog.records) == 1
    assert len(again) == len(expected)
    for a, b in zip(again, expected):
        assert torch.equal(a.pos, b.pos) and torch.equal(a.y, b.y)
    assert not isinstance(_split_of(path), (dict, torch.Tensor))  # replaced by a processed split
