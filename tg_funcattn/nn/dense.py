r"""Functional attention for models that call attention on padded dense batches."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .functional_attention import FunctionalAttention

__all__ = ["DenseFunctionalAttention"]


class DenseFunctionalAttention(torch.nn.Module):
    r""":class:`~tg_funcattn.nn.FunctionalAttention` (`"Functional Attention:
    From Pairwise Affinities to Functional Correspondences"
    <https://arxiv.org/abs/2605.31559>`_) behind the calling convention of
    dense attention modules, ``attn(x, mask)`` on the output of
    :func:`~torch_geometric.utils.to_dense_batch`, as called by PyG's
    :class:`~torch_geometric.nn.models.SGFormer`,
    :class:`~torch_geometric.nn.models.Polynormer` and
    :class:`~torch_geometric.nn.attention.PerformerAttention`.

    Each row :math:`b` of the padded batch is one graph, its nodes the
    positions with :math:`\mathrm{mask}_{b,i}` set:

    .. math::
        \mathbf{X}'_{b,i} = \begin{cases}
            \mathrm{FuncAttn}\big(\{\mathbf{X}_{b,j} : \mathrm{mask}_{b,j}\}\big)_i
                & \mathrm{mask}_{b,i} \\
            \mathbf{0} & \text{otherwise}
        \end{cases}

    The valid positions are gathered into a flat batch of :math:`N` nodes,
    attended per graph by :class:`FunctionalAttention` and scattered back;
    padded positions never enter the attention (they cannot change the
    result) and come out as zeros.  A row with no valid position is a graph
    with no nodes: its output is zero.

    **Padding cost.**  The input and output are :math:`B \times L \times c`
    tensors, so memory and the gather and scatter are :math:`O(BLc)`; the
    attention itself runs on the :math:`N` valid nodes only, in
    :math:`O(N(c + Hk))` memory, as on a flat batch.  With a ``mask`` the
    adapter reads the number of valid positions and non-empty rows from the
    device (one host synchronisation, on top of the attention's one for its
    value checks); without a mask (every position valid) it adds none.  A
    model that has the flat batch should call :class:`FunctionalAttention`
    on it directly and skip the padding altogether.

    Args:
        channels (int): Size of each input and output sample :math:`c`.
        heads (int, optional): Number of heads :math:`H`; must divide
            ``channels``. (default: :obj:`8`)
        num_bases (int, optional): Number of basis functions :math:`k` per
            head. (default: :obj:`32`)
        basis_type (str, optional): ``"learned"``, ``"laplacian"`` or
            ``"laplacian_init"``. (default: :obj:`"learned"`)
        dropout (float, optional): Dropout on the entries of the functional
            maps (see :class:`~tg_funcattn.nn.FunctionalAttention`), the
            analogue of the attention-weight dropout of the attention it
            replaces. (default: :obj:`0.0`)
        **kwargs (optional): Further arguments of
            :class:`~tg_funcattn.nn.FunctionalAttention` (``solve``,
            ``ridge``, ``temperature``, ...).

    Shapes:
        - **input:**
          node features :math:`(B, L, c)`,
          mask :math:`(B, L)` (optional, bool),
          node masses :math:`(B, L)` and basis :math:`(B, L, k')` (optional,
          see :class:`~tg_funcattn.nn.FunctionalAttention`)
        - **output:** node features :math:`(B, L, c)`, zero where the mask is
          not set
    """

    def __init__(self, channels: int, heads: int = 8, num_bases: int = 32,
                 basis_type: str = "learned", dropout: float = 0.0, **kwargs):
        super().__init__()
        self.attn = FunctionalAttention(channels, heads, num_bases, basis_type, dropout, **kwargs)

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.attn.reset_parameters()

    def forward(self, x: Tensor, mask: Optional[Tensor] = None, *, mass: Optional[Tensor] = None,
                basis: Optional[Tensor] = None) -> Tensor:
        r"""Runs the forward pass of the module.

        Args:
            x (torch.Tensor): Padded node features ``[B, L, channels]``.
            mask (torch.Tensor, optional): Boolean ``[B, L]``, ``True`` at
                the valid positions; ``None`` if all are valid.
                (default: ``None``)
            mass (torch.Tensor, optional): Node masses ``[B, L]`` (values at
                padded positions are ignored). (default: ``None``, uniform)
            basis (torch.Tensor, optional): Eigenbasis ``[B, L, k']`` for the
                Laplacian basis kinds. (default: ``None``)
        """
        if not isinstance(x, Tensor) or x.dim() != 3:
            raise ValueError("'x' must be a padded batch [B, L, channels], got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        B, L, C = x.shape
        _check_padded(mass, "mass", (B, L), x.device)
        _check_padded(basis, "basis", (B, L), x.device, extra_dim=True)
        rows = torch.arange(B, device=x.device)
        if mask is None:
            if B * L == 0:
                raise ValueError(f"'x' has no positions (shape {tuple(x.shape)})")
            out = self.attn(x.reshape(B * L, C), rows.repeat_interleave(L), batch_size=B,
                            mass=None if mass is None else mass.reshape(B * L),
                            basis=None if basis is None else basis.reshape(B * L, -1))
            return out.view(B, L, -1)

        _check_padded(mask, "mask", (B, L), x.device)
        if mask.dtype != torch.bool:
            raise TypeError(f"'mask' must be a bool tensor (True at valid positions), got "
                            f"dtype {mask.dtype}")
        nonempty = mask.any(dim=1)
        num_nodes, num_graphs = torch.stack([mask.sum(), nonempty.sum()]).tolist()  # host sync
        if num_nodes == 0:
            return x.new_zeros(B, L, self.attn.channels)
        index = torch.nonzero_static(mask.reshape(-1), size=num_nodes).squeeze(1)
        graph = (nonempty.long().cumsum(0) - 1)[index // L]  # empty rows are skipped
        out = self.attn(x.reshape(B * L, C)[index], graph, batch_size=num_graphs,
                        mass=None if mass is None else mass.reshape(B * L)[index],
                        basis=None if basis is None else basis.reshape(B * L, -1)[index])
        return out.new_zeros(B * L, out.shape[1]).index_copy(0, index, out).view(B, L, -1)

    def __repr__(self) -> str:
        attn = self.attn
        return (f"{self.__class__.__name__}({attn.channels}, heads={attn.heads}, "
                f"num_bases={attn.num_bases}, basis_type='{attn.basis_type}')")


def _check_padded(value: Optional[Tensor], name: str, shape, device: torch.device,
                  extra_dim: bool = False) -> None:
    """``value`` is ``None`` or a tensor of shape ``shape`` (plus one trailing
    dimension with ``extra_dim``) on ``device``."""
    if value is None:
        return
    want = f"[{shape[0]}, {shape[1]}{', k' if extra_dim else ''}]"
    if not isinstance(value, Tensor) or value.dim() != 2 + extra_dim or \
            tuple(value.shape[:2]) != tuple(shape):
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"'{name}' must have shape {want} like the padded 'x', got {got}")
    if value.device != device:
        raise ValueError(f"'{name}' is on {value.device} but 'x' is on {device}")
