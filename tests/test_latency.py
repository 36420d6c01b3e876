"""hwsim.cost.latency: SCALE-Sim's weight-stationary fill/drain rule on top of ZigZag's cycles, in closed form."""
import pytest

from hwsim.cost.latency import fill_drain_cycles, folds, spatial_unrolling, stage_latency
from hwsim.cost.scenario import load_scenario
from hwsim.cost.stages import GemmStage
from hwsim.cost.zigzag_map import MappedStage
from models.errors import UserError

WS32 = {"K": 32, "C": 32}


def linear(rows: int, cols: int, reduce: int) -> GemmStage:
    return GemmStage("n", "linear", 1, rows, cols, reduce, 8, 8, 32, 8, True)


def test_ws32_unrolling_read_from_the_packaged_file():
    assert spatial_unrolling(load_scenario("edge").mapping) == WS32


def test_unrolling_multiplies_a_dim_split_over_two_array_dims(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("- name: other\n  spatial_mapping: {D1: [B, 4]}\n"
                    "- name: default\n  spatial_mapping:\n    D1: ['K, 4', 'C, 2']\n    D2: ['C, 8']\n")
    assert spatial_unrolling(str(path)) == {"K": 4, "C": 16}


@pytest.mark.parametrize("text", [None, "- name: other\n", "- name: default\n  spatial_mapping: {D1: ['K']}\n"])
def test_unreadable_mapping_names_the_file(tmp_path, text):
    path = tmp_path / "bad.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(UserError, match="bad.yaml"):
        spatial_unrolling(str(path))


@pytest.mark.parametrize("stage, unroll, expected", [
    (linear(128, 384, 384), WS32, 12 * 12),
    (linear(1, 1, 1), WS32, 1),
    (linear(129, 33, 65), WS32, 2 * 2 * 3),            # every dimension one past a multiple: padded
    (GemmStage("a", "scores", 12, 128, 128, 32, 8, 8, 32, 8, False), WS32, 12 * 4),
    (GemmStage("a", "mixing", 12, 128, 32, 128, 8, 8, 32, 8, False), WS32, 12 * 4),
    (linear(100, 20, 10), {"K": 4, "C": 2}, 5 * 5),
])
def test_folds_closed_form(stage, unroll, expected):
    assert folds(stage, unroll) == expected


@pytest.mark.parametrize("stage, unroll, expected", [
    (linear(128, 384, 384), WS32, 144 * 94),           # 2*32 + 32 - 2 = 94 per fold
    (linear(100, 20, 10), {"K": 4, "C": 2}, 25 * 6),   # 2*2 + 4 - 2 = 6
    (linear(7, 3, 5), {"K": 1, "C": 1}, 15 * 1),
])
def test_fill_drain_closed_form(stage, unroll, expected):
    assert fill_drain_cycles(stage, unroll) == expected


def test_a_512_row_linear_pays_four_fills_per_weight_block():
    assert fill_drain_cycles(linear(512, 384, 384), WS32) == 4 * fill_drain_cycles(linear(128, 384, 384), WS32)


def test_other_unrolled_dims_are_refused():
    with pytest.raises(UserError, match=r"\['B'\]"):
        folds(linear(128, 32, 32), {"K": 32, "C": 32, "B": 2})


def test_stage_latency_adds_fill_drain_to_zigzag_cycles():
    mapped = MappedStage(cycles=20_000.0, ideal_cycles=18_432.0, levels={}, by_operand={}, spatial_utilisation=1.0)
    # stall-free, ZigZag's ideal plus the fill/drain is SCALE-Sim's folds * (2R + C + M - 2) (its -1 aside)
    assert 18_432 + fill_drain_cycles(linear(128, 384, 384), WS32) == 144 * (2 * 32 + 32 + 128 - 2)
    assert stage_latency(mapped, linear(128, 384, 384), WS32) == (20_000.0 + 144 * 94, 18_432.0)
