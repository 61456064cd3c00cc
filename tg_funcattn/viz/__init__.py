"""Pictures of predictions, bases and functional maps (the ``viz`` extra).

3D views are rendered with open3d: in an interactive window with ``show=True``
(where a display exists), otherwise off screen to a PNG, which also works on a
CPU-only machine (llvmpipe; on Debian: ``apt-get install libgl1 libegl1
libgomp1 libusb-1.0-0 libvulkan1 mesa-vulkan-drivers``).  Panels are composed
and labelled with matplotlib.
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .._native import native_output_to_log
from .._optional import require
from ..geometry import face_areas

__all__ = ["rendering_available", "render_segmentation", "segmentation_figure", "part_legend",
           "render_fields", "fields_figure", "plot_functional_maps", "functional_maps_figure",
           "plot_training_curves", "training_curves_figure", "label_colors", "show_segmentation",
           "ERROR_COLOR"]

_PANEL = (480, 400)
_VIEW = np.array([1.0, -1.6, 0.9])
#: the azimuths (degrees about the vertical axis) of the views of a segmentation:
#: three views a third of a turn apart, so that no part hides behind the others in all
_AZIMUTHS = (0.0, 120.0, 240.0)
#: wrong points in the error view (black: no label colour is dark); right ones are light grey
ERROR_COLOR = np.array([0.0, 0.0, 0.0])
_RIGHT_COLOR = np.array([0.82, 0.82, 0.82])


@functools.lru_cache(maxsize=1)
def rendering_available() -> Tuple[bool, str]:
    """Whether open3d can render off screen here, and why not.  Probed in a
    subprocess once: a missing EGL/GL library can abort the process that tries."""
    probe = ("import open3d as o3d\n"
             "r = o3d.visualization.rendering.OffscreenRenderer(8, 8)\n"
             "r.render_to_image()\n")
    try:
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                timeout=120)
    except subprocess.TimeoutExpired:
        return False, "open3d's off-screen renderer did not start within 120 s"
    if result.returncode == 0:
        return True, ""
    lines = (result.stderr or result.stdout).strip().splitlines()
    reason = lines[-1] if lines else f"exit code {result.returncode}"
    return False, (f"open3d cannot render off screen ({reason}); install open3d (pip install "
                   "'tg-funcattn[viz]') and the GL/EGL libraries (Debian: apt-get install libgl1 "
                   "libegl1 libgomp1 libusb-1.0-0 libvulkan1 mesa-vulkan-drivers)")


def _require_rendering():
    ok, reason = rendering_available()
    if not ok:
        raise RuntimeError(reason)
    return require("open3d", "3D rendering")


@functools.lru_cache(maxsize=1)
def _renderer():
    o3d = _require_rendering()
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    with native_output_to_log("open3d (Filament)"):
        renderer = o3d.visualization.rendering.OffscreenRenderer(*_PANEL)
    renderer.scene.set_background([1.0, 1.0, 1.0, 1.0])
    renderer.scene.view.set_post_processing(False)  # keep the colours as given
    return renderer


def label_colors(labels) -> np.ndarray:
    """A fixed, distinct colour per integer label ``[N] -> [N, 3]`` in [0, 1]."""
    labels = np.asarray(labels, dtype=np.int64)
    base = np.array([[0.12, 0.47, 0.71], [1.0, 0.5, 0.05], [0.17, 0.63, 0.17], [0.84, 0.15, 0.16],
                     [0.58, 0.4, 0.74], [0.55, 0.34, 0.29], [0.89, 0.47, 0.76], [0.5, 0.5, 0.5],
                     [0.74, 0.74, 0.13], [0.09, 0.75, 0.81]])
    golden = (labels * 0.618033988749895) % 1.0  # well-spread hues beyond the first ten
    hsv = np.stack([golden, np.full_like(golden, 0.65), np.full_like(golden, 0.9)], 1)
    extra = require("matplotlib", "label colours").colors.hsv_to_rgb(hsv)
    return np.where((labels < len(base))[:, None], base[np.clip(labels, 0, len(base) - 1)], extra)


def _geometry(o3d, pos: np.ndarray, colors: np.ndarray, face: Optional[np.ndarray]):
    if face is not None:
        mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(pos),
                                         o3d.utility.Vector3iVector(face.T.astype(np.int32)))
        mesh.vertex_colors = o3d.utility.Vector3dVector(colors)
        return mesh
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pos))
    cloud.colors = o3d.utility.Vector3dVector(colors)
    return cloud


def _surface_samples(pos: np.ndarray, colors: np.ndarray, face: np.ndarray, count: int,
                     smooth: bool):
    """Dense area-uniform samples of a mesh (deterministic), coloured by
    barycentric interpolation (``smooth``, for fields) or like the nearest
    triangle corner (for labels)."""
    area = face_areas(pos, face.T)
    if not area.sum() > 0:
        return pos, colors
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(area), count, p=area / area.sum())
    r1, r2 = np.sqrt(rng.uniform(size=count)), rng.uniform(size=count)
    bary = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], 1)
    points = (bary[:, :, None] * pos[face.T[chosen]]).sum(1)
    if smooth:
        sampled = (bary[:, :, None] * colors[face.T[chosen]]).sum(1)
    else:
        sampled = colors[face.T[chosen, bary.argmax(1)]]
    return np.concatenate([pos, points]), np.concatenate([colors, sampled])


def _render(pos: np.ndarray, colors: np.ndarray, face: Optional[np.ndarray],
            smooth: bool = False, azimuth: float = 0.0) -> np.ndarray:
    """One view as an image, the camera turned by ``azimuth`` degrees about
    the vertical axis.  Meshes are drawn as dense surface samples: the
    software rasteriser compiles its triangle pipeline for minutes on first
    use, its point pipeline in seconds."""
    o3d = _require_rendering()
    renderer = _renderer()
    material = o3d.visualization.rendering.MaterialRecord()
    material.shader = "defaultUnlit"
    material.point_size = 4.0 if len(pos) < 5000 else 2.5
    if face is not None:  # samples big and dense enough to hide the back of the surface
        pos, colors = _surface_samples(pos, colors, face, 60000, smooth)
        material.point_size = 6.0
    renderer.scene.clear_geometry()
    renderer.scene.add_geometry("shape", _geometry(o3d, pos, colors, None), material)
    centre = (pos.max(0) + pos.min(0)) / 2
    radius = float(np.linalg.norm(pos.max(0) - pos.min(0))) / 2 or 1.0
    turn = np.radians(azimuth)
    rotation = np.array([[np.cos(turn), -np.sin(turn), 0.0], [np.sin(turn), np.cos(turn), 0.0],
                         [0.0, 0.0, 1.0]])
    # far enough that the whole bounding sphere fits in the 40 degree field of view
    eye = centre + rotation @ _VIEW / np.linalg.norm(_VIEW) * radius * 2.7
    renderer.setup_camera(40.0, centre, eye, [0.0, 0.0, 1.0])
    return np.asarray(renderer.render_to_image())


def _as_numpy(value):
    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _save(fig, path) -> Path:
    """Writes ``fig`` to the PNG ``path`` and closes it."""
    plt = require("matplotlib.pyplot", "saving pictures")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def part_legend(labels, part_names: Optional[Mapping[int, str]] = None) -> List[Tuple[str, np.ndarray]]:
    """``(name, colour)`` of every distinct label in ``labels``, in label
    order: the name from ``part_names`` (label id -> name), else ``part <id>``."""
    present = np.unique(np.asarray(labels, dtype=np.int64))
    names = part_names or {}
    return [(names.get(int(c), f"part {int(c)}"), colour)
            for c, colour in zip(present, label_colors(present))]


def segmentation_figure(pos, pred, target, face=None, title: Optional[str] = None,
                        part_names: Optional[Mapping[int, str]] = None,
                        azimuths: Sequence[float] = _AZIMUTHS):
    """The matplotlib figure of :func:`render_segmentation` (the caller
    closes it): a row per view, prediction, ground truth and the errors in
    columns, and a legend of the parts present."""
    plt = require("matplotlib.pyplot", "saving pictures")
    from matplotlib.patches import Patch

    pos, pred, target, face = (_as_numpy(v) for v in (pos, pred, target, face))
    wrong = pred != target
    errors = np.where(wrong[:, None], ERROR_COLOR, _RIGHT_COLOR)
    columns = [(label_colors(pred), f"prediction ({100 * (1 - wrong.mean()):.1f}% correct)"),
               (label_colors(target), "ground truth"),
               (errors, f"errors ({int(wrong.sum())} of {len(wrong)} points wrong)")]
    fig, axes = plt.subplots(len(azimuths), len(columns), squeeze=False,
                             figsize=(3.2 * len(columns), 2.7 * len(azimuths)))
    for row, azimuth in zip(axes, azimuths):
        for ax, (colors, _) in zip(row, columns):
            ax.imshow(_render(pos, colors, face, azimuth=azimuth))
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        row[0].set_ylabel(f"view {azimuth:.0f}\N{DEGREE SIGN}", fontsize=9)
    for ax, (_, heading) in zip(axes[0], columns):
        ax.set_title(heading, fontsize=10)
    handles = [Patch(color=colour, label=name)
               for name, colour in part_legend(np.concatenate([pred, target]), part_names)]
    handles.append(Patch(color=ERROR_COLOR, label="wrong point (errors)"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9,
               title="parts", frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def render_segmentation(pos, pred, target, path, face=None, title: Optional[str] = None,
                        part_names: Optional[Mapping[int, str]] = None) -> Path:
    """Prediction, ground truth and the wrong points, coloured by label, from
    three sides, with a legend of the parts present, as a PNG.

    Args:
        pos: ``[N, 3]`` positions; face: ``[3, F]`` triangles or ``None``.
        pred, target: ``[N]`` integer labels.
        path: The PNG to write.
        part_names: Label id -> name for the legend (a missing id is ``part <id>``).
    """
    fig = segmentation_figure(pos, pred, target, face, title, part_names)
    return _save(fig, path)


def fields_figure(pos, fields, face=None, titles: Optional[Sequence[str]] = None,
                  title: Optional[str] = None, cmap: str = "viridis"):
    """The matplotlib figure of :func:`render_fields` (the caller closes it):
    a panel per field, its colours spanning the field's own range, with a
    colour bar of that range under it."""
    mpl = require("matplotlib", "colour maps")
    plt = require("matplotlib.pyplot", "saving pictures")
    pos, fields, face = _as_numpy(pos), _as_numpy(fields), _as_numpy(face)
    if fields.ndim == 1:
        fields = fields[:, None]
    colormap = mpl.colormaps[cmap]
    titles = titles or [f"field {j}" for j in range(fields.shape[1])]
    fig, axes = plt.subplots(1, fields.shape[1], figsize=(3.2 * fields.shape[1], 3.4), squeeze=False)
    for ax, f, heading in zip(axes[0], fields.T, titles):
        low, high = float(f.min()), float(f.max())
        span = high - low
        ax.imshow(_render(pos, colormap((f - low) / (span if span > 0 else 1.0))[:, :3], face,
                          smooth=True))
        ax.set_title(heading, fontsize=10)
        ax.axis("off")
        scale = mpl.cm.ScalarMappable(mpl.colors.Normalize(low, high if span > 0 else low + 1.0),
                                      colormap)
        bar = fig.colorbar(scale, ax=ax, orientation="horizontal", fraction=0.05, pad=0.02)
        bar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def render_fields(pos, fields, path, face=None, titles: Optional[Sequence[str]] = None,
                  title: Optional[str] = None, cmap: str = "viridis") -> Path:
    """Scalar fields ``[N, m]`` (e.g. basis functions) as colour maps on the
    shape, one panel each with the colour bar of its range, as a PNG."""
    return _save(fields_figure(pos, fields, face, titles, title, cmap), path)


def show_segmentation(pos, pred, target, face=None) -> None:
    """An interactive open3d window with prediction and ground truth side by
    side (needs a display)."""
    o3d = require("open3d", "the interactive viewer")
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform != "linux"):
        raise RuntimeError("no display: use render_segmentation(...) to write a PNG instead")
    pos, pred, target, face = (_as_numpy(v) for v in (pos, pred, target, face))
    shift = np.array([1.2 * float(np.ptp(pos[:, 0])) or 1.0, 0.0, 0.0])
    o3d.visualization.draw_geometries(
        [_geometry(o3d, pos, label_colors(pred), face),
         _geometry(o3d, pos + shift, label_colors(target), face)],
        window_name="prediction (left) and ground truth (right)")


def functional_maps_figure(fmaps, title: Optional[str] = None):
    """The matplotlib figure of :func:`plot_functional_maps` (the caller
    closes it): a heat map per head, four to a row, on one colour scale
    symmetric about 0 (red positive, blue negative), with its colour bar."""
    plt = require("matplotlib.pyplot", "functional map plots")
    fmaps = _as_numpy(fmaps)
    if fmaps.ndim == 2:
        fmaps = fmaps[None]
    limit = float(np.abs(fmaps).max()) or 1.0
    columns = min(4, len(fmaps))
    rows = -(-len(fmaps) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns + 0.8, 2.6 * rows), squeeze=False)
    k = fmaps.shape[-1]
    for h, (ax, fmap) in enumerate(zip(axes.ravel(), fmaps)):
        image = ax.imshow(fmap, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"head {h + 1}", fontsize=9)
        ax.set_xticks([0, k - 1])
        ax.set_yticks([0, fmap.shape[0] - 1])
        ax.tick_params(labelsize=7)
        ax.set_xlabel("j", fontsize=8, labelpad=-2)
        ax.set_ylabel("i", fontsize=8, labelpad=-2, rotation=0)
    for ax in axes.ravel()[len(fmaps):]:
        ax.axis("off")
    bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
    bar.set_label("C[i, j]", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_functional_maps(fmaps, path, title: Optional[str] = None) -> Path:
    """Heat maps of functional maps ``[num_bases, num_bases]`` or
    ``[heads, num_bases, num_bases]`` with a colour bar, as a PNG."""
    return _save(functional_maps_figure(fmaps, title), path)


def _metric_series(rows: List[Dict[str, str]]) -> Dict[str, Dict[str, Tuple[np.ndarray, np.ndarray]]]:
    """metric -> stage (``train``, ``validation``) -> (epochs trained, mean
    value in that epoch) of the logged rows of a ``metrics.csv``; test
    results and keys without a stage prefix are left out."""
    stages = {"train_": "train", "val_": "validation"}
    series: Dict[str, Dict[str, Tuple[np.ndarray, np.ndarray]]] = {}
    for key in dict.fromkeys(key for r in rows for key in r):  # every file's columns, in order
        prefix = next((p for p in stages if key.startswith(p)), None)
        by_epoch: Dict[int, List[float]] = {}
        for r in rows:
            if prefix and r.get(key) and r.get("epoch"):
                by_epoch.setdefault(int(float(r["epoch"])) + 1, []).append(float(r[key]))
        if by_epoch:
            epochs = np.array(sorted(by_epoch))
            values = np.array([np.mean(by_epoch[e]) for e in epochs])
            series.setdefault(key[len(prefix):], {})[stages[prefix]] = (epochs, values)
    return series


def training_curves_figure(metrics_csv):
    """The matplotlib figure of :func:`plot_training_curves` (the caller
    closes it): a panel per metric (the loss first) with its train and
    validation values against the epochs trained, integer epoch ticks from 0.
    ``metrics_csv`` is a file or a sequence of files (a run and its resumes),
    read as one."""
    import csv

    plt = require("matplotlib.pyplot", "training curves")
    from matplotlib.ticker import MaxNLocator

    files = [metrics_csv] if isinstance(metrics_csv, (str, os.PathLike)) else list(metrics_csv)
    rows = []
    for name in files:
        with open(name) as f:
            rows += list(csv.DictReader(f))
    series = _metric_series(rows)
    if not series:
        raise ValueError(f"{', '.join(map(str, files))} holds no logged training metrics")
    names = sorted(series, key=lambda name: name != "loss")
    columns = min(3, len(names))
    rows_n = -(-len(names) // columns)
    fig, axes = plt.subplots(rows_n, columns, figsize=(3.4 * columns, 2.6 * rows_n), squeeze=False)
    last = max(int(epochs.max()) for stages in series.values() for epochs, _ in stages.values())
    span = max(1, last)
    for ax, name in zip(axes.ravel(), names):
        for stage, color in (("train", "C0"), ("validation", "C1")):  # one colour per stage
            if stage in series[name]:
                epochs, values = series[name][stage]
                ax.plot(epochs, values, marker="o", ms=4, color=color, label=stage, clip_on=False)
        ax.set_xlim(-0.05 * span, 1.05 * span)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epochs trained", fontsize=8)
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_training_curves(metrics_csv, path) -> Path:
    """The curves of a Lightning ``metrics.csv`` (or of several, a run and
    its resumes) as a PNG: a panel per
    metric with its train and validation values against the epochs trained
    (test results, single points, are left out)."""
    return _save(training_curves_figure(metrics_csv), path)
