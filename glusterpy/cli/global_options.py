"""The `glusterpy` CLI's global options: one parser for every command.

    glusterpy [--remote-host HOST[:PORT]|unix:PATH] [--token TOKEN] [--json]
              [--mode=script|interactive] [--yes] COMMAND ...

As the gluster CLI takes them, the global options come before the command
word, whatever the command: `glusterpy --remote-host node1 vm create-image
...`, `glusterpy --json volume info`.  The commands that took some of them
after the command word (`volume|peer|pool`: all of them; `vm`, `bd`:
`--remote-host`) still do, and there the later one wins.

* `--remote-host` (else $GLUSTERPY_REMOTE_HOST, else 127.0.0.1:24007): the
  glusterpyd to ask - for `volume`, `peer`, `pool`, `vm`, `token`, `tls`
  its REST API, for `bd` its volfile server (the same port);
* `--token` (else $GLUSTERPY_TOKEN): the API token a remote administrator
  presents (`glusterpy token create` makes one; glusterpy/cli/api_client.py);
* `--json`: the API's JSON instead of gluster's text, where a command has it;
* `--mode=script` / `--yes`: say yes to confirmations up front.

`--remote-host` and `--token` before a command that talks to no glusterpyd
(`mount`, `umount`, `brick`, `shd`, `volfile`, `volfile-server`) are an
error rather than silently ignored; an unknown option before the command
is a usage error (exit 2) with the usage line.

`apply(args, opts)` hands them to the command: after argparse, the
namespace carries `remote_host`, `token`, `json` and `yes`, each the
command's own (given after the command word) or else the global one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: the commands that talk to no glusterpyd, so take no --remote-host or
#: --token (every other command - volume, peer, pool, vm, bd, token, tls and
#: any new one - does)
LOCAL_COMMANDS = frozenset({"mount", "umount", "brick", "shd", "volfile", "volfile-server"})

USAGE = ("glusterpy [--remote-host HOST[:PORT]] [--token TOKEN] [--json] "
         "[--mode=script|interactive] [--yes] COMMAND ...")


class GlobalUsage(Exception):
    """A wrong global option; the message says which and what there is."""


@dataclass
class GlobalOptions:
    remote: str | None = None
    token: str | None = None
    json: bool = False
    yes: bool = False

    @property
    def remote_or_env(self) -> str | None:
        return self.remote or os.environ.get("GLUSTERPY_REMOTE_HOST") or None

    @property
    def token_or_env(self) -> str | None:
        return self.token or os.environ.get("GLUSTERPY_TOKEN") or None


def _value(argv: list[str], i: int, name: str) -> tuple[str, int]:
    """The value of `--name VALUE` or `--name=VALUE` at argv[i]; the next index."""
    a = argv[i]
    if a.startswith(name + "="):
        value = a[len(name) + 1:]
        step = 1
    elif i + 1 < len(argv) and (name == "--token" or not argv[i + 1].startswith("-")):
        value = argv[i + 1]
        step = 2
    else:
        value, step = "", 1
    if not value:
        raise GlobalUsage(f"{name} needs a value ({name} "
                          f"{'HOST[:PORT]' if name == '--remote-host' else 'TOKEN'})")
    return value, i + step


def split(argv: list[str]) -> tuple[GlobalOptions, list[str]]:
    """The global options before the command word, and the rest (from the
    command word on).  `-h`/`--help` and anything after it are left to
    argparse."""
    opts = GlobalOptions()
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help") or not a.startswith("-"):
            break
        if a == "--remote-host" or a.startswith("--remote-host="):
            opts.remote, i = _value(argv, i, "--remote-host")
            continue
        if a == "--token" or a.startswith("--token="):
            opts.token, i = _value(argv, i, "--token")
            continue
        if a == "--json":
            opts.json = True
        elif a in ("--yes", "-y", "--mode=script"):
            opts.yes = True
        elif a == "--mode=interactive":
            opts.yes = False
        elif a.startswith("--mode"):
            raise GlobalUsage(f"unknown mode {a.partition('=')[2]!r} (--mode=script or "
                              "--mode=interactive)")
        elif a == "--xml":
            raise GlobalUsage("--xml is not supported; use --json")
        else:
            raise GlobalUsage(f"unknown global option {a!r}")
        i += 1
    rest = argv[i:]
    if rest and rest[0] in LOCAL_COMMANDS:
        given = [n for n, v in (("--remote-host", opts.remote), ("--token", opts.token)) if v]
        if given:
            raise GlobalUsage(f"{' and '.join(given)}: `glusterpy {rest[0]}` talks to no "
                              "glusterpyd (they are for the commands that do: volume, peer, "
                              "pool, vm, bd, token, tls)")
    return opts, rest


def apply(args, opts: GlobalOptions) -> None:
    """Give the command its options: its own (after the command word) win,
    the global ones fill in the rest."""
    args.global_options = opts
    if getattr(args, "remote_host", None) is None:
        args.remote_host = opts.remote
    if getattr(args, "token", None) is None:
        args.token = opts.token
    if not getattr(args, "json", False):
        args.json = opts.json
    if not getattr(args, "yes", False):
        args.yes = opts.yes


__all__ = ["GlobalOptions", "GlobalUsage", "split", "apply", "LOCAL_COMMANDS", "USAGE"]
