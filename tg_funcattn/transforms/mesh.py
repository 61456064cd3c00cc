"""PyG transforms for meshes: normalisation and area-weighted point sampling."""
from __future__ import annotations

import itertools
from typing import Optional, Sequence

import torch
import torch_geometric.typing
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from .._validation import check_tensor, segments
from ..geometry.laplacian import check_finite_positions, clean_mesh, face_areas
from .eigenbasis import record_eigenbasis

_SPECTRAL = ("evecs", "evals", "mass")
#: what LaplacianEigenbasis recorded about the points (renewed after sampling)
_RECORD = ("eigen_num_nodes", "eigen_extent")


def _mesh(data: Data, who: str):
    if getattr(data, "pos", None) is None:
        raise ValueError(f"{who} needs 'data.pos'")
    face = data.face if "face" in data else None
    if face is not None and (face.dim() != 2 or face.shape[0] != 3):
        raise ValueError(f"{who}: 'data.face' must have shape [3, num_faces], got {tuple(face.shape)}")
    return data.pos, face


class NormalizeMesh(BaseTransform):
    r"""Centres a mesh or point cloud and scales it to unit total surface area
    (``mode="area"``, meshes only) or into the unit sphere (``mode="sphere"``).

    The centre is the area-weighted centroid of the triangles for a mesh and
    the mean of the points for a point cloud.  Eigenvalues scale with
    ``1 / area``, so normalising to unit area makes spectra of differently
    sized shapes comparable.  Apply it before :class:`LaplacianEigenbasis`.

    Args:
        mode (str, optional): ``"area"`` or ``"sphere"``. (default: :obj:`"area"`)
    """

    def __init__(self, mode: str = "area"):
        if mode not in ("area", "sphere"):
            raise ValueError(f"'mode' must be 'area' or 'sphere', got {mode!r}")
        self.mode = mode

    def forward(self, data: Data) -> Data:
        pos, face = _mesh(data, "NormalizeMesh")
        present = [key for key in _SPECTRAL if key in data]
        if present:
            raise ValueError(f"NormalizeMesh: data already has {present}, computed for the old "
                             "geometry; apply LaplacianEigenbasis after this transform")
        try:
            check_finite_positions(pos, "data.pos")
        except ValueError as error:
            raise ValueError(f"NormalizeMesh: {error}") from None
        p = pos.double()
        if face is None:
            if self.mode == "area":
                raise ValueError("NormalizeMesh(mode='area') needs 'data.face' (a point cloud has "
                                 "no area); use mode='sphere'")
            p = p - p.mean(0)
        else:
            areas = face_areas(p, face.t())
            total = areas.sum()
            if not total > 0:
                raise ValueError("NormalizeMesh: the mesh has zero total area")
            centroids = (p[face[0]] + p[face[1]] + p[face[2]]) / 3
            p = p - (areas.unsqueeze(1) * centroids).sum(0) / total
        if self.mode == "area":
            p = p / total.sqrt()
        else:
            radius = p.norm(dim=1).max()
            if not radius > 0:
                raise ValueError("NormalizeMesh: all points coincide")
            p = p / radius
        data.pos = p.to(pos.dtype)
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(mode='{self.mode}')"


class SampleMeshPoints(BaseTransform):
    r"""Samples ``num_points`` points uniformly by area on the triangles of a
    mesh, giving a point cloud with quadrature masses and attributes carried
    over from the mesh.

    * ``data.pos`` ``[P, 3]``: the samples; ``data.mass`` ``[P]``: the
      Monte-Carlo quadrature weight ``total_area / P`` of each sample.
    * Vertex attributes (tensors with one row per vertex): floating ones are
      interpolated barycentrically, integer and boolean ones (labels) take the
      value of the nearest corner of the sampled triangle.
    * Face attributes named in ``face_keys``: the value of the sampled face.
    * ``data.sample_face`` ``[P]`` and ``data.sample_bary`` ``[P, 3]`` record
      where each sample lies, to map per-point predictions back to vertices.
    * An eigenbasis ``data.evecs`` (from :class:`LaplacianEigenbasis` on the
      mesh) is interpolated like any vertex attribute; with the new masses it
      is orthonormal up to the Monte-Carlo quadrature error (about
      :math:`1/\sqrt{P}`), which ``basis_type="laplacian_init"`` re-orthonormalises;
      its record (``data.eigen_num_nodes``, ``data.eigen_extent``, see
      :func:`check_eigenbasis`) is renewed for the samples.
    * ``data.face`` is removed.
    * With ``keep_mesh=True`` the original vertices stay as ``data.mesh_pos``
      and every vertex attribute ``key`` as ``data.mesh_<key>``, so that
      per-point predictions can be scored on the original vertices with
      :func:`transfer_to_vertices`.

    The mesh is sampled as :func:`~tg_funcattn.geometry.mesh_eigenbasis`
    sees it, cleaned by :func:`~tg_funcattn.geometry.clean_mesh`: slivers
    (faces thinner than ``1e-6`` of the bounding-box diagonal once vertices
    that close are merged) are never sampled and a duplicate face
    counts once, so the masses sum to the area of the cleaned mesh, the
    total mass of the eigenbasis.

    Args:
        num_points (int): Number of samples ``P``.
        face_keys (sequence of str, optional): Face attributes to carry over.
            (default: :obj:`()`)
        keep_mesh (bool, optional): Keep the original vertices and their
            attributes. (default: :obj:`False`)
        generator (torch.Generator, optional): Source of randomness.
            (default: :obj:`None`, torch's global generator)
    """

    def __init__(self, num_points: int, face_keys: Sequence[str] = (), keep_mesh: bool = False,
                 generator: Optional[torch.Generator] = None):
        if not isinstance(num_points, int) or num_points < 1:
            raise ValueError(f"'num_points' must be a positive int, got {num_points!r}")
        self.num_points = num_points
        self.face_keys = tuple(face_keys)
        self.keep_mesh = keep_mesh
        self.generator = generator

    def forward(self, data: Data) -> Data:
        pos, face = _mesh(data, "SampleMeshPoints")
        if face is None:
            raise ValueError("SampleMeshPoints needs 'data.face' (a triangle mesh)")
        num_vertices, num_faces = pos.shape[0], face.shape[1]
        for key in self.face_keys:
            value = data[key] if key in data else None
            if not isinstance(value, Tensor) or value.shape[0] != num_faces:
                raise ValueError(f"SampleMeshPoints: face attribute '{key}' must be a tensor with "
                                 f"one row per face ({num_faces})")
        try:
            kept = torch.from_numpy(clean_mesh(pos, face).face_index).to(face.device)
        except ValueError as error:
            raise ValueError(f"SampleMeshPoints: {error}") from None
        areas = face_areas(pos.double(), face[:, kept].t())
        total = areas.sum()
        P = self.num_points
        chosen = kept[torch.multinomial(areas, P, replacement=True, generator=self.generator)]
        u, v = torch.rand(2, P, dtype=torch.float64, generator=self.generator)
        root = u.sqrt()
        bary = torch.stack([1 - root, root * (1 - v), root * v], dim=1)  # uniform on the triangle
        corners = face[:, chosen]  # [3, P]
        nearest = corners.gather(0, bary.argmax(1).unsqueeze(0)).squeeze(0)

        vertex_keys = [key for key in data.keys()
                       if key not in ("pos", "face", "mass", *_RECORD) and key not in self.face_keys
                       and isinstance(data[key], Tensor) and data[key].dim() > 0
                       and data[key].shape[0] == num_vertices]
        out = {}
        for key in vertex_keys:
            value = data[key]
            if value.is_floating_point():
                w = bary.to(value.dtype).view(P, 3, *([1] * (value.dim() - 1)))
                out[key] = (w * value[corners.t()]).sum(1)
            else:
                out[key] = value[nearest]
        for key in self.face_keys:
            out[key] = data[key][chosen]
        if self.keep_mesh:
            out["mesh_pos"] = pos
            out.update({f"mesh_{key}": data[key] for key in vertex_keys})
        del data.face
        points = (bary.unsqueeze(-1) * pos.double()[corners.t()]).sum(1)
        data.pos = points.to(pos.dtype)
        for key, value in out.items():
            data[key] = value
        data.mass = torch.full((P,), float(total) / P, dtype=pos.dtype)
        data.sample_face = chosen
        data.sample_bary = bary.to(pos.dtype)
        if "evecs" in data:
            record_eigenbasis(data)
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.num_points}, keep_mesh={self.keep_mesh})"


class RandomRotation(BaseTransform):
    r"""Rotates ``data.pos`` (and the other point attributes named in
    ``keys``, e.g. the original vertices ``mesh_pos`` kept by
    :class:`SampleMeshPoints`) by one rotation drawn uniformly from
    :math:`SO(3)` (a normalised Gaussian quaternion), about the origin.

    PyG's ``RandomRotate(180, axis)`` composed over three axes is not
    uniform on :math:`SO(3)`; this is.  Attributes named in ``keys`` that the
    data does not have are skipped.

    Args:
        keys (sequence of str, optional): ``[N, 3]`` attributes to rotate.
            (default: :obj:`("pos", "mesh_pos", "normal")`)
        generator (torch.Generator, optional): Source of randomness; a
            generator seeded per example gives fixed rotations (e.g. for a
            rotated test set). (default: :obj:`None`, torch's global generator)
    """

    def __init__(self, keys: Sequence[str] = ("pos", "mesh_pos", "normal"),
                 generator: Optional[torch.Generator] = None):
        self.keys = tuple(keys)
        self.generator = generator

    def forward(self, data: Data) -> Data:
        rotation = random_rotation(self.generator)
        for key in self.keys:
            value = data[key] if key in data else None
            if value is None:
                continue
            if not isinstance(value, Tensor) or value.dim() != 2 or value.shape[1] != 3:
                raise ValueError(f"RandomRotation: 'data.{key}' must be a [N, 3] tensor")
            data[key] = value @ rotation.to(value).t()
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(keys={self.keys})"


def random_rotation(generator: Optional[torch.Generator] = None) -> Tensor:
    """A ``[3, 3]`` rotation matrix (float64) drawn uniformly from :math:`SO(3)`."""
    w, x, y, z = torch.nn.functional.normalize(
        torch.randn(4, dtype=torch.float64, generator=generator), dim=0)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)]),
        torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)]),
        torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)])])


def transfer_to_vertices(values: Tensor, point_pos: Tensor, vertex_pos: Tensor,
                         point_batch: Optional[Tensor] = None,
                         vertex_batch: Optional[Tensor] = None, chunk: int = 4096) -> Tensor:
    """Per-point ``values [P, ...]`` carried to every vertex ``[N, ...]`` by its
    nearest point (the protocol for scoring point-cloud predictions on the
    original mesh, e.g. RNA surface segmentation).

    In a batch every vertex takes the value of the nearest point of its own
    graph: pass the graph of every point (``data.batch``) and of every vertex
    (``data.mesh_pos_batch`` of a
    :class:`~torch_geometric.loader.DataLoader` with
    ``follow_batch=["mesh_pos"]``), as for
    :func:`torch_geometric.nn.pool.nearest` (used when pyg-lib provides it).

    Args:
        values (torch.Tensor): Per-point values ``[P, ...]``.
        point_pos (torch.Tensor): Point positions ``[P, D]``.
        vertex_pos (torch.Tensor): Vertex positions ``[N, D]``.
        point_batch (torch.Tensor, optional): Sorted graph index of every point
            ``[P]``. (default: :obj:`None`, one graph)
        vertex_batch (torch.Tensor, optional): Sorted graph index of every
            vertex ``[N]``; given together with ``point_batch``.
            (default: :obj:`None`)
        chunk (int, optional): Vertices per distance block of the search
            without pyg-lib. (default: :obj:`4096`)

    Returns:
        The values at the vertices ``[N, ...]``.
    """
    check_tensor(point_pos, "point_pos", ndim=2, floating=True)
    check_tensor(vertex_pos, "vertex_pos", ndim=2, floating=True)
    if vertex_pos.shape[1] != point_pos.shape[1]:
        raise ValueError(f"'vertex_pos' has {vertex_pos.shape[1]} coordinates per row but "
                         f"'point_pos' has {point_pos.shape[1]}")
    if values.shape[0] != point_pos.shape[0]:
        raise ValueError(f"'values' has {values.shape[0]} rows but there are "
                         f"{point_pos.shape[0]} points")
    if (point_batch is None) != (vertex_batch is None):
        raise ValueError("give both 'point_batch' and 'vertex_batch' (the graph of every point "
                         "and of every vertex) or neither (one graph)")
    if point_batch is None:
        point_bounds, vertex_bounds = [0, point_pos.shape[0]], [0, vertex_pos.shape[0]]
        if vertex_pos.shape[0] and not point_pos.shape[0]:
            raise ValueError("there are vertices but no points to take values from")
    else:
        point_counts, vertex_counts = (
            segments(batch, pos.shape[0], pos.device, min_nodes=0, name=name).counts.tolist()
            for batch, pos, name in ((point_batch, point_pos, "point_batch"),
                                     (vertex_batch, vertex_pos, "vertex_batch")))
        num_graphs = max(len(point_counts), len(vertex_counts))
        point_counts += [0] * (num_graphs - len(point_counts))
        vertex_counts += [0] * (num_graphs - len(vertex_counts))
        empty = [g for g in range(num_graphs) if vertex_counts[g] and not point_counts[g]]
        if empty:
            raise ValueError(f"graph {empty[0]} has vertices but no points ('point_batch' "
                             f"never holds {empty[0]})")
        if torch_geometric.typing.WITH_NEAREST:
            from torch_geometric.nn.pool import nearest

            return values[nearest(vertex_pos, point_pos, vertex_batch, point_batch)]
        point_bounds = [0] + list(itertools.accumulate(point_counts))
        vertex_bounds = [0] + list(itertools.accumulate(vertex_counts))
    closest = [torch.cdist(vertex_pos[i:min(i + chunk, v1)].float(), point_pos[p0:p1].float()
                           ).argmin(1) + p0
               for p0, p1, v0, v1 in zip(point_bounds[:-1], point_bounds[1:], vertex_bounds[:-1],
                                         vertex_bounds[1:])
               for i in range(v0, v1, chunk)]
    if not closest:
        return values[:0]
    return values[torch.cat(closest)]
