"""Generate hwsim/cost/data/horowitz45.csv once; the CSV is committed and loaded without arithmetic.

    python bench/make_energy_table.py [--out hwsim/cost/data/horowitz45.csv]

Measured rows are REFERENCE.md section 4 (Horowitz, ISSCC 2014, 45 nm, 0.9 V) as given, plus one register
bit (`regwrite@1`, Aladdin's 40 nm register as Accelergy's Aladdin plug-in tabulates it). Every other
row is marked interpolated=yes and derived by the rules written into the file's comment header.
"""
from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

TECH = "45nm"
SOURCE = "Horowitz ISSCC 2014 45nm 0.9V"
MEASURED = [  # (action, width, pJ, note)
    ("add", "8", 0.03, ""), ("add", "32", 0.1, ""),
    ("mul", "8x8", 0.2, ""), ("mul", "32x32", 3.1, ""),
    ("fadd", "16", 0.4, ""), ("fmul", "16", 1.1, ""), ("fadd", "32", 0.9, ""), ("fmul", "32", 3.7, ""),
    ("read.sram", "64", 10.0, " (8 KB SRAM)"),
    ("read.dram", "64", 1300.0, " (low end of 1300-2600)"),
]
REGISTER = ("regwrite", "1", 0.009, "Aladdin (Shao et al. ISCA 2014) 40nm 1-bit register via "
            "accelergy-aladdin-plug-in data/reg.csv (1 ns cycle)")  # pJ per flip-flop bit written
RULES = """\
# Energy per action in pJ. Key = action@width. Columns: action,width,technology,pJ,source,interpolated.
# Measured rows (interpolated=no): Horowitz, ISSCC 2014, 45 nm, 0.9 V, as quoted in REFERENCE.md section 4.
# Interpolated rows (interpolated=yes), generated once by bench/make_energy_table.py:
#   add@w: linear in w from the nearest measured adder (add@8 for w <= 20, else add@32).
#   cmp@w, abs@w: priced as add@w (one w-bit carry chain; no better 45 nm figure at hand).
#   Gate rule (a rule from transistor counts, not a measurement): a 2-input AND gate or a 2:1 mux
#     costs 1/4 of one full-adder bit, one full-adder bit being add@w / w (about 6-8 transistors
#     against a 28-transistor mirror adder cell).
#   relu@w: max(x, 0) as w AND gates gated by the sign bit = w * (add@w / w) / 4 = add@w / 4.
#   shiftc@w: shift by a constant amount: wiring, 0 pJ (counted so reports can show it).
#   shift@w: data-dependent barrel shifter, ceil(log2 w) stages of a w-bit row of 2:1 muxes
#     = ceil(log2 w) * add@w / 4 (0 for w = 1).
#   div@w: restoring divider, w quotient steps of one w-bit subtraction = w * add@w.
#   mul@AxB (A >= B): array multiplier, proportional to A*B from the nearest measured multiplier
#     (mul@8x8 when sqrt(A*B) <= 20, else mul@32x32).
#   write.sram@64 = read.sram@64 and write.dram@64 = read.dram@64 (no separate write figure).
#   DRAM is the low end (1300 pJ per 64 bits) of the quoted 1300-2600 pJ range.
#   Memory at word widths 32 and 128: linear in the word width from the 64-bit figure.
#   regwrite@1: one flip-flop bit written, 0.009 pJ: the dynamic energy of Aladdin's 1-bit, 1-stage register
#     (Shao et al., ISCA 2014; TSMC 40 nm standard cells) as the Accelergy Aladdin plug-in's data/reg.csv
#     gives it at a 1 ns cycle (the plug-in files it under "read"). A 40 nm figure used at 45 nm unscaled.
#     Rule: a register is charged per bit written (the clock edge that latches new data); reading it is its
#     output wires and costs 0 (regread@w = 0) - no source prices the read separately.
#     regwrite@w = w * regwrite@1 (w flip-flops).
#   Widths cover 1..64 (the specification computes in int64; counting caps widths at 64).
"""


def _add(w: int) -> float:
    return 0.03 * w / 8 if w <= 20 else 0.1 * w / 32


def _mul(a: int, b: int) -> float:
    return 0.2 * a * b / 64 if a * b <= 400 else 3.1 * a * b / 1024


def _gates(w: int) -> float:
    """A w-bit row of AND gates or 2:1 muxes: 1/4 of a full-adder bit each."""
    return _add(w) / 4


def rows() -> list[tuple[str, str, float, str, str]]:
    out = [(action, width, pj, SOURCE + note, "no") for action, width, pj, note in MEASURED]
    out.append((*REGISTER[:3], REGISTER[3], "no"))
    measured = {(a, w) for a, w, _, _ in MEASURED} | {REGISTER[:2]}
    derived = []
    for w in range(1, 65):
        derived += [("add", str(w), _add(w)), ("cmp", str(w), _add(w)), ("abs", str(w), _add(w)),
                    ("relu", str(w), _gates(w)), ("shiftc", str(w), 0.0),
                    ("shift", str(w), (w - 1).bit_length() * _gates(w)), ("div", str(w), w * _add(w)),
                    ("regwrite", str(w), w * REGISTER[2]), ("regread", str(w), 0.0)]
        derived += [("mul", f"{w}x{b}", _mul(w, b)) for b in range(1, w + 1)]
    mem = {"read.sram": 10.0, "write.sram": 10.0, "read.dram": 1300.0, "write.dram": 1300.0}
    for action, pj64 in mem.items():
        derived += [(action, str(word), pj64 * word / 64) for word in (32, 64, 128)]
    out += [(a, w, pj, "rule in header", "yes") for a, w, pj in derived if (a, w) not in measured]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parents[1] / "hwsim/cost/data/horowitz45.csv"))
    args = parser.parse_args()
    buf = io.StringIO()
    buf.write(RULES)
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["action", "width", "technology", "pJ", "source", "interpolated"])
    for action, width, pj, source, interp in rows():
        writer.writerow([action, width, TECH, f"{pj:.6g}", source, interp])
    Path(args.out).write_text(buf.getvalue(), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
