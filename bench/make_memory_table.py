"""Generate hwsim/tables/memory45.csv once with the CACTI that zigzag-dse ships; the CSV is committed.

    python bench/make_memory_table.py [--out hwsim/tables/memory45.csv]

SRAM rows come from CACTI 7 (the `cacti` binary under `zigzag/cacti/cacti_master`), run at 45 nm with
ZigZag's own baseline configuration (`CactiConfig.baseline_config`) and one CACTI run per (size, word
width). DRAM rows are published pJ/bit figures, each with its source. The script prints the CACTI
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

TECH = "45nm"
CACTI_NODE_UM = 0.045
SIZES = tuple(2 ** k for k in range(8, 25))  # 256 B .. 16 MiB
WORDS = (64, 128, 256, 512)
CACTI_SOURCE = "CACTI 7 (zigzag-dse 3.9.1) 45nm itrs-hp 1 rw port 1 bank"
DRAM = [  # (kind, pJ per bit read = write, source)
    ("DDR3", 1300 / 64, "Horowitz ISSCC 2014 45nm: 1300-2600 pJ per 64-bit access; low end / 64"),
    ("HBM2", 3.9, "O'Connor et al. MICRO 2017 (Fine-Grained DRAM): HBM2 ~3.9 pJ/bit"),
]
HOROWITZ_SRAM_64 = {8 * 1024: 10.0, 1024 * 1024: 100.0}  # pJ per 64-bit read, REFERENCE.md sections 4, 8
RULES = """\
# Memory cost at 45 nm. Columns: kind,size_bytes,word_bits,technology,read_pJ,write_pJ,area_mm2,leakage_mW,source,interpolated.
# Generated once by bench/make_memory_table.py; loaded by hwsim.cost.tables with no arithmetic at load time.
# kind=sram: read_pJ / write_pJ per access of word_bits; area_mm2 of the whole array; leakage_mW standby
#   leakage per bank. Source: CACTI 7 as shipped by zigzag-dse 3.9.1, technology 0.045 um (a node CACTI
#   models directly), one CACTI run per row with ZigZag's baseline config (itrs-hp cells and periphery,
#   360 K, ECC on, UCA, 1 bank), cache type "ram", 1 read-write port, block = word = bus width, associativity 1.
#   CACTI figures include ECC bits and high-performance (leaky) transistors; leakage is therefore high.
#   CACTI picks an organisation per row, so a figure is not always monotone in size (write_pJ at 256 bits
#   dips from 64 KiB to 128 KiB); writes are cheaper than reads above 16 KiB at 64 bits. Kept as CACTI gives them.
#   Sizes 256 B .. 16 MiB in powers of two, words 64/128/256/512 bits. Rows CACTI could not organise
#   ("no valid data array organizations found") are absent; they are listed below.
# kind=dram.<standard> (dram.DDR3, dram.HBM2): size_bytes 0, word_bits 1, read_pJ = write_pJ = pJ per bit
#   transferred, area_mm2 and leakage_mW empty.
#   Only figures with a source are given; DDR4, LPDDR4, LPDDR5 have no attributable figure here yet.
# Horowitz (ISSCC 2014, 45 nm) for comparison: 8 KB SRAM 10 pJ, 1 MB ~100 pJ per 64-bit read.
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
    return "".join(config.baseline_config) + "".join(lines)


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
    absent = ", ".join(f"{size} B x {word} b" for size, word in missing) or "none"
    buf.write(f"# CACTI found no organisation for: {absent}.\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["kind", "size_bytes", "word_bits", "technology", "read_pJ", "write_pJ", "area_mm2",
                     "leakage_mW", "source", "interpolated"])
    writer.writerows(rows)
    for kind, pj_bit, source in DRAM:
        writer.writerow([f"dram.{kind}", "0", "1", TECH, f"{pj_bit:.6g}", f"{pj_bit:.6g}", "", "", source, "no"])
    return buf.getvalue()


def compare_with_horowitz(text: str) -> None:
    """Print CACTI's 64-bit read pJ next to Horowitz's 45 nm anchors."""
    rows = csv.DictReader(ln for ln in text.splitlines() if not ln.startswith("#"))
    read64 = {int(r["size_bytes"]): float(r["read_pJ"]) for r in rows if r["kind"] == "sram" and r["word_bits"] == "64"}
    for size, horowitz in HOROWITZ_SRAM_64.items():
        print(f"{size // 1024:>5} KiB, 64-bit read: CACTI {read64[size]:.2f} pJ, Horowitz {horowitz:.0f} pJ, "
              f"ratio {read64[size] / horowitz:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parents[1] / "hwsim/tables/memory45.csv"))
    args = parser.parse_args()
    start = time.perf_counter()
    text = render()
    Path(args.out).write_text(text, encoding="utf-8")
    compare_with_horowitz(text)
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
