"""python -m bench [SUITE...] [--workdir DIR]: run benchmark suites."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import shutil
import sys
import tempfile
from pathlib import Path

from .report import previous_sections, write_results


def suites():
    import bench
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__)
                   if m.name.startswith("suite_"))
    return [importlib.import_module(f"bench.{n}") for n in names]


def main(argv=None) -> int:
    available = {m.NAME: m for m in suites()}
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("suites", nargs="*", metavar="SUITE",
                        help=f"run only these ({', '.join(available)})")
    parser.add_argument("--workdir", help="scratch directory (default: a temporary one "
                                          "under /var/tmp, on the real disk)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    unknown = [s for s in args.suites if s not in available]
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(unknown)}")
    chosen = [available[s] for s in args.suites] if args.suites else list(available.values())
    keep = previous_sections()
    sections = []
    for suite in chosen:
        work = Path(args.workdir or tempfile.mkdtemp(prefix="glusterpy-bench-", dir="/var/tmp"))
        work.mkdir(parents=True, exist_ok=True)
        print(f"== {suite.TITLE}", flush=True)
        try:
            result = suite.run(work, quick=args.quick)
        finally:
            if not args.workdir:
                shutil.rmtree(work, ignore_errors=True)
        # a suite gives one Section, or a list of them (a table and its companions)
        for section in result if isinstance(result, list) else [result]:
            print(section.markdown(), flush=True)
            sections.append(section)
    if not args.quick:
        write_results(sections, keep)
        print("results written to bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
