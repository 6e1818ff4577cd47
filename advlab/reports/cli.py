"""``advlab-report``: the reports' command line, and the Hydra callback that writes the sweep
report at the end of every ``advlab -m`` sweep.

    advlab-report summary SWEEP [MORE …] [--out DIR]   # summary.csv/.md + plots (the default)
    advlab-report SWEEP                                # the same
    advlab-report seeds SWEEP [MORE …] [--out DIR]     # mean ± std over seed=… jobs
    advlab-report patch SWEEP                          # class × size patch tables, patch grids
    advlab-report paper RUN_OR_SEED_SWEEP [--table XIII] [--model undefended]
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from advlab.errors import AdvlabError
from advlab.reports.jobs import collect
from advlab.reports.seeds import SEED, seed_of, write_seeds
from advlab.reports.summary import Report, write_summary

log = logging.getLogger(__name__)
COMMANDS = ("summary", "seeds", "patch", "paper")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="advlab-report", description="Tables and plots of advlab runs and sweeps.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    folders_help = "a run folder, a multirun folder (outputs/multirun/<task>/<time>), or several"
    out_help = "where to write (default: the folder itself; required with several folders)"
    for name, text in (
        ("summary", "summary.csv, summary.md and plots of every job, failed ones listed"),
        ("seeds", "jobs that differ only in seed as mean ± std (n): seeds.csv, seeds.md and plots with bands"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("folders", nargs="+", type=Path, help=folders_help)
        command.add_argument("--out", type=Path, help=out_help)
    patch = commands.add_parser("patch", help="class × patch-size tables (patch_tables.md) and patch grids")
    patch.add_argument("folders", nargs="+", type=Path, help="run or sweep folders with patch results")
    paper = commands.add_parser("paper", help="a run (or a seed sweep) beside the paper's table, reduced runs flagged")
    paper.add_argument("folders", nargs="+", type=Path, help="a run folder or results.json, or a seed sweep")
    paper.add_argument("--table", default="XIII", choices=("XIII",))
    paper.add_argument("--model", default="undefended", help="model label in results.json")
    return parser


def _print(report: Report) -> None:
    print(report.text)
    print()
    for name, path in report.files.items():
        print(f"{name}: {path}")


def run_command(args: argparse.Namespace) -> None:
    if args.command == "summary":
        _print(write_summary(args.folders, args.out))
    elif args.command == "seeds":
        _print(write_seeds(args.folders, args.out))
    elif args.command == "patch":
        from advlab.reports.patch import write_patch_report

        for folder in args.folders:
            files = write_patch_report(folder)
            print(Path(files["patch_tables"]).read_text(encoding="utf-8"))
            for what, path in files.items():
                print(f"{what}: {path}")
    else:
        from advlab.reports.paper import compare_folders

        print(compare_folders(args.folders, args.table, args.model))


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv = ["summary", *argv]  # `advlab-report FOLDER` is the summary, as before the subcommands
    args = _parser().parse_args(argv)
    try:
        run_command(args)
    except AdvlabError as error:
        print(f"advlab-report: error: {error}", file=sys.stderr)
        sys.exit(2)


def seeds_swept(folder: Path) -> bool:
    """Whether the jobs under ``folder`` use more than one ``seed=`` value."""
    return len({seed_of(job.overrides) for job in collect([folder])} - {None}) > 1


class SweepReport(Callback):
    """Hydra callback: the summary of a sweep (and its seed table when ``seed`` was swept),
    written into its folder when the sweep ends. A problem here is logged, never raised: the
    jobs' own results are already safe."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            folder = Path(str(config.hydra.sweep.dir))
            report = write_summary([folder])
            print(f"\nSweep summary ({folder}):\n{report.text}\n", flush=True)
            if seeds_swept(folder):
                seeds = write_seeds([folder])
                print(f"Over {SEED}s ({folder / 'seeds.md'}):\n{seeds.text}\n", flush=True)
        except AdvlabError as error:
            log.warning("no sweep summary: %s", error)
        except Exception:
            log.exception("the sweep summary failed (the jobs' results are unaffected)")


if __name__ == "__main__":
    main()
