"""Writes the tiny sample datasets under datasets/*/sample in the exact raw formats.

    python datasets/make_samples.py

The samples are committed; tests and README examples load them (and damaged
copies of them).  Deterministic: running this again reproduces the same files.
"""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import trimesh

from tg_funcattn.datasets.shapenet import SHAPENET_CATEGORIES
from tg_funcattn.datasets.shapes import sample_shape

HERE = Path(__file__).resolve().parent


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def shapenet_part(rng):
    root = fresh(HERE / "shapenet_part" / "sample")
    lists = {"train": [], "val": [], "test": []}
    with open(root / "synsetoffset2category.txt", "w") as f:
        for name in ("Airplane", "Mug"):
            f.write(f"{name}\t{SHAPENET_CATEGORIES[name]}\n")
    for name in ("Airplane", "Mug"):
        synset = SHAPENET_CATEGORIES[name]
        (root / synset).mkdir()
        for split, count in (("train", 3), ("val", 1), ("test", 2)):
            for _ in range(count):
                shape_id = rng.bytes(16).hex()
                shape = sample_shape(name, 48, rng)
                table = np.concatenate([shape["pos"], shape["normal"], shape["part"][:, None]], axis=1)
                np.savetxt(root / synset / f"{shape_id}.txt", table, fmt="%.6f")
                lists[split].append(f"shape_data/{synset}/{shape_id}")
    (root / "train_test_split").mkdir()
    for split, entries in lists.items():
        (root / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(entries))


def write_off(path: Path, vertices, faces):
    with open(path, "w") as f:
        f.write(f"OFF\n{len(vertices)} {len(faces)} 0\n")
        for v in vertices:
            f.write(" ".join(f"{c:.6f}" for c in v) + "\n")
        for t in faces:
            f.write("3 " + " ".join(str(int(i)) for i in t) + "\n")


def rna(rng):
    """Small meshes with the mess of the real data: disconnected components,
    a duplicated vertex, a degenerate triangle, no canonical orientation."""
    root = fresh(HERE / "rna_surface_segmentation" / "sample")
    (root / "off").mkdir()
    (root / "labels").mkdir()
    names = []
    for i in range(3):
        sphere = trimesh.creation.icosphere(subdivisions=1)
        blob = sphere.copy()
        blob.apply_translation([2.5, 0, 0])
        blob.apply_scale(rng.uniform(0.5, 0.9))
        vertices = np.concatenate([sphere.vertices, blob.vertices, sphere.vertices[:1]])
        faces = np.concatenate([sphere.faces, blob.faces + len(sphere.vertices),
                                [[0, len(vertices) - 1, 1]]])  # uses the duplicate: zero area
        rotation = trimesh.transformations.random_rotation_matrix(rng.uniform(size=3))[:3, :3]
        vertices = vertices @ rotation.T * 20.0  # molecule-sized coordinates
        region = np.argmax(vertices @ rng.normal(size=(3, 4)), axis=1)
        labels = np.array(rng.choice(np.arange(-1, 259), 4, replace=False))[region]
        name = f"{i + 1}ABC_{'XYZ'[i]}"
        write_off(root / "off" / f"{name}.off", vertices, faces)
        np.savetxt(root / "labels" / f"{name}.txt", labels, fmt="%d")
        names.append(f"{name}.off")
    (root / "train.txt").write_text("\n".join(names[:2]) + "\n")
    (root / "test.txt").write_text(names[2] + "\n")


def mesh_regression(rng):
    root = fresh(HERE / "mesh_regression" / "sample")
    (root / "meshes").mkdir()
    (root / "targets").mkdir()
    a = trimesh.creation.icosphere(subdivisions=1)
    write_off(root / "meshes" / "sphere.off", a.vertices, a.faces)
    np.save(root / "targets" / "sphere.npy", a.vertices[:, 2].astype(np.float32))  # per vertex
    b = trimesh.creation.box()
    b.export(root / "meshes" / "box.obj")
    np.savez(root / "targets" / "box.npz", y=np.array([[1.0, 2.0, 3.0]], np.float32),  # per shape
             x=rng.normal(size=(len(b.vertices), 2)).astype(np.float32))
    c = trimesh.creation.cylinder(radius=0.5, height=1.0, sections=12)
    c.export(root / "meshes" / "cylinder.ply")
    np.savez(root / "targets" / "cylinder.npz", y=c.area_faces.astype(np.float32)[:, None])  # per face
    d = trimesh.creation.annulus(r_min=0.3, r_max=1.0, height=0.4, sections=10)
    d.export(root / "meshes" / "ring.stl")
    ring = trimesh.load(root / "meshes" / "ring.stl", process=False)  # STL stores no shared vertices
    np.save(root / "targets" / "ring.npy", np.linalg.norm(ring.vertices, axis=1).astype(np.float32))
    (root / "train.txt").write_text("sphere\n")  # per-vertex targets
    (root / "test.txt").write_text("ring\n")
    (root / "per_shape.txt").write_text("box\n")
    (root / "per_face.txt").write_text("cylinder\n")


if __name__ == "__main__":
    os.chdir(HERE)
    shapenet_part(np.random.default_rng(0))
    rna(np.random.default_rng(1))
    mesh_regression(np.random.default_rng(2))
    print("samples written under", HERE)
