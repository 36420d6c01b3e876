"""The `hwsim` command: one subcommand per pipeline stage.

Each subcommand lives in the package of its stage as a module exposing
`add_arguments(parser)`, `run(args) -> int` and, where it may read the Hugging Face hub,
`needs_hub(args) -> bool`; this file only dispatches. Heavy imports
(torch, onnxruntime, numba) happen inside `run`, so `hwsim --help` is fast. Before dispatching,
`models.hub.choose_mode` decides online or offline hub access (`--offline`, the user's
HF_HUB_OFFLINE / HF_DATASETS_OFFLINE, or a quick probe when `needs_hub(args)` says so).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from models.errors import UserError
from models.threads import set_thread_waiting

# torch's OpenMP threads spin briefly, then sleep (models/threads.py): set before torch is imported;
# the user's OMP_WAIT_POLICY or GOMP_SPINCOUNT wins
set_thread_waiting()

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("quant.data.cli", "fetch a task's data and print its split sizes"),
    "train": ("quant.train.cli", "fine-tune, distil and quantization-aware-train a classifier"),
    "export": ("export.cli", "lower a trained quantized model to an integer-only ONNX graph"),
    "run": ("hwsim.app.run_cli", "simulate samples bit for bit and count ops, memory and widths"),
    "report": ("hwsim.app.report_cli", "price op counts with an energy table; tables, CSV and plots"),
    "cost": ("hwsim.app.cost_cli", "energy, latency and area on accelerator scenarios (ZigZag mapping)"),
    "demo": ("hwsim.app.demo", "the end-to-end energy study on real weights and real text"),
    "study": ("hwsim.app.study", "the whole recipe over seeds: teacher, students, QAT, export, hwsim; cached, resumable"),
    "widths": ("hwsim.app.widths", "the width sweep: accuracy against energy per attention variant, widths 8 down to 4"),
    "results": ("hwsim.app.results_cli", "aggregate the results ledger over seeds: accuracy spread, paired tests"),
}


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """`--help` appends "(default: X)" to every option whose default is a value; a None or False
    default (the option is off unless given) adds nothing, the help says what happens without it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


OFFLINE_HELP = ("never contact the Hugging Face hub (sets HF_HUB_OFFLINE and HF_DATASETS_OFFLINE); "
                "without it the hub is used when reachable")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hwsim", description=__doc__.splitlines()[0],
                                     formatter_class=DefaultsFormatter)
    parser.add_argument("--offline", action="store_true", help=OFFLINE_HELP)
    offline = argparse.ArgumentParser(add_help=False)  # also accepted after the subcommand
    offline.add_argument("--offline", action="store_true", default=argparse.SUPPRESS, help=OFFLINE_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue  # stage not built yet
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[offline],
                           formatter_class=DefaultsFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _needs_hub=getattr(module, "needs_hub", None))
    return parser


def main(argv: list[str] | None = None) -> int:
    from models.hub import choose_mode

    args = build_parser().parse_args(argv)
    choose_mode(args.offline, bool(args._needs_hub and args._needs_hub(args)))
    try:
        return int(args._run(args) or 0)
    except UserError as err:
        print(f"hwsim {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"hwsim {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
