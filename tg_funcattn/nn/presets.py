r"""Named configurations of :class:`~tg_funcattn.nn.FuncAttnNet` (the network;
the training recipe a configuration was published with is
:data:`tg_funcattn.training.config.RECIPES`).

``paper_rna``
    The authors' RNA surface segmentation model (``RNA-Segmentation/`` in
    `xjffff/FUNCATTN <https://github.com/xjffff/FUNCATTN>`_, the settings of
    its ``rna_point_segmentation.py``): xyz input, width 128, 4 blocks,
    8 heads, 128 learned bases, MLP ratio 2, dropout 0.1, the residual lift
    with a learned offset, no final LayerNorm and a single Linear head, every
    Linear of the lift and blocks initialised from a normal distribution of
    standard deviation 0.02 (the head keeps PyTorch's default), one ridge
    parameter per layer.

    The layer differs from the reference's in its parametrisation, not in
    its method (``tests/nn/test_functional_attention.py`` maps one onto the
    other): the reference's ridge enters as :math:`(1 - a) KK^\top + aI`
    with :math:`a = \mathrm{sigmoid}(\alpha)`, an absolute ridge
    :math:`a / (1 - a)` with the output scaled by :math:`1 / (1 - a)`, where
    this layer's ridge is relative to the keys' scale (initially 0.1 of their
    mean squared singular value); and this layer standardises the input of
    the slices per graph, so that projection has no bias (542,376 parameters
    with 260 classes against the reference's 542,888).  Both keep the
    layer from being a near-constant map at initialisation, on which the
    reference's parametrisation stalls (``benchmarks/bench_init_signal.py``).
    The blocks apply the dropout to the attention's output, as the
    reference's ``to_out`` does, and also inside the MLP (the reference only
    after the attention); the reference defines a dropout for the functional
    map but never applies it, so ``attn_dropout`` stays 0.

As released, the authors' script does not run: it passes ``num_freqs=10`` to
a model class that no longer accepts it (``TypeError``).  The preset is the
configuration the script asks for without that argument.
"""
from __future__ import annotations

from typing import Any, Dict

#: name -> FuncAttnNet keyword arguments (without in/out channels)
PRESETS: Dict[str, Dict[str, Any]] = {
    "paper_rna": dict(hidden_channels=128, num_layers=4, heads=8, num_bases=128, mlp_ratio=2.0,
                      dropout=0.1, lift="residual", head="linear", init="trunc_normal",
                      shared_ridge=True),
}


def preset(name: str) -> Dict[str, Any]:
    """The network settings of the preset ``name`` (a copy), or a
    ``ValueError`` listing the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}")
    return dict(PRESETS[name])
