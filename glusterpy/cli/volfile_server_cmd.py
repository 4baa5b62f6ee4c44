"""`glusterpy volfile-server --dir DIR --port P [--address A]`: serve GETSPEC
from DIR/<volfile-id>.vol and the brick portmap, so that GlusterFS clients
(qemu's gluster://, fio's gfapi engine, the glusterfs FUSE client) and
`glusterpy brick --volfile-server` work before the management daemon
exists.  See glusterpy/glusterd/volfile_server.py for what it answers; it
adds `option remote-port` for the bricks signed in to it, which is how a
real client reaches a brick when the volfile server is not on 24007.

Runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import trio

from ..glusterd.volfile_server import VolfileServer
from .daemon import add_log_arguments, run_service, setup_logging

log = logging.getLogger("glusterpy.volfile-server")


def register(sub) -> None:
    p = sub.add_parser("volfile-server", help="serve volfiles (GETSPEC) and the brick portmap",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True, metavar="DIR",
                   help="directory of volfiles: GETSPEC KEY answers DIR/KEY.vol")
    p.add_argument("--port", type=int, default=24007, metavar="P",
                   help="TCP port to listen on (default 24007; 0: any free port)")
    p.add_argument("--address", default="0.0.0.0", metavar="A",
                   help="address to listen on (default: every IPv4 address)")
    p.add_argument("--pidfile", metavar="FILE", help="write the process id here")
    add_log_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if not os.path.isdir(args.dir):
        print(f"error: --dir {args.dir}: not a directory", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"error: --port {args.port}: not a TCP port", file=sys.stderr)
        return 2
    setup_logging(args.log_file, args.log_level)
    return run_service(_main, args, pidfile=args.pidfile, program="volfile-server")


async def _main(args) -> None:
    server = VolfileServer(args.dir)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(server.serve, args.address, args.port)
            except OSError as e:
                raise OSError(e.errno, f"cannot listen on {args.address}:{args.port}: "
                                       f"{e.strerror}") from None
            async for signum in signals:
                log.info("received signal %d, shutting down", signum)
                break
            nursery.cancel_scope.cancel()
