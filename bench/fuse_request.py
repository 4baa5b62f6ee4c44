"""The FUSE mount's fixed cost per request, A/B between checkouts.

    python -m bench.fuse_request [--rounds R] [--count N] CHECKOUT...

A brick and a foreground mount of the performance graph (bench.mount_cpu's
Setup) per checkout and round, the checkouts alternating round by round.
Each round times getxattr(2) of one file through an open fd:
security.selinux, which the bridge refuses itself (no graph call, no
lookup before it: the request's fixed cost - /dev/fuse, the session loop,
pyfuse3's handler, the bridge's wrapper), and user.some, which goes to the
brick and back (the fixed cost plus the graph's and the RPC's).  The report
gives the median microseconds per request, wall and the mount's CPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from .mount_cpu import Setup, cpu

#: (xattr, requests per round as a multiple of --count)
KEYS = (("security.selinux", 1.0), ("user.some", 0.15))


def one_round(checkout: Path, count: int) -> dict[str, tuple[float, float]]:
    base = Path(tempfile.mkdtemp(prefix="fuse-request-"))
    setup = Setup(base, checkout.resolve(), perf=True)
    try:
        f = setup.mnt / "f"
        f.write_bytes(b"x")
        os.setxattr(f, "user.some", b"v")
        fd = os.open(f, os.O_RDONLY)
        out = {}
        try:
            for key, share in KEYS:
                n = max(1, int(count * share))
                c0, t0 = cpu(setup.mount.pid), time.perf_counter()
                for _ in range(n):
                    try:
                        os.getxattr(fd, key)
                    except OSError:
                        pass
                t1, c1 = time.perf_counter(), cpu(setup.mount.pid)
                out[key] = (1e6 * (t1 - t0) / n, 1e6 * (c1 - c0) / n)
        finally:
            os.close(fd)
        return out
    finally:
        setup.close()
        shutil.rmtree(base, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fuse_request")
    p.add_argument("checkouts", nargs="+", type=Path)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--count", type=int, default=20000,
                   help="security.selinux requests per round (user.some: 15 %% of it)")
    args = p.parse_args(argv)
    results: dict[Path, list] = {c: [] for c in args.checkouts}
    for r in range(args.rounds):
        for c in args.checkouts:
            res = one_round(c, args.count)
            results[c].append(res)
            print(f"round {r + 1} {c} (load {os.getloadavg()[0]:.1f}): " + ", ".join(
                f"{k} {w:.1f}/{m:.1f}" for k, (w, m) in res.items()), flush=True)
    print("median us per getxattr, wall/mount CPU:")
    for c, rounds in results.items():
        cells = []
        for key, _ in KEYS:
            wall = statistics.median(r[key][0] for r in rounds)
            mount = statistics.median(r[key][1] for r in rounds)
            cells.append(f"{key} {wall:.1f}/{mount:.1f}")
        print(f"{str(c):40} " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
