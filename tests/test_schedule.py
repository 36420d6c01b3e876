"""The schedule of mapped scenarios (hwsim/cost/schedule.py): tiles, segments, residency, row groups."""
from __future__ import annotations

import pytest

from export import to_onnx
from hwsim.cost.model import tile_counts, workload_at
from hwsim.cost.schedule import dram_bytes, peak_bytes, plan_group, plan_schedule, tiles_of
from hwsim.cost.stages import GemmStage
from hwsim.sim.graph import load_plan
from quant.intops.synth import SynthConfig, synth_program


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from export import save_model

    path = tmp_path_factory.mktemp("sched") / "inh.onnx"
    save_model(to_onnx(synth_program(SynthConfig(attention="inhibitor", hidden=32, heads=2, ffn=64, layers=1))), path)
    return load_plan(str(path))


def test_tiles():
    assert tiles_of(512) == [128] * 4 and tiles_of(1) == [1] and sum(tiles_of(1000)) == 1000


def test_peak_by_hand(tiny):
    """n = 8, one tile. Bytes per row: emb and res1/res2 128 (int32), emb_ln/q/k/v/ctx/o/ln1 32, ffn1 64.
    Segments: [emb, emb_ln] [k, v] [q, attention ... logits]. emb_ln, k and v are kept whole for the third
    segment; the int32 sums stream into their LayerNorm one row at a time. At the attention node the buffer
    holds emb_ln, k, v, its query tile and output tile (5 x 256 B), one query tile's scores
    (8 rows x 8 keys x 1 B at the model's 8-bit score width = 64 B) and one head's staged keys and values
    (2 x 8 keys x 16 dims x 1 B = 256 B): 1,600 B, the peak."""
    flow = workload_at(tiny, 8).flow
    peak, live = peak_bytes(flow, 1)
    assert tiny.nodes[[n.name for n in tiny.nodes].index("l0.ctxh")].attrs["bits"] == 8
    assert peak == 5 * 256 + 64 + 256
    assert live == {"emb_ln": 256, "l0.k": 256, "l0.v": 256, "l0.q": 256, "l0.ctxh": 256}


def test_everything_fits_a_large_buffer(tiny):
    flow = workload_at(tiny, 8).flow
    sched = plan_schedule(flow, 8, 1 << 20)
    assert sched.group == 8 and not sched.spilled and sched.peak_bytes <= sched.budget_bytes


def test_small_buffer_spills_and_the_row_group_minimises_dram_traffic(tiny):
    flow = workload_at(tiny, 8).flow
    full, _ = peak_bytes(flow, 1)
    one = plan_schedule(flow, 1, int(full) - 1)
    assert one.group == 1 and one.spilled and one.peak_bytes < full
    batch = plan_schedule(flow, 8, int(full) - 1)
    per_group = {g: dram_bytes(flow, plan_group(flow, g, int(full) - 1)) for g in (1, 2, 4, 8)}
    assert dram_bytes(flow, batch) == min(per_group.values()) <= per_group[1] == dram_bytes(flow, one)
    # a buffer that holds two samples but not four: groups of two share each tile's weight fetch, nothing spills
    two, _ = peak_bytes(flow, 2)
    four, _ = peak_bytes(flow, 4)
    sched = plan_schedule(flow, 2, int(two) + (int(four) - int(two)) // 2)
    assert sched.group == 2 and not sched.spilled
    assert dram_bytes(flow, sched) == flow.weight_bytes / 2


def test_spilled_tensors_free_the_buffer(tiny):
    flow = workload_at(tiny, 8).flow
    full, live = peak_bytes(flow, 1)
    sched = plan_group(flow, 1, 0)          # no buffer at all: everything that can go, goes
    assert sched.spilled and peak_bytes(flow, 1, sched.spilled)[0] < full


def test_tile_counts_per_inference():
    lin = GemmStage("l", "linear", 1, 200, 384, 384, 8, 8, 24, 8, True)
    assert [(t.rows, c) for t, c in tile_counts(lin, 1)] == [(72, 1.0), (128, 1.0)]
    # eight samples of 32 rows share two tiles: a quarter of a tile fetch per inference
    short = GemmStage("l", "linear", 1, 32, 384, 384, 8, 8, 24, 8, True)
    assert [(t.rows, c) for t, c in tile_counts(short, 8)] == [(128, 0.25)]
    att = GemmStage("a", "scores", 12, 512, 512, 32, 8, 8, 14, 9, False)
    assert [(t.groups, t.rows, t.cols, c) for t, c in tile_counts(att, 8)] == [(1, 128, 512, 48)]
