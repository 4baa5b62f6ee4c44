"""`glusterpy vm disk-xml|create-image`: VM disks on a glusterpy volume.

    glusterpy [GLOBAL OPTIONS] vm disk-xml VOL IMAGE [--format raw|qcow2] [--cache MODE]
                          [--target vda] [--protocol gluster|nbd] [--host HOST]
                          [--remote-host HOST[:PORT]] [--log-file F]
    glusterpy [GLOBAL OPTIONS] vm create-image VOL IMAGE SIZE [--format raw|qcow2]
                          [--remote-host HOST[:PORT]] [--log-file F]

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
    c.add_argument("size", metavar="SIZE", help="4096, 512K, 10M, 2G, 1T")
    c.add_argument("--format", choices=vm.FORMATS, default="raw",
                   help="raw (a sparse file, the default) or qcow2")
    c.set_defaults(func=create_image_command)

    # --remote-host may come before the action (as `glusterpy volume` takes
    # it) or after it; the one after it wins
    remote_help = "glusterpyd to ask (default 127.0.0.1:24007 or $GLUSTERPY_REMOTE_HOST)"
    token_help = "API token for a remote glusterpyd (default $GLUSTERPY_TOKEN)"
    p.add_argument("--remote-host", metavar="HOST[:PORT]", help=remote_help)
    p.add_argument("--token", metavar="TOKEN", help=token_help)
    for a in (x, c):
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
    try:
        image = vm.image_path(args.image)
        size = vm.round_size(bd.parse_size(args.size))
    except (vm.VmError, ValueError) as e:
        print(f"glusterpy {what}: {e}", file=sys.stderr)
        return 2
    try:
        if args.format == "qcow2":
            vm.qcow2_metadata(size)  # refuses a size qcow2 cannot hold, before any change
        client = ApiClient(args.remote_host, token=getattr(args, "token", None))
        volume = _started_volume(client, args.volume)
        servers = vm.volume_servers(volume, client.call("GET", "/api/v1/pool")["pool"])
        free = trio.run(_create, _mount(client, args.volume, args.log_file), image, size,
                        args.format)
    except (vm.VmError, ApiFailure, LibgfapiException) as e:
        return _fail(what, e)
    except OSError as e:
        hint = " (the volume is full)" if e.errno == errno.ENOSPC else ""
        return _fail(what, f"{args.volume}/{image}: {os.strerror(e.errno)}{hint}")
    url = vm.gluster_url(args.volume, image, *servers[0])
    print(f"created {url}: {args.format}, {vm.format_size(size)}")
    if size > free:
        print(f"{what}: note: the image is thin: {vm.format_size(size)} virtual, "
              f"{vm.format_size(free)} free in volume {args.volume}", file=sys.stderr)
    return 0


async def _create(volume: AsyncVolume, image: str, size: int, fmt: str) -> int:
    """Create the image; return the volume's free bytes afterwards."""
    async with volume as vol:
        await vm.create_image(vol, image, size, fmt)
        st = await vol.statvfs("/")
        return st.f_bavail * st.f_frsize


def _fail(what: str, e) -> int:
    print(f"{what}: failed: {e}", file=sys.stderr)
    return 1
