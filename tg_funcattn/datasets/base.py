"""A PyG ``InMemoryDataset`` whose processed files are fingerprinted, atomic and
loaded without pickle."""
from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import torch
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.data.dataset import files_exist

from .._files import atomic_write, remove_stale
from ._readers import DatasetFormatError

log = logging.getLogger(__name__)


def _stable_repr(obj) -> str:
    text = repr(obj)
    if " at 0x" in text:
        warnings.warn(f"{text} has no stable repr (it shows a memory address), so processed "
                      "files cannot be matched to it and the dataset is processed anew in every "
                      "run; give it a __repr__ that names its settings", stacklevel=4)
    return text


class FingerprintedDataset(InMemoryDataset):
    """Processed files named by a fingerprint of everything that shapes them.

    * The names of processed files carry a hash of the format version, the
      options of the subclass (:meth:`fingerprint_options`) and the ``repr`` of
      ``pre_transform`` and ``pre_filter``: a different ``pre_transform`` is
      processed into other files instead of silently reusing stale ones (PyG
      only warns), and nothing already processed is overwritten.
    * Processed files are written to a temporary file and renamed, so a run
      killed midway leaves nothing that a later run takes for complete; the
      next load processes again and removes the temporary files of killed
      runs.  Processes that process the same dataset at once each write
      complete files; the last rename wins.
    * They are loaded with ``torch.load(weights_only=True)`` and no pickle
      fallback, and checked to be a collated split (:meth:`load_split`).
      PyG's ``pre_transform.pt``/``pre_filter.pt`` (read with pickle) are
      neither written nor read.

    Subclasses set ``self._raw``, the raw folder they located (which need not
    be ``<root>/raw``), before calling ``super().__init__``.
    """

    #: Bump when the processed content changes meaning.
    format_version = 1
    #: attributes the dataset writes -> ``"floating"`` or ``"integer"``: a
    #: processed split whose attribute has another kind of dtype (labels cast
    #: to float) is processed again
    attribute_kinds: Dict[str, str] = {"pos": "floating", "face": "integer"}

    def fingerprint_options(self) -> Dict[str, Any]:
        return {}

    @property
    def raw_dir(self) -> str:
        return str(self._raw)

    @property
    def fingerprint(self) -> str:
        spec = {"class": type(self).__name__, "version": self.format_version,
                "options": self.fingerprint_options(),
                "pre_transform": _stable_repr(self.pre_transform),
                "pre_filter": _stable_repr(self.pre_filter)}
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _process(self):
        remove_stale(self.processed_dir, "*.tmp")
        if not self.force_reload and files_exist(self.processed_paths):
            return
        Path(self.processed_dir).mkdir(parents=True, exist_ok=True)
        log.info("processing %s into %s", type(self).__name__, self.processed_dir)
        self.process()

    def pre_processed(self, examples: Iterable[Data]) -> List[Data]:
        """The ``examples`` that ``pre_filter`` keeps, each passed through
        ``pre_transform`` (read one at a time when ``examples`` is lazy)."""
        kept = []
        for number, example in enumerate(examples):
            if self.pre_filter is None or self.pre_filter(example):
                kept.append(example if self.pre_transform is None
                            else self._pre_transformed(example, number))
        return kept

    def _pre_transformed(self, example: Data, number: int) -> Data:
        """``pre_transform(example)``; a ``ValueError`` or ``RuntimeError`` it
        raises (a mesh whose eigenbasis fails its checks) is raised again
        naming the example (its ``name`` or ``shape_id``, else its number)."""
        try:
            return self.pre_transform(example)
        except (ValueError, RuntimeError) as error:
            which = example.get("name") or example.get("shape_id") or f"number {number}"
            kind = ValueError if isinstance(error, ValueError) else RuntimeError
            raise kind(f"{type(self).__name__} ({self.raw_dir}): pre_transform failed on example "
                       f"{which}: {error}") from error

    def save_split(self, data_list: List, path) -> None:
        data, slices = self.collate(data_list)
        atomic_write(path, lambda f: torch.save((data.to_dict(), slices, data.__class__), f))

    def load_split(self, path) -> None:
        """Loads a processed split; an unreadable one (truncated, corrupt, from
        another version) or one that holds anything but a collated split
        (:func:`_collated_split_problem`) is logged, processed again from the
        raw files, which replaces it, and loaded."""
        try:
            data, slices, data_cls = _read_processed(path, self.attribute_kinds)
        except DatasetFormatError as error:
            log.warning("%s; processing the raw files again", error)
            self.process()
            data, slices, data_cls = _read_processed(path, self.attribute_kinds)
        self.slices = slices
        self.data = data_cls.from_dict(data)


def _read_processed(path, kinds: Dict[str, str]) -> tuple:
    """The checked ``(data, slices, data_cls)`` of a processed split, its
    attributes named in ``kinds`` of that kind of dtype; anything else is a
    :class:`DatasetFormatError` naming the file."""
    try:
        loaded = torch.load(path, weights_only=True)
    except Exception as error:
        raise DatasetFormatError(f"processed file {path} is unreadable ({error})") from error
    problem = _collated_split_problem(loaded)
    if problem is not None:
        raise DatasetFormatError(f"processed file {path} is not a collated split "
                                 f"(data dict, slices, Data class): {problem}")
    for key, kind in kinds.items():
        value = loaded[0].get(key)
        if torch.is_tensor(value) and value.is_floating_point() != (kind == "floating"):
            raise DatasetFormatError(f"processed file {path}: '{key}' is {value.dtype}, but the "
                                     f"dataset writes {kind} values there")
    return loaded


def _collated_split_problem(loaded) -> Optional[str]:
    """What is wrong with ``loaded`` as the content of a processed split, the
    tuple ``(data, slices, data_cls)`` that :meth:`FingerprintedDataset.save_split`
    writes, or ``None``: ``data_cls`` a subclass of ``Data``; ``data`` a dict
    of attributes, tensors (not complex) or plain values; ``slices`` ``None``
    (a single example) or a dict with the same keys of 1-D int64 tensors of
    one length, starting at 0, non-decreasing and ending at the attribute's
    size along its concatenation dimension (the length of a list)."""
    if not isinstance(loaded, (tuple, list)) or len(loaded) != 3:
        return f"got {type(loaded).__name__}" + (f" of length {len(loaded)}"
                                                 if isinstance(loaded, (tuple, list)) else "")
    data, slices, data_cls = loaded
    if not (isinstance(data_cls, type) and issubclass(data_cls, Data)):
        name = data_cls.__qualname__ if isinstance(data_cls, type) else f"a {type(data_cls).__name__}"
        return f"the class is {name}, not a subclass of Data"
    if not isinstance(data, dict) or not data or not (slices is None or isinstance(slices, dict)):
        return (f"data and slices are {type(data).__name__} and {type(slices).__name__}, not a "
                "non-empty dict and a dict or None")
    for key, value in data.items():
        if not isinstance(key, str):
            return f"key {key!r} is not a string"
        if torch.is_tensor(value) and value.is_complex():
            return f"'{key}' is a {value.dtype} tensor"
        if not isinstance(value, (torch.Tensor, list, str, int, float)):
            return f"'{key}' is a {type(value).__name__}, not a tensor, list or plain value"
    if slices is None:
        return None
    if set(data) != set(slices):
        return f"data has the keys {sorted(data)} but slices {sorted(map(str, slices))}"
    lengths, example = set(), data_cls()
    for key, value in data.items():
        bounds = slices[key]
        if not (torch.is_tensor(bounds) and bounds.dtype == torch.int64 and bounds.dim() == 1
                and len(bounds) >= 2 and bounds[0] == 0 and bool((bounds.diff() >= 0).all())):
            return f"slices['{key}'] is not a non-decreasing 1-D int64 tensor from 0"
        lengths.add(len(bounds))
        if torch.is_tensor(value) and value.dim() > 0:
            size = value.size(example.__cat_dim__(key, value))
        elif isinstance(value, list):
            size = len(value)
        else:
            return f"'{key}' of several examples is a {type(value).__name__} of one value"
        if int(bounds[-1]) != size:
            return f"slices['{key}'] end at {int(bounds[-1])} but '{key}' has {size} entries"
    if len(lengths) != 1:
        return "the slices give different numbers of examples"
    return None
