"""The `glusterpy` command.

    glusterpy [GLOBAL OPTIONS] COMMAND ...

Subcommands are added as the parts they drive exist; each lives in its own
module of this package and registers itself in `COMMANDS`.  The global
options (--remote-host, --token, --json, --mode=script, --yes) are parsed
here, once, for every command (glusterpy/cli/global_options.py).
"""

from __future__ import annotations

import argparse
import sys

from . import (bd_cmd, brick_cmd, georep_cmd, global_options, gluster_cmd, mount_cmd, nbd_cmd,
               shd_cmd, tls_cmd, token_cmd, volfile_cmd, volfile_server_cmd, vm_cmd)

#: module -> each has `register(subparsers)` adding its subcommands
COMMANDS = [volfile_cmd, brick_cmd, volfile_server_cmd, mount_cmd, gluster_cmd, bd_cmd,
            shd_cmd, vm_cmd, token_cmd, tls_cmd, nbd_cmd, georep_cmd]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glusterpy", usage=global_options.USAGE,
                                     description="glusterpy: a GlusterFS-compatible "
                                                 "distributed filesystem in Python",
                                     epilog=global_options.__doc__.split("\n\n")[2])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", prog="glusterpy")
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts, rest = global_options.split(argv)
    except global_options.GlobalUsage as e:
        parser.error(str(e))  # usage line, message, exit 2
    args = parser.parse_args(rest)
    global_options.apply(args, opts)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
