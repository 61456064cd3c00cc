"""Geometry: Laplace-Beltrami operators, lumped masses and eigenbases of meshes
and point clouds, and the normalised Laplacian's eigenbasis of graphs (float64 NumPy/SciPy; the ``mesh`` extra for the Laplacians)."""
from .eigen import Eigenbasis, eigenbasis, graph_eigenbasis, mesh_eigenbasis, mesh_mass
from .laplacian import CleanMesh, clean_mesh, face_areas, laplacian

__all__ = ["laplacian", "clean_mesh", "CleanMesh", "face_areas", "eigenbasis", "mesh_eigenbasis",
           "mesh_mass", "graph_eigenbasis", "Eigenbasis"]
