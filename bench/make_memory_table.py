"""Generate hwsim/cost/data/memory45.csv once with the CACTI that zigzag-dse ships; the CSV is committed.

    python bench/make_memory_table.py [--out hwsim/cost/data/memory45.csv]

SRAM rows come from CACTI 7 (the `cacti` binary under `zigzag/cacti/cacti_master`), run at 45 nm with
ZigZag's own baseline configuration (`CactiConfig.baseline_config`) switched to low-standby-power
(itrs-lstp) cells and periphery, one CACTI run per (size, word width) up to the bank limit; larger SRAMs
are banked by `hwsim.cost.tables.MemoryTable.sram`. DRAM rows come from `energydram` (bench/dram_energy.py)
except HBM2, a published figure. The wire row prices the bank interconnect. The script prints the CACTI
figures next to Horowitz's 45 nm SRAM anchors.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dram_energy  # bench/dram_energy.py, beside this script

TECH = "45nm"
CACTI_NODE_UM = 0.045
BANK_BYTES = 2 ** 20  # the bank limit: largest single CACTI array; hwsim.cost.tables banks above it
SIZES = tuple(2 ** k for k in range(8, BANK_BYTES.bit_length()))  # 256 B .. 1 MiB
WORDS = (64, 128, 256, 512)
CELLS = "itrs-lstp"  # data (and tag) array cell and peripheral type; CACTI also accepts itrs-hp, itrs-lop
CELL_LINES = ("Data array cell type", "Data array peripheral type", "Tag array cell type", "Tag array peripheral type")
CACTI_SOURCE = f"CACTI 7 (zigzag-dse 3.9.1) 45nm {CELLS} 1 rw port 1 bank"
PUBLISHED_DRAM = [  # (kind, pJ per bit read = write, source)
    ("HBM2", 3.9, "O'Connor et al. MICRO 2017 (Fine-Grained DRAM): HBM2 ~3.9 pJ/bit"),
]
WIRE = (0.121, "Keckler et al. IEEE Micro 2011 (GPUs and the Future of Parallel Computing) Table 1: "
               "40nm 256-bit 10mm wire 310 pJ = 0.121 pJ/bit/mm")  # (pJ per bit per mm, source)
HOROWITZ_SRAM_64 = {8 * 1024: 10.0, 1024 * 1024: 100.0}  # pJ per 64-bit read, REFERENCE.md sections 4, 8
RULES = """\
# Memory cost at 45 nm. Columns: kind,size_bytes,word_bits,technology,read_pJ,write_pJ,area_mm2,leakage_mW,source,interpolated.
# Generated once by bench/make_memory_table.py; loaded by hwsim.cost.tables with no arithmetic at load time.
# kind=sram: read_pJ / write_pJ per access of word_bits; area_mm2 of the whole array; leakage_mW standby
#   leakage of the array. Source: CACTI 7 as shipped by zigzag-dse 3.9.1, technology 0.045 um (a node CACTI
#   models directly), one CACTI run per row with ZigZag's baseline config (360 K, ECC on, UCA, 1 bank) but
#   LOW-STANDBY-POWER transistors: data and tag array cell type and peripheral type "itrs-lstp" (CACTI's
#   choices: itrs-hp, itrs-lstp, itrs-lop; ZigZag's baseline is itrs-hp). Every SRAM row is LSTP; the
#   table holds no itrs-hp rows (itrs-hp leaks ~4700x more: 614 mW against 0.13 mW at 512 KiB x 64 bits).
#   Cache type "ram", 1 read-write port, block = word = bus width, associativity 1. Figures include ECC bits.
#   CACTI picks an organisation per row, so a figure is not always monotone in size. Kept as CACTI gives them.
#   Sizes 256 B .. 1 MiB (the BANK LIMIT) in powers of two, words 64/128/256/512 bits. Rows CACTI could not
#   organise ("no valid data array organizations found") are absent; they are listed below.
# Banking (hwsim.cost.tables.MemoryTable.sram, not rows here): an SRAM larger than the largest row size
#   (1 MiB) is ceil(size / 1 MiB) banks of the 1 MiB row; area and leakage = banks x the bank's; read/write
#   pJ = one bank's access + word_bits x the wire row's pJ/bit/mm x sqrt(total area in mm^2) (the
#   Manhattan route from the array's centre to its farthest bank, an H-tree's longest branch).
# kind=wire: read_pJ = write_pJ = pJ per bit per mm of on-chip wire (size_bytes 0, word_bits 1). Source in
#   the row; a 40 nm figure used at 45 nm unscaled.
# kind=dram.<standard>: size_bytes 0, word_bits 1, read_pJ / write_pJ = pJ per bit read / written,
#   area_mm2 and leakage_mW empty. LPDDR4, DDR4, DDR3 from energydram 0.4.0 (PyPI; Micron TN-41-01 and
#   TN-40-07 current x voltage x time model, CACTI-IO termination not used) over Micron device currents as
#   DRAMPower's memspecs give them (datasheet IDD values, which are maxima): read = read-burst energy
#   / burst bits + one activate / row bits (streaming whole rows, 100% reads); write likewise with IDD4W.
#   No background, refresh or board termination. LPDDR4X: energydram 0.4.0 accepts only VDDQ = 1.1 V
#   LPDDR4, so there is no LPDDR4X row. HBM2 is a published figure (source in its row).
#   Devices and parameter mappings (bench/dram_energy.py):
"""

def cacti_dir() -> Path:
    """The `cacti_master` folder of the installed zigzag-dse (holds the binary and tech_params)."""
    import zigzag

    return Path(zigzag.__file__).parent / "cacti" / "cacti_master"


def cacti_config(size_bytes: int, word_bits: int) -> str:
    """ZigZag's baseline CACTI config plus the lines for one single-ported `ram` of this size and word."""
    from zigzag.cacti.cacti_master.cacti_config_creator import CactiConfig

    config = CactiConfig()
    values = {"cache_size": size_bytes, "line_size": word_bits // 8, "IO_bus_width": word_bits,
              "associativity": 1, "rd_wr_port": 1, "ex_rd_port": 0, "ex_wr_port": 0, "single_rd_port": 0,
              "bank_count": 1, "technology": CACTI_NODE_UM, "mem_type": '"ram"'}
    lines = [config.config_options[key]["string"] + str(value) + "\n" for key, value in values.items()]
    baseline = "".join(config.baseline_config)
    for line in CELL_LINES:
        if f'-{line} - "itrs-hp"' not in baseline:
            raise SystemExit(f"zigzag's CACTI baseline has no '-{line} - \"itrs-hp\"' line; cannot select {CELLS}")
        baseline = baseline.replace(f'-{line} - "itrs-hp"', f'-{line} - "{CELLS}"')
    return baseline + "".join(lines)


def run_cacti(size_bytes: int, word_bits: int) -> tuple[float, float, float, float] | None:
    """(read pJ, write pJ, area mm^2, leakage mW) from one CACTI run, or None if CACTI finds no organisation.

    CACTI reads `tech_params/` relative to its working directory, so each run gets a private folder
    holding links to the binary and the tech files (ZigZag writes into site-packages instead).
    """
    master = cacti_dir()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "cacti").symlink_to(master / "cacti")
        (work / "tech_params").symlink_to(master / "tech_params")
        (work / "cache.cfg").write_text(cacti_config(size_bytes, word_bits), encoding="utf-8")
        done = subprocess.run(["./cacti", "-infile", "cache.cfg"], cwd=work, capture_output=True, text=True)
        out = work / "cache.cfg.out"
        if done.returncode != 0 or not out.exists():
            return None
        row = next(csv.DictReader(out.read_text(encoding="utf-8").splitlines(), skipinitialspace=True))
    return (float(row["Dynamic read energy (nJ)"]) * 1000, float(row["Dynamic write energy (nJ)"]) * 1000,
            float(row["Area (mm2)"]), float(row["Standby leakage per bank(mW)"]))


def sram_rows() -> tuple[list[list[str]], list[tuple[int, int]]]:
    """CSV rows for every (size, word) CACTI organises, and the (size, word) pairs it could not."""
    grid = [(size, word) for size in SIZES for word in WORDS]
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        results = list(pool.map(lambda sw: run_cacti(*sw), grid))
    rows, missing = [], []
    for (size, word), result in zip(grid, results):
        if result is None:
            missing.append((size, word))
            continue
        read, write, area, leak = result
        rows.append(["sram", str(size), str(word), TECH, f"{read:.6g}", f"{write:.6g}", f"{area:.6g}",
                     f"{leak:.6g}", CACTI_SOURCE, "no"])
    return rows, missing


def render() -> str:
    """The whole memory45.csv text (header comments, column row, SRAM rows, DRAM rows)."""
    rows, missing = sram_rows()
    buf = io.StringIO()
    buf.write(RULES)
    buf.write(dram_energy.header())
    absent = ", ".join(f"{size} B x {word} b" for size, word in missing) or "none"
    buf.write(f"# CACTI found no organisation for: {absent}.\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["kind", "size_bytes", "word_bits", "technology", "read_pJ", "write_pJ", "area_mm2",
                     "leakage_mW", "source", "interpolated"])
    writer.writerows(rows)
    dram = dram_energy.dram_rows() + [(kind, pj, pj, source) for kind, pj, source in PUBLISHED_DRAM]
    for kind, read, write, source in dram:
        writer.writerow([f"dram.{kind}", "0", "1", TECH, f"{read:.6g}", f"{write:.6g}", "", "", source, "no"])
    writer.writerow(["wire", "0", "1", TECH, f"{WIRE[0]:.6g}", f"{WIRE[0]:.6g}", "", "", WIRE[1], "no"])
    return buf.getvalue()


def compare_with_horowitz(text: str) -> None:
    """Print CACTI's 64-bit read pJ next to Horowitz's 45 nm anchors."""
    rows = csv.DictReader(ln for ln in text.splitlines() if not ln.startswith("#"))
    read64 = {int(r["size_bytes"]): float(r["read_pJ"]) for r in rows if r["kind"] == "sram" and r["word_bits"] == "64"}
    for size, horowitz in HOROWITZ_SRAM_64.items():
        if size not in read64:
            continue
        print(f"{size // 1024:>5} KiB, 64-bit read: CACTI {read64[size]:.2f} pJ, Horowitz {horowitz:.0f} pJ, "
              f"ratio {read64[size] / horowitz:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parents[1] / "hwsim/cost/data/memory45.csv"))
    args = parser.parse_args()
    start = time.perf_counter()
    text = render()
    Path(args.out).write_text(text, encoding="utf-8")
    compare_with_horowitz(text)
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
