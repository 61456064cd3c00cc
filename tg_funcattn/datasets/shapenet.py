"""ShapeNet part segmentation (Yi et al. 2016), 16 categories and 50 parts."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
import torch
from torch_geometric.data import Data

from ._readers import DatasetFormatError, find_or_download, install_archive, read_table
from .base import FingerprintedDataset

#: The 16 categories in the benchmark's canonical order (the order of the
#: category index) and their ShapeNet synset ids.
SHAPENET_CATEGORIES = {
    "Airplane": "02691156", "Bag": "02773838", "Cap": "02954340", "Car": "02958343",
    "Chair": "03001627", "Earphone": "03261776", "Guitar": "03467517", "Knife": "03624134",
    "Lamp": "03636649", "Laptop": "03642806", "Motorbike": "03790512", "Mug": "03797390",
    "Pistol": "03948459", "Rocket": "04099429", "Skateboard": "04225987", "Table": "04379243",
}
#: The global part ids (0-49) of every category.
SHAPENET_PARTS = {
    "Airplane": [0, 1, 2, 3], "Bag": [4, 5], "Cap": [6, 7], "Car": [8, 9, 10, 11],
    "Chair": [12, 13, 14, 15], "Earphone": [16, 17, 18], "Guitar": [19, 20, 21], "Knife": [22, 23],
    "Lamp": [24, 25, 26, 27], "Laptop": [28, 29], "Motorbike": [30, 31, 32, 33, 34, 35],
    "Mug": [36, 37], "Pistol": [38, 39, 40], "Rocket": [41, 42, 43], "Skateboard": [44, 45, 46],
    "Table": [47, 48, 49],
}
NUM_SHAPENET_PARTS = 50
SPLITS = ("train", "val", "test", "trainval")


def category_part_mask() -> torch.Tensor:
    """``[16, 50]`` boolean: which parts belong to which category."""
    mask = torch.zeros(len(SHAPENET_CATEGORIES), NUM_SHAPENET_PARTS, dtype=torch.bool)
    for i, parts in enumerate(SHAPENET_PARTS.values()):
        mask[i, parts] = True
    return mask


def resolve_categories(categories) -> List[str]:
    if categories is None:
        return list(SHAPENET_CATEGORIES)
    if isinstance(categories, str):
        categories = [categories]
    lookup = {name.lower(): name for name in SHAPENET_CATEGORIES}
    resolved = []
    for name in categories:
        if not isinstance(name, str) or name.lower() not in lookup:
            raise ValueError(f"unknown ShapeNet category {name!r}; known: {list(SHAPENET_CATEGORIES)}")
        resolved.append(lookup[name.lower()])
    return sorted(set(resolved), key=list(SHAPENET_CATEGORIES).index)


class ShapeNetPart(FingerprintedDataset):
    r"""ShapeNet part segmentation from `"A Scalable Active Framework for Region
    Annotation in 3D Shape Collections" <https://cs.stanford.edu/~ericyi/project_page/part_annotation/>`_
    (Yi et al., SIGGRAPH Asia 2016), in the point-cloud-with-normals release
    used by PointNet++ and PyG (16,881 shapes, 16 categories, 50 parts).

    Each example has ``pos`` ``[n, 3]``, ``x`` (normals, ``[n, 3]``, or ``None``
    with ``include_normals=False``), ``y`` ``[n]`` (global part id, 0-49),
    ``category`` ``[1]`` (index into :data:`SHAPENET_CATEGORIES`, the same for
    any subset of categories) and ``shape_id`` (the file name).

    The arguments come in the order of PyG's
    :class:`torch_geometric.datasets.ShapeNet` (``root, categories,
    include_normals, split, ...``), so a positional call written for PyG works.

    Mapping to PyG's ``ShapeNet``: ``pos``, ``x``, ``y`` and the dataset's
    :attr:`y_mask` (``[16, 50]`` boolean, the parts of each category; also
    :attr:`part_mask`, from :func:`category_part_mask`) mean the same thing.
    ``category`` differs for a subset of categories: PyG numbers the selected
    categories from 0 (``categories="Mug"`` gives category 0, which in
    ``y_mask`` is Airplane), this class keeps the global index (Mug is 11), so
    ``y_mask[data.category]`` is the right part mask for any subset.
    ``shape_id`` has no PyG counterpart.

    Raw layout (the official zip ``shapenetcore_partanno_segmentation_benchmark_v0_normal.zip``
    unpacked), looked for in ``root/raw``, ``root/shapenetcore_partanno_segmentation_benchmark_v0_normal``
    or ``root`` itself::

        <synset>/<shape_id>.txt           lines "x y z nx ny nz part_label"
        train_test_split/shuffled_{train,val,test}_file_list.json
                                          ["shape_data/<synset>/<shape_id>", ...]

    If neither is there, the zip is used when it lies in ``root`` or
    ``root/raw`` (extracted safely), and only otherwise downloaded.  The
    original host is often down: the error then names the layout and the
    known mirrors.

    Args:
        root (str): Dataset folder (``raw/`` and ``processed/`` below it).
        categories (str or list, optional): Category names (case
            insensitive); ``None`` for all 16. (default: ``None``)
        include_normals (bool, optional): Keep the normals as ``x``.
            (default: ``True``)
        split (str, optional): ``"train"``, ``"val"``, ``"test"`` or
            ``"trainval"``. (default: ``"trainval"``)
        transform, pre_transform, pre_filter: As in PyG.
        force_reload (bool, optional): Process again. (default: ``False``)
    """

    attribute_kinds = {"pos": "floating", "x": "floating", "y": "integer", "category": "integer"}
    url = ("https://shapenet.cs.stanford.edu/media/"
           "shapenetcore_partanno_segmentation_benchmark_v0_normal.zip")
    archive_name = "shapenetcore_partanno_segmentation_benchmark_v0_normal.zip"
    folder_name = "shapenetcore_partanno_segmentation_benchmark_v0_normal"
    mirrors = ("https://shapenet.cs.stanford.edu/media/"
               "shapenetcore_partanno_segmentation_benchmark_v0_normal.zip (original, often down)",
               "https://www.kaggle.com/datasets/mitkir/shapenet (Kaggle, needs a login)")

    def __init__(self, root: str, categories: Optional[Union[str, Sequence[str]]] = None,
                 include_normals: bool = True, split: str = "trainval",
                 transform: Optional[Callable] = None, pre_transform: Optional[Callable] = None,
                 pre_filter: Optional[Callable] = None, force_reload: bool = False):
        if not isinstance(include_normals, (bool, np.bool_)):
            raise TypeError(f"'include_normals' must be a bool, got {include_normals!r} (the order "
                            "is ShapeNetPart(root, categories, include_normals, split), as in PyG)")
        include_normals = bool(include_normals)
        if split not in SPLITS:
            raise ValueError(f"'split' must be one of {SPLITS}, got {split!r}")
        self.categories = resolve_categories(categories)
        self.split = split
        self.include_normals = include_normals
        self._raw = self._find_raw(Path(root))
        super().__init__(root, transform, pre_transform, pre_filter, force_reload=force_reload)
        self.load_split(self.processed_paths[SPLITS.index(split)])
        if not include_normals:
            self._data.x = None
        self.part_mask = category_part_mask()

    @property
    def y_mask(self) -> torch.Tensor:
        """PyG ``ShapeNet``'s name of :attr:`part_mask`: ``[16, 50]`` boolean,
        row ``c`` the parts of category ``c`` (global index, as ``data.category``)."""
        return self.part_mask

    # ------------------------------------------------------------------ layout
    @classmethod
    def _find_raw(cls, root: Path) -> Path:
        for candidate in (root / "raw", root / cls.folder_name, root / "raw" / cls.folder_name, root):
            if (candidate / "train_test_split").is_dir():
                return candidate
        return root / "raw"

    @property
    def raw_file_names(self) -> List[str]:
        return ["train_test_split"] + [SHAPENET_CATEGORIES[c] for c in self.categories]

    @property
    def processed_file_names(self) -> List[str]:
        return [f"{split}_{self.fingerprint}.pt" for split in SPLITS]

    def fingerprint_options(self):
        return {"categories": self.categories}

    @property
    def num_classes(self) -> int:
        return NUM_SHAPENET_PARTS

    @classmethod
    def layout_help(cls) -> str:
        return (f"Expected the unpacked '{cls.archive_name}' (folders <synset>/<shape_id>.txt with "
                "lines 'x y z nx ny nz part_label' and train_test_split/shuffled_{train,val,test}"
                f"_file_list.json) in <root>/raw, or the zip itself in <root>. Known sources: "
                + "; ".join(cls.mirrors))

    def download(self):
        if (self._raw / "train_test_split").is_dir():  # the data is here, but not all of it
            missing = [c for c in self.categories if not (self._raw / SHAPENET_CATEGORIES[c]).is_dir()]
            raise FileNotFoundError(f"{self._raw} has no folder for the categories {missing}; "
                                    "pass categories=[...] to load the ones that are there")
        archive, downloaded = find_or_download(self.url, self.root, self.archive_name,
                                               "ShapeNet part", self.layout_help())
        self._raw = install_archive(archive, self.root,
                                    lambda p: (p / "train_test_split").is_dir(), self.layout_help())
        if downloaded:
            os.unlink(archive)

    # -------------------------------------------------------------- processing
    def _split_files(self, split: str) -> List[str]:
        path = self._raw / "train_test_split" / f"shuffled_{split}_file_list.json"
        if not path.is_file():
            raise FileNotFoundError(f"split file {path} does not exist. " + self.layout_help())
        try:
            entries = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DatasetFormatError(f"split file {path} is not valid JSON text: {error}") from None
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise DatasetFormatError(f"split file {path} must hold a JSON list of strings")
        if not entries:
            raise DatasetFormatError(f"split file {path} lists no shapes")
        names = []
        for entry in entries:
            parts = entry.strip("/").split("/")
            if len(parts) < 2 or ".." in parts:
                raise DatasetFormatError(f"split file {path}: bad entry {entry!r} (expected "
                                         "'shape_data/<synset>/<shape_id>')")
            names.append("/".join(parts[-2:]))
        return names

    def _read_shape(self, name: str, category: str) -> Data:
        path = self._raw / f"{name}.txt"
        table = read_table(path, 7, dtype=np.float64)
        labels = table[:, 6]
        if not np.all(labels == np.round(labels)):
            raise DatasetFormatError(f"{path}: part labels (7th column) must be integers")
        labels = labels.astype(np.int64)
        allowed = SHAPENET_PARTS[category]
        bad = ~np.isin(labels, allowed)
        if bad.any():
            raise DatasetFormatError(f"{path}: part label {int(labels[bad][0])} is not a part of "
                                     f"{category} (parts {allowed})")
        return Data(pos=torch.from_numpy(table[:, :3].astype(np.float32)),
                    x=torch.from_numpy(table[:, 3:6].astype(np.float32)),
                    y=torch.from_numpy(labels),
                    category=torch.tensor([list(SHAPENET_CATEGORIES).index(category)]),
                    shape_id=name.split("/")[-1])

    def process(self):
        synset_to_category = {v: k for k, v in SHAPENET_CATEGORIES.items() if k in self.categories}
        data = {}
        for split in ("train", "val", "test"):
            names = [(name, synset_to_category.get(name.split("/")[0]))
                     for name in self._split_files(split)]
            items = self.pre_processed(self._read_shape(name, category)
                                       for name, category in names if category is not None)
            if not items:
                raise DatasetFormatError(f"the {split} split has no shapes of {self.categories}")
            data[split] = items
        data["trainval"] = data["train"] + data["val"]
        for split in SPLITS:
            self.save_split(data[split], self.processed_paths[SPLITS.index(split)])

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({len(self)}, split='{self.split}', "
                f"categories={self.categories})")
