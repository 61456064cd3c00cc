"""A PyG ``InMemoryDataset`` whose processed files are fingerprinted, atomic and
loaded without pickle."""
from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List

import torch
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.data.dataset import files_exist

from .._io import atomic_write

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
      next load processes again.
    * They are loaded with ``torch.load(weights_only=True)`` and no pickle
      fallback.  PyG's ``pre_transform.pt``/``pre_filter.pt`` (read with
      pickle) are neither written nor read.

    Subclasses set ``self._raw``, the raw folder they located (which need not
    be ``<root>/raw``), before calling ``super().__init__``.
    """

    #: Bump when the processed content changes meaning.
    format_version = 1

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
        if not self.force_reload and files_exist(self.processed_paths):
            return
        Path(self.processed_dir).mkdir(parents=True, exist_ok=True)
        log.info("processing %s into %s", type(self).__name__, self.processed_dir)
        self.process()

    def pre_processed(self, examples: Iterable[Data]) -> List[Data]:
        """The ``examples`` that ``pre_filter`` keeps, each passed through
        ``pre_transform`` (read one at a time when ``examples`` is lazy)."""
        kept = []
        for example in examples:
            if self.pre_filter is None or self.pre_filter(example):
                kept.append(example if self.pre_transform is None else self.pre_transform(example))
        return kept

    def save_split(self, data_list: List, path) -> None:
        data, slices = self.collate(data_list)
        atomic_write(path, lambda f: torch.save((data.to_dict(), slices, data.__class__), f))

    def load_split(self, path) -> None:
        """Loads a processed split; an unreadable one (truncated, corrupt, from
        another version) is logged, processed again from the raw files and
        loaded."""
        try:
            data, self.slices, data_cls = torch.load(path, weights_only=True)
        except Exception as error:
            log.warning("processed file %s is unreadable (%s); processing the raw files again",
                        path, error)
            self.process()
            data, self.slices, data_cls = torch.load(path, weights_only=True)
        self.data = data_cls.from_dict(data)
