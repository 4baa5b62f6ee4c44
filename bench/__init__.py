"""Benchmarks: `make bench` (python -m bench [SUITE...]).

Each suite module in this package defines `NAME`, `TITLE` and
`run(workdir) -> Section`; the runner executes the contenders of a suite in
one run on one machine, prints ratios, and rewrites bench/RESULTS.md with
the date, the machine and the versions.  Benchmarks never run as tests.
"""
