"""The paper's published numbers, for side-by-side comparison with a measured run.

    python -m advlab.paper outputs/runs/paper_mnist_fgsm/<time>/results.json --table XIII

prints the measured rows of a run beside the paper's table as Markdown. The numbers below are
quoted from the paper (../shared/reference/paper.txt) and from the public run PROTOCOLS.md
cites; they are reference data, never used to compute anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from advlab.tables import format_table, result_rows

# Table XIII: FGSM on the MNIST CNN (pixel units, clamped): eps -> correct of 10 000.
# The paper prints 0.2767 for 2727/10000 at eps 0.3, a typo for 0.2727 (PROTOCOLS.md).
TABLE_XIII = {
    0.0: 9698, 0.007: 9650, 0.01: 9625, 0.02: 9585, 0.03: 9525,
    0.05: 9366, 0.1: 8556, 0.2: 5405, 0.3: 2727,
}  # fmt: skip
# The public run of the same code that PROTOCOLS.md quotes (accuracy per eps).
PUBLIC_RUN_XIII = {
    0.0: 0.9708, 0.007: 0.9701, 0.01: 0.965, 0.02: 0.9602, 0.03: 0.9552,
    0.05: 0.938, 0.1: 0.852, 0.2: 0.5006, 0.3: 0.2484,
}  # fmt: skip


def compare_table_xiii(results: dict, model: str = "undefended", attack: str = "fgsm") -> str:
    rows = {
        round(float(r["eps"]), 6): r
        for r in result_rows(results)
        if r["model"] == model and r["attack"] == attack
    }
    table = []
    for eps, correct in TABLE_XIII.items():
        measured = rows.get(round(eps, 6), {})
        table.append(
            {
                "eps": eps,
                "paper correct": correct,
                "paper acc": correct / 10_000,
                "public run acc": PUBLIC_RUN_XIII[eps],
                "advlab correct": measured.get("correct"),
                "advlab n": measured.get("n"),
                "advlab acc": measured.get("top1_acc"),
            }
        )
    columns = list(table[0])
    return format_table(table, columns, percent={"paper acc", "public run acc", "advlab acc"})


TABLES = {"XIII": compare_table_xiii}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m advlab.paper", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a run's results.json (or its folder)")
    parser.add_argument("--table", default="XIII", choices=sorted(TABLES))
    parser.add_argument("--model", default="undefended", help="model label in results.json")
    args = parser.parse_args(argv)
    path = args.results / "results.json" if args.results.is_dir() else args.results
    if not path.is_file():
        print(f"advlab.paper: error: no results.json at {path}", file=sys.stderr)
        return 2
    print(TABLES[args.table](json.loads(path.read_text()), model=args.model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
