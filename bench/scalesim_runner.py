"""SCALE-Sim 3.0.0 as an independent witness for the systolic-array cost of GEMM layers.

A layer is (name, M, N, K): out[M x N] = A[M x K] @ B[K x N], A the activations (SCALE-Sim's ifmap),
B the weights (its filter). `run_gemms` writes a SCALE-Sim config, a GEMM topology and an empty
layout file into a temporary folder (or `workdir`), runs SCALE-Sim there in a subprocess of its own
venv (`make scalesim-venv`; SCALE-Sim crashes under numpy 2, so it cannot share the main venv) and
reads back COMPUTE_REPORT.csv and DETAILED_ACCESS_REPORT.csv, one row per layer in topology order.

Topology columns. A GEMM topology row is `Layer, M, N, K,` and SCALE-Sim turns it into an ifmap of
M x K and N filters of length K, so its M, N, K are ours. Checked on a 32x32 WS array (each read
count is the closed form below; the permutations (50, 20, 70) and (70, 50, 20) also follow it with
their own M, N, K, and so do all of them on a 16x8 array, which tells rows (K) from columns (N)):
    M=20, N=70, K=50  -> ifmap reads 3,000 = 20*50*ceil(70/32), filter reads 3,500 = 50*70,
                         ofmap writes 2,800 = 20*70*ceil(50/32)
    M=32, N=384, K=384 -> 147,456 ifmap and 147,456 filter SRAM reads, 18,143 cycles.

Report columns used (COMPUTE_REPORT.csv):
    cycles               "Total Cycles": compute cycles of the array including memory stalls;
                         the one to compare with a cost model (18,143 for the layer above).
    stall_cycles         "Stall Cycles"; cycles - stall_cycles is the stall-free compute time.
    cycles_incl_prefetch "Total Cycles (incl. prefetch)": from the first DRAM read (the prefetch
                         of the first ifmap/filter tiles starts at negative cycles) to the last
                         ofmap DRAM write, so it also includes the final drain to DRAM.
    utilisation          "Overall Util %": 100 * M*N*K / (cycles * rows * cols).
DETAILED_ACCESS_REPORT.csv gives the SRAM reads/writes (words the array requests) and DRAM
reads/writes (words moved between DRAM and the double-buffered SRAMs). Only half of each SRAM holds
the working set, so an operand larger than half its SRAM is fetched from DRAM more than once (the
reference layer's 147,456-word filter costs 262,160 DRAM reads with 256 kB, 147,460 with 512 kB).
The ofmap goes to DRAM as partial sums, one tile per fold (ofmap DRAM writes ~ ofmap SRAM writes =
M*N*ceil(K/R)), so at 10 words/cycle MiniLM's layers stall on the write-back: q (128, 384, 384)
has 14,450 stall cycles, none with a 1024 kB ofmap SRAM or 20 words/cycle, still 14,450 with
1024 kB ifmap and filter SRAMs.

Weight-stationary closed form (SCALE-Sim's WS mapping: K on the array rows, N on the columns, the
M activation rows streamed through; R x C array, folds F = ceil(K/R) * ceil(N/C)):
    filter SRAM reads = K * N                  (each weight loaded once)
    ifmap  SRAM reads = M * K * ceil(N/C)      (A re-streamed for every column fold)
    ofmap  SRAM writes = M * N * ceil(K/R)     (a partial sum per row fold)
    stall-free cycles = F * (2R + C + M - 2) - 1
Per fold: R cycles to load the weights, M + R - 1 to stream the skewed activations, C - 1 to drain
the last partial sums. Edge folds are not shortened, so the cycle count pads K and N to the array.
"""
from __future__ import annotations

import csv
import math
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VENV = Path(os.environ.get("SCALESIM_VENV", ROOT / ".venv-scalesim"))
"""SCALE-Sim's venv: $SCALESIM_VENV (the Makefile's variable of the same name), else .venv-scalesim."""
DATAFLOWS = ("ws", "os", "is")
RUN_NAME = "run"
STDERR_TAIL_CHARS = 3000

# Runs inside the SCALE-Sim venv: argv = config, topology, layout, output folder.
# save_disk_space=True skips the per-cycle trace CSVs (the CLI `scalesim.scale -s N` ignores it).
DRIVER = """
import sys
from scalesim.scale_sim import scalesim
config, topology, layout, out = sys.argv[1:5]
sim = scalesim(save_disk_space=True, verbose=False, config=config, topology=topology,
               layout=layout, input_type_gemm=True)
sim.run_scale(top_path=out)
"""


@dataclass(frozen=True)
class SystolicConfig:
    rows: int = 32
    cols: int = 32
    dataflow: str = "ws"  # "ws" | "os" | "is"
    ifmap_sram_kb: int = 256
    filter_sram_kb: int = 256
    ofmap_sram_kb: int = 128
    bandwidth_words: int = 10  # SCALE-Sim's interface bandwidth, words per cycle

    def __post_init__(self):
        if self.dataflow not in DATAFLOWS:
            raise ValueError(f"dataflow {self.dataflow!r} is not one of {DATAFLOWS}")
        sizes = (self.rows, self.cols, self.ifmap_sram_kb, self.filter_sram_kb,
                 self.ofmap_sram_kb, self.bandwidth_words)
        if min(sizes) < 1:
            raise ValueError(f"array dimensions, SRAM sizes and bandwidth must be positive: {self}")


@dataclass(frozen=True)
class GemmResult:
    name: str
    m: int
    n: int
    k: int
    cycles: int  # "Total Cycles": compute cycles including stalls
    stall_cycles: int  # "Stall Cycles"
    cycles_incl_prefetch: int  # "Total Cycles (incl. prefetch)": first DRAM read to last DRAM write
    utilisation: float  # "Overall Util %"
    ifmap_sram_reads: int
    filter_sram_reads: int
    ofmap_sram_writes: int
    ifmap_dram_reads: int
    filter_dram_reads: int
    ofmap_dram_writes: int


def venv_python(venv: Path) -> Path:
    return Path(venv) / "bin" / "python"


def scalesim_available(venv=DEFAULT_VENV) -> bool:
    """True when `venv` has a Python that imports scalesim."""
    python = venv_python(venv)
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", "import scalesim.scale_sim"], capture_output=True)
    return probe.returncode == 0


def config_text(cfg: SystolicConfig) -> str:
    """SCALE-Sim config; every key it reads unconditionally is present, custom layouts are off."""
    return f"""[general]
run_name = {RUN_NAME}

[architecture_presets]
ArrayHeight = {cfg.rows}
ArrayWidth = {cfg.cols}
IfmapSramSzkB = {cfg.ifmap_sram_kb}
FilterSramSzkB = {cfg.filter_sram_kb}
OfmapSramSzkB = {cfg.ofmap_sram_kb}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = {cfg.bandwidth_words}
Dataflow = {cfg.dataflow}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[run_presets]
InterfaceBandwidth = USER
UseRamulatorTrace = False

[layout]
IfmapCustomLayout = False
FilterCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = False
"""


def check_layer(layer: tuple[str, int, int, int]) -> None:
    name, *dims = layer
    if not name or any(c in name for c in ",\n\r"):
        raise ValueError(f"layer name {name!r} must be non-empty without commas or newlines")
    if any(not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(f"layer {name!r}: M, N, K must be positive integers, got {dims}")


def topology_text(layers: list[tuple[str, int, int, int]]) -> str:
    """GEMM topology: `Layer, M, N, K,` rows (the trailing comma is required: SCALE-Sim drops the last field)."""
    rows = [f"{name}, {m}, {n}, {k}," for name, m, n, k in layers]
    return "\n".join(["Layer, M, N, K,", *rows]) + "\n"


def layout_text() -> str:
    """SCALE-Sim opens a layout file even with custom layouts off; a header alone is enough."""
    return "Layer,\n"


def read_report(path: Path) -> list[list[str]]:
    """Data rows of a SCALE-Sim report, fields stripped, the empty field after the trailing comma dropped."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))[1:]
    return [[field.strip() for field in row[:-1]] for row in rows if row]


def count(field: str) -> int:
    """A count from a report field; the access report writes some of them as floats ("33.0")."""
    return int(float(field))


def gemm_result(layer: tuple[str, int, int, int], compute: list[str], access: list[str]) -> GemmResult:
    """One layer's result from its COMPUTE_REPORT and DETAILED_ACCESS_REPORT rows."""
    name, m, n, k = layer
    return GemmResult(
        name=name, m=m, n=n, k=k,
        cycles=count(compute[2]), stall_cycles=count(compute[3]),
        cycles_incl_prefetch=count(compute[1]), utilisation=float(compute[4]),
        ifmap_sram_reads=count(access[3]), filter_sram_reads=count(access[6]),
        ofmap_sram_writes=count(access[9]), ifmap_dram_reads=count(access[12]),
        filter_dram_reads=count(access[15]), ofmap_dram_writes=count(access[18]),
    )


def tail(text: str) -> str:
    return text[-STDERR_TAIL_CHARS:].strip() or "(empty)"


def simulate(layers: list[tuple[str, int, int, int]], cfg: SystolicConfig, venv: Path,
             folder: Path) -> list[GemmResult]:
    """Write the inputs into `folder`, run SCALE-Sim there and parse its reports."""
    out = folder / "results"
    if out.exists():  # SCALE-Sim can stop early with exit status 0; old reports must not stand in
        raise RuntimeError(f"{out} exists from an earlier run: remove it or pass another workdir")
    files = {"scale.cfg": config_text(cfg), "topology.csv": topology_text(layers),
             "layout.csv": layout_text()}
    for file_name, text in files.items():
        (folder / file_name).write_text(text)
    proc = subprocess.run([str(venv_python(venv)), "-c", DRIVER, *files, str(out)],
                          cwd=folder, capture_output=True, text=True)
    run_dir = out / RUN_NAME
    reports = run_dir / "COMPUTE_REPORT.csv", run_dir / "DETAILED_ACCESS_REPORT.csv"
    if proc.returncode != 0 or not all(p.exists() for p in reports):
        raise RuntimeError(
            f"SCALE-Sim failed (exit {proc.returncode}) on {len(layers)} layer(s) in {folder} "
            f"(run_gemms(..., workdir=DIR) keeps its inputs and outputs)\n"
            f"--- stderr tail ---\n{tail(proc.stderr)}\n--- stdout tail ---\n{tail(proc.stdout)}")
    compute, access = (read_report(p) for p in reports)
    if len(compute) != len(layers) or len(access) != len(layers):
        raise RuntimeError(f"SCALE-Sim reported {len(compute)}/{len(access)} rows for "
                           f"{len(layers)} layers in {run_dir}")
    return [gemm_result(layer, c, a) for layer, c, a in zip(layers, compute, access)]


def run_gemms(layers: list[tuple[str, int, int, int]], cfg: SystolicConfig, venv=DEFAULT_VENV,
              workdir=None) -> list[GemmResult]:
    """SCALE-Sim's cycles and accesses for each (name, M, N, K), in order."""
    if not layers:
        return []
    for layer in layers:
        check_layer(layer)
    venv = Path(venv).absolute()  # SCALE-Sim runs in another folder; no resolve(): keep venv symlinks
    if not venv_python(venv).exists():
        raise RuntimeError(f"no SCALE-Sim venv at {venv}: run `make scalesim-venv SCALESIM_VENV={venv}` "
                           f"(scalesim==3.0.0 with numpy<2; SCALE-Sim fails under numpy 2)")
    if workdir is not None:
        folder = Path(workdir)
        folder.mkdir(parents=True, exist_ok=True)
        return simulate(layers, cfg, venv, folder)
    with tempfile.TemporaryDirectory(prefix="scalesim-") as tmp:
        return simulate(layers, cfg, venv, Path(tmp))


def minilm_layers(tokens: int = 128, hidden: int = 384, ffn: int = 1536) -> list[tuple[str, int, int, int]]:
    """The six linear layers of one MiniLM encoder layer as (name, M, N, K)."""
    projections = [(name, tokens, hidden, hidden) for name in ("q", "k", "v", "o")]
    return [*projections, ("ffn1", tokens, ffn, hidden), ("ffn2", tokens, hidden, ffn)]


def minilm_attention_layers(tokens: int = 128, head_dim: int = 32) -> list[tuple[str, int, int, int]]:
    """One head of a MiniLM attention stage as (name, M, N, K): scores = q[tokens x d] @ k^T[d x tokens]
    (M queries, N keys, K = head dim) and mixing = P[tokens x tokens] @ v[tokens x d] (M queries, N = head
    dim, K keys). A stage is ATTENTION_HEADS of these: SCALE-Sim runs the per-head GEMM once and the
    caller multiplies by the heads (the heads are identical, independent GEMMs and SCALE-Sim simulates
    each topology row on its own, so twelve rows would give twelve equal results)."""
    return [("scores", tokens, tokens, head_dim), ("mixing", tokens, head_dim, tokens)]


ATTENTION_HEADS = 12
"""MiniLM's heads per layer (hidden 384 = 12 x 32)."""


def format_table(results: list[GemmResult]) -> str:
    header = (f"{'layer':<6}{'M':>5}{'N':>6}{'K':>6}{'cycles':>10}{'stalls':>8}{'w/ prefetch':>12}"
              f"{'util%':>7}{'if SRAM rd':>12}{'flt SRAM rd':>12}{'of SRAM wr':>12}"
              f"{'if DRAM rd':>11}{'flt DRAM rd':>12}{'of DRAM wr':>11}")
    lines = [header] + [
        f"{r.name:<6}{r.m:>5}{r.n:>6}{r.k:>6}{r.cycles:>10,}{r.stall_cycles:>8,}"
        f"{r.cycles_incl_prefetch:>12,}{r.utilisation:>7.1f}{r.ifmap_sram_reads:>12,}"
        f"{r.filter_sram_reads:>12,}{r.ofmap_sram_writes:>12,}{r.ifmap_dram_reads:>11,}"
        f"{r.filter_dram_reads:>12,}{r.ofmap_dram_writes:>11,}"
        for r in results]
    return "\n".join(lines)


def main() -> None:
    cfg = SystolicConfig()
    layers = [("ref", 32, 384, 384), *minilm_layers(), *minilm_attention_layers()]
    start = time.perf_counter()
    results = run_gemms(layers, cfg)
    seconds = time.perf_counter() - start
    print(f"SCALE-Sim 3.0.0, {cfg.rows}x{cfg.cols} {cfg.dataflow.upper()} array, "
          f"SRAM {cfg.ifmap_sram_kb}/{cfg.filter_sram_kb}/{cfg.ofmap_sram_kb} kB, "
          f"bandwidth {cfg.bandwidth_words} words/cycle")
    print("ref = reference layer; q..ffn2 = one MiniLM encoder layer at 128 tokens; scores, mixing = one of "
          f"its {ATTENTION_HEADS} attention heads (a stage is {ATTENTION_HEADS}x the row)")
    print(format_table(results))
    print(f"{len(layers)} layers simulated in {seconds:.1f} s")


if __name__ == "__main__":
    main()
