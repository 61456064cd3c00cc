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
from typing import Optional, Sequence, Tuple

import numpy as np

from .._optional import require
from ..geometry import face_areas

__all__ = ["rendering_available", "render_segmentation", "render_fields", "plot_functional_maps",
           "plot_training_curves", "label_colors", "show_segmentation"]

_PANEL = (480, 400)
_VIEW = np.array([1.0, -1.6, 0.9])


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
            smooth: bool = False) -> np.ndarray:
    """One view as an image.  Meshes are drawn as dense surface samples: the
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
    eye = centre + _VIEW / np.linalg.norm(_VIEW) * radius * 2.1
    renderer.setup_camera(40.0, centre, eye, [0.0, 0.0, 1.0])
    return np.asarray(renderer.render_to_image())


def _as_numpy(value):
    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _save_panels(images, titles, path, suptitle=None, colorbar=None):
    plt = require("matplotlib.pyplot", "saving pictures")
    fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.0), squeeze=False)
    for ax, image, title in zip(axes[0], images, titles):
        ax.imshow(image)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    if colorbar is not None:
        fig.colorbar(colorbar, ax=axes[0].tolist(), shrink=0.7)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def render_segmentation(pos, pred, target, path, face=None, title: Optional[str] = None) -> Path:
    """Prediction and ground truth side by side, coloured by label, as a PNG.

    Args:
        pos: ``[N, 3]`` positions; face: ``[3, F]`` triangles or ``None``.
        pred, target: ``[N]`` integer labels.
        path: The PNG to write.
    """
    pos, pred, target, face = (_as_numpy(v) for v in (pos, pred, target, face))
    accuracy = float((pred == target).mean())
    images = [_render(pos, label_colors(pred), face), _render(pos, label_colors(target), face)]
    return _save_panels(images, [f"prediction ({100 * accuracy:.1f}% correct)", "ground truth"],
                        path, title)


def render_fields(pos, fields, path, face=None, titles: Optional[Sequence[str]] = None,
                  title: Optional[str] = None, cmap: str = "viridis") -> Path:
    """Scalar fields ``[N, m]`` (e.g. basis functions) as colour maps on the
    shape, one panel each, as a PNG."""
    mpl = require("matplotlib", "colour maps")
    pos, fields, face = _as_numpy(pos), _as_numpy(fields), _as_numpy(face)
    if fields.ndim == 1:
        fields = fields[:, None]
    colormap = mpl.colormaps[cmap]
    images = []
    for j in range(fields.shape[1]):
        f = fields[:, j]
        span = f.max() - f.min()
        images.append(_render(pos, colormap((f - f.min()) / (span if span > 0 else 1.0))[:, :3], face,
                              smooth=True))
    titles = titles or [f"field {j}" for j in range(fields.shape[1])]
    return _save_panels(images, titles, path, title)


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


def plot_functional_maps(fmaps, path, title: Optional[str] = None) -> Path:
    """Heat maps of functional maps ``[num_bases, num_bases]`` or
    ``[heads, num_bases, num_bases]``."""
    plt = require("matplotlib.pyplot", "functional map plots")
    fmaps = _as_numpy(fmaps)
    if fmaps.ndim == 2:
        fmaps = fmaps[None]
    limit = float(np.abs(fmaps).max()) or 1.0
    fig, axes = plt.subplots(1, len(fmaps), figsize=(2.6 * len(fmaps), 2.6), squeeze=False)
    for h, (ax, fmap) in enumerate(zip(axes[0], fmaps)):
        image = ax.imshow(fmap, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"head {h}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_training_curves(metrics_csv, path) -> Path:
    """The curves of a Lightning ``metrics.csv`` against the epoch: the losses
    together, every other validation metric on its own axes (test results,
    single points, are left out)."""
    import csv

    plt = require("matplotlib.pyplot", "training curves")
    with open(metrics_csv) as f:
        rows = list(csv.DictReader(f))
    keys = [k for k in (rows[0] if rows else {}) if k not in ("epoch", "step")
            and not k.startswith("test_") and any(r.get(k) for r in rows)]
    if not keys:
        raise ValueError(f"{metrics_csv} holds no logged training metrics")
    losses = [k for k in keys if "loss" in k or k.startswith("train_")]
    panels = ([losses] if losses else []) + [[k] for k in keys if k not in losses]
    columns = min(3, len(panels))
    rows_n = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows_n, columns, figsize=(3.4 * columns, 2.6 * rows_n), squeeze=False)
    for ax, panel in zip(axes.ravel(), panels):
        for key in panel:
            by_epoch = {}
            for r in rows:
                if r.get(key) and r.get("epoch"):
                    by_epoch.setdefault(float(r["epoch"]), []).append(float(r[key]))
            epochs = sorted(by_epoch)
            ax.plot(epochs, [np.mean(by_epoch[e]) for e in epochs], marker="o", ms=3, label=key)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_title(" / ".join(panel), fontsize=9)
        if len(panel) > 1:
            ax.legend(fontsize=7)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
