"""The `glusterpy` command.

    glusterpy [GLOBAL OPTIONS] COMMAND ...

Subcommands are added as the parts they drive exist; each lives in its own
module of this package, listed in `COMMAND_MODULES`, whose `register`
adds it; `COMMAND_OF` says which module a command word needs.  The global
options (--remote-host, --token, --json, --mode=script, --yes) are parsed
here, once, for every command (glusterpy/cli/global_options.py).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import global_options

#: the modules with a `register(subparsers)` adding their subcommands, in
#: the order `--help` lists them
COMMAND_MODULES = ["volfile_cmd", "brick_cmd", "volfile_server_cmd", "mount_cmd",
                   "gluster_cmd", "bd_cmd", "shd_cmd", "vm_cmd", "token_cmd", "tls_cmd",
                   "nbd_cmd", "georep_cmd"]

#: command word -> the module that registers it.  Only that module is
#: imported for a command: the daemons' modules bring trio, gfapi and the
#: translators (~0.6 s), which `volume status` does not need.
#: tests/test_cli_main.py holds this table to what each module registers.
COMMAND_OF = {"volfile": "volfile_cmd", "brick": "brick_cmd",
              "volfile-server": "volfile_server_cmd", "mount": "mount_cmd",
              "umount": "mount_cmd", "volume": "gluster_cmd", "peer": "gluster_cmd",
              "pool": "gluster_cmd", "bd": "bd_cmd", "shd": "shd_cmd", "vm": "vm_cmd",
              "token": "token_cmd", "tls": "tls_cmd", "nbd": "nbd_cmd",
              "gsyncd": "georep_cmd"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `command` alone when it is one
    (its module is the only one imported)."""
    parser = argparse.ArgumentParser(prog="glusterpy", usage=global_options.USAGE,
                                     description="glusterpy: a GlusterFS-compatible "
                                                 "distributed filesystem in Python",
                                     epilog=global_options.__doc__.split("\n\n")[2])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", prog="glusterpy")
    sub.required = True
    names = [COMMAND_OF[command]] if command in COMMAND_OF else COMMAND_MODULES
    for name in names:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts, rest = global_options.split(argv)
    except global_options.GlobalUsage as e:
        build_parser().error(str(e))  # usage line, message, exit 2
    parser = build_parser(rest[0] if rest else None)
    args = parser.parse_args(rest)
    global_options.apply(args, opts)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
