"""python -m glusterpy.fuse --volfile FILE [-o OPTS] [-N] MOUNTPOINT

Mount the graph a local volfile describes (glusterfs -f FILE MOUNTPOINT).
`glusterpy mount` is the command users type; this entry point serves tests
and scripts that hold a volfile.
"""

import argparse
import sys

from ..graph import Graph
from .mount import MountError, MountOptions, run_mount


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glusterpy.fuse")
    parser.add_argument("--volfile", required=True)
    parser.add_argument("--xlator-option", action="append", default=[], metavar="VOL.KEY=VALUE")
    parser.add_argument("-o", dest="options", metavar="OPTS", help="mount options")
    parser.add_argument("-N", "--foreground", action="store_true")
    parser.add_argument("mountpoint")
    args = parser.parse_args(argv)
    try:
        opts = MountOptions.parse(args.options)
    except MountError as e:
        print(f"glusterpy mount: {e}", file=sys.stderr)
        return 2
    opts.fsname = f"glusterpy:{args.volfile}"

    async def make_graph():
        return Graph.from_file(args.volfile, args.xlator_option)
    return run_mount(make_graph, args.mountpoint, opts, foreground=args.foreground)


if __name__ == "__main__":
    sys.exit(main())
