"""PyG transforms: Laplacian eigenbases (with an on-disk cache), eigenvector
sign-flip augmentation, mesh normalisation and area-weighted point sampling."""
from .eigenbasis import LaplacianEigenbasis, RandomEigenvectorSignFlip
from .mesh import NormalizeMesh, SampleMeshPoints, transfer_to_vertices

__all__ = ["LaplacianEigenbasis", "RandomEigenvectorSignFlip", "NormalizeMesh", "SampleMeshPoints",
           "transfer_to_vertices"]
