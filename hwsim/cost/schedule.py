"""The schedule a mapped scenario follows, and where each tensor lives under it.

Rules (what an accelerator's compiler would do; every figure of `hwsim.cost.model` follows them):

1. **Row tiles.** Rows stream through the array in tiles of `ROW_TILE` (128) rows, the mapped tile
   height (a tile's partial sums x the array's columns fit the accumulator buffer). Each tile fetches
   the weights it needs from their home: a weight matrix is read once per tile.
2. **Row groups.** A batch runs in row groups of `g` samples (g divides the batch); the rows of one
   group are tiled together, so short samples share a tile and its weight fetch. `g` is the divisor
   of the batch with the least DRAM traffic per inference: weight fetches (once per tile of the group)
   plus the traffic of the tensors its schedule spills (rule 5). One sample at a time is a candidate,
   so a batch never moves more per inference than the same samples run one at a time.
3. **Segments.** Attention needs all keys and values of a sample before its first query tile: the
   graph is cut into segments before every attention node (whose query projection moves in front of
   it, into its segment) and before the key and value projections that feed it (so a layer's keys and
   values are made after the previous layer's are freed). Within a segment, tiles run depth-first
   (tile 1 through every node of the segment, then tile 2, ...), so a tensor made and used inside a
   segment exists one tile at a time; a tensor read whole (attention's keys, values and mask) or
   used in a later segment is kept whole until its last use. A tensor that a vector op makes and only
   vector ops of the same segment read (a residual sum on its way to LayerNorm) streams row by row:
   it holds one row, not a tile.
4. **Attention per head.** An attention node runs head by head and query tile by query tile: one
   tile's score matrix (tile rows x keys, at the score width) and one head's keys and values (staged
   from DRAM once per head when the schedule spilled them) are its working set beside the tensors.
5. **Residency.** The buffer (the scenario's `activations_home`) holds every live tile and whole
   tensor at once (views and permutations alias their input: no copy). When the peak exceeds it,
   the tensor that frees the most bytes at the peak for the least DRAM traffic (bytes x (1 write +
   its reads)) is sent to DRAM, and the schedule is replayed until the peak fits (or nothing is left
   to spill). A spilled tensor is written to and read from DRAM by the nodes that make and use it.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Mapping

from quant.ir import spec
from hwsim.cost.widths import packed_bytes

ROW_TILE = 128


def _barrier(op: str) -> bool:
    """Whether `op` reads inputs whole (`quant.ir.spec.OpSpec.whole_inputs`: attention's keys,
    values and mask), so that the schedule cuts a segment before it (rule 3)."""
    return bool(spec.op_spec(op).whole_inputs)


@dataclass(frozen=True)
class FlowNode:
    """One node as the schedule sees it: activation tensors read and written (aliases resolved)."""

    op_type: str
    name: str
    reads: tuple[str, ...]
    whole: tuple[bool, ...]          # per read: read whole (all rows) rather than tile by tile
    writes: tuple[str, ...]
    work_bytes_per_row: float        # per-tile working set beside the tensors, bytes per tile row
    gemm: bool = False               # has GEMM stages (Linear, attention): on the array, else the vector unit
    work_bytes: float = 0.0          # working set independent of the tile (one head's keys and values)


@dataclass(frozen=True)
class Layout:
    """What the schedule's structure fixes, whatever the row group and the spills (rule 3): segments
    of node indices in schedule order, and per tensor its last reader, the last segment that reads it,
    whether something reads it whole, and whether it streams row by row."""

    segments: tuple[tuple[int, ...], ...]
    last_node: Mapping[str, int]
    last_segment: Mapping[str, int]
    whole_read: frozenset
    streams: frozenset


@dataclass(frozen=True)
class Flow:
    """A model at one sequence length, per sample: nodes in order and each tensor's bytes per row."""

    n: int
    nodes: tuple[FlowNode, ...]
    row_bytes: Mapping[str, float]   # tensor -> bytes per row of the sample (n rows)
    weight_bytes: float              # the weight matrices every row tile fetches (the Linears' params)
    layout: Layout


@dataclass(frozen=True)
class Schedule:
    """Samples per row group, the tensors sent to DRAM and the buffer's peak occupancy."""

    group: int
    spilled: frozenset
    peak_bytes: float
    budget_bytes: int

    def home(self, tensor: str) -> str:
        return "dram" if tensor in self.spilled else "chip"


def flow_of(sites: list, names: list[tuple[tuple[str, ...], tuple[str, ...]]], n: int) -> Flow:
    """The `Flow` of a model at length n from its batch-1 op sites and their (inputs, outputs) names."""
    alias: dict[str, str] = {}
    row_bytes: dict[str, float] = {}
    nodes = []
    root = lambda t: alias.get(t, t)  # noqa: E731
    for site, (ins, outs) in zip(sites, names):
        acts = [(t, shape, bits) for t, shape, bits, p in zip(ins, site.in_shapes, site.in_bits, site.in_is_param)
                if not p]
        if spec.moves(site.op_type) in ("view", "permute"):
            alias[outs[0]] = root(acts[0][0])
            continue
        for t, shape, bits in [*acts, *zip(outs, site.out_shapes, site.out_bits)]:
            row_bytes.setdefault(root(t), prod(shape) * packed_bytes(bits) / n)
        op = spec.op_spec(site.op_type)
        work = fixed = 0.0
        if op.score_bits_attr:            # one query tile's score matrix: its rows x keys x score width
            keys, head_dim = site.in_shapes[1][2], site.in_shapes[1][3]
            work = keys * packed_bytes(site.attrs[op.score_bits_attr])
            fixed = keys * head_dim * (packed_bytes(site.in_bits[1]) + packed_bytes(site.in_bits[2]))
        nodes.append(FlowNode(site.op_type, site.name, tuple(root(t) for t, _, _ in acts),
                              tuple(i in op.whole_inputs for i, (_, _, _) in enumerate(acts)), tuple(outs), work,
                              bool(op.stages), fixed))
    weights = sum(prod(site.in_shapes[1]) * packed_bytes(site.in_bits[1]) for site in sites
                  if any(st.kind == "linear" for st in spec.op_spec(site.op_type).stages) and site.in_is_param[1])
    return Flow(n, tuple(nodes), row_bytes, weights, layout_of(tuple(nodes)))


def _segments(nodes: tuple[FlowNode, ...]) -> list[list[int]]:
    """Node indices in schedule order, cut into segments (rule 3).

    A node whose outputs only an attention node reads, tile by tile (the query projection), moves to
    just before that attention node; the producers of the tensors attention reads whole (the key and
    value projections) start a segment of their own, so one layer's keys and values are freed before the
    next layer's are made.
    """
    readers: dict[str, list[tuple[int, bool]]] = {}
    for i, node in enumerate(nodes):
        for t, w in zip(node.reads, node.whole):
            readers.setdefault(t, []).append((i, w))
    feeds = {}                       # node -> the barrier it feeds row-wise and alone
    for i, node in enumerate(nodes):
        users = {r for t in node.writes for r in readers.get(t, [])}
        if node.writes and len(users) == 1:  # one reader, one way (queries = keys: read both ways)
            (j, w), = users
            if _barrier(nodes[j].op_type) and not w and not _barrier(node.op_type):
                feeds[i] = j
    order = [i for i in range(len(nodes)) if i not in feeds]
    for i, j in sorted(feeds.items(), reverse=True):
        order.insert(order.index(j), i)
    whole_made = {i for i, node in enumerate(nodes)
                  if any(w for t in node.writes for _, w in readers.get(t, []))}
    out: list[list[int]] = [[]]
    for pos, i in enumerate(order):
        starts_kv = i in whole_made and (pos == 0 or order[pos - 1] not in whole_made)
        prev_feeds = pos > 0 and feeds.get(order[pos - 1]) is not None
        starts_barrier = (_barrier(nodes[i].op_type) and not prev_feeds) or (i in feeds and not prev_feeds)
        if (starts_kv or starts_barrier) and out[-1]:
            out.append([])
        out[-1].append(i)
    return out


def tiles_of(rows: int, tile: int = ROW_TILE) -> list[int]:
    """Row counts of the tiles of `rows` rows: full tiles, then the remainder.

    >>> tiles_of(300), tiles_of(128), tiles_of(27)
    ([128, 128, 44], [128], [27])
    """
    return [tile] * (rows // tile) + ([rows % tile] if rows % tile else [])


def layout_of(nodes: tuple[FlowNode, ...]) -> Layout:
    """The `Layout` of `nodes` (computed once per flow; every replay of the schedule reads it)."""
    segs = _segments(nodes)
    seg_of = {i: s for s, idx in enumerate(segs) for i in idx}
    last_seg: dict[str, int] = {}
    whole_read: set[str] = set()
    readers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for t, w in zip(node.reads, node.whole):
            last_seg[t] = max(last_seg.get(t, -1), seg_of[i])
            readers.setdefault(t, []).append(i)
            if w:
                whole_read.add(t)
    last_node: dict[str, int] = {}
    for i in (i for idx in segs for i in idx):          # the last reader in schedule order
        for t in nodes[i].reads:
            last_node[t] = i
    streams = {t for i, node in enumerate(nodes) if not node.gemm for t in node.writes
               if readers.get(t) and all(not nodes[j].gemm and seg_of[j] == seg_of[i] for j in readers[t])}
    return Layout(tuple(tuple(idx) for idx in segs), last_node, last_seg, frozenset(whole_read), frozenset(streams))


def peak_bytes(flow: Flow, group: int, spilled: frozenset = frozenset()) -> tuple[float, dict[str, float]]:
    """(peak buffer bytes, tensor -> bytes it holds at the peak) of the schedule of rules 1-4 for a row group."""
    lay = flow.layout
    tiles = tiles_of(group * flow.n)
    size = lambda t, rows: 0.0 if t in spilled else flow.row_bytes[t] * rows  # noqa: E731
    kept: dict[str, float] = {}          # tensors kept whole (used in a later segment or read whole)
    best, at_best = 0.0, {}
    for s, idx in enumerate(lay.segments):
        done = 0
        for k, rows in enumerate(tiles):
            last_tile = k == len(tiles) - 1
            live_tile: dict[str, float] = {}
            for i in idx:
                node = flow.nodes[i]
                for t in node.writes:
                    if lay.last_segment.get(t, s) > s or t in lay.whole_read:
                        kept[t] = size(t, done + rows)
                    else:
                        live_tile[t] = size(t, 1 if t in lay.streams else rows)
                live = sum(kept.values()) + sum(live_tile.values()) + node.work_bytes_per_row * rows + node.work_bytes
                if live > best:
                    best, at_best = live, {**kept, **live_tile}
                for t, w in zip(node.reads, node.whole):
                    if lay.last_node.get(t) != i:
                        continue
                    live_tile.pop(t, None)
                    if t in kept and last_tile:
                        del kept[t]
                    elif t in kept and not w:                # a row-wise last read frees its tile
                        kept[t] = max(0.0, kept[t] - size(t, rows))
            done += rows
    return best, at_best


def _reads(flow: Flow, tensor: str) -> int:
    """Times a tensor is read if it lives in DRAM: once per reading node (attention stages a spilled
    head's keys and values in the buffer once, for all its query tiles)."""
    return sum(1 for node in flow.nodes for t in node.reads if t == tensor)


def plan_group(flow: Flow, group: int, budget: int) -> Schedule:
    """Rule 5 for one row group size: spill until the peak fits the budget (or nothing can go)."""
    spilled: frozenset = frozenset()
    while True:
        peak, live = peak_bytes(flow, group, spilled)
        candidates = [t for t, held in live.items() if held > 0]
        if peak <= budget or not candidates:
            return Schedule(group, spilled, peak, budget)
        # DRAM traffic the spill adds (whole tensor: one write, its reads) per byte it frees at the peak
        cost = lambda t: (1 + _reads(flow, t)) * flow.row_bytes[t] * flow.n * group / live[t]  # noqa: E731
        spilled = spilled | {min(sorted(candidates), key=cost)}


def dram_bytes(flow: Flow, sched: Schedule, weights_in_dram: bool = True) -> float:
    """Bytes per inference the schedule moves to and from DRAM: the weights each row tile fetches (when
    they live in DRAM) and the spilled tensors (one write and their reads)."""
    tiles = len(tiles_of(sched.group * flow.n))
    spills = sum((1 + _reads(flow, t)) * flow.row_bytes[t] * flow.n for t in sched.spilled)
    return (flow.weight_bytes * tiles / sched.group if weights_in_dram else 0.0) + spills


def plan_schedule(flow: Flow, batch: int, budget: int, weights_in_dram: bool = True) -> Schedule:
    """Rule 2: the row group (a divisor of the batch) with the least DRAM traffic per inference
    (`dram_bytes`); among equals the largest (fewer tiles). One sample is a candidate, so a batch
    never moves more per inference than its samples run one at a time."""
    groups = [plan_group(flow, g, budget) for g in range(1, batch + 1) if batch % g == 0]
    return min(groups, key=lambda sc: (dram_bytes(flow, sc, weights_in_dram), -sc.group))
