"""SyntheticParts: generated part segmentation data in the ShapeNet part layout."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from .._validation import check_number
from ._readers import generated_raw_folder
from .shapenet import SHAPENET_CATEGORIES, ShapeNetPart
from .shapes import CATEGORIES, CATEGORY_PARTS, sample_shape


#: the fewest mean points per shape the generator accepts (fewer leave a part
#: without points, or a shape of one point that cannot be scaled)
MIN_POINTS = 8


class SyntheticParts(ShapeNetPart):
    r"""Procedurally composed shapes with part labels, written to disk in the
    exact ShapeNet part layout and read back through :class:`ShapeNetPart`, so
    the real loading code runs without any download.

    Four categories with the ShapeNet category and part ids
    (:data:`~tg_funcattn.datasets.shapes.CATEGORY_PARTS`): Airplane
    (body, wing, tail, engines), Lamp (base, arm, shade), Mug (body, handle)
    and Table (top, legs or a pedestal support).  Every shape has random
    proportions, a random rotation about the vertical axis, a random number of
    points (0.6-1.4 x ``num_points``) and a smoothly varying sampling density,
    so a model needs the global context of a shape (e.g. the fuselage's
    direction) to label its points.  Generation is deterministic in ``seed``;
    the files go to ``root/raw_<hash of the settings>`` (written to a temporary
    folder and renamed when complete).

    The arguments come in the order of :class:`ShapeNetPart` (and PyG's
    :class:`~torch_geometric.datasets.ShapeNet`): ``root, categories,
    include_normals, split``.

    Args:
        root (str): Dataset folder.
        categories (str or list, optional): Subset of the four categories;
            ``None`` for all. (default: ``None``)
        include_normals (bool, optional): Keep the normals as ``x``.
            (default: ``True``)
        split (str, optional): ``"train"``, ``"val"``, ``"test"`` or
            ``"trainval"``. (default: ``"trainval"``)
        num_train, num_val, num_test (int, optional): Shapes per category and
            split. (default: ``100``, ``15``, ``30``)
        num_points (int, optional): Mean number of points per shape, at
            least :data:`MIN_POINTS`. (default: ``1024``)
        seed (int, optional): Random seed. (default: ``0``)
        transform, pre_transform, pre_filter, force_reload: As in
            :class:`ShapeNetPart`.
    """

    def __init__(self, root: str, categories: Optional[Union[str, Sequence[str]]] = None,
                 include_normals: bool = True, split: str = "trainval",
                 num_train: int = 100, num_val: int = 15, num_test: int = 30,
                 num_points: int = 1024, seed: int = 0,
                 transform: Optional[Callable] = None, pre_transform: Optional[Callable] = None,
                 pre_filter: Optional[Callable] = None, force_reload: bool = False):
        if categories is None:
            categories = list(CATEGORIES)
        elif isinstance(categories, str):
            categories = [categories]
        lookup = {c.lower(): c for c in CATEGORIES}
        unknown = [c for c in categories if c.lower() not in lookup]
        if unknown:
            raise ValueError(f"SyntheticParts has no category {unknown[0]!r}; known: {list(CATEGORIES)}")
        for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            check_number(value, name, integer=True, minimum=1)
        if not (isinstance(num_points, int) and not isinstance(num_points, bool)
                and num_points >= MIN_POINTS):
            raise ValueError(f"'num_points' must be an int >= {MIN_POINTS} (a shape needs a few "
                             f"points on each of its parts), got {num_points!r}")
        self.settings = {"num_train": num_train, "num_val": num_val, "num_test": num_test,
                         "num_points": num_points, "seed": seed, "generator_version": 1}
        self._generated = generated_raw_folder(
            root, self.settings, self._generate,
            manifest={**self.settings, "categories": {c: CATEGORY_PARTS[c] for c in CATEGORIES}})
        super().__init__(root, [lookup[c.lower()] for c in categories], include_normals, split,
                         transform, pre_transform, pre_filter, force_reload)

    def _find_raw(self, root: Path) -> Path:
        return self._generated

    def fingerprint_options(self):
        return {**super().fingerprint_options(), **self.settings}

    def download(self):  # pragma: no cover - the raw files are generated in __init__
        raise RuntimeError(f"SyntheticParts generates its files; {self._raw} is incomplete")

    def _generate(self, folder: Path) -> None:
        rng = np.random.default_rng(self.settings["seed"])
        n = self.settings["num_points"]
        lists = {"train": [], "val": [], "test": []}
        with open(folder / "synsetoffset2category.txt", "w") as f:
            for name in CATEGORIES:
                f.write(f"{name}\t{SHAPENET_CATEGORIES[name]}\n")
        for name in CATEGORIES:  # all four, so that any category subset reads the same files
            synset = SHAPENET_CATEGORIES[name]
            (folder / synset).mkdir()
            for split in ("train", "val", "test"):
                for _ in range(self.settings[f"num_{split}"]):
                    shape_id = rng.bytes(16).hex()
                    count = int(rng.integers(int(0.6 * n), int(1.4 * n) + 1))
                    shape = sample_shape(name, count, rng)
                    table = np.concatenate([shape["pos"], shape["normal"],
                                            shape["part"][:, None].astype(np.float32)], axis=1)
                    np.savetxt(folder / synset / f"{shape_id}.txt", table, fmt="%.6f")
                    lists[split].append(f"shape_data/{synset}/{shape_id}")
        (folder / "train_test_split").mkdir()
        for split, entries in lists.items():
            order = rng.permutation(len(entries))
            (folder / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(
                json.dumps([entries[i] for i in order]))
