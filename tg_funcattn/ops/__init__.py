"""Per-graph kernels: segment matrix products (one dispatch point over BLAS, Triton and a
reference), per-graph sums and kNN graphs."""
from .knn import knn_graph
from .segment import (BACKENDS, resolve_backend, segment_backend, segment_matmul_nn,
                      segment_matmul_tn, segment_sum, set_segment_backend)

__all__ = ["segment_matmul_tn", "segment_matmul_nn", "segment_sum", "knn_graph", "BACKENDS",
           "set_segment_backend", "segment_backend", "resolve_backend"]
