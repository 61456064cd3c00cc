"""RNA surface segmentation (Poulenard et al., 3DV 2019)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.transforms import Compose

from ..transforms.mesh import SampleMeshPoints
from ._readers import (DatasetFormatError, find_or_download, install_archive, read_int_lines, read_mesh,
                  read_name_list)
from .base import FingerprintedDataset

NUM_RNA_CLASSES = 260


class RNASurfaceSegmentation(FingerprintedDataset):
    r"""RNA molecular surfaces segmented into ~120 functional regions per
    molecule from `"Effective Rotation-invariant Point CNN with Spherical
    Harmonics Kernels" <https://arxiv.org/abs/1906.11555>`_ (Poulenard et al.,
    3DV 2019): 640 triangle meshes of about 10k vertices, 260 classes.

    Each example keeps the mesh: ``pos`` ``[N, 3]``, ``face`` ``[3, F]``,
    ``y`` ``[N]`` (class = label + 1, in ``[0, 259]``) and ``name``.  The
    meshes are real and messy (many disconnected components, bad triangles,
    no canonical orientation); they are read exactly as stored (vertex order
    and count kept, so labels stay aligned).

    With ``num_points`` (the paper samples 4096), a
    :class:`~tg_funcattn.transforms.SampleMeshPoints` transform samples the
    surface at every access, carrying labels by nearest triangle corner and
    keeping the original vertices as ``mesh_pos``/``mesh_y``; score
    predictions on every original vertex with
    :func:`~tg_funcattn.transforms.transfer_to_vertices`, as the dataset's
    authors recommend.

    Raw layout (the dataset's repository), in ``root/raw``,
    ``root/RNA-Surface-Segmentation-Dataset`` or ``root``::

        off/<name>.off        triangle meshes
        labels/<name>.txt     one integer in [-1, 258] per vertex, in vertex order
        train.txt, test.txt   file names (<name>.off), one per line

    Args:
        root (str): Dataset folder.
        split (str, optional): ``"train"`` or ``"test"``. (default: ``"train"``)
        num_points (int, optional): Sample this many surface points per
            access. (default: ``None``, the meshes)
        transform, pre_transform, pre_filter, force_reload: As in PyG.
    """

    attribute_kinds = {"pos": "floating", "face": "integer", "y": "integer"}
    url = "https://github.com/nmwsharp/RNA-Surface-Segmentation-Dataset/archive/refs/heads/main.zip"
    archive_name = "RNA-Surface-Segmentation-Dataset-main.zip"
    folder_names = ("RNA-Surface-Segmentation-Dataset", "RNA-Surface-Segmentation-Dataset-main")

    def __init__(self, root: str, split: str = "train", num_points: Optional[int] = None,
                 transform: Optional[Callable] = None, pre_transform: Optional[Callable] = None,
                 pre_filter: Optional[Callable] = None, force_reload: bool = False):
        if split not in ("train", "test"):
            raise ValueError(f"'split' must be 'train' or 'test', got {split!r}")
        self.split = split
        self.num_points = num_points
        if num_points is not None:
            sampler = SampleMeshPoints(num_points, keep_mesh=True)
            transform = sampler if transform is None else Compose([sampler, transform])
        self._raw = self._find_raw(Path(root))
        super().__init__(root, transform, pre_transform, pre_filter, force_reload=force_reload)
        self.load_split(self.processed_paths[("train", "test").index(split)])

    @classmethod
    def _find_raw(cls, root: Path) -> Path:
        candidates = [root / "raw"] + [root / n for n in cls.folder_names] + [root]
        for candidate in candidates:
            if (candidate / "off").is_dir() and (candidate / "train.txt").is_file():
                return candidate
        return root / "raw"

    @property
    def raw_file_names(self) -> List[str]:
        return ["off", "labels", "train.txt", "test.txt"]

    @property
    def processed_file_names(self) -> List[str]:
        return [f"{split}_{self.fingerprint}.pt" for split in ("train", "test")]

    @property
    def num_classes(self) -> int:
        return NUM_RNA_CLASSES

    @classmethod
    def layout_help(cls) -> str:
        return ("Expected off/<name>.off, labels/<name>.txt (one integer in [-1, 258] per vertex) "
                "and train.txt/test.txt in <root>/raw; get them with 'git clone "
                "https://github.com/nmwsharp/RNA-Surface-Segmentation-Dataset <root>/raw' or put "
                f"{cls.archive_name} in <root>")

    def download(self):
        archive, downloaded = find_or_download(self.url, self.root, self.archive_name,
                                               "the RNA dataset", self.layout_help())
        self._raw = install_archive(archive, self.root, lambda p: (p / "off").is_dir(),
                                    self.layout_help())
        if downloaded:
            os.unlink(archive)

    def _read(self, name: str) -> Data:
        stem = name[:-4] if name.endswith(".off") else name
        mesh_path = self._raw / "off" / f"{stem}.off"
        label_path = self._raw / "labels" / f"{stem}.txt"
        vertices, faces = read_mesh(mesh_path)
        labels = read_int_lines(label_path, low=-1, high=NUM_RNA_CLASSES - 2)
        if len(labels) != len(vertices):
            raise DatasetFormatError(f"label file {label_path} has {len(labels)} labels but mesh "
                                     f"{mesh_path} has {len(vertices)} vertices")
        return Data(pos=torch.from_numpy(vertices.astype(np.float32)),
                    face=torch.from_numpy(faces.T.copy()),
                    y=torch.from_numpy(labels + 1), name=stem)

    def process(self):
        for i, split in enumerate(("train", "test")):
            names = read_name_list(self._raw / f"{split}.txt")
            self.save_split(self.pre_processed(map(self._read, names)), self.processed_paths[i])

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({len(self)}, split='{self.split}', num_points={self.num_points})"
