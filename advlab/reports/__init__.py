"""Reports of advlab runs: read job folders, build tables, draw figures, write them.

``jobs``     the one reader of job folders (a run's results.json, every job of a sweep) and the
             flat result rows; failed, terminated and unfinished jobs are listed as such
``tables``   the one table writer (headers, cells, Markdown through tabulate, pivots)
``plots``    every figure (curves with ± std bands, example grids, top-5 bars, patch grids)
``summary``  the sweep summary (summary.csv/.md and plots), one row per job's result row
``seeds``    jobs that differ only in ``seed`` as mean ± std (n) per result cell
``extras``   the per-run extras selected with ``reports=…`` (comparison, robustness, top5)
``patch``    class × patch-size tables of patch results
``paper``    the paper's numbers beside a run or a seed sweep, reduced runs flagged
``cli``      ``advlab-report {summary,seeds,patch,paper}`` and the end-of-sweep Hydra callback
"""
