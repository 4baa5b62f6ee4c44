"""`glusterpy bd create|clone|snapshot|resize|delete`: LVs of a bd volume.

GlusterFS 3.4's `gluster bd` commands, done as the seed maps them, with
file operations through gfapi on the volume (so they work wherever the
volume is served, and every rule of storage/bd applies):

    glusterpy bd create   VOL:/VG/LV SIZE          create + ftruncate
    glusterpy bd clone    VOL:/VG/LV NEWLV         link: a full clone
    glusterpy bd snapshot VOL:/VG/LV NEWLV SIZE    symlink: an LVM snapshot, SIZE
                                                   its copy-on-write store
    glusterpy bd resize   VOL:/VG/LV SIZE [--force]  truncate
    glusterpy bd delete   VOL:/VG/LV               unlink: lvremove

VG must be the volume group the volume serves (the brick answers the
`glusterfs.bd.vg` xattr).  The volume is found through a volfile server -
glusterpyd's port: `--remote-host HOST[:PORT]` before `bd` (as every
command takes it, glusterpy/cli/global_options.py) or after it, `--server`
after the action, else $GLUSTERPY_REMOTE_HOST, else localhost:24007 - or in
a local volfile (`--volfile FILE`, only while no brick serves that VG).
`--token` is taken as everywhere else; the volfile and the bricks do not
ask for it.  SIZE
takes 4096, 512K, 10M, 2G (powers of 1024; rounded up to whole extents).
Errors name the cause; the exit status is 1 when the volume refused, 2 for
wrong input.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys

import trio

from .. import bd
from ..fops import GFID, ROOT_GFID, FopError, Loc
from ..gfapi import AsyncVolume, LibgfapiException
from ..gfapi.mgmt import DEFAULT_PORT
from ..keys import GFID_REQ

_VOLUME = re.compile(r"[A-Za-z0-9_.+-]+")
_SERVER = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[^:]+)(?::(?P<port>\d+))?$")

#: what each errno means for these commands, beyond strerror
_HINTS = {
    errno.ENOTSUP: "thin volumes and their snapshots need device-mapper in the brick's "
                   "kernel",
    errno.ENOSPC: "the volume group has not that much free space",
    errno.EEXIST: "an LV of that name exists",
    errno.ENOENT: "no such LV",
    errno.EBUSY: "the LV has snapshots (remove them first)",
    errno.EPERM: "that would cut data written to the LV (--force allows it)",
    errno.EINVAL: "LVM does not take that",
}


class UsageError(Exception):
    pass


def register(sub) -> None:
    p = sub.add_parser("bd", help="LVs of a bd volume: create, clone, snapshot, resize, delete",
                       description=__doc__.split("\n\n")[0])
    # --remote-host names the daemon as everywhere else in the CLI; before
    # ACTION it applies to whichever action follows
    p.add_argument("--remote-host", dest="remote_host", metavar="HOST[:PORT]",
                   help="the glusterpyd (or any volfile server) to ask; same as --server "
                   "(default $GLUSTERPY_REMOTE_HOST, else localhost:24007)")
    p.add_argument("--token", metavar="TOKEN", help=argparse.SUPPRESS)
    bsub = p.add_subparsers(dest="bd_command", metavar="ACTION")
    bsub.required = True

    def action(name, help_text, *args):
        a = bsub.add_parser(name, help=help_text)
        a.add_argument("target", metavar="VOL:/VG/LV")
        for arg in args:
            a.add_argument(arg)
        a.add_argument("--server", "--remote-host", default=None, metavar="HOST[:PORT]",
                       help="volfile server (default: $GLUSTERPY_REMOTE_HOST, else "
                       "localhost:24007)")
        a.add_argument("--token", metavar="TOKEN", default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS)
        a.add_argument("--volfile", help="use this local volfile instead of a server")
        a.set_defaults(func=bd_command, action=name)
        return a

    action("create", "make an LV of SIZE (create + truncate)", "size")
    action("clone", "copy an LV into a new one (link)", "new")
    action("snapshot", "snapshot an LV (symlink: copy-on-write, SIZE bytes of COW "
                       "store)", "new", "size")
    action("resize", "grow or shrink an LV (truncate)", "size").add_argument(
        "--force", action="store_true", help="shrink even below the data written")
    action("delete", "remove an LV (unlink)")


def parse_target(text: str) -> tuple[str, str, str]:
    """VOL:/VG/LV -> (VOL, VG, LV), or UsageError saying what is wrong."""
    vol, sep, path = text.partition(":")
    parts = path.strip("/").split("/") if sep else []
    if not sep or not path.startswith("/") or len(parts) != 2 or not all(parts):
        raise UsageError(f"{text!r} is not VOL:/VG/LV")
    if not _VOLUME.fullmatch(vol):
        raise UsageError(f"{vol!r} is not a volume name")
    vg, lv = parts
    check_name(lv, vg)
    return vol, vg, lv


def check_name(lv: str, vg: str) -> None:
    try:
        bd.check_lv_name(lv, vg)
    except ValueError as e:
        raise UsageError(str(e)) from None


def parse_size(text: str) -> int:
    try:
        size = bd.parse_size(text)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if size <= 0:
        raise UsageError(f"{text!r}: a size must be more than 0")
    return size


def bd_command(args) -> int:
    try:
        vol, vg, lv = parse_target(args.target)
        new = getattr(args, "new", None)
        if new is not None:
            check_name(new, vg)
        size = parse_size(args.size) if getattr(args, "size", None) is not None else None
        if args.volfile:
            volume = AsyncVolume.from_volfile(args.volfile)
        else:
            args.server = args.server or getattr(args, "remote_host", None) or \
                os.environ.get("GLUSTERPY_REMOTE_HOST") or f"localhost:{DEFAULT_PORT}"
            m = _SERVER.match(args.server)
            if not m:
                raise UsageError(f"{args.server!r} is not HOST[:PORT]")
            volume = AsyncVolume.from_server(m.group("host").strip("[]"), vol,
                                             int(m.group("port") or DEFAULT_PORT))
    except UsageError as e:
        print(f"glusterpy bd: {e}", file=sys.stderr)
        return 2
    try:
        print(trio.run(_run, volume, args.action, vg, lv, new, size,
                       getattr(args, "force", False)))
        return 0
    except UsageError as e:
        print(f"glusterpy bd: {e}", file=sys.stderr)
        return 2
    except (OSError, FopError) as e:
        err = e.errno
        print(f"glusterpy bd {args.action} {args.target}: {os.strerror(err)}"
              f"{' (' + _HINTS[err] + ')' if err in _HINTS else ''}", file=sys.stderr)
        return 1
    except LibgfapiException as e:
        print(f"glusterpy bd: {e}", file=sys.stderr)
        return 1


async def _run(volume: AsyncVolume, action: str, vg: str, lv: str, new: str | None,
               size: int | None, force: bool) -> str:
    async with volume as vol:
        try:
            served = (await vol.getxattr("/", bd.VG_KEY)).decode()
        except OSError as e:
            if e.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            raise UsageError(f"volume {vol.volname} is not a bd volume") from None
        if served != vg:
            raise UsageError(f"volume {vol.volname} serves volume group {served}, not {vg}")
        path, top = f"/{lv}", vol.graph.top
        if action == "create":
            f = await vol.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            try:
                await f.ftruncate(size)
            except BaseException:
                await f.close()
                await vol.unlink(path)      # no file left behind either
                raise
            await f.close()
            return f"created {vg}/{lv}: {await vol.getsize(path)} bytes"
        if action == "clone":
            await vol.link(path, f"/{new}")
            return f"cloned {vg}/{lv} to {vg}/{new}: {await vol.getsize(f'/{new}')} bytes"
        if action == "snapshot":
            await vol.stat(path)
            await top.symlink(lv, Loc(path=f"/{new}", pargfid=ROOT_GFID, name=new), 0,
                              {GFID_REQ: GFID.random(), bd.XDATA_SNAPSHOT_SIZE: size})
            return f"snapshot {vg}/{new} of {vg}/{lv} made"
        if action == "resize":
            found = await top.lookup(Loc(path=path, pargfid=ROOT_GFID, name=lv), None)
            await top.truncate(Loc(path=path, gfid=found.iatt.gfid), size,
                               {bd.XDATA_FORCE: 1} if force else None)
            return f"resized {vg}/{lv}: {await vol.getsize(path)} bytes"
        await vol.unlink(path)
        return f"deleted {vg}/{lv}"
