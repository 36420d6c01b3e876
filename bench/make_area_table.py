"""Generate hwsim/tables/area45.csv once; the CSV is committed and loaded without arithmetic.

    python bench/make_area_table.py [--out hwsim/tables/area45.csv]

Measured rows are Horowitz's ISSCC 2014 45 nm area figures and the Nangate 45 nm DFF_X1 cell; every
other row is marked interpolated=yes and derived by the rules written into the file's comment header
(the same shape of rules as bench/make_energy_table.py).
"""
from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

TECH = "45nm"
HOROWITZ = "Horowitz ISSCC 2014 45nm"
NANGATE = "Nangate 45nm Open Cell Library DFF_X1"
MEASURED = [  # (action, width, um^2, source)
    ("add", "8", 36.0, HOROWITZ), ("add", "16", 67.0, HOROWITZ), ("add", "32", 137.0, HOROWITZ),
    ("mul", "8x8", 282.0, HOROWITZ), ("mul", "32x32", 3495.0, HOROWITZ),
    ("reg", "1", 4.522, NANGATE),
]
RULES = """\
# Area per arithmetic unit in um^2 at 45 nm. Key = action@width. Columns: action,width,technology,um2,source,interpolated.
# Measured rows (interpolated=no): Horowitz, ISSCC 2014, 45 nm (8b add 36, 16b add 67, 32b add 137,
#   8x8 mult 282, 32x32 mult 3495 um^2, as quoted in the project brief; not re-read from the paper here);
#   reg@1 = one D flip-flop, Nangate 45 nm Open Cell Library DFF_X1, 4.522 um^2 (cell area only, no wiring).
# Interpolated rows (interpolated=yes), generated once by bench/make_area_table.py:
#   add@w: linear in w from the nearest measured adder (add@8 for w <= 11, add@16 for w <= 22, else add@32;
#     the boundaries are the geometric means of neighbouring measured widths).
#   cmp@w, abs@w: priced as add@w (one w-bit carry chain), as in the energy table.
#   mul@AxB (A >= B, up to 32x32): array multiplier, proportional to A*B from the nearest measured multiplier
#     (mul@8x8 when A*B <= 256, i.e. sqrt(A*B) <= 16, else mul@32x32).
#   reg@w: w flip-flops = w * reg@1.
#   Widths cover add/cmp/abs/reg 1..64 and mul 1x1..32x32.
"""


def _add(w: int) -> float:
    return 36.0 * w / 8 if w <= 11 else 67.0 * w / 16 if w <= 22 else 137.0 * w / 32


def _mul(a: int, b: int) -> float:
    return 282.0 * a * b / 64 if a * b <= 256 else 3495.0 * a * b / 1024


def rows() -> list[tuple[str, str, float, str, str]]:
    out = [(action, width, um2, source, "no") for action, width, um2, source in MEASURED]
    measured = {(a, w) for a, w, _, _ in MEASURED}
    derived = []
    for w in range(1, 65):
        derived += [("add", str(w), _add(w)), ("cmp", str(w), _add(w)), ("abs", str(w), _add(w)),
                    ("reg", str(w), w * 4.522)]
    derived += [("mul", f"{a}x{b}", _mul(a, b)) for a in range(1, 33) for b in range(1, a + 1)]
    out += [(a, w, um2, "rule in header", "yes") for a, w, um2 in derived if (a, w) not in measured]
    return out


def render() -> str:
    """The whole area45.csv text (header comments, column row, rows)."""
    buf = io.StringIO()
    buf.write(RULES)
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["action", "width", "technology", "um2", "source", "interpolated"])
    for action, width, um2, source, interp in rows():
        writer.writerow([action, width, TECH, f"{um2:.6g}", source, interp])
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parents[1] / "hwsim/tables/area45.csv"))
    args = parser.parse_args()
    Path(args.out).write_text(render(), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
