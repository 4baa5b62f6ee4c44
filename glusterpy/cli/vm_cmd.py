"""`glusterpy vm disk-xml|create-image|clone|snapshot`: VM disks on a glusterpy volume.

    glusterpy [GLOBAL OPTIONS] vm disk-xml VOL IMAGE [--format raw|qcow2] [--cache MODE]
                          [--target vda] [--protocol gluster|nbd] [--host HOST]
                          [--remote-host HOST[:PORT]] [--log-file F]
    glusterpy [GLOBAL OPTIONS] vm create-image VOL IMAGE [SIZE] [--format raw|qcow2]
                          [--backing IMAGE [--backing-format raw|qcow2]]
                          [--remote-host HOST[:PORT]] [--log-file F]
    glusterpy [GLOBAL OPTIONS] vm clone VOL SRC DST [--no-progress] [--remote-host ...]
    glusterpy [GLOBAL OPTIONS] vm snapshot VOL IMAGE SNAP [--no-progress] [...]

`disk-xml` prints the libvirt <disk type='network'> element that boots a
guest from VOL/IMAGE over QEMU's gluster driver: a <host> for every node
holding a brick of VOL, with that node's glusterpyd port (from the daemon's
volume info and pool list).  The image must exist; its format is never
guessed (a guest can write a qcow2 header into a raw disk), so raw is the
default, a raw disk that starts like a qcow2 image gets a warning and
`--format qcow2` on an image that is not one is refused.  `--protocol nbd`
gives the disk over the volume's NBD exports instead (`volume set VOL
nbd.export on`; glusterpy/nbd): libvirt takes one <host> there, the first
node holding a brick or --host; the other nodes follow in a comment.

`create-image` makes the image through gfapi: raw is a sparse file of SIZE,
qcow2 an empty qcow2 v3 image written here (glusterpy.vm.qcow2_metadata).
SIZE takes 4096, 512K, 10M, 2G, 1T (powers of 1024) and rounds up to 512
bytes, as qemu-img's does.  Images are thin: a SIZE beyond the volume's
free space is made, with a note saying so; writes past the free space
fail with ENOSPC in the guest, as on GlusterFS.

`--backing BASE` makes IMAGE a qcow2 overlay of BASE (in the same
volume): unwritten clusters read from BASE, named in the overlay as QEMU
opens it, gluster://HOST:PORT/VOL/BASE (the first node holding a brick),
with its format (probed unless --backing-format says it).  SIZE defaults
to BASE's virtual size.

`clone` copies SRC to a new image DST, and `snapshot` copies IMAGE to a
new read-only (0400) image SNAP, both with copy_file_range through the
volume's translators: the bricks copy (a reflink, instant, on XFS bricks;
each replica its own copy; stripe piece by piece), the client sends
requests, not the image.  A progress bar goes to stderr on a terminal
(--no-progress leaves it out).  A snapshot of a bd volume's LV as a
copy-on-write LV is `glusterpy bd snapshot`.

The daemon is 127.0.0.1:24007 unless --remote-host or $GLUSTERPY_REMOTE_HOST
says otherwise (before `vm`, as every command takes the global options -
glusterpy/cli/global_options.py - or after it); it also serves the volfile
gfapi mounts.  --token or $GLUSTERPY_TOKEN is the API token for a remote
daemon.  Failures print
"vm <command>: failed: <reason>" and exit 1; wrong arguments exit 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time

import trio

from .. import bd, vm
from ..gfapi import AsyncVolume, LibgfapiException
from .api_client import ApiClient, ApiFailure, quote_path


def register(sub) -> None:
    p = sub.add_parser("vm", help="VM disks on a volume: libvirt disk XML, images",
                       description=__doc__.split("\n\n")[0])
    vsub = p.add_subparsers(dest="vm_command", metavar="ACTION")
    vsub.required = True

    x = vsub.add_parser("disk-xml", help="print libvirt's <disk> element for VOL/IMAGE")
    x.add_argument("volume", metavar="VOL")
    x.add_argument("image", metavar="IMAGE")
    x.add_argument("--format", choices=vm.FORMATS, default="raw",
                   help="the image's format (default raw; never guessed)")
    x.add_argument("--cache", choices=vm.CACHE_MODES, default="none",
                   help="QEMU's cache mode (default none)")
    x.add_argument("--target", default="vda", help="the guest's device name (default vda)")
    x.add_argument("--protocol", choices=vm.PROTOCOLS, default="gluster",
                   help="gluster (QEMU's gluster driver, the default) or nbd (the volume's "
                        "NBD exports: volume set VOL nbd.export on)")
    x.add_argument("--host", metavar="HOST",
                   help="with --protocol nbd: the node the disk connects to (default: "
                        "the first node holding a brick)")
    x.set_defaults(func=disk_xml_command)

    c = vsub.add_parser("create-image", help="create IMAGE of SIZE in VOL through gfapi")
    c.add_argument("volume", metavar="VOL")
    c.add_argument("image", metavar="IMAGE")
    c.add_argument("size", metavar="SIZE", nargs="?",
                   help="4096, 512K, 10M, 2G, 1T (with --backing: default its size)")
    c.add_argument("--format", choices=vm.FORMATS, default=None,
                   help="raw (a sparse file, the default) or qcow2 (the default with "
                        "--backing)")
    c.add_argument("--backing", metavar="IMAGE",
                   help="make a qcow2 overlay of IMAGE (in the same volume)")
    c.add_argument("--backing-format", choices=vm.FORMATS,
                   help="the backing image's format (default: probed)")
    c.set_defaults(func=create_image_command)

    k = vsub.add_parser("clone", help="copy SRC to a new image DST on the bricks")
    k.add_argument("volume", metavar="VOL")
    k.add_argument("src", metavar="SRC")
    k.add_argument("dst", metavar="DST")
    k.set_defaults(func=clone_command, read_only=False, what="vm clone")

    n = vsub.add_parser("snapshot", help="copy IMAGE to a new read-only image SNAP")
    n.add_argument("volume", metavar="VOL")
    n.add_argument("src", metavar="IMAGE")
    n.add_argument("dst", metavar="SNAP")
    n.set_defaults(func=clone_command, read_only=True, what="vm snapshot")
    for a in (k, n):
        a.add_argument("--no-progress", action="store_true",
                       help="no progress bar (there is none unless stderr is a terminal)")

    # --remote-host may come before the action (as `glusterpy volume` takes
    # it) or after it; the one after it wins
    remote_help = "glusterpyd to ask (default 127.0.0.1:24007 or $GLUSTERPY_REMOTE_HOST)"
    token_help = "API token for a remote glusterpyd (default $GLUSTERPY_TOKEN)"
    p.add_argument("--remote-host", metavar="HOST[:PORT]", help=remote_help)
    p.add_argument("--token", metavar="TOKEN", help=token_help)
    for a in (x, c, k, n):
        a.add_argument("--remote-host", metavar="HOST[:PORT]", help=remote_help,
                       default=argparse.SUPPRESS)
        a.add_argument("--token", metavar="TOKEN", help=token_help, default=argparse.SUPPRESS)
        a.add_argument("--log-file", metavar="FILE",
                       help="write the volume's client log here (default: none)")


def _started_volume(client: ApiClient, name: str) -> dict:
    """The daemon's volume info; ApiFailure names a volume that does not
    exist, VmError one that is not started (its images are out of reach)."""
    volume = client.call("GET", f"/api/v1/volumes/{quote_path(name)}")
    if volume.get("status") != "Started":
        raise vm.VmError(f"volume {name} is not started (glusterpy volume start {name})")
    return volume


def _mount(client: ApiClient, name: str, log_file: str | None) -> AsyncVolume:
    # the daemon asked is also the volfile server gfapi fetches VOL from
    volume = AsyncVolume.from_server(client.host, name, client.port)
    # the translators' log goes to --log-file (INFO) or nowhere (level 0, as
    # glfs_set_logging takes it): the command says itself what went wrong
    volume.set_logging(log_file, 7 if log_file else 0)
    return volume


def disk_xml_command(args) -> int:
    what = "vm disk-xml"
    try:
        image = vm.image_path(args.image)
        client = ApiClient(args.remote_host, token=getattr(args, "token", None))
        volume = _started_volume(client, args.volume)
        if args.protocol == "nbd":
            servers = vm.nbd_servers(volume)
            if args.host:
                chosen = [s for s in servers if s[0] == args.host]
                if not chosen:
                    raise vm.VmError(f"{args.host} holds no brick of {args.volume}; "
                                     f"its NBD servers are on "
                                     f"{', '.join(h for h, _ in servers)}")
                servers = chosen + [s for s in servers if s[0] != args.host]
            xml = vm.nbd_disk_xml(args.volume, image, servers, fmt=args.format,
                                  cache=args.cache, target=args.target)
        else:
            servers = vm.volume_servers(volume, client.call("GET", "/api/v1/pool")["pool"])
            xml = vm.disk_xml(args.volume, image, servers, fmt=args.format, cache=args.cache,
                              target=args.target, transport=vm.transport_of(volume))
        info = trio.run(_inspect, _mount(client, args.volume, args.log_file), image)
    except (vm.VmError, ApiFailure, LibgfapiException) as e:
        return _fail(what, e)
    except OSError as e:
        return _fail(what, f"{args.volume}/{args.image}: {os.strerror(e.errno)}")
    if args.format == "qcow2" and not info.looks_qcow2:
        return _fail(what, f"{args.volume}/{image} is not a qcow2 image (no qcow2 header); "
                           "use --format raw")
    if args.format == "raw" and info.looks_qcow2:
        print(f"{what}: warning: {args.volume}/{image} starts with a qcow2 header; "
              "if it is a qcow2 image, use --format qcow2", file=sys.stderr)
    print(xml)
    return 0


async def _inspect(volume: AsyncVolume, image: str) -> vm.ImageInfo:
    async with volume as vol:
        return await vm.inspect_image(vol, image)


def create_image_command(args) -> int:
    what = "vm create-image"
    fmt = args.format or ("qcow2" if args.backing else "raw")
    try:
        image = vm.image_path(args.image)
        backing = vm.image_path(args.backing) if args.backing else None
        if args.size is None and backing is None:
            raise vm.VmError("SIZE is needed (or --backing IMAGE to take it from)")
        if args.backing_format and backing is None:
            raise vm.VmError("--backing-format needs --backing")
        if backing is not None and fmt != "qcow2":
            raise vm.VmError("only a qcow2 image can have a backing image (--format qcow2)")
        size = vm.round_size(bd.parse_size(args.size)) if args.size is not None else None
    except (vm.VmError, ValueError) as e:
        print(f"glusterpy {what}: {e}", file=sys.stderr)
        return 2
    try:
        if fmt == "qcow2" and size is not None:
            vm.qcow2_metadata(size)  # refuses a size qcow2 cannot hold, before any change
        client = ApiClient(args.remote_host, token=getattr(args, "token", None))
        volume = _started_volume(client, args.volume)
        servers = vm.volume_servers(volume, client.call("GET", "/api/v1/pool")["pool"])
        backing_url = vm.gluster_url(args.volume, backing, *servers[0]) if backing else None
        size, free = trio.run(_create, _mount(client, args.volume, args.log_file), image, size,
                              fmt, backing, backing_url, args.backing_format)
    except (vm.VmError, ApiFailure, LibgfapiException) as e:
        return _fail(what, e)
    except OSError as e:
        hint = " (the volume is full)" if e.errno == errno.ENOSPC else ""
        return _fail(what, f"{args.volume}/{image}: {os.strerror(e.errno)}{hint}")
    url = vm.gluster_url(args.volume, image, *servers[0])
    over = f", over {backing_url}" if backing_url else ""
    print(f"created {url}: {fmt}, {vm.format_size(size)}{over}")
    if size > free:
        print(f"{what}: note: the image is thin: {vm.format_size(size)} virtual, "
              f"{vm.format_size(free)} free in volume {args.volume}", file=sys.stderr)
    return 0


async def _create(volume: AsyncVolume, image: str, size: int | None, fmt: str,
                  backing: str | None, backing_url: str | None,
                  backing_format: str | None) -> tuple[int, int]:
    """Create the image; return its size and the volume's free bytes afterwards."""
    async with volume as vol:
        base = await vm.backing_of(vol, backing, backing_url, backing_format) \
            if backing else None
        size = await vm.create_image(vol, image, size, fmt, base)
        st = await vol.statvfs("/")
        return size, st.f_bavail * st.f_frsize


def clone_command(args) -> int:
    """vm clone and vm snapshot: a copy by the bricks, with a progress bar."""
    what = args.what
    try:
        src, dst = vm.image_path(args.src), vm.image_path(args.dst)
        if src == dst:
            raise vm.VmError("the source and the copy are the same image")
    except vm.VmError as e:
        print(f"glusterpy {what}: {e}", file=sys.stderr)
        return 2
    bar = None if args.no_progress or not sys.stderr.isatty() else _ProgressBar()
    try:
        client = ApiClient(args.remote_host, token=getattr(args, "token", None))
        volume = _started_volume(client, args.volume)
        servers = vm.volume_servers(volume, client.call("GET", "/api/v1/pool")["pool"])
        started = time.monotonic()
        copied = trio.run(_clone, _mount(client, args.volume, args.log_file), src, dst,
                          args.read_only, bar)
    except (vm.VmError, ApiFailure, LibgfapiException) as e:
        return _fail(what, e)
    except OSError as e:
        hint = " (the volume is full)" if e.errno == errno.ENOSPC else ""
        return _fail(what, f"{args.volume}/{dst}: {os.strerror(e.errno)}{hint}")
    finally:
        if bar is not None:
            bar.end()
    seconds = time.monotonic() - started
    url = vm.gluster_url(args.volume, dst, *servers[0])
    kind = "read-only snapshot" if args.read_only else "clone"
    print(f"created {url}: {kind} of {src}, {vm.format_size(copied)} in {seconds:.2f} s")
    return 0


async def _clone(volume: AsyncVolume, src: str, dst: str, read_only: bool, bar) -> int:
    async with volume as vol:
        return await vm.clone_image(vol, src, dst, read_only=read_only,
                                    progress=bar.show if bar is not None else None)


class _ProgressBar:
    """One line on stderr, redrawn: [#####-----]  42%  1.2 GiB of 3 GiB."""

    WIDTH = 30

    def __init__(self):
        self.drawn = False

    def show(self, done: int, total: int) -> None:
        filled = self.WIDTH * done // total if total else self.WIDTH
        percent = 100 * done // total if total else 100
        sys.stderr.write(f"\r[{'#' * filled}{'-' * (self.WIDTH - filled)}] {percent:3d}%  "
                         f"{vm.format_size(done)} of {vm.format_size(total)}   ")
        sys.stderr.flush()
        self.drawn = True

    def end(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _fail(what: str, e) -> int:
    print(f"{what}: failed: {e}", file=sys.stderr)
    return 1
