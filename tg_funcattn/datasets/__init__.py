"""Datasets: ShapeNet part segmentation, RNA surface segmentation, mesh
regression, and generated datasets that need no download."""
from ._readers import DatasetFormatError
from .mesh_regression import MeshOperatorRegression, MeshRegression
from .rna import NUM_RNA_CLASSES, RNASurfaceSegmentation
from .shapenet import (NUM_SHAPENET_PARTS, SHAPENET_CATEGORIES, SHAPENET_PARTS, ShapeNetPart,
                       category_part_mask)
from .synthetic_parts import SyntheticParts

__all__ = ["ShapeNetPart", "SyntheticParts", "RNASurfaceSegmentation", "MeshRegression",
           "MeshOperatorRegression", "DatasetFormatError", "SHAPENET_CATEGORIES", "SHAPENET_PARTS",
           "NUM_SHAPENET_PARTS", "NUM_RNA_CLASSES", "category_part_mask"]
