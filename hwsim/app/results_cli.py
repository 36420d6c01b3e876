"""`hwsim results`: aggregate the results ledger over seeds (`hwsim.app.ledger`, `hwsim.app.ledger_stats`).

    hwsim results [DIR] [--markdown FILE] [--recipe FINGERPRINT ...]
    hwsim results [DIR] --import-demo DEMO_DIR --commit REV [--log FILE]

Prints, per recipe fingerprint, every variant's int8 test accuracy over seeds and the paired
comparisons with the int8 dot (pooled bootstrap interval, McNemar), then the effects of recipes that
differ in one or two settings (ablations, `hwsim.app.ledger_stats.effects`) as Markdown; `--markdown FILE` also
writes it. `--recipe` keeps the records of the named fingerprints only (repeatable). `--import-demo` writes the record of a demo folder that finished before the demo wrote
records (its stage times from the demo's log lines, `--log`).
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="?", default="results", help="folder of result records")
    parser.add_argument("--markdown", help="also write the Markdown tables to this file")
    parser.add_argument("--recipe", action="append", metavar="FINGERPRINT",
                        help="only the records of this recipe fingerprint (repeatable; default: all)")
    parser.add_argument("--import-demo", metavar="DEMO_DIR",
                        help="write the record of this finished demo folder into the results folder, then aggregate")
    parser.add_argument("--commit", help="with --import-demo: the commit the demo ran at (required)")
    parser.add_argument("--log", help="with --import-demo: the demo's output, for the stage times of its "
                                      "'[demo HH:MM:SS]' lines (else only the total time is recorded)")


def run(args: argparse.Namespace) -> int:
    from hwsim.app.ledger import import_demo, load_records
    from hwsim.app.ledger_stats import effects, effects_markdown, markdown, summarise
    from models.errors import UserError
    from models.files import write_text_atomic

    results = Path(args.results)
    if args.import_demo:
        if not args.commit:
            raise UserError("--import-demo needs --commit REV: the commit the demo ran at")
        path = import_demo(Path(args.import_demo), results, args.commit, Path(args.log) if args.log else None)
        print(f"wrote {path}")
    records = load_records(results)
    if not records:
        raise UserError(f"no records in {results}; run `hwsim study` or `hwsim demo` (each writes one when it finishes)")
    if args.recipe:
        known = {r["recipe"]["fingerprint"] for _, r in records}
        unknown = sorted(set(args.recipe) - known)
        if unknown:
            raise UserError(f"no records of recipe(s) {', '.join(unknown)} in {results}; its fingerprints are "
                            f"{', '.join(sorted(known))}")
        records = [(p, r) for p, r in records if r["recipe"]["fingerprint"] in args.recipe]
    text = markdown(summarise(records)) + effects_markdown(effects(records))
    print(text)
    if args.markdown:
        write_text_atomic(args.markdown, text)
    return 0
