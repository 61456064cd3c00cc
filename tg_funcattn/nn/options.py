"""The values of the network's string options.

Plain Python, no torch: the command line builds its parser (choices, ``--help``)
from these without importing torch or PyG.
"""
#: ``basis_type`` of :class:`~tg_funcattn.nn.FunctionalAttention` (the keys of
#: :data:`tg_funcattn.nn.bases.BASIS_TYPES`)
BASIS_TYPE_NAMES = ("learned", "laplacian", "laplacian_init")
#: the named local branches of :class:`~tg_funcattn.nn.FuncAttnBlock`
LOCAL_KINDS = ("point_transformer", "edgeconv")
#: ``readout``, ``lift``, ``head`` and ``init`` of :class:`~tg_funcattn.nn.FuncAttnNet`
READOUTS = ("node", "graph")
LIFTS = ("mlp", "residual")
HEADS = ("mlp", "linear")
INITS = ("default", "trunc_normal")
