"""PyG transforms: Laplacian eigenbases (with an on-disk cache) and the check
that they still fit the points, lumped vertex masses, heat kernel signatures, eigenvector sign-flip augmentation, mesh
normalisation, area-weighted point sampling and uniform random rotations."""
from .eigenbasis import (CheckEigenbasis, HeatKernelSignature, LaplacianEigenbasis, LumpedMass,
                         RandomEigenvectorSignFlip, check_eigenbasis)
from .mesh import (NormalizeMesh, RandomRotation, SampleMeshPoints, random_rotation,
                   transfer_to_vertices)

__all__ = ["LaplacianEigenbasis", "LumpedMass", "HeatKernelSignature", "CheckEigenbasis", "check_eigenbasis",
           "RandomEigenvectorSignFlip", "NormalizeMesh", "SampleMeshPoints", "RandomRotation",
           "random_rotation", "transfer_to_vertices"]
