"""Regression on meshes: a documented on-disk format and a generated operator-learning task."""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch_geometric.data import Data

from .._files import read_npy, read_npz_member
from .._optional import require
from ._readers import (DatasetFormatError, generated_raw_folder, read_mesh, read_name_list,
                  write_lines)
from .base import FingerprintedDataset

MESH_SUFFIXES = (".off", ".obj", ".ply", ".stl", ".glb", ".gltf")


class MeshRegression(FingerprintedDataset):
    r"""Meshes with per-vertex, per-face or per-shape regression targets.

    Raw layout, in ``root/raw`` or ``root``::

        meshes/<name>.{off,obj,ply,stl,...}   any triangle mesh trimesh reads
        targets/<name>.npy                    the target array, or
        targets/<name>.npz                    arrays 'y' (target) and optionally 'x'
                                              (per-vertex input features [N, F])
        <split>.txt                           names, one per line (e.g. train.txt, test.txt)

    The first dimension of a target decides its level: ``N`` (the number of
    vertices; checked first) gives a per-vertex target ``data.y`` ``[N, ...]``,
    ``F`` (faces) a per-face target ``data.face_y`` ``[F, ...]``, and ``1`` or
    a scalar a per-shape target ``data.y`` ``[1, ...]`` (store a vector of
    per-shape values with shape ``[1, T]``); any other length is an error
    naming the file.  Each example also has ``pos``, ``face``
    ``[3, F]`` and ``name``.  ``.npz`` files are read without pickle.

    Args:
        root (str): Dataset folder.
        split (str, optional): Name of the split file without ``.txt``.
            (default: ``"train"``)
        transform, pre_transform, pre_filter, force_reload: As in PyG.
    """

    def __init__(self, root: str, split: str = "train", transform: Optional[Callable] = None,
                 pre_transform: Optional[Callable] = None, pre_filter: Optional[Callable] = None,
                 force_reload: bool = False):
        if not isinstance(split, str) or not split or "/" in split or split.startswith("."):
            raise ValueError(f"'split' must be the name of a split file, got {split!r}")
        self.split = split
        self._raw = self._find_raw(Path(root))
        super().__init__(root, transform, pre_transform, pre_filter, force_reload=force_reload)
        self.load_split(self.processed_paths[0])

    def _find_raw(self, root: Path) -> Path:
        for candidate in (root / "raw", root):
            if (candidate / "meshes").is_dir() and (candidate / "targets").is_dir():
                return candidate
        raise FileNotFoundError(f"no mesh regression data under {root}: expected meshes/, targets/ "
                                "and <split>.txt in <root>/raw or <root> (see MeshRegression)")

    @property
    def raw_file_names(self) -> List[str]:
        return ["meshes", "targets", f"{self.split}.txt"]

    @property
    def processed_file_names(self) -> List[str]:
        return [f"{self.split}_{self.fingerprint}.pt"]

    def fingerprint_options(self):
        return {"raw": str(self._raw.resolve())}

    def download(self):
        missing = [f for f in self.raw_file_names if not (self._raw / f).exists()]
        raise FileNotFoundError(f"{self._raw} lacks {missing} (see MeshRegression for the layout)")

    def _read(self, name: str) -> Data:
        meshes = self._raw / "meshes"
        mesh_path = next((meshes / f"{name}{s}" for s in MESH_SUFFIXES if (meshes / f"{name}{s}").is_file()),
                         None)
        if mesh_path is None:
            raise FileNotFoundError(f"no mesh file for '{name}' in {meshes} (tried {MESH_SUFFIXES})")
        vertices, faces = read_mesh(mesh_path)
        y, x, target_path = self._read_target(name)
        n, f = len(vertices), len(faces)
        data = Data(pos=torch.from_numpy(vertices.astype(np.float32)),
                    face=torch.from_numpy(faces.T.copy()), name=name)
        if y.ndim == 0 or y.shape[0] == 1 and n != 1:
            data.y = torch.from_numpy(y.reshape(1, *y.shape[1:]) if y.ndim else y.reshape(1))
        elif y.shape[0] == n:
            data.y = torch.from_numpy(y)
        elif y.shape[0] == f:
            data.face_y = torch.from_numpy(y)
        else:
            raise DatasetFormatError(f"target {target_path} has length {y.shape[0]}, which matches "
                                     f"neither the {n} vertices nor the {f} faces of {mesh_path} "
                                     "nor 1 (store a per-shape target as a scalar or with shape "
                                     "[1, ...])")
        if x is not None:
            if x.shape[0] != n:
                raise DatasetFormatError(f"input features 'x' in {target_path} have {x.shape[0]} "
                                         f"rows but {mesh_path} has {n} vertices")
            data.x = torch.from_numpy(x.reshape(n, -1))
        return data

    def _read_target(self, name: str):
        targets = self._raw / "targets"
        path_npy, path_npz = targets / f"{name}.npy", targets / f"{name}.npz"
        if path_npz.is_file():
            path, expected = path_npz, "an .npz archive with an array 'y' and optionally 'x'"
        elif path_npy.is_file():
            path, expected = path_npy, "an .npy array"
        else:
            raise FileNotFoundError(f"no target for '{name}': expected {path_npy} or {path_npz}")
        try:  # every array's size is checked from its header before it is read
            with open(path, "rb") as f:
                is_archive = f.read(4) == b"PK\x03\x04"  # how numpy tells .npz from .npy
            if is_archive:
                if path != path_npz:
                    raise DatasetFormatError(f"target {path} is an .npz archive; expected {expected}")
                with zipfile.ZipFile(path) as archive:
                    names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
                    if "y" not in names:
                        raise DatasetFormatError(f"{path_npz} has no array 'y' (has {names})")
                    y = read_npz_member(archive, "y")
                    x = read_npz_member(archive, "x") if "x" in names else None
            elif path == path_npz:
                raise DatasetFormatError(f"target {path} is a single .npy array; expected {expected}")
            else:
                with open(path, "rb") as f:
                    y, x = read_npy(f, "y", path.stat().st_size), None
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            if isinstance(error, DatasetFormatError):
                raise
            raise DatasetFormatError(f"cannot read target file for '{name}', {path}: {error} "
                                     f"(expected {expected} in numpy's format, read without "
                                     "pickle; a truncated or damaged file?)") from error
        for label, array in (("y", y), ("x", x)):
            if array is None:
                continue
            if array.dtype.kind not in "iuf":
                raise DatasetFormatError(f"'{label}' in {path} must be real numbers (integer or "
                                         f"floating point), got dtype {array.dtype}")
            if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
                raise DatasetFormatError(f"'{label}' in {path} contains NaN or infinite values")
        y = y.astype(np.float32) if np.issubdtype(y.dtype, np.floating) else y.astype(np.int64)
        return y, None if x is None else x.astype(np.float32), path

    def process(self):
        self.save_split(self.pre_processed(self._read_split()), self.processed_paths[0])

    def _read_split(self) -> Iterator[Data]:
        """The examples of the split, checked to have one kind of target."""
        first = None
        for name in read_name_list(self._raw / f"{self.split}.txt"):
            example = self._read(name)
            kind = ("face_y" if "face_y" in example else "y",
                    tuple((example.face_y if "face_y" in example else example.y).shape[1:]),
                    "x" in example)
            if first is None:
                first = (name, kind)
            elif kind != first[1]:
                raise DatasetFormatError(
                    f"targets of split '{self.split}' differ: '{first[0]}' has {first[1]} but "
                    f"'{name}' has {kind} ((target key, trailing shape, has input x)); keep one "
                    "kind of target per split")
            yield example

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({len(self)}, split='{self.split}')"


class MeshOperatorRegression(MeshRegression):
    r"""Learning a non-local operator on closed surfaces, at several
    resolutions of the same shapes (no download).

    Every shape is a unit sphere deformed by smooth random bumps and an
    anisotropic scaling, triangulated as an icosphere at the subdivision
    ``levels`` (162, 642, 2562, 10242 vertices for levels 2-5).  The
    icospheres are nested, so the same shape and the same source vertex exist
    at every level.  Input ``x`` ``[N, 1]``: a smooth bump around the source
    point, ``exp(-|p - p_s|^2 / (2 sigma^2))``, a function of the surface
    independent of the sampling.  Target ``y`` ``[N, 1]``:

    * ``"geodesic"``: the geodesic distance to the source (heat method,
      ``potpourri3d``);
    * ``"heat"``: the heat-diffused input, ``(M + t L) u = M x`` with the
      cotangent Laplacian (``t = 0.02``).

    Train at a coarse level and test at finer ones to measure resolution
    transfer.  The raw files (in :class:`MeshRegression`'s layout, one folder
    per level, under ``root/raw_<hash of the settings>``) are written to a
    temporary folder and renamed when complete.

    Args:
        root (str): Dataset folder.
        level (int): The subdivision level to load (one of ``levels``).
        split (str, optional): ``"train"`` or ``"test"``. (default: ``"train"``)
        target (str, optional): ``"geodesic"`` or ``"heat"``. (default: ``"geodesic"``)
        levels (sequence of int, optional): Levels to generate. (default: ``(2, 3, 4)``)
        num_shapes (int, optional): Shapes; the first 80% train, the rest test.
            (default: ``100``)
        seed (int, optional): Random seed. (default: ``0``)
        transform, pre_transform, pre_filter, force_reload: As in PyG.
    """

    TARGETS = ("geodesic", "heat")

    def __init__(self, root: str, level: int, split: str = "train", target: str = "geodesic",
                 levels: Sequence[int] = (2, 3, 4), num_shapes: int = 100, seed: int = 0,
                 transform: Optional[Callable] = None, pre_transform: Optional[Callable] = None,
                 pre_filter: Optional[Callable] = None, force_reload: bool = False):
        if target not in self.TARGETS:
            raise ValueError(f"'target' must be one of {self.TARGETS}, got {target!r}")
        levels = tuple(sorted(set(int(v) for v in levels)))
        if level not in levels or min(levels) < 0 or max(levels) > 6:
            raise ValueError(f"'level' must be one of 'levels' {levels} (each in 0..6), got {level!r}")
        if split not in ("train", "test"):
            raise ValueError(f"'split' must be 'train' or 'test', got {split!r}")
        if not isinstance(num_shapes, int) or num_shapes < 2:
            raise ValueError(f"'num_shapes' must be an int >= 2, got {num_shapes!r}")
        self.level = level
        self.settings = {"target": target, "levels": list(levels), "num_shapes": num_shapes,
                         "seed": seed, "generator_version": 1}
        generated = generated_raw_folder(root, self.settings, self._generate)
        self._level_dir = generated / f"level_{level}"
        super().__init__(root, split, transform, pre_transform, pre_filter, force_reload)

    def _find_raw(self, root: Path) -> Path:
        return self._level_dir

    def fingerprint_options(self):
        return {**super().fingerprint_options(), **self.settings, "level": self.level}

    def _generate(self, folder: Path) -> None:
        trimesh = require("trimesh", "MeshOperatorRegression")
        rng = np.random.default_rng(self.settings["seed"])
        levels = self.settings["levels"]
        spheres = {lv: trimesh.creation.icosphere(subdivisions=lv) for lv in levels}
        names = [f"shape_{i:04d}" for i in range(self.settings["num_shapes"])]
        num_coarse = len(spheres[levels[0]].vertices)
        for name in names:
            shape = _random_deformation(rng, num_coarse)
            for lv in levels:
                level_dir = folder / f"level_{lv}"
                (level_dir / "meshes").mkdir(parents=True, exist_ok=True)
                (level_dir / "targets").mkdir(exist_ok=True)
                vertices, faces = _deform(spheres[lv], shape)
                x, y = _operator_pair(vertices, faces, shape["source"], self.settings["target"])
                trimesh.Trimesh(vertices, faces, process=False).export(level_dir / "meshes" / f"{name}.ply")
                np.savez(level_dir / "targets" / f"{name}.npz", x=x, y=y)
        cut = int(round(0.8 * len(names)))
        for lv in levels:
            write_lines(folder / f"level_{lv}" / "train.txt", names[:cut])
            write_lines(folder / f"level_{lv}" / "test.txt", names[cut:])

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({len(self)}, level={self.level}, split='{self.split}', "
                f"target='{self.settings['target']}')")


def _random_deformation(rng: np.random.Generator, num_coarse: int) -> dict:
    num_bumps = int(rng.integers(3, 7))
    centres = rng.normal(size=(num_bumps, 3))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return {"centres": centres, "amplitudes": rng.uniform(-0.25, 0.35, num_bumps),
            "sharpness": rng.uniform(2.0, 6.0, num_bumps), "scales": rng.uniform(0.7, 1.3, 3),
            "source": int(rng.integers(num_coarse))}


def _deform(sphere, shape) -> tuple:
    unit = np.asarray(sphere.vertices, dtype=np.float64)
    bumps = shape["amplitudes"] * np.exp(shape["sharpness"] * (unit @ shape["centres"].T - 1.0))
    vertices = unit * (1.0 + bumps.sum(1, keepdims=True)) * shape["scales"]
    return vertices, np.asarray(sphere.faces, dtype=np.int64)


def _operator_pair(vertices: np.ndarray, faces: np.ndarray, source: int, target: str):
    pp3d = require("potpourri3d", "MeshOperatorRegression")
    sigma = 0.2
    x = np.exp(-np.sum((vertices - vertices[source]) ** 2, axis=1) / (2 * sigma ** 2))
    if target == "geodesic":
        y = pp3d.MeshHeatMethodDistanceSolver(vertices, faces).compute_distance(source)
    else:
        import scipy.sparse as sp
        import scipy.sparse.linalg as sla

        from ..geometry import laplacian

        L, mass = laplacian(vertices, faces.T)
        M = sp.diags(mass)
        y = sla.spsolve((M + 0.02 * L).tocsc(), M @ x)
    return x[:, None].astype(np.float32), np.asarray(y)[:, None].astype(np.float32)
