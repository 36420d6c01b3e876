"""Generate hwsim/cost/data/area45.csv once; the CSV is committed and loaded without arithmetic.

    python bench/make_area_table.py [--out hwsim/cost/data/area45.csv]

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
#   add@w: piecewise linear in w through the measured adders (8, 16, 32 bits); proportional to w from
#     add@8 below 8 bits and from add@32 above 32 bits. Continuous and increasing in w.
#   cmp@w, abs@w: priced as add@w (one w-bit carry chain), as in the energy table.
#   mul@AxB (A >= B, up to 32x32): array multiplier, area ~ A*B: proportional to A*B from mul@8x8 when
#     A*B <= 64, linear in A*B between mul@8x8 (64) and mul@32x32 (1024) above. Continuous and increasing
#     in A*B (unlike a nearest-anchor rule, which would make mul@17x16 smaller than mul@16x16).
#   reg@w: w flip-flops = w * reg@1.
#   Widths cover add/cmp/abs/reg 1..64 and mul 1x1..32x32.
"""


ADD_ANCHORS = ((8, 36.0), (16, 67.0), (32, 137.0))  # (bits, um^2)
MUL_ANCHORS = ((64, 282.0), (1024, 3495.0))  # (A*B, um^2)


def piecewise(x: int, anchors: tuple[tuple[int, float], ...]) -> float:
    """Linear between neighbouring anchors; proportional to x from the first / last anchor outside them."""
    (x0, y0), (xn, yn) = anchors[0], anchors[-1]
    if x <= x0:
        return y0 * x / x0
    if x >= xn:
        return yn * x / xn
    (xa, ya), (xb, yb) = next((lo, hi) for lo, hi in zip(anchors, anchors[1:]) if x <= hi[0])
    return ya + (yb - ya) * (x - xa) / (xb - xa)


def _add(w: int) -> float:
    return piecewise(w, ADD_ANCHORS)


def _mul(a: int, b: int) -> float:
    return piecewise(a * b, MUL_ANCHORS)


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
    parser.add_argument("--out", default=str(Path(__file__).parents[1] / "hwsim/cost/data/area45.csv"))
    args = parser.parse_args()
    Path(args.out).write_text(render(), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
