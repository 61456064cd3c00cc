"""Per-graph kernels: segment matrix products (one dispatch point over BLAS, Triton and a
reference), per-graph sums, kNN graphs, and the cache-chunked maps over a kNN graph's
edges (:mod:`~tg_funcattn.ops.edge`) and of the learned basis's soft partition
(:mod:`~tg_funcattn.ops.partition`)."""
from .edge import knn_edge_max, knn_softmax_sum
from .knn import knn_graph
from .partition import softmax_projection
from .segment import (BACKENDS, resolve_backend, segment_backend, segment_matmul_nn,
                      segment_matmul_tn, segment_sum, set_segment_backend)

__all__ = ["segment_matmul_tn", "segment_matmul_nn", "segment_sum", "knn_graph", "BACKENDS",
           "set_segment_backend", "segment_backend", "resolve_backend", "knn_edge_max",
           "knn_softmax_sum", "softmax_projection"]
