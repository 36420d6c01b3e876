"""bench/scalesim_runner.py against the weight-stationary closed form in its docstring.

Needs the SCALE-Sim venv (`make scalesim-venv`); skipped without it.
"""
import math

import pytest

from bench.scalesim_runner import (DEFAULT_VENV, GemmResult, SystolicConfig, minilm_attention_layers, run_gemms,
                                   scalesim_available, topology_text)

if not scalesim_available(DEFAULT_VENV):
    pytest.skip(f"SCALE-Sim venv missing at {DEFAULT_VENV}: run `make scalesim-venv`",
                allow_module_level=True)

REFERENCE = ("ref", 32, 384, 384)  # M, N, K
ODD = ("odd", 20, 70, 50)  # no dimension a multiple of the array, M != N != K


def ws_reads(m: int, n: int, k: int, rows: int, cols: int) -> tuple[int, int, int]:
    """(ifmap SRAM reads, filter SRAM reads, ofmap SRAM writes) of SCALE-Sim's WS mapping."""
    return m * k * math.ceil(n / cols), k * n, m * n * math.ceil(k / rows)


def ws_stall_free_cycles(m: int, n: int, k: int, rows: int, cols: int) -> int:
    folds = math.ceil(k / rows) * math.ceil(n / cols)
    return folds * (2 * rows + cols + m - 2) - 1


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[tuple[int, int], list[GemmResult]]:
    """Both layers on a square 32x32 array and on a 16x8 one (tells array rows from columns)."""
    return {(rows, cols): run_gemms([REFERENCE, ODD], SystolicConfig(rows=rows, cols=cols),
                                    workdir=tmp_path_factory.mktemp(f"scalesim{rows}x{cols}"))
            for rows, cols in [(32, 32), (16, 8)]}


def test_reference_layer_matches_the_measurement(results):
    ref = results[32, 32][0]
    assert (ref.name, ref.m, ref.n, ref.k) == REFERENCE
    assert ref.cycles == 18_143
    assert ref.ifmap_sram_reads == ref.filter_sram_reads == 147_456
    assert ref.utilisation == pytest.approx(100 * 32 * 384 * 384 / (18_143 * 32 * 32))


@pytest.mark.parametrize("array", [(32, 32), (16, 8)])
def test_sram_accesses_follow_the_ws_closed_form(results, array):
    for r in results[array]:
        reads = (r.ifmap_sram_reads, r.filter_sram_reads, r.ofmap_sram_writes)
        assert reads == ws_reads(r.m, r.n, r.k, *array), r.name


@pytest.mark.parametrize("array", [(32, 32), (16, 8)])
def test_cycles_follow_the_ws_closed_form(results, array):
    for r in results[array]:
        assert r.stall_cycles == 0, r.name  # every operand fits its 256 kB double buffer
        assert r.cycles - r.stall_cycles == ws_stall_free_cycles(r.m, r.n, r.k, *array), r.name
        assert r.cycles_incl_prefetch > r.cycles, r.name


def test_attention_head_follows_the_ws_closed_form(tmp_path):
    """One head of MiniLM's scores (M=128 queries, N=128 keys, K=32) and mixing (M=128, N=32, K=128),
    twice: the same GEMM gives the same result, so a stage is the per-head result times the heads."""
    layers = minilm_attention_layers(tokens=128, head_dim=32)
    assert layers == [("scores", 128, 128, 32), ("mixing", 128, 32, 128)]
    results = run_gemms([*layers, ("again", 128, 128, 32)], SystolicConfig(), workdir=tmp_path)
    for r in results:
        assert r.stall_cycles == 0, r.name
        assert r.cycles == ws_stall_free_cycles(r.m, r.n, r.k, 32, 32) == 4 * (64 + 32 + 128 - 2) - 1, r.name
        assert (r.ifmap_sram_reads, r.filter_sram_reads, r.ofmap_sram_writes) == ws_reads(r.m, r.n, r.k, 32, 32)
    assert results[0].cycles_incl_prefetch == results[2].cycles_incl_prefetch


def test_topology_rows_carry_m_n_k_in_order():
    assert topology_text([ODD]).splitlines() == ["Layer, M, N, K,", "odd, 20, 70, 50,"]


def test_missing_venv_names_the_make_target(tmp_path):
    with pytest.raises(RuntimeError, match="make scalesim-venv"):
        run_gemms([REFERENCE], SystolicConfig(), venv=tmp_path / "absent")


def test_scalesim_errors_surface_with_their_stderr(tmp_path):
    fake_python = tmp_path / "venv" / "bin" / "python"  # stands in for a SCALE-Sim that crashes
    fake_python.parent.mkdir(parents=True)
    fake_python.write_text("#!/bin/sh\necho 'ValueError: cannot convert float NaN' >&2\nexit 3\n")
    fake_python.chmod(0o755)
    with pytest.raises(RuntimeError, match=r"(?s)exit 3.*cannot convert float NaN"):
        run_gemms([REFERENCE], SystolicConfig(), venv=tmp_path / "venv", workdir=tmp_path / "w")


def test_reused_workdir_is_refused(tmp_path):
    (tmp_path / "results").mkdir()
    with pytest.raises(RuntimeError, match="exists from an earlier run"):
        run_gemms([REFERENCE], SystolicConfig(), workdir=tmp_path)


def test_unknown_dataflow_is_refused():
    with pytest.raises(ValueError, match="dataflow 'rs'"):
        SystolicConfig(dataflow="rs")
