"""Energy per inference at W8A8 and W4A4 on width-true arrays: MiniLM-size random models (`hwsim export
--init random --arch minilm`), each variant, on the edge array (PEs built for the model's widths) and on
the 4-bit array of the edge array's PE area (`edge_same_area`), at 32 and 512 tokens.

    python bench/width_energy.py [--out DIR] [--seed 0]

Random weights: the energies depend on the widths and shapes, not on training (hwsim's counts and the
mappings are data-independent except the proven accumulator widths, which use the real weights). Model
estimates from the cost model's tables (hwsim/cost/data), not measurements.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from hwsim.cost.scenario import load_scenario
from hwsim.cost.table import load_tables, scenario_costs
from models import variants

SCENARIOS = ("edge", "edge_same_area")
LENGTHS = (32, 512)
WIDTHS = (8, 4)


def export_models(folder: Path, seed: int) -> dict[str, str]:
    """label -> path of a MiniLM-size random model per (variant, width)."""
    from export.pipeline import export_quant_model
    from quant.qat.model import random_quant_model

    out = {}
    for bits in WIDTHS:
        for variant in variants.names():
            path = folder / f"{variant}_w{bits}a{bits}.onnx"
            if not path.exists():
                export_quant_model(random_quant_model("minilm", variant, bits, seed), path)
            out[f"{variant} W{bits}A{bits}"] = str(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="folder for the exported models (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.out or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        models = export_models(folder, args.seed)
        results = scenario_costs(models, [load_scenario(s) for s in SCENARIOS], LENGTHS, load_tables(), jobs=1,
                                 say=print)
    by = {(r.scenario, r.model, r.seq_len): r for r in results}
    print("\nEnergy per inference, uJ (leakage included); '-': the 4-bit array does not run 8-bit operands")
    print("| variant | width | " + " | ".join(f"{s} {n} tok" for s in SCENARIOS for n in LENGTHS) + " |")
    print("|---|---|" + "---|" * (len(SCENARIOS) * len(LENGTHS)))
    for variant in variants.names():
        for bits in WIDTHS:
            label = f"{variant} W{bits}A{bits}"
            cells = [by.get((s, label, n)) for s in SCENARIOS for n in LENGTHS]
            print(f"| {variant} | W{bits}A{bits} | " + " | ".join("-" if r is None else f"{r.total_pj / 1e6:,.1f}"
                                                                   for r in cells) + " |")
    print("\nArea mm2 and latency us at 512 tokens (dot):")
    for s in SCENARIOS:
        for bits in WIDTHS:
            r = by.get((s, f"dot W{bits}A{bits}", 512))
            if r is not None:
                print(f"  {s} W{bits}A{bits}: area {r.area_total_mm2:.3f} mm2, latency {r.latency_us:,.0f} us")


if __name__ == "__main__":
    main()
