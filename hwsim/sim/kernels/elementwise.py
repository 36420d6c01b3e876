"""Element-wise integer ops: `Embed`, `Add`, `ScaleChannels` (DESIGN.md rows of the same names;
`quant.intops.embed / add / scale_channels`). Exact int64 numpy; these are memory-bound and small
next to the matrix products. Invalid inputs raise ValueError; the executor names the node.
"""
from __future__ import annotations

import numpy as np

from hwsim.sim.kernels.requant import requant


def _left_shifts_ok(**shifts: int) -> None:
    for name, value in shifts.items():
        if value < 0:
            raise ValueError(f"left shift {name}={value} is negative; fold the scale into the other operand")


def embed(ids: np.ndarray, word: np.ndarray, pos: np.ndarray, type_: np.ndarray | None = None,
          lw: int = 0, lp: int = 0, lt: int = 0) -> np.ndarray:
    """DESIGN row `Embed`: `(word[ids] << lw) + (pos[arange(n)] << lp) + (type[0] << lt)`, exact.

    ids [B, n] must lie in [0, V) and n <= P (ValueError naming the id / the length otherwise).
    """
    _left_shifts_ok(lw=lw, lp=lp, lt=lt)
    vocab, positions, n = word.shape[0], pos.shape[0], ids.shape[-1]
    bad = (ids < 0) | (ids >= vocab)
    if bad.any():
        raise ValueError(f"token id {int(ids[bad][0])} outside the vocabulary [0, {vocab}): "
                         f"tokenise with the model's tokenizer")
    if n > positions:
        raise ValueError(f"sequence length {n} exceeds the {positions} position embeddings; truncate the input")
    y = word[ids].astype(np.int64) << lw  # (B, n, D)
    y += pos[:n].astype(np.int64) << lp
    if type_ is not None:
        y += type_[0].astype(np.int64) << lt
    return y


def add(a: np.ndarray, b: np.ndarray, la: int = 0, lb: int = 0) -> np.ndarray:
    """DESIGN row `Add`: `(a << la) + (b << lb)`, exact (residual connection)."""
    _left_shifts_ok(la=la, lb=lb)
    return (a.astype(np.int64) << la) + (b.astype(np.int64) << lb)


def scale_channels(x: np.ndarray, c: np.ndarray, shift: int, bits: int, out_dtype=np.int64) -> np.ndarray:
    """DESIGN row `ScaleChannels`: `requant(x * c, shift, bits)`, c [d'] over the last axis."""
    if c.shape[-1] != x.shape[-1]:
        raise ValueError(f"x has {x.shape[-1]} channels but c has {c.shape[-1]}")
    return requant(x.astype(np.int64) * c.astype(np.int64), shift, bits, dtype=out_dtype)
