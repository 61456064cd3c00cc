"""Datasets: procedurally generated part-labelled shapes (no download)."""
from .shapes import CATEGORIES, CATEGORY_PARTS, NUM_PARTS, generate_part_shapes, sample_shape

__all__ = ["CATEGORIES", "CATEGORY_PARTS", "NUM_PARTS", "generate_part_shapes", "sample_shape"]
