"""The configuration of a run, typed: from the command line to training, data
and checkpoints.

A run is a :class:`RunConfig` of five frozen sections: :class:`DataConfig`
(one subclass per kind of data), :class:`ModelConfig`, :class:`OptimConfig`,
:class:`TrainerConfig` and :class:`OutputConfig`.  Every option is a field,
and its default is written once, in the field (regression changes a few in
:class:`RegressionModelConfig` and :class:`RegressionTrainerConfig`).  The
``tg-funcattn`` options are generated from the fields (:func:`add_arguments`).
Values are checked when a section is built, so the code downstream trusts
them; :meth:`RunConfig.to_dict` gives plain values (for ``metrics.json`` and
checkpoints) and :meth:`RunConfig.from_dict` reads them back, checked again.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Dict, Optional, Tuple, Type

from ..nn.options import BASIS_TYPE_NAMES, HEADS, INITS, LIFTS, LOCAL_KINDS
from ..nn.presets import PRESETS

SEGMENTATION, REGRESSION = "segmentation", "regression"

#: data set names -> folders under ``datasets/`` (the default ``root``)
DEFAULT_ROOTS = {"synthetic": "synthetic_parts", "shapenet": "shapenet_part",
                 "rna": "rna_surface_segmentation", "operator": "mesh_operator_regression",
                 "mesh": "mesh_regression"}

#: preset name (:data:`tg_funcattn.nn.presets.PRESETS`) -> the training recipe it was
#: published with.  ``paper_rna``: Adam (learning rate 1e-3, no weight decay) under a
#: one-cycle schedule stepped once per epoch, one molecule per step, 200 epochs, 4096
#: points per molecule (the authors' ``rna_point_segmentation.py``).
RECIPES: Dict[str, Dict[str, Any]] = {
    "paper_rna": dict(optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="onecycle",
                      batch_size=1, max_epochs=200, points=4096),
}

#: What a preset (a published network) has where it names nothing else, instead of the
#: command line's ``auto`` choices: FuncAttnNet's learned bases, no local branch, the
#: positions as input
PRESET_DEFAULTS: Dict[str, Any] = {"basis_type": "learned", "local": "none", "input_features": "xyz"}

#: data sets of meshes, where ``basis_type="auto"`` takes the Laplacian-initialised basis
#: ``local="auto"`` an EdgeConv branch and ``input_features="auto"`` the heat kernel signature
MESH_DATASETS = ("rna",)


def _option(default: Any, help: str, *, flag: Optional[str] = None, choices: Optional[tuple] = None,
            at_least: Optional[float] = None, above: Optional[float] = None):
    """A field that is the command-line option ``flag`` (default: ``--field-name``)."""
    return field(default=default, metadata={"help": help, "flag": flag, "choices": choices,
                                            "at_least": at_least, "above": above})


def _default(section: type, name: str, default: Any):
    """The field ``name`` of ``section`` with another default (same option and checks)."""
    return field(default=default, metadata=section.__dataclass_fields__[name].metadata)


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


@functools.lru_cache(maxsize=None)
def _types(section: type) -> Dict[str, Tuple[type, bool, bool]]:
    """field -> ``(type, may be None, is a tuple of that type)``."""
    result = {}
    hints = typing.get_type_hints(section)
    for name in (f.name for f in fields(section)):
        hint = hints[name]
        args = typing.get_args(hint)
        optional = typing.get_origin(hint) is typing.Union and type(None) in args
        if optional:
            hint = next(a for a in args if a is not type(None))
        is_tuple = typing.get_origin(hint) is tuple
        result[name] = (typing.get_args(hint)[0] if is_tuple else hint, optional, is_tuple)
    return result


def _is(value: Any, base: type) -> bool:
    if base is float:  # finite: no option means anything at NaN or infinity
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, base)


@dataclass(frozen=True)
class _Section:
    """Checks every field against its type, choices and bounds when built."""

    def __post_init__(self):
        for f in fields(self):
            base, optional, is_tuple = _types(type(self))[f.name]
            value, meta = getattr(self, f.name), f.metadata
            where = f"'{f.name}' ({_flag(f)})"
            if value is None and optional:
                continue
            items = value if is_tuple and isinstance(value, tuple) else (value,)
            if (is_tuple and not isinstance(value, tuple)) or not all(_is(v, base) for v in items):
                shape = f"a tuple of {base.__name__}" if is_tuple else base.__name__
                if base is float:
                    shape = "a tuple of finite numbers" if is_tuple else "a finite number"
                raise ValueError(f"{where} must be {shape}{' or None' if optional else ''}, "
                                 f"got {value!r}")
            if meta.get("choices") is not None and value not in meta["choices"]:
                raise ValueError(f"{where} must be one of {meta['choices']}, got {value!r}")
            if meta.get("at_least") is not None and value < meta["at_least"]:
                raise ValueError(f"{where} must be >= {meta['at_least']}, got {value!r}")
            if meta.get("above") is not None and value <= meta["above"]:
                raise ValueError(f"{where} must be > {meta['above']}, got {value!r}")

    @classmethod
    def from_dict(cls, values: Dict[str, Any]):
        """The section of plain ``values`` (lists for tuples, as JSON has them);
        an unknown key is an error that names it."""
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise ValueError(f"unknown {cls.__name__} key {key!r}; known keys: {sorted(known)}")
        types = _types(cls)
        return cls(**{k: tuple(v) if types[k][2] and isinstance(v, list) else v
                      for k, v in values.items()})


# ---------------------------------------------------------------- data
@dataclass(frozen=True)
class DataConfig(_Section):
    """Settings of the data shared by every data set; see the subclasses."""

    kind: ClassVar[str]
    datasets: ClassVar[Tuple[str, ...]]

    dataset: str
    root: Optional[str] = _option(None, "dataset folder (default: datasets/<dataset name>)")
    eigen_cache: Optional[str] = _option(
        None, "eigenbasis cache folder for the Laplacian bases (default: <root>/eigen_cache)")
    sign_flip: bool = _option(False, "flip the eigenvectors' signs at random in training (Laplacian "
                                     "bases; default: keep their deterministic signs, which trained "
                                     "better on RNA)")
    data_seed: int = _option(0, "seed of generated data")

    @property
    def root_dir(self) -> str:
        return self.root or os.path.join("datasets", DEFAULT_ROOTS[self.dataset])

    @property
    def eigen_cache_dir(self) -> str:
        return self.eigen_cache or os.path.join(self.root_dir, "eigen_cache")

    def absolute(self) -> "DataConfig":
        """These settings with the data root (and a given eigenbasis cache) as
        absolute paths, resolved against the current folder: what a checkpoint
        stores, so that it finds its data from any folder."""
        cache = os.path.abspath(self.eigen_cache) if self.eigen_cache else None
        return dataclasses.replace(self, root=os.path.abspath(self.root_dir), eigen_cache=cache)


@dataclass(frozen=True)
class SegmentationDataConfig(DataConfig):
    kind: ClassVar[str] = SEGMENTATION
    datasets: ClassVar[Tuple[str, ...]] = ("synthetic", "shapenet", "rna")

    dataset: str = _option("synthetic", "synthetic: SyntheticParts, generated; shapenet: ShapeNet part "
                                        "(instance/class mIoU); rna: RNA surface segmentation (accuracy "
                                        "on the original vertices)", choices=datasets)
    categories: Optional[Tuple[str, ...]] = _option(
        None, "comma-separated category names (synthetic/shapenet; default: all)")
    points: Optional[int] = _option(None, "synthetic: mean points per shape (default: 1024); rna: "
                                          "points sampled per molecule and access (default: 4096; 0 "
                                          "for the meshes)", at_least=0)
    shapes: int = _option(100, "synthetic: training shapes per category; validation gets "
                               "shapes // 7 and test 3 * shapes // 10 per category (at least 1 "
                               "each)", at_least=1)
    input_features: str = _option("auto", "the node input: xyz, the positions; hks, the heat "
                                          "kernel signature of the mesh (16 times from 64 "
                                          "eigenpairs) instead, invariant to rotations (meshes "
                                          "only); auto: hks on meshes (rna), xyz on point clouds",
                                  choices=("auto", "xyz", "hks"))

    @property
    def resolved_input_features(self) -> str:
        """``auto``: ``hks`` on meshes (the best rows of ``benchmarks/bench_rna.py``
        on real RNA surfaces), ``xyz`` on point clouds."""
        if self.input_features != "auto":
            return self.input_features
        return "hks" if self.dataset in MESH_DATASETS else "xyz"

    @property
    def synthetic_split_sizes(self) -> Tuple[int, int, int]:
        """Shapes per category of the generated train, validation and test splits."""
        return self.shapes, max(1, self.shapes // 7), max(1, (3 * self.shapes) // 10)

    @property
    def num_points(self) -> Optional[int]:
        """``points``, or the data set's default (``None``: not sampled)."""
        return self.points if self.points is not None else {"synthetic": 1024, "rna": 4096}.get(self.dataset)


@dataclass(frozen=True)
class RegressionDataConfig(DataConfig):
    kind: ClassVar[str] = REGRESSION
    datasets: ClassVar[Tuple[str, ...]] = ("operator", "mesh")

    dataset: str = _option("operator", "operator: MeshOperatorRegression, generated; mesh: your "
                                       "MeshRegression data in --root", choices=datasets)
    target: str = _option("geodesic", "operator: the operator to learn", choices=("geodesic", "heat"))
    levels: Tuple[int, ...] = _option((2, 3, 4), "operator: icosphere levels generated and tested")
    train_level: Optional[int] = _option(None, "operator: level trained on (default: the first of --levels)")
    num_shapes: int = _option(100, "operator: shapes (80% train)", at_least=1)
    train_split: str = _option("train", "mesh: split file to train on")
    test_splits: Tuple[str, ...] = _option(("test",), "mesh: comma-separated test splits")

    def __post_init__(self):
        super().__post_init__()
        if not self.levels:
            raise ValueError("'levels' (--levels) must name at least one level")
        if self.train_level is not None and self.train_level not in self.levels:
            raise ValueError(f"'train_level' (--train-level) {self.train_level} is not one of the "
                             f"levels {self.levels}")

    @property
    def level(self) -> int:
        """The level trained on: ``train_level``, or the first of ``levels``."""
        return self.levels[0] if self.train_level is None else self.train_level


DATA_CONFIGS: Tuple[Type[DataConfig], ...] = (SegmentationDataConfig, RegressionDataConfig)


def data_config(values: Dict[str, Any]) -> DataConfig:
    """The data settings of ``values["dataset"]`` (the class of its kind)."""
    dataset = values.get("dataset")
    for section in DATA_CONFIGS:
        if dataset in section.datasets:
            return section.from_dict(values)
    known = [name for section in DATA_CONFIGS for name in section.datasets]
    raise ValueError(f"'dataset' must be one of {known}, got {dataset!r}")


# ---------------------------------------------------------------- model and training
@dataclass(frozen=True)
class ModelConfig(_Section):
    """The :class:`~tg_funcattn.nn.FuncAttnNet` settings (field names are its
    keywords).  Defaults: segmentation's, the best configuration of
    ``benchmarks/bench_rna.py`` on real RNA surfaces at its CPU budget: on
    meshes the Laplacian-initialised basis and a local EdgeConv branch of 8
    neighbours (about twice the time per step of no local branch; the data's
    ``input_features`` defaults to the heat kernel signature there), on point
    clouds the learned basis without one (see the README, "Results on real
    data" and "Performance")."""

    basis_type: str = _option("auto", "basis of the attention; auto: laplacian_init on meshes (rna), "
                                      "learned on point clouds; laplacian needs the eigenbasis of the "
                                      "nodes themselves (rna: --points 0)",
                              choices=("auto", *BASIS_TYPE_NAMES))
    num_bases: int = _option(32, "basis functions per head (k)", at_least=1)
    hidden_channels: int = _option(128, "width", at_least=1)
    num_layers: int = _option(4, "blocks", at_least=1)
    heads: int = _option(8, "attention heads", at_least=1)
    mlp_ratio: float = _option(2.0, "MLP width / width", above=0)
    dropout: float = _option(0.0, "dropout probability", at_least=0)
    init: str = _option("default", "weight initialisation: PyTorch's, or trunc_normal (std 0.02, the "
                                   "authors')", choices=INITS)
    head: str = _option("linear", "output head: LayerNorm + 2-layer MLP, or one Linear", choices=HEADS)
    lift: str = _option("mlp", "input lift: a 2-layer MLP, or the authors' residual lift with a "
                               "learned offset", choices=LIFTS)
    shared_ridge: bool = _option(False, "one ridge parameter for all heads (the authors')")
    local: str = _option("auto", "local message-passing branch over a kNN graph; auto: edgeconv "
                                 "on meshes (rna), none on point clouds",
                         choices=("auto", "none", *LOCAL_KINDS))
    k: int = _option(8, "neighbours of the local branch's kNN graph", at_least=1)

    def resolved_basis_type(self, dataset: str) -> str:
        """``auto``: ``laplacian_init`` on meshes (eigenbases of the surface, the
        best FuncAttnNet on real RNA surfaces), ``learned`` on point clouds."""
        if self.basis_type != "auto":
            return self.basis_type
        return "laplacian_init" if dataset in MESH_DATASETS else "learned"

    def resolved_local(self, dataset: str) -> Optional[str]:
        """The local branch (``None``: none); ``auto``: ``edgeconv`` on meshes
        (with ``laplacian_init``, the best rows on real RNA surfaces), none on
        point clouds."""
        local = self.local if self.local != "auto" else \
            "edgeconv" if dataset in MESH_DATASETS else "none"
        return None if local == "none" else local


@dataclass(frozen=True)
class RegressionModelConfig(ModelConfig):
    """Regression's defaults: a smaller network with learned bases and an MLP head."""

    basis_type: str = _default(ModelConfig, "basis_type", "learned")
    num_bases: int = _default(ModelConfig, "num_bases", 16)
    hidden_channels: int = _default(ModelConfig, "hidden_channels", 64)
    num_layers: int = _default(ModelConfig, "num_layers", 3)
    heads: int = _default(ModelConfig, "heads", 4)
    head: str = _default(ModelConfig, "head", "mlp")


@dataclass(frozen=True)
class OptimConfig(_Section):
    """Optimiser and learning-rate schedule (kept in checkpoints)."""

    optimizer: str = _option("adamw", "optimiser", choices=("adamw", "adam"))
    lr: float = _option(2e-3, "peak learning rate", above=0)
    weight_decay: float = _option(1e-4, "weight decay", at_least=0)
    schedule: str = _option("cosine", "cosine: linear warm-up over 10% of the steps, then cosine decay, "
                                      "per step; onecycle: PyTorch's OneCycleLR stepped once per epoch "
                                      "(the authors')", choices=("cosine", "onecycle"))


@dataclass(frozen=True)
class TrainerConfig(_Section):
    """The PyTorch Lightning engine: epochs, batches, devices, logs, checkpoints."""

    max_epochs: int = _option(15, "epochs", at_least=1)
    batch_size: int = _option(8, "shapes per step", at_least=1)
    devices: str = _option("auto", "devices per node, e.g. 1, 4 or auto")
    accelerator: str = _option("auto", "cpu, gpu or auto")
    strategy: str = _option("auto", "e.g. ddp for several GPUs or nodes")
    precision: str = _option("32-true", "32-true, bf16-mixed or 16-mixed (the functional map solve "
                                        "stays in float64)")
    num_workers: int = _option(0, "data loading processes", at_least=0)
    limit_batches: Optional[float] = _option(None, "fraction (or number) of batches per epoch, for "
                                                   "quick trials (default: all)", above=0)
    seed: int = _option(0, "seed of the training")
    ckpt: Optional[str] = _option(None, "checkpoint to resume training from (or to evaluate)")
    progress: bool = _option(True, "no progress bars", flag="--no-progress")
    chunk_size: Optional[int] = _option(None, "stream the attention over chunks of this many nodes: for "
                                              "graphs too large for memory (inference in O(N hidden); "
                                              "training recomputes chunks)", at_least=1)


@dataclass(frozen=True)
class RegressionTrainerConfig(TrainerConfig):
    max_epochs: int = _default(TrainerConfig, "max_epochs", 150)
    batch_size: int = _default(TrainerConfig, "batch_size", 16)


@dataclass(frozen=True)
class OutputConfig(_Section):
    out: Optional[str] = _option(None, "output folder (default: runs/<segmentation or regression>)")
    viz: bool = _option(True, "write no pictures", flag="--no-viz")
    num_pictures: int = _option(2, "test shapes to draw", at_least=0)


# ---------------------------------------------------------------- the run
#: kind -> section name -> class
SECTIONS: Dict[str, Dict[str, type]] = {
    SEGMENTATION: {"data": SegmentationDataConfig, "model": ModelConfig, "optim": OptimConfig,
                   "trainer": TrainerConfig, "output": OutputConfig},
    REGRESSION: {"data": RegressionDataConfig, "model": RegressionModelConfig, "optim": OptimConfig,
                 "trainer": RegressionTrainerConfig, "output": OutputConfig},
}


@dataclass(frozen=True)
class RunConfig:
    """Everything a training or evaluation run needs."""

    data: DataConfig
    model: ModelConfig
    optim: OptimConfig
    trainer: TrainerConfig
    output: OutputConfig

    def __post_init__(self):
        for name, section in SECTIONS[self.data.kind].items():
            if not isinstance(getattr(self, name), section):
                raise TypeError(f"'{name}' of a {self.data.kind} run must be a {section.__name__}, "
                                f"got {type(getattr(self, name)).__name__}")
        sampled = isinstance(self.data, SegmentationDataConfig) and self.data.dataset in MESH_DATASETS \
            and self.data.num_points
        if isinstance(self.data, SegmentationDataConfig) and self.data.resolved_input_features == "hks" \
                and self.data.dataset not in MESH_DATASETS:
            raise ValueError(f"'input_features' (--input-features) hks needs meshes "
                             f"({', '.join(MESH_DATASETS)}); {self.data.dataset} has points only")
        if sampled and self.model.resolved_basis_type(self.data.dataset) == "laplacian":
            raise ValueError(f"'basis_type' (--basis-type) laplacian needs an eigenbasis orthonormal on the "
                             f"nodes themselves; the points sampled from the {self.data.dataset} meshes "
                             f"(--points {self.data.num_points}) carry an interpolated one: use --basis-type "
                             f"laplacian_init, or --points 0 for the meshes' vertices")

    @property
    def kind(self) -> str:
        """``"segmentation"`` or ``"regression"``, from the data set."""
        return self.data.kind

    @property
    def out_dir(self) -> str:
        return self.output.out or os.path.join("runs", self.kind)

    @classmethod
    def create(cls, kind: str, options: Dict[str, Any], preset: Optional[str] = None) -> "RunConfig":
        """The run of ``kind`` with ``options`` (field name -> value, any section)
        over the values of ``preset`` (a published network,
        :data:`~tg_funcattn.nn.presets.PRESETS`, and its recipe, :data:`RECIPES`)
        over the defaults."""
        values: Dict[str, Any] = {}
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"unknown preset {preset!r}; known presets: {sorted(PRESETS)}")
            known = {f.name for section in SECTIONS[kind].values() for f in fields(section)}
            values = {**{k: v for k, v in PRESET_DEFAULTS.items() if k in known},
                      **PRESETS[preset], **RECIPES.get(preset, {})}
        values.update(options)
        sections = {}
        for name, section in SECTIONS[kind].items():
            names = {f.name for f in fields(section)}
            sections[name] = section.from_dict({k: values.pop(k) for k in list(values) if k in names})
        if values:
            raise ValueError(f"unknown {kind} option(s) {sorted(values)}")
        return cls(**sections)

    def to_dict(self) -> Dict[str, Dict[str, Any]]:
        """Plain values (tuples as lists): for JSON and ``weights_only`` checkpoints."""
        return {f.name: {k: list(v) if isinstance(v, tuple) else v
                         for k, v in dataclasses.asdict(getattr(self, f.name)).items()}
                for f in fields(self)}

    @classmethod
    def from_dict(cls, values: Dict[str, Dict[str, Any]]) -> "RunConfig":
        """The run of :meth:`to_dict`'s ``values`` (e.g. ``metrics.json``'s
        ``config``), checked; an unknown key is an error that names it."""
        for key in values:
            if key not in SECTIONS[SEGMENTATION]:
                raise ValueError(f"unknown RunConfig key {key!r}; known keys: {list(SECTIONS[SEGMENTATION])}")
        data = data_config(values.get("data", {}))
        sections = {name: section.from_dict(values.get(name, {}))
                    for name, section in SECTIONS[data.kind].items() if name != "data"}
        return cls(data=data, **sections)


# ---------------------------------------------------------------- command-line options
def _parse(base: type, is_tuple: bool):
    if not is_tuple:
        return base

    def items(text: str) -> tuple:
        try:
            return tuple(base(item) for item in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {base.__name__} values "
                                             f"(e.g. {'2,3,4' if base is int else 'a,b'}), got {text!r}") from None

    return items


def _shown(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def add_arguments(group, section: type, *, skip=(), preset_keys=()) -> None:
    """Adds an option for every field of ``section`` (except ``skip``) to the
    argparse ``group``; the help shows the field's default (and says a preset
    may set it, for ``preset_keys``).  An option not given stays out of the
    parsed namespace (``argparse.SUPPRESS``), so the defaults stay in the fields."""
    for f in fields(section):
        if f.name in skip or "help" not in f.metadata:
            continue
        base, _, is_tuple = _types(section)[f.name]
        text = f.metadata["help"]
        if base is not bool and f.default is not None:
            text += f" (default: {_shown(f.default)}" + (", or the preset's)" if f.name in preset_keys else ")")
        common = dict(dest=f.name, default=argparse.SUPPRESS, help=text.replace("%", "%%"))
        if base is bool:
            group.add_argument(_flag(f), action="store_false" if f.default else "store_true", **common)
        else:
            metavar = None if f.metadata["choices"] else _flag(f)[2:].replace("-", "_").upper()
            group.add_argument(_flag(f), type=_parse(base, is_tuple), choices=f.metadata["choices"],
                               metavar=metavar, **common)
