"""Per-graph kernels: segment matrix products and kNN graphs."""
from .knn import knn_graph
from .segment import segment_matmul_nn, segment_matmul_tn

__all__ = ["segment_matmul_tn", "segment_matmul_nn", "knn_graph"]
