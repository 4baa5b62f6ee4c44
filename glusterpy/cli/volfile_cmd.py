"""`glusterpy volfile check FILE...`: load volfiles as a brick or client would,
reporting the first fault of each with its file and line."""

from __future__ import annotations

import sys

from ..graph import Graph
from ..volfile import VolfileError


def register(sub) -> None:
    p = sub.add_parser("volfile", help="check volfiles")
    vsub = p.add_subparsers(dest="volfile_command", metavar="ACTION")
    vsub.required = True
    check = vsub.add_parser("check", help="build the graph of each volfile without starting it")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--xlator-option", action="append", default=[], metavar="VOL.KEY=VALUE",
                       help="override an option, as glusterfs --xlator-option does")
    check.set_defaults(func=check_volfiles)


def check_volfiles(args) -> int:
    status = 0
    for path in args.files:
        try:
            graph = Graph.from_file(path, args.xlator_option)
        except VolfileError as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1
            continue
        names = " <- ".join(xl.name for xl in reversed(list(graph.bottom_up())))
        print(f"{path}: ok ({len(graph.by_name)} translators: {names})")
    return status
