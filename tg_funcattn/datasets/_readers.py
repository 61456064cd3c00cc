"""Raw dataset files: reading them with clear errors, safe archive extraction,
generated raw folders."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from .._files import owner_tag, remove_stale, umask_mode


class DatasetFormatError(ValueError):
    """A raw dataset file does not have the expected format."""


# ----------------------------------------------------------------------------- archives
def _check_member(name: str, archive: Path, dest: Path) -> None:
    """The member ``name`` of ``archive`` lands inside ``dest`` (no absolute
    path, drive or '..', and not through a link already in ``dest``)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and ":" in path.parts[0]) or ".." in path.parts:
        raise DatasetFormatError(f"archive {archive} has an unsafe member '{name}' (absolute path "
                                 "or '..'); refusing to extract it")
    root, target = dest.resolve(), (dest / name).resolve()
    if root not in target.parents and target != root:
        raise DatasetFormatError(f"archive member '{name}' of {archive} "
                                 "would be written outside the dataset folder")


def safe_extract(archive, dest) -> List[Path]:
    """Extracts a ``.zip`` or ``.tar[.gz|.bz2|.xz]`` archive into ``dest``.

    Every member is checked before anything is written: absolute paths,
    drive letters, ``..`` components, links and device files are rejected
    (zip-slip), so nothing lands outside ``dest``.  Returns the top-level
    entries written.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                _check_member(info.filename, archive, dest)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise DatasetFormatError(f"archive {archive} has a symbolic link "
                                             f"'{info.filename}'; refusing to extract it")
            for info in members:
                zf.extract(info, dest)
            names = [m.filename for m in members]
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for info in members:
                _check_member(info.name, archive, dest)
                if not (info.isfile() or info.isdir()):
                    raise DatasetFormatError(f"archive {archive} has a link or special file "
                                             f"'{info.name}'; refusing to extract it")
            for info in members:
                tf.extract(info, dest, set_attrs=False)
            names = [m.name for m in members]
    else:
        raise DatasetFormatError(f"{archive} is neither a zip nor a tar archive (truncated download?)")
    tops = sorted({PurePosixPath(n.replace("\\", "/")).parts[0] for n in names if n.strip("/")})
    return [dest / t for t in tops]


def find_or_download(url: str, root, archive_name: str, what: str, help_text: str) -> Tuple[Path, bool]:
    """The dataset archive already on disk (in ``root`` or ``root/raw``), else
    a download of ``url``; a failed download raises an error that says what
    is expected where.  Returns the path and whether it was downloaded."""
    root = Path(root)
    for path in (root / archive_name, root / "raw" / archive_name):
        if path.is_file():
            return path, False
    from torch_geometric.data import download_url

    try:
        return Path(download_url(url, str(root), log=False)), True
    except Exception as error:  # no network, host down, HTTP error
        raise RuntimeError(f"could not download {what} ({error}). {help_text}") from error


def install_archive(archive, root, looks_right: Callable[[Path], bool], help_text: str) -> Path:
    """Extracts ``archive`` safely into a staging folder and moves the folder
    that ``looks_right`` to ``root/raw``; an existing, non-empty ``root/raw``
    is never overwritten."""
    root = Path(root)
    staging = root / ".extracting"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        tops = safe_extract(archive, staging)
        source = next((c for c in [t for t in tops if t.is_dir()] + [staging] if looks_right(c)), None)
        if source is None:
            raise DatasetFormatError(f"{archive} does not contain the expected layout. {help_text}")
        target = root / "raw"
        if target.exists() and any(target.iterdir()):
            raise DatasetFormatError(f"{target} exists but is incomplete; move it away to extract "
                                     f"{archive}")
        if target.exists():
            target.rmdir()
        os.replace(source, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def generated_raw_folder(root, settings: dict, generate: Callable[[Path], None],
                         manifest: Optional[dict] = None) -> Path:
    """``root/raw_<hash of settings>``: the raw files of a generated dataset,
    made once.

    ``generate(folder)`` writes them into a staging folder of this process,
    ``root/.generating-<pid>@<host>.<random>``, which receives
    ``generator.json`` (``manifest``, by default ``settings``) and is renamed
    to the target when complete.  The rename is atomic and never replaces a
    non-empty folder, so an interrupted run leaves nothing that looks
    complete, and a published folder, which another process may be reading,
    is never removed: when several processes generate at once, each makes a
    copy, the first rename wins and the others discard theirs.  The staging
    folders of killed runs are removed by the next call
    (:func:`tg_funcattn._files.is_stale`).
    """
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(root)
    target = root / f"raw_{digest}"
    root.mkdir(parents=True, exist_ok=True)
    remove_stale(root, ".generating-*")
    if (target / "generator.json").is_file():
        return target
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".generating-{owner_tag()}."))
    try:
        os.chmod(staging, umask_mode(directory=True))  # readable as the umask allows
        generate(staging)
        (staging / "generator.json").write_text(
            json.dumps(settings if manifest is None else manifest, indent=1))
        try:
            os.rename(staging, target)
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            # another process renamed its copy into place first, or the folder is foreign
        if not (target / "generator.json").is_file():
            raise FileExistsError(f"{target} exists but has no generator.json, so it was not "
                                  "made by this version; move it away to generate the dataset "
                                  "again")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# ------------------------------------------------------------------------ text formats
def _text_lines(path: Path, expected: str) -> Iterator[Tuple[int, str]]:
    """The numbered lines of the text file ``path``; a line that is not UTF-8
    (a binary file) is an error naming the file, the line and ``expected``."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DatasetFormatError(
                    f"{path}, line {number}: not text (byte {raw[error.start]:#04x} is not "
                    f"UTF-8; a binary file?); expected {expected}") from None


def read_name_list(path) -> List[str]:
    """One name per line (blank lines and ``#`` comments ignored); an empty
    list is an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} does not exist")
    names = [line.strip() for _, line in _text_lines(path, "one name per line")]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise DatasetFormatError(f"split file {path} lists no names")
    return names


def read_table(path, columns: int, *, dtype=np.float64) -> np.ndarray:
    """A whitespace-separated numeric table with exactly ``columns`` values per
    non-empty line; any other line is an error naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    rows = []
    for number, line in _text_lines(path, f"lines of {columns} numbers"):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != columns:
            raise DatasetFormatError(f"{path}, line {number}: expected {columns} numbers, "
                                     f"got {len(fields)}: {line.strip()[:80]!r}")
        try:
            rows.append([float(v) for v in fields])
        except ValueError:
            raise DatasetFormatError(f"{path}, line {number}: not a number in "
                                     f"{line.strip()[:80]!r}") from None
    if not rows:
        raise DatasetFormatError(f"{path} contains no data")
    table = np.asarray(rows, dtype=dtype)
    if not np.isfinite(table).all():
        raise DatasetFormatError(f"{path} contains NaN or infinite values")
    return table


def read_int_lines(path, *, low: Optional[int] = None, high: Optional[int] = None) -> np.ndarray:
    """One integer per line, optionally within ``[low, high]``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} does not exist")
    values = []
    for number, line in _text_lines(path, "one integer per line"):
        text = line.strip()
        if not text:
            continue
        try:
            value = int(text)
        except ValueError:
            raise DatasetFormatError(f"{path}, line {number}: expected one integer, "
                                     f"got {text[:80]!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise DatasetFormatError(f"{path}, line {number}: label {value} outside "
                                     f"[{low}, {high}]")
        values.append(value)
    if not values:
        raise DatasetFormatError(f"label file {path} is empty")
    return np.asarray(values, dtype=np.int64)


def read_mesh(path):
    """Vertices ``[N, 3]`` float64 and triangles ``[F, 3]`` int64 of any mesh
    file ``trimesh`` reads (OFF, OBJ, PLY, STL, ...), unprocessed: vertex
    order and count are kept exactly, so per-vertex labels stay aligned.  The
    vertex and face counts of an OFF or PLY header are compared with what was
    read (trimesh reads a truncated OFF or ASCII PLY file without complaint),
    and a binary STL file's size with its triangle count."""
    from .._optional import require

    trimesh = require("trimesh", "Reading mesh files")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file {path} does not exist")
    if path.suffix.lower() == ".stl":
        _check_binary_stl_size(path)
    try:
        mesh = trimesh.load(path, process=False, force="mesh")
    except Exception as error:  # trimesh raises many kinds of errors on bad files
        raise DatasetFormatError(f"cannot read mesh {path}: {error}") from error
    vertices = np.asarray(getattr(mesh, "vertices", np.zeros((0, 3))), dtype=np.float64)
    faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))), dtype=np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise DatasetFormatError(f"mesh {path} has no vertices")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise DatasetFormatError(f"mesh {path} has no triangles")
    if not np.isfinite(vertices).all():
        raise DatasetFormatError(f"mesh {path} has NaN or infinite vertex coordinates")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise DatasetFormatError(f"mesh {path} has faces referring to missing vertices")
    header = {".off": _off_header_counts, ".ply": _ply_header_counts}.get(path.suffix.lower())
    if header is not None:
        header_vertices, header_faces = header(path)
        if len(vertices) != header_vertices:
            raise DatasetFormatError(f"mesh {path}: the header says {header_vertices} vertices but "
                                     f"{len(vertices)} were read (truncated or damaged file)")
        if len(faces) < header_faces:  # polygons are split into triangles: never fewer
            raise DatasetFormatError(f"mesh {path}: the header says {header_faces} faces but only "
                                     f"{len(faces)} were read (truncated or damaged file)")
    return vertices, faces


def _check_binary_stl_size(path: Path) -> None:
    """A binary STL file is an 80-byte header, a triangle count and 50 bytes per
    triangle; one of another size that is not ASCII STL (``solid ...`` text) is
    truncated or damaged (trimesh then said it had no vertices)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        start = f.read(84)
    if len(start) == 84 and size == 84 + 50 * int.from_bytes(start[80:84], "little"):
        return  # a complete binary STL
    if start.lstrip().startswith(b"solid") and b"\0" not in start:
        return  # ASCII STL: trimesh checks it
    if len(start) < 84:
        said = "a binary STL file has at least 84 bytes"
    else:
        count = int.from_bytes(start[80:84], "little")
        said = f"its header says {count} triangles, {84 + 50 * count} bytes"
    raise DatasetFormatError(f"mesh {path}: a binary STL file of {size} bytes, but {said} "
                             "(truncated or damaged file)")


def _off_header_counts(path: Path) -> Tuple[int, int]:
    """The vertex and face counts of an OFF header: trimesh reads a truncated
    file without complaint (fewer faces than the header says)."""
    with open(path, "rb") as f:
        tokens: List[bytes] = []
        for line in f:
            tokens += line.split(b"#", 1)[0].split()
            if len(tokens) >= 4:
                break
    if tokens and tokens[0].upper().endswith(b"OFF"):
        tokens = tokens[1:]
    try:
        return int(tokens[0]), int(tokens[1])
    except (IndexError, ValueError):
        raise DatasetFormatError(f"mesh {path}: no 'OFF' header with vertex and face counts") from None


def _ply_header_counts(path: Path) -> Tuple[int, int]:
    """The counts of ``element vertex N`` and ``element face M`` (0 without
    faces) in a PLY header: trimesh reads a truncated ASCII PLY file without
    complaint."""
    counts = {}
    with open(path, "rb") as f:
        for line in f:
            fields = line.split()
            if fields == [b"end_header"]:
                break
            if len(fields) == 3 and fields[0] == b"element":
                try:
                    counts[fields[1]] = int(fields[2])
                except ValueError:
                    raise DatasetFormatError(f"mesh {path}: the PLY header line "
                                             f"{line.strip()[:80]!r} has no count") from None
        else:
            raise DatasetFormatError(f"mesh {path}: no PLY header ending in 'end_header'")
    if b"vertex" not in counts:
        raise DatasetFormatError(f"mesh {path}: the PLY header declares no 'element vertex'")
    return counts[b"vertex"], counts.get(b"face", 0)


def write_lines(path, lines: Iterable[str]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
