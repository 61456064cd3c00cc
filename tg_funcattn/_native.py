"""The console output of native libraries (geometry-central, robust_laplacian,
Filament), kept off the process's streams."""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import tempfile
from collections import Counter

log = logging.getLogger(__name__)


@contextlib.contextmanager
def native_output_to_log(library: str):
    """Sends what native code writes to the process's stdout and stderr (file
    descriptors 1 and 2) meanwhile to a temporary file, and logs it at DEBUG
    level afterwards, each distinct line once with its count.

    geometry-central (in ``potpourri3d``) prints a line for every degenerate
    neighbourhood of a point cloud, and open3d's Filament announces its engine
    and GPU when a renderer starts: they would otherwise flood the console and,
    on stdout, break a command whose stdout is one JSON line.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(1), os.dup(2)
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            try:  # what the C library still buffers goes to the file too
                ctypes.CDLL(None).fflush(None)
            except (OSError, TypeError, AttributeError):  # no C library handle (Windows)
                pass
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            lines = Counter(line.strip() for line in
                            sink.read().decode(errors="replace").splitlines() if line.strip())
            if lines:
                log.debug("%s printed: %s", library,
                          "; ".join(f"{line!r} (x{count})" for line, count in lines.items()))
