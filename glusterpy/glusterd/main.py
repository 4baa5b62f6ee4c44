"""`glusterpyd`: run the management daemon.

    glusterpyd [--workdir DIR] [--port P] [--address A] [--hostname NAME]
               [--brick-root DIR]... [--pidfile FILE] [--log-file FILE]
               [--log-level LEVEL]

Defaults: workdir /var/lib/glusterpy, port 24007 (GlusterFS RPC and the
REST API on the same port), every IPv4 address.  `--hostname` is the name
(or address) peers and bricks know this node by; by default the listening
address, or the machine's host name when listening everywhere.

`--brick-root DIR` (repeatable) names the directories this node's bricks may
be under; the default is where GlusterFS's documentation puts bricks:
/bricks, /data, /export, /gluster, /mnt and /srv (glusterd/ops.py
DEFAULT_BRICK_ROOTS).  Only a local admin sets it - no REST call or
`volume set` can.  Whatever it says, a system directory (/etc, /usr, /boot,
/proc, /sys, /dev, /root, /run, /var/lib/glusterpy, ...) or the working
directory is never a brick: a brick root that is the root directory, or is
inside one of those, is refused at start.

Runs in the foreground until SIGTERM or SIGINT.  Bricks keep running when
the daemon stops, as glusterfsd outlives glusterd: the next daemon adopts
them.  Exit status: 0 after a clean stop, 1 when the port or the working
directory is refused, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

import trio

from ..cli.daemon import add_log_arguments, run_service, setup_logging
from .daemon import DEFAULT_PORT, DEFAULT_WORKDIR, Glusterd
from .ops import DEFAULT_BRICK_ROOTS, brick_roots

log = logging.getLogger("glusterpy.glusterd")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glusterpyd", description="glusterpy's management "
                                "daemon: peers, volumes, volfiles, bricks, REST API")
    p.add_argument("--workdir", default=DEFAULT_WORKDIR, metavar="DIR",
                   help=f"state directory (default {DEFAULT_WORKDIR})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="P",
                   help=f"TCP port for GlusterFS RPC and the REST API (default {DEFAULT_PORT})")
    p.add_argument("--address", default="0.0.0.0", metavar="A",
                   help="address to listen on (default: every IPv4 address)")
    p.add_argument("--hostname", metavar="NAME",
                   help="the name peers and bricks know this node by")
    p.add_argument("--brick-root", action="append", metavar="DIR", dest="brick_roots",
                   help="a directory bricks may be under (repeatable; default: "
                   f"{', '.join(DEFAULT_BRICK_ROOTS)})")
    p.add_argument("--pidfile", metavar="FILE", help="write the process id here")
    add_log_arguments(p)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        print(f"glusterpyd: --port {args.port}: not a TCP port", file=sys.stderr)
        return 2
    try:
        brick_roots(args.brick_roots, os.path.abspath(args.workdir))
    except ValueError as e:
        print(f"glusterpyd: --brick-root: {e}", file=sys.stderr)
        return 2
    setup_logging(args.log_file, args.log_level)
    daemon = Glusterd(args.workdir, address=args.address, port=args.port,
                      hostname=args.hostname, brick_roots=args.brick_roots)
    return run_service(_run, daemon, pidfile=args.pidfile, program="glusterpyd",
                       interrupt_is_success=True)


async def _run(daemon: Glusterd) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(daemon.serve)
            except OSError as e:
                raise OSError(e.errno, f"cannot listen on {daemon.address}:{daemon.port}: "
                                       f"{e.strerror}") from None
            async for signum in signals:
                log.info("received signal %d, shutting down (bricks keep running)", signum)
                break
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    sys.exit(main())
