"""The `glusterpy` command.

Subcommands are added as the parts they drive exist; each lives in its own
module of this package and registers itself in `COMMANDS`.
"""

from __future__ import annotations

import argparse
import sys

from . import (bd_cmd, brick_cmd, gluster_cmd, mount_cmd, shd_cmd, token_cmd, volfile_cmd,
               volfile_server_cmd, vm_cmd)

#: module -> each has `register(subparsers)` adding its subcommands
COMMANDS = [volfile_cmd, brick_cmd, volfile_server_cmd, mount_cmd, gluster_cmd, bd_cmd,
            shd_cmd, vm_cmd, token_cmd]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glusterpy",
                                     description="glusterpy: a GlusterFS-compatible "
                                                 "distributed filesystem in Python")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(gluster_cmd.hoist_global_options(argv))
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
