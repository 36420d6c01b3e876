"""Cross-checks of hwsim's mapped cost model (hwsim/cost/) against independent references.

Every figure printed is a model estimate or a ratio between two estimates, not a claim about silicon.

What it checks (all on the packaged scenario `edge`: a 32x32 weight-stationary int8 array, edge32.yaml):
1. ZigZag standalone vs hwsim's integration: the resolved accelerator of a Linear (128x384x384) and an
   inhibitor score stage (12x128x128x32) is written to a YAML file and run through
   `zigzag.api.get_hardware_performance_zigzag` with hwsim's options; its latency and per-level accesses
   are compared with `hwsim.cost.zigzag_map.map_stage`'s (identical: yes/no).
2. SCALE-Sim witness (bench/scalesim_runner.py, needs `.venv-scalesim` or $SCALESIM_VENV: `make
   scalesim-venv`): the six Linear layers of one MiniLM layer at 128 tokens and its attention scores and
   mixing stages (one head tile mapped, one per-head GEMM simulated, both x 12 heads) on a 32x32 WS
   SCALE-Sim array vs hwsim on `edge`: SCALE-Sim's stall-free cycles vs `hwsim.cost.latency.stage_latency`
   (ZigZag's cycles + each fold's fill and drain), ZigZag's ideal beside; ifmap and filter SRAM reads of
   the Linears; ratios (target: within 10 %). Skipped with a message when the SCALE-Sim venv is missing.
3. Closed forms of a weight-stationary GEMM (128x256x256 Linear on edge32): ideal cycles = M*N*K/1024,
   W DRAM reads = K*N*8/192 port accesses, I reads from gb >= M*K*8/512; pass/fail per check.
4. Published integer accelerators, order of magnitude: pJ per MAC of the Linear layers (arithmetic +
   register + link) vs ITA (~0.12 pJ per 8-bit MAC, 22 nm) and energy per inference vs a 5 nm 4-bit
   BERT-base accelerator (~577 uJ per inference); ratios only.
5. Mapping search: LOMA lpf_limit 4 (hwsim's) vs 6 (ZigZag's default) on three stages: energy and cycle
   ratios and the time each took.
6. Speed: `scenario_costs` for three MiniLM models (dot, inhibitor, symmetric) x every packaged scenario
   x lengths 16..512 with jobs=2, on an empty mapping cache and again warm.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python bench/mapping_validate.py [--part zigzag|scalesim|closed|published|lpf|speed]

Environment: `SCALESIM_VENV` (SCALE-Sim's venv, default .venv-scalesim), `HWSIM_CACHE` (the mapping
cache of parts 1-5; part 6 uses fresh temporary caches), `MV_MODELS` (folder of the exported MiniLM
models, default /tmp/mv; missing ones are exported with `hwsim export --init random --arch minilm
--attention A --bits 8`), `MV_SKIP_SPEED=1` skips part 6.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwsim.cost.latency import fill_drain_cycles, spatial_unrolling, stage_latency  # noqa: E402
from hwsim.cost.model import MappedCost, stage_homes  # noqa: E402
from hwsim.cost.scenario import OPERAND_OF, homes_accelerator, load_scenario, packaged_names  # noqa: E402
from hwsim.cost.stages import GemmStage  # noqa: E402
from hwsim.cost.table import load_tables, scenario_costs  # noqa: E402
from hwsim.cost.zigzag_map import (ZIGZAG_OPTIONS, map_stage, run_zigzag, summarise_cme,  # noqa: E402
                                   workload)

HIDDEN, FFN, HEADS, HEAD_DIM, LAYERS = 384, 1536, 12, 32, 6
GB_PORT_BITS, DRAM_PORT_BITS = 512, 192
ITA_PJ_PER_MAC = 0.12          # ITA (integer transformer accelerator), 8-bit MAC, 22 nm
BERT_5NM_UJ = 577.0            # 5 nm 4-bit BERT-base accelerator, uJ per inference
BERT_BASE_MACS_128 = 12 * (4 * 128 * 768 * 768 + 2 * 128 * 768 * 3072)   # its Linear MACs at 128 tokens
MODELS_DIR = Path(os.environ.get("MV_MODELS", "/tmp/mv"))


def linear(node: str, rows: int, cols: int, reduce: int) -> GemmStage:
    return GemmStage(node, "linear", 1, rows, cols, reduce, 8, 8, 32, 8, True)


SCORES = GemmStage("a", "scores", HEADS, 128, 128, HEAD_DIM, 8, 8, 32, 8, False)
MINILM_LAYER = [("q", HIDDEN, HIDDEN), ("k", HIDDEN, HIDDEN), ("v", HIDDEN, HIDDEN), ("o", HIDDEN, HIDDEN),
                ("ffn1", FFN, HIDDEN), ("ffn2", HIDDEN, FFN)]     # (name, N out, K in)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "n/a"


def head(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


@contextmanager
def timed(label: str):
    t0 = time.perf_counter()
    yield
    print(f"[{label}: {time.perf_counter() - t0:.1f} s]", flush=True)


def quiet() -> None:
    logging.disable(logging.INFO)   # ZigZag's api sets up INFO logging on every call


class Edge:
    """The `edge` scenario and the resolved accelerator of a stage."""

    def __init__(self, name: str = "edge") -> None:
        self.s = load_scenario(name)
        self.mc = MappedCost(self.s, load_tables())

    def acc(self, stage: GemmStage) -> dict:
        return homes_accelerator(self.mc.main, stage_homes(stage, self.s, self.mc.main))

    def map(self, stage: GemmStage):
        return map_stage(stage, self.acc(stage), self.s.mapping, 1024)


def op_reads(m, operand: str, level: str) -> float:
    return m.by_operand.get(operand, {}).get(level, {}).get("read", 0.0)


# --- 1 -------------------------------------------------------------------------------------------
def part_zigzag_standalone(e: Edge) -> None:
    from zigzag.api import get_hardware_performance_zigzag

    head("1. ZigZag standalone (zigzag.api) vs hwsim's map_stage, scenario edge")
    for stage in (linear("q", 128, HIDDEN, HIDDEN), SCORES):
        acc = e.acc(stage)
        ours = e.map(stage)
        with tempfile.TemporaryDirectory(prefix="mv-zz-") as tmp:
            acc_path = Path(tmp) / "accelerator.yaml"
            acc_path.write_text(yaml.safe_dump(acc, sort_keys=False), encoding="utf-8")
            _, _, cmes = get_hardware_performance_zigzag(
                workload(stage), str(acc_path), e.s.mapping, opt="energy", lpf_limit=ZIGZAG_OPTIONS["lpf_limit"],
                nb_spatial_mappings_generated=ZIGZAG_OPTIONS["nb_spatial_mappings_generated"],
                temporal_mapping_type=ZIGZAG_OPTIONS["temporal_mapping_type"],
                dump_folder=str(Path(tmp) / "out"), loma_show_progress_bar=False)
            quiet()
        # cmes = [(CumulativeCME over layers, [(layer CME, extra info), ...])]; one layer here
        alone = summarise_cme(cmes[0][1][0][0], 1024)
        label = f"{stage.kind} {stage.groups}x{stage.rows}x{stage.cols}x{stage.reduce}"
        print(f"{label}: latency_total2 standalone {alone.cycles:,.0f} vs hwsim {ours.cycles:,.0f}; "
              f"ideal {alone.ideal_cycles:,.0f} vs {ours.ideal_cycles:,.0f}")
        print(f"  {'level':6} {'reads alone':>14} {'reads hwsim':>14} {'writes alone':>14} {'writes hwsim':>14}")
        for level in ours.levels:
            a, o = alone.levels.get(level, {}), ours.levels[level]
            print(f"  {level:6} {a.get('read', 0):14,.0f} {o['read']:14,.0f} {a.get('write', 0):14,.0f} "
                  f"{o['write']:14,.0f}")
        same = (alone.cycles == ours.cycles and alone.ideal_cycles == ours.ideal_cycles
                and alone.by_operand == ours.by_operand)
        print(f"  identical (cycles, ideal cycles, per-operand per-level reads/writes/pJ): {'yes' if same else 'no'}")


# --- 2 -------------------------------------------------------------------------------------------
def scalesim_pairs() -> list[tuple[GemmStage, tuple[str, int, int, int], int]]:
    """(hwsim stage mapped, SCALE-Sim layer (name, M, N, K), times): the six Linears of one MiniLM layer
    at 128 tokens, and one head tile of the scores and mixing stages, times the 12 heads."""
    from scalesim_runner import ATTENTION_HEADS, minilm_attention_layers

    m = 128
    pairs = [(linear(name, m, n, k), (name, m, n, k), 1) for name, n, k in MINILM_LAYER]
    for layer in minilm_attention_layers(tokens=m, head_dim=HEAD_DIM):
        name, rows, cols, reduce = layer
        pairs.append((GemmStage("a", name, 1, rows, cols, reduce, 8, 8, 32, 8, False), layer, ATTENTION_HEADS))
    return pairs


def part_scalesim(e: Edge) -> None:
    head("2. SCALE-Sim 3.0.0 witness: one MiniLM layer at 128 tokens (6 Linears, attention scores and mixing), "
         "32x32 WS vs hwsim on edge")
    sys.path.insert(0, str(ROOT / "bench"))
    from scalesim_runner import DEFAULT_VENV, SystolicConfig, run_gemms, scalesim_available

    if not scalesim_available(DEFAULT_VENV):
        print(f"SKIPPED: no SCALE-Sim venv at {DEFAULT_VENV} (run `make scalesim-venv`, ~40 s, "
              f"or point SCALESIM_VENV at one)")
        return
    cfg = SystolicConfig(rows=32, cols=32, dataflow="ws", ifmap_sram_kb=256, filter_sram_kb=256, ofmap_sram_kb=128)
    pairs = scalesim_pairs()
    res = run_gemms([layer for _, layer, _ in pairs], cfg)
    unroll = spatial_unrolling(e.s.mapping)
    print(f"cycles: SCALE-Sim stall-free (total - stalls) and total; hwsim = ZigZag latency_total2 + fill/drain "
          f"(hwsim.cost.latency.stage_latency, unrolling {unroll}); ZigZag ideal beside. Attention: one head "
          f"tile mapped and one per-head GEMM simulated, both x heads")
    print(f"{'stage':7} {'x':>3} {'SS nostall':>10} {'hwsim':>9} {'hw/SS':>6} {'ZZ ideal':>9} {'ZZid/SS':>7} "
          f"{'ZZ cycles':>9} {'fill/drain':>10} {'hw nostall':>10} {'SS total':>9}")
    ratios, exact = [], []
    for (stage, (name, *_), times), r in zip(pairs, res):
        z = e.map(stage)
        cycles, ideal = (times * c for c in stage_latency(z, stage, unroll))
        nostall = times * (r.cycles - r.stall_cycles)
        hw_nostall = ideal + times * fill_drain_cycles(stage, unroll)    # ZigZag's stalls left out
        ratios.append(cycles / nostall)
        exact.append(hw_nostall == nostall + times)      # SCALE-Sim's -1 per simulated GEMM
        print(f"{name:7} {times:3} {nostall:10,} {cycles:9,.0f} {ratio(cycles, nostall):>6} {ideal:9,.0f} "
              f"{ratio(ideal, nostall):>7} {times * z.cycles:9,.0f} {times * fill_drain_cycles(stage, unroll):10,} "
              f"{hw_nostall:10,.0f} {times * r.cycles:9,}")
    ok_c = all(abs(x - 1) <= 0.10 for x in ratios)
    print(f"hwsim / SCALE-Sim stall-free cycles within 10 % on all {len(ratios)}: {'yes' if ok_c else 'no'} "
          f"(range {min(ratios):.3f} .. {max(ratios):.3f})")
    print(f"hw nostall (ZZ ideal + fill/drain) = SS nostall + 1 per simulated GEMM on all {len(exact)}: "
          f"{'yes' if all(exact) else 'no'}")
    print("  the fill/drain adds folds x (2R + C - 2) to ZigZag's M per fold, which makes hwsim's stall-free part "
          "SCALE-Sim's folds x (2R + C + M - 2) (SCALE-Sim's -1 aside); what is left of hw/SS is ZigZag's memory "
          "stalls (ZZ cycles - ZZ ideal), which SCALE-Sim's stall-free count leaves out")
    linears = [(stage, r) for (stage, _, times), r in zip(pairs, res) if stage.kind == "linear"]
    sram_reads(e, linears)


def sram_reads(e: Edge, linears: list) -> None:
    """Ifmap and filter SRAM reads of the Linears: SCALE-Sim's vs ZigZag's, with the WS closed forms."""
    per_gb, per_dram = GB_PORT_BITS // 8, DRAM_PORT_BITS // 8    # 8-bit elements per port access
    print("SRAM reads in elements: ifmap (ZZ: I reads at gb x 512/8) and filter (ZZ: W reads at gb x 512/8, "
          "at dram x 192/8)")
    print(f"{'layer':5} {'SS ifmap':>10} {'ZZ I@gb':>10} {'ZZ/SS':>6} {'SS filter':>10} {'SS filt DRAM':>12} "
          f"{'ZZ W@gb':>9} {'ZZ W@dram':>10} {'ZZ W dram/SS filt':>17} {'SS ofmap wr':>11} {'ZZ O wr@gb':>10}")
    rows = [(stage, r, e.map(stage)) for stage, r in linears]
    for stage, r, z in rows:
        zi = op_reads(z, "I", "gb") * per_gb
        zw_gb, zw_dram = op_reads(z, "W", "gb") * per_gb, op_reads(z, "W", "dram") * per_dram
        zo_gb = z.by_operand.get("O", {}).get("gb", {}).get("write", 0.0) * per_gb   # 8-bit final outputs
        print(f"{r.name:5} {r.ifmap_sram_reads:10,} {zi:10,.0f} {ratio(zi, r.ifmap_sram_reads):>6} "
              f"{r.filter_sram_reads:10,} {r.filter_dram_reads:12,} {zw_gb:9,.0f} {zw_dram:10,.0f} "
              f"{ratio(zw_dram, r.filter_sram_reads):>17} {r.ofmap_sram_writes:11,} {zo_gb:10,.0f}")
    print("closed forms (SCALE-Sim WS): ifmap reads M*K*ceil(N/32), filter K*N, ofmap writes M*N*ceil(K/32)")
    for _, r, _ in rows:
        m, n, k = r.m, r.n, r.k
        print(f"  {r.name:5} closed-form ifmap {m * k * -(-n // 32):,} filter {k * n:,} ofmap {m * n * -(-k // 32):,}")
    within = lambda a, b: b and abs(a / b - 1) <= 0.10
    ok_i = all(within(op_reads(z, "I", "gb") * per_gb, r.ifmap_sram_reads) for _, r, z in rows)
    ok_w = all(within(op_reads(z, "W", "dram") * per_dram, r.filter_sram_reads) for _, r, z in rows)
    print(f"within 10 %: ifmap reads {'yes' if ok_i else 'no'}, filter reads {'yes' if ok_w else 'no'}")
    print("  - SCALE-Sim's total cycles also count its write-back stalls: it has no accumulator buffer and writes "
          "every partial sum (one per row fold, M*N*ceil(K/32), 'SS ofmap wr') out to DRAM at 10 words/cycle; "
          "ZigZag's edge32 keeps partial sums in its 32 KiB accumulator and writes only the 8-bit finals to the gb "
          "('ZZ O wr@gb' = M*N); its stalls come from the 192-bit DRAM port bringing the weights in.")
    if ok_i and ok_w:
        print("  - SRAM reads agree: both re-stream the activations once per column fold (M*K*ceil(N/32)) and read "
              "each weight once (K*N); ZigZag's W goes DRAM -> gb -> w_reg (W@gb = W@dram = K*N), SCALE-Sim's filter "
              "DRAM reads are higher because its double-buffered filter SRAM holds only half of 256 kB per phase.")


# --- 3 -------------------------------------------------------------------------------------------
def part_closed_forms(e: Edge) -> None:
    head("3. Closed forms of a weight-stationary GEMM on edge32 (32x32), Linear M=128 x N=256 x K=256")
    mm, n, k = 128, 256, 256
    z = e.map(linear("w", mm, n, k))
    ideal = mm * n * k / 1024
    w_dram = op_reads(z, "W", "dram")
    w_dram_form = k * n * 8 / DRAM_PORT_BITS
    i_gb = op_reads(z, "I", "gb")
    i_form = mm * k * 8 / GB_PORT_BITS
    print(f"ideal cycles {z.ideal_cycles:,.2f} vs M*N*K/1024 = {ideal:,.2f}: "
          f"{'PASS' if z.ideal_cycles == ideal else 'FAIL'}")
    print(f"W DRAM reads {w_dram:,.2f} accesses vs K*N*8/192 = {w_dram_form:,.2f} (ceil {-(-k * n * 8 // 192):,}): "
          f"{'PASS' if abs(w_dram - w_dram_form) <= 1 else 'FAIL'} (ratio {ratio(w_dram, w_dram_form)}; "
          f"ZigZag counts accesses of the widest port, 192 bits = 24 weights)")
    print(f"I reads from gb {i_gb:,.2f} accesses >= M*K*8/512 = {i_form:,.2f}: "
          f"{'PASS' if i_gb >= i_form else 'FAIL'} (ratio {ratio(i_gb, i_form)}; "
          f"x{-(-n // 32)} column folds would give {i_form * -(-n // 32):,.0f})")
    print(f"cycles {z.cycles:,.0f} (stalls {z.cycles - z.ideal_cycles:,.0f}); "
          f"W DRAM transfer alone takes {w_dram:,.0f} port cycles")


# --- 4 -------------------------------------------------------------------------------------------
def export_models() -> dict[str, str]:
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    out = {}
    for variant in ("dot", "inhibitor", "symmetric"):
        path = MODELS_DIR / f"{variant}.onnx"
        if not path.exists():
            t0 = time.perf_counter()
            subprocess.run([str(Path(sys.executable).with_name("hwsim")), "export", "--init", "random", "--arch",
                            "minilm", "--attention", variant, "--bits", "8", "--out", str(path)],
                           check=True, capture_output=True)
            print(f"(exported {path} in {time.perf_counter() - t0:.0f} s)")
        out[variant] = str(path)
    return out


def part_published(e: Edge, models: dict[str, str]) -> None:
    from hwsim.cost.stages import gemm_stages
    from hwsim.graph import load_plan
    from hwsim.cost.model import sites_at

    head("4. Published integer accelerators, order of magnitude (MiniLM dot, 128 tokens, edge)")
    n = 128
    (r,) = scenario_costs({"dot": models["dot"]}, [e.s], [n], e.mc.t, jobs=1)
    ep = r.energy_pj
    macs = LAYERS * (4 * n * HIDDEN * HIDDEN + 2 * n * HIDDEN * FFN)
    sites = sites_at(load_plan(models["dot"]), n)
    lin = [st for site in sites for st in gemm_stages(site) if st.kind == "linear"]
    graph_macs = sum(st.mac_sites for st in lin)
    # register + link of the Linear stages alone (the classes in `ep` also hold attention's stages)
    reg_link_lin = 0.0
    for st in lin:
        for level, row in e.map(st).levels.items():
            if e.mc.main["memories"][level]["mem_type"] in ("reg", "link"):
                reg_link_lin += row["pJ"]
    arith_lin, reg, link = ep.get("arith.linear", 0.0), ep.get("register", 0.0), ep.get("link", 0.0)
    print(f"MACs of the six layers' Linears: {macs:,} (closed form); Linear stages in the graph: {len(lin)}, "
          f"{graph_macs:,} MACs (ratio {ratio(graph_macs, macs)})")
    print("energy classes (uJ): " + ", ".join(f"{k} {v / 1e6:,.2f}" for k, v in sorted(ep.items())))
    pj_mac = (arith_lin + reg + link) / macs
    pj_mac_lin = (arith_lin + reg_link_lin) / graph_macs
    print(f"pJ/MAC (arith.linear + register + link) / MACs = {pj_mac:.3f}; ITA ~{ITA_PJ_PER_MAC} pJ/MAC (22 nm): "
          f"ratio {pj_mac / ITA_PJ_PER_MAC:.1f}")
    print(f"  with register + link of the Linear stages only: {pj_mac_lin:.3f} pJ/MAC, ratio "
          f"{pj_mac_lin / ITA_PJ_PER_MAC:.1f}; arith.linear alone {arith_lin / graph_macs:.3f} pJ/MAC")
    uj = r.total_pj / 1e6
    print(f"energy per inference {uj:,.1f} uJ vs 5 nm 4-bit BERT-base ~{BERT_5NM_UJ:.0f} uJ: ratio "
          f"{uj / BERT_5NM_UJ:.2f}; per Linear MAC: {r.total_pj / macs:.2f} vs {BERT_5NM_UJ * 1e6 / BERT_BASE_MACS_128:.3f} "
          f"pJ (BERT-base Linear MACs at 128 tokens {BERT_BASE_MACS_128:,} = {BERT_BASE_MACS_128 / macs:.1f}x MiniLM's), "
          f"ratio {(r.total_pj / macs) / (BERT_5NM_UJ * 1e6 / BERT_BASE_MACS_128):.1f}")
    no_dram = r.total_pj - ep.get("dram", 0)
    print(f"  DRAM share of the total: {ep.get('dram', 0) / r.total_pj:.1%}; without DRAM {no_dram / 1e6:,.1f} uJ, "
          f"{no_dram / macs:.2f} pJ per Linear MAC (ratio {(no_dram / macs) / (BERT_5NM_UJ * 1e6 / BERT_BASE_MACS_128):.1f}); "
          f"leakage (kept out of the total) {ep.get('leakage', 0) / 1e6:,.1f} uJ. Technology: hwsim 45 nm "
          f"(Horowitz/CACTI), ITA 22 nm, the BERT chip 5 nm and 4-bit.")


# --- 5 -------------------------------------------------------------------------------------------
def part_lpf(e: Edge) -> None:
    head("5. LOMA lpf_limit 4 (hwsim) vs 6 (ZigZag default), edge (memory energy = ZigZag's levels x costs)")
    stages = [linear("ffn1", 128, FFN, HIDDEN), linear("q512", 512, HIDDEN, HIDDEN), SCORES,
              linear("q256", 256, HIDDEN, HIDDEN), linear("ffn1_512", 512, FFN, HIDDEN)]   # last two: extra
    saved = ZIGZAG_OPTIONS["lpf_limit"]
    try:
        for stage in stages:
            ZIGZAG_OPTIONS["lpf_limit"] = saved
            acc = e.acc(stage)
            hw = e.map(stage)            # hwsim's own mapping, with its options (lpf_limit restored)
            out = {}
            with tempfile.TemporaryDirectory(prefix="mv-lpf-") as tmp:
                acc_path = Path(tmp) / "accelerator.yaml"
                acc_path.write_text(yaml.safe_dump(acc, sort_keys=False), encoding="utf-8")
                for lpf in (4, 6):
                    ZIGZAG_OPTIONS["lpf_limit"] = lpf
                    t0 = time.perf_counter()
                    cme = run_zigzag(stage, str(acc_path), e.s.mapping)
                    dt = time.perf_counter() - t0
                    m = summarise_cme(cme, 1024)
                    out[lpf] = (sum(v["pJ"] for v in m.levels.values()), m.cycles, dt)
            (e4, c4, t4), (e6, c6, t6) = out[4], out[6]
            label = f"{stage.kind} {stage.groups}x{stage.rows}x{stage.cols}x{stage.reduce}"
            hw_pj = sum(v["pJ"] for v in hw.levels.values())
            same = "yes" if hw.cycles == c4 and abs(hw_pj - e4) <= 1e-9 * e4 else f"no ({hw.cycles:,.0f} cycles)"
            print(f"{label:24} memory energy lpf4/lpf6 {ratio(e4, e6)} ({e4 / 1e6:,.2f} vs {e6 / 1e6:,.2f} uJ)  "
                  f"cycles lpf4/lpf6 {ratio(c4, c6)} ({c4:,.0f} vs {c6:,.0f})  "
                  f"time lpf4 {t4:.2f} s, lpf6 {t6:.2f} s ({t6 / t4:.0f}x); map_stage = lpf4: {same}")
    finally:
        ZIGZAG_OPTIONS["lpf_limit"] = saved


# --- 6 -------------------------------------------------------------------------------------------
def part_speed(models: dict[str, str]) -> None:
    head("6. Speed: scenario_costs, 3 models x every packaged scenario x 6 lengths, jobs=2")
    names = packaged_names()
    scenarios = [load_scenario(nm) for nm in names]
    tables = load_tables()
    lengths = (16, 32, 64, 128, 256, 512)
    saved = os.environ.get("HWSIM_CACHE")
    msgs = []
    with tempfile.TemporaryDirectory(prefix="mv-cache-") as cache:
        os.environ["HWSIM_CACHE"] = cache      # read at call time by map_stage and by the forked workers
        try:
            t0 = time.perf_counter()
            res = scenario_costs(models, scenarios, lengths, tables, jobs=2, say=msgs.append)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            scenario_costs(models, scenarios, lengths, tables, jobs=2)
            warm = time.perf_counter() - t0
        finally:
            if saved is None:
                os.environ.pop("HWSIM_CACHE", None)
            else:
                os.environ["HWSIM_CACHE"] = saved
    print(f"scenarios {names}; {len(res)} cells; {msgs[0] if msgs else ''}")
    print(f"cold (empty cache): {cold:.1f} s; warm: {warm:.1f} s (cold/warm {cold / warm:.1f}x; "
          f"hand measurement ~63 s cold)")


PARTS = ("zigzag", "scalesim", "closed", "published", "lpf", "speed")
"""Parts 1-6 by name, for `--part`."""


def run_part(name: str, e: Edge, models: dict[str, str]) -> None:
    runs = {"zigzag": lambda: part_zigzag_standalone(e), "scalesim": lambda: part_scalesim(e),
            "closed": lambda: part_closed_forms(e), "published": lambda: part_published(e, models),
            "lpf": lambda: part_lpf(e), "speed": lambda: part_speed(models)}
    with timed(f"part {PARTS.index(name) + 1} ({name})"):
        runs[name]()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", *PARTS), default="all",
                        help="run one part only (default: all; MV_SKIP_SPEED=1 leaves part 6 out of all)")
    args = parser.parse_args(argv)
    quiet()
    t_all = time.perf_counter()
    parts = PARTS if args.part == "all" else (args.part,)
    if args.part == "all" and os.environ.get("MV_SKIP_SPEED") == "1":
        parts = PARTS[:-1]
    e = Edge()
    models = export_models() if {"published", "speed"} & set(parts) else {}
    for name in parts:
        run_part(name, e, models)
    print(f"\ntotal {time.perf_counter() - t_all:.1f} s")


if __name__ == "__main__":
    main()
