"""PyG transforms: Laplacian eigenbases (with an on-disk cache), eigenvector
sign-flip augmentation, mesh normalisation, area-weighted point sampling and
uniform random rotations."""
from .eigenbasis import LaplacianEigenbasis, RandomEigenvectorSignFlip
from .mesh import (NormalizeMesh, RandomRotation, SampleMeshPoints, random_rotation,
                   transfer_to_vertices)

__all__ = ["LaplacianEigenbasis", "RandomEigenvectorSignFlip", "NormalizeMesh", "SampleMeshPoints",
           "RandomRotation", "random_rotation", "transfer_to_vertices"]
