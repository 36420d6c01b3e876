"""`hwsim data TASK [--data-dir DIR]`: load every split of a task and print its sizes.

For `rt` it also prints movies and fresh/rotten counts per split and checks that no movie is in
two splits (the by-movie guarantee).
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help="task name: rt, imdb, or a GLUE task (cola, sst2, mrpc, qqp, "
                                     "stsb, mnli, mnli_mm, qnli, rte, wnli)")
    parser.add_argument("--data-dir", default=None,
                        help="local data folder (GLUE: the GLUE root or the task folder with "
                             "train.tsv/dev.tsv); default: the task's download source")
    parser.add_argument("--limit", type=int, default=None, help="keep the first N examples per split")


def needs_hub(args: argparse.Namespace) -> bool:
    """Whether this command would read its data from the Hugging Face hub."""
    from quant.data.tasks import needs_hub as task_needs_hub
    return task_needs_hub(args.task, args.data_dir)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from quant.data.tasks import get_task, load_split

    spec = get_task(args.task)
    kind = "regression" if spec.is_regression else f"{spec.num_labels} labels"
    print(f"task {spec.name}: texts {', '.join(spec.text_keys)}; {kind}; "
          f"metrics {', '.join(spec.metrics)} (main: {spec.main_metric})")
    groups: dict[str, set[str]] = {}
    total = 0
    for name in spec.splits:
        split = load_split(spec.name, name, args.data_dir, args.limit)
        total += len(split)
        line = f"  {name:<10} {len(split):>7} examples"
        if spec.is_regression:
            if len(split):
                line += f"; score {split.labels.min():.2f}..{split.labels.max():.2f}"
        elif spec.name == "rt":
            fresh = int(split.labels.sum())
            line += f"; {fresh} fresh / {len(split) - fresh} rotten"
        else:
            counts = np.bincount(split.labels, minlength=spec.num_labels)
            line += "; labels " + " / ".join(f"{i}: {c}" for i, c in enumerate(counts))
        if split.groups is not None:
            groups[name] = set(split.groups)
            line += f"; {len(groups[name])} movies"
        print(line)
    print(f"  {'total':<10} {total:>7} examples")
    if groups:
        names = list(groups)
        shared = sorted(set.union(*(groups[a] & groups[b] for i, a in enumerate(names) for b in names[i + 1:])))
        if shared:
            print(f"  check: FAILED, {len(shared)} movie(s) in two splits: {', '.join(shared[:5])}")
            return 1
        print(f"  check: ok, no movie is in two splits ({len(set.union(*groups.values()))} movies)")
    return 0
