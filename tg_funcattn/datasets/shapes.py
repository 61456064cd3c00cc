"""Procedural part-labelled shapes: surface samples of composed primitives.

Every shape is a union of parts (boxes, cylinders, ellipsoids, frusta, torus
sections) with random proportions, sampled on its surface with a point count
proportional to each part's area (optionally with a smoothly varying density),
randomly rotated about the vertical axis and normalised to the unit sphere.
Part labels are the global part ids of the ShapeNet part benchmark.
Deterministic for a given random generator.  :class:`SyntheticParts` writes
such shapes in the ShapeNet part layout.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

#: category -> {part name: global part id}; the ids are those of the ShapeNet
#: part benchmark (e.g. Airplane 0-3, Lamp 24-27, Mug 36-37, Table 47-49), so
#: generated shapes and real ones share one label space of 50 parts.
CATEGORY_PARTS: Dict[str, Dict[str, int]] = {
    "Airplane": {"body": 0, "wing": 1, "tail": 2, "engine": 3},
    "Lamp": {"base": 24, "arm": 25, "shade": 26},
    "Mug": {"handle": 36, "body": 37},
    "Table": {"top": 47, "leg": 48, "support": 49},
}
CATEGORIES: Tuple[str, ...] = tuple(CATEGORY_PARTS)

_Surface = Tuple[np.ndarray, np.ndarray]  # points [n, 3], normals [n, 3]


class _Part:
    """A primitive with a closed-form area and an area-uniform sampler."""

    def __init__(self, label: int, area: float, sampler):
        self.label, self.area, self.sampler = label, area, sampler


def _box(label: int, center, size) -> _Part:
    center, size = np.asarray(center, float), np.asarray(size, float)
    sx, sy, sz = size
    face_areas = np.array([sy * sz, sy * sz, sx * sz, sx * sz, sx * sy, sx * sy])

    def sample(n, rng) -> _Surface:
        face = rng.choice(6, size=n, p=face_areas / face_areas.sum())
        uv = rng.uniform(-0.5, 0.5, size=(n, 3)) * size
        axis, sign = face // 2, np.where(face % 2 == 0, -1.0, 1.0)
        uv[np.arange(n), axis] = sign * size[axis] / 2
        normals = np.zeros((n, 3))
        normals[np.arange(n), axis] = sign
        return uv + center, normals

    return _Part(label, float(face_areas.sum()), sample)


def _frame(axis) -> np.ndarray:
    """Orthonormal frame whose third column is ``axis``."""
    axis = np.asarray(axis, float)
    axis = axis / np.linalg.norm(axis)
    helper = np.array([1.0, 0, 0]) if abs(axis[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1)
    return np.stack([e1, np.cross(axis, e1), axis], axis=1)


def _frustum(label: int, base, axis, length: float, r0: float, r1: float,
             caps: Tuple[bool, bool] = (True, True)) -> _Part:
    """A truncated cone (a cylinder if ``r0 == r1``) from ``base`` along ``axis``."""
    base, frame = np.asarray(base, float), _frame(axis)
    slant = np.hypot(length, r1 - r0)
    areas = np.array([np.pi * (r0 + r1) * slant,
                      np.pi * r0 ** 2 * caps[0], np.pi * r1 ** 2 * caps[1]])

    def sample(n, rng) -> _Surface:
        which = rng.choice(3, size=n, p=areas / areas.sum())
        theta = rng.uniform(0, 2 * np.pi, n)
        u = rng.uniform(0, 1, n)
        # lateral surface: density of t proportional to the radius r(t)
        if r0 == r1:
            t = u
        else:
            t = (np.sqrt(r0 ** 2 + u * (r1 ** 2 - r0 ** 2)) - r0) / (r1 - r0)
        radius = np.where(which == 0, r0 + (r1 - r0) * t,
                          np.where(which == 1, r0, r1) * np.sqrt(rng.uniform(0, 1, n)))
        height = np.where(which == 0, t * length, np.where(which == 1, 0.0, length))
        local = np.stack([radius * np.cos(theta), radius * np.sin(theta), height], axis=1)
        side = np.stack([np.cos(theta) * length, np.sin(theta) * length,
                         np.full(n, r0 - r1)], axis=1) / slant
        normal = np.where((which == 0)[:, None], side,
                          np.where((which == 1)[:, None], [0, 0, -1.0], [0, 0, 1.0]))
        return local @ frame.T + base, normal @ frame.T

    return _Part(label, float(areas.sum()), sample)


def _ellipsoid(label: int, center, radii) -> _Part:
    center, radii = np.asarray(center, float), np.asarray(radii, float)
    a, b, c = radii
    p = 1.6075  # Knud Thomsen's approximation of the surface area
    area = 4 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)
    max_scale = max(a * b, a * c, b * c)

    def sample(n, rng) -> _Surface:
        out = []
        while sum(len(o) for o in out) < n:  # rejection by the area element
            u = rng.normal(size=(2 * n + 8, 3))
            u /= np.linalg.norm(u, axis=1, keepdims=True)
            scale = np.linalg.norm(u * np.array([b * c, a * c, a * b]), axis=1)
            out.append(u[rng.uniform(0, max_scale, len(u)) < scale])
        u = np.concatenate(out)[:n]
        normal = u / radii
        return u * radii + center, normal / np.linalg.norm(normal, axis=1, keepdims=True)

    return _Part(label, float(area), sample)


def _torus_arc(label: int, center, major: float, minor: float, arc: Tuple[float, float],
               axis_u, axis_v) -> _Part:
    """A section ``arc`` (radians) of a torus in the plane spanned by ``axis_u, axis_v``."""
    center = np.asarray(center, float)
    eu, ev = np.asarray(axis_u, float), np.asarray(axis_v, float)
    ew = np.cross(eu, ev)
    area = 4 * np.pi ** 2 * major * minor * (arc[1] - arc[0]) / (2 * np.pi)

    def sample(n, rng) -> _Surface:
        out_p, out_n, count = [], [], 0
        while count < n:
            m = 2 * n + 8
            theta = rng.uniform(*arc, m)
            phi = rng.uniform(0, 2 * np.pi, m)
            keep = rng.uniform(0, major + minor, m) < major + minor * np.cos(phi)
            theta, phi = theta[keep], phi[keep]
            ring = np.cos(theta)[:, None] * eu + np.sin(theta)[:, None] * ev
            normal = np.cos(phi)[:, None] * ring + np.sin(phi)[:, None] * ew
            out_p.append(center + major * ring + minor * normal)
            out_n.append(normal)
            count += len(theta)
        return np.concatenate(out_p)[:n], np.concatenate(out_n)[:n]

    return _Part(label, float(area), sample)


def _airplane(rng, ids: Dict[str, int]) -> List[_Part]:
    length = rng.uniform(1.6, 2.4)
    radius = rng.uniform(0.1, 0.18)
    span = rng.uniform(1.4, 2.4)
    chord = rng.uniform(0.25, 0.45)
    wing_x = rng.uniform(-0.15, 0.2)
    thickness = rng.uniform(0.02, 0.05)
    parts = [_ellipsoid(ids["body"], [0, 0, 0], [length / 2, radius, radius]),
             _box(ids["wing"], [wing_x, 0, -radius * rng.uniform(0, 0.6)], [chord, span, thickness])]
    tail_x = -length / 2 + chord * 0.4
    fin_h = rng.uniform(0.2, 0.4)
    parts += [_box(ids["tail"], [tail_x, 0, radius + fin_h / 2 - 0.03], [chord * 0.6, thickness, fin_h]),
              _box(ids["tail"], [tail_x, 0, radius * 0.5], [chord * 0.5, span * rng.uniform(0.25, 0.4),
                                                      thickness])]
    engines = int(rng.choice([1, 2]))
    e_len, e_rad = rng.uniform(0.25, 0.4), rng.uniform(0.05, 0.09)
    for i in range(engines):
        y = span * (0.18 + 0.17 * i)
        for side in (-1, 1):
            base = [wing_x + e_len / 2, side * y, -radius * 0.5 - e_rad - thickness]
            parts.append(_frustum(ids["engine"], base, [-1, 0, 0], e_len, e_rad, e_rad * 0.85))
    return parts


def _table(rng, ids: Dict[str, int]) -> List[_Part]:
    w, d = rng.uniform(1.0, 2.0), rng.uniform(0.6, 1.2)
    h = rng.uniform(0.6, 1.1)
    top_t = rng.uniform(0.04, 0.1)
    parts = [_box(ids["top"], [0, 0, h], [w, d, top_t])]
    if rng.uniform() < 0.7:  # four legs
        leg = rng.uniform(0.05, 0.12)
        inset = rng.uniform(0.02, 0.15)
        for sx in (-1, 1):
            for sy in (-1, 1):
                c = [sx * (w / 2 - inset - leg / 2), sy * (d / 2 - inset - leg / 2), (h - top_t / 2) / 2]
                parts.append(_box(ids["leg"], c, [leg, leg, h - top_t / 2]))
    else:  # pedestal
        r = rng.uniform(0.06, 0.12)
        parts.append(_frustum(ids["support"], [0, 0, 0.04], [0, 0, 1], h - 0.04, r, r, caps=(False, False)))
        parts.append(_frustum(ids["support"], [0, 0, 0], [0, 0, 1], 0.04, min(w, d) * 0.35, min(w, d) * 0.35))
    return parts


def _mug(rng, ids: Dict[str, int]) -> List[_Part]:
    r, h = rng.uniform(0.3, 0.5), rng.uniform(0.6, 1.2)
    taper = rng.uniform(0.8, 1.15)
    parts = [_frustum(ids["body"], [0, 0, 0], [0, 0, 1], h, r, r * taper, caps=(True, False))]
    major = rng.uniform(0.18, 0.3) * h
    minor = rng.uniform(0.03, 0.06)
    centre = [r * (1 + taper) / 2 + major * 0.55, 0, h * rng.uniform(0.45, 0.6)]
    parts.append(_torus_arc(ids["handle"], centre, major, minor, (-np.pi / 2 - 0.3, np.pi / 2 + 0.3),
                            [1.0, 0, 0], [0, 0, 1.0]))
    return parts


def _lamp(rng, ids: Dict[str, int]) -> List[_Part]:
    base_r, base_h = rng.uniform(0.2, 0.4), rng.uniform(0.04, 0.12)
    arm_len, arm_r = rng.uniform(0.8, 1.6), rng.uniform(0.02, 0.05)
    parts = [_frustum(ids["base"], [0, 0, 0], [0, 0, 1], base_h, base_r, base_r * rng.uniform(0.6, 1.0))]
    tilt = rng.uniform(0, 0.6)
    axis = np.array([np.sin(tilt), 0, np.cos(tilt)])
    parts.append(_frustum(ids["arm"], [0, 0, base_h], axis, arm_len, arm_r, arm_r, caps=(False, True)))
    top = np.array([0, 0, base_h]) + axis * arm_len
    shade_h = rng.uniform(0.25, 0.5)
    r_top, r_bottom = rng.uniform(0.08, 0.2), rng.uniform(0.25, 0.45)
    parts.append(_frustum(ids["shade"], top + [0, 0, shade_h * 0.3], [0, 0, -1], shade_h, r_top, r_bottom,
                          caps=(True, False)))
    return parts


_BUILDERS = {"Airplane": _airplane, "Lamp": _lamp, "Mug": _mug, "Table": _table}


def sample_shape(category: str, num_points: int, rng: np.random.Generator,
                 density_noise: float = 0.5) -> Dict[str, np.ndarray]:
    """One random shape of ``category`` as ``{"pos", "normal", "part"}`` arrays.

    ``density_noise`` in ``[0, 1)`` makes the sampling density vary smoothly
    over the shape (0: uniform in area).
    """
    if category not in _BUILDERS:
        raise ValueError(f"unknown category {category!r}; known: {CATEGORIES}")
    parts = _BUILDERS[category](rng, CATEGORY_PARTS[category])
    areas = np.array([p.area for p in parts])
    # over-sample, then thin with a smooth density to make sampling non-uniform
    counts = np.maximum(1, rng.multinomial(2 * num_points, areas / areas.sum()))
    pos, normal, label = [], [], []
    for part, n in zip(parts, counts):
        p, nrm = part.sampler(int(n), rng)
        pos.append(p)
        normal.append(nrm)
        label.append(np.full(len(p), part.label))
    pos, normal, label = np.concatenate(pos), np.concatenate(normal), np.concatenate(label)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    keep_prob = 1 - density_noise * 0.5 * (1 + np.tanh(2 * (pos - pos.mean(0)) @ direction))
    order = np.argsort(rng.uniform(size=len(pos)) / keep_prob)[:num_points]
    pos, normal, label = pos[order], normal[order], label[order]
    angle = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    pos, normal = (pos - pos.mean(0)) @ rot.T, normal @ rot.T
    pos /= np.linalg.norm(pos, axis=1).max()
    return {"pos": pos.astype(np.float32), "normal": normal.astype(np.float32),
            "part": label.astype(np.int64)}
