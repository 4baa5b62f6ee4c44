"""`glusterpy mount HOST[:PORT]:/VOL MOUNTPOINT [-o OPTIONS] [-N]` and
`glusterpy umount MOUNTPOINT`: the FUSE client, as `mount -t glusterfs`.

The volume's client volfile comes from the volfile server (glusterpyd,
GlusterFS's glusterd, or `glusterpy volfile-server`) over GETSPEC, as the
glusterfs FUSE client fetches it; `--volfile FILE` mounts a local graph
instead (glusterfs -f FILE).  Options (-o) use GlusterFS's names: ro,
direct-io-mode=enable|disable, attribute-timeout=SECONDS,
entry-timeout=SECONDS, log-level=LEVEL, log-file=PATH.  A mount from a
volfile server follows the volfile's changes without a remount.
"""

from __future__ import annotations

import re
import sys

from ..fuse.mount import MountError, MountOptions, Refetch, run_mount, unmount
from ..gfapi.mgmt import DEFAULT_PORT, fetch_client_graph, volfile_servers
from ..graph import Graph

SPEC = re.compile(r"^(?P<hosts>\[[0-9a-fA-F:.]+\]|[^:/]+(?:,[^:/]+)*)(?::(?P<port>\d+))?:/"
                  r"(?P<volume>[^/]+)/?$")


def register(sub) -> None:
    p = sub.add_parser("mount", help="mount a volume with FUSE",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("spec", nargs="?", metavar="HOST[:PORT]:/VOLUME",
                   help="volfile server and volume (several hosts: h1,h2:/vol)")
    p.add_argument("mountpoint")
    p.add_argument("-o", dest="options", metavar="OPTIONS", help="comma-separated options")
    p.add_argument("-N", "--foreground", action="store_true", help="stay in the foreground")
    p.add_argument("--volfile", help="mount the graph of this local volfile instead")
    p.add_argument("--xlator-option", action="append", default=[], metavar="VOL.KEY=VALUE")
    p.set_defaults(func=mount_command)
    u = sub.add_parser("umount", help="unmount a glusterpy FUSE mount")
    u.add_argument("mountpoint")
    u.set_defaults(func=lambda args: unmount(args.mountpoint))


def parse_spec(spec: str) -> tuple[list[str], int, str]:
    m = SPEC.match(spec)
    if not m:
        raise MountError(f"{spec!r} is not HOST[:PORT]:/VOLUME")
    hosts = [h.strip("[]") for h in m.group("hosts").split(",")]
    return hosts, int(m.group("port") or DEFAULT_PORT), m.group("volume")


def mount_command(args) -> int:
    try:
        opts = MountOptions.parse(args.options)
        if args.volfile:
            if args.spec:
                raise MountError("give HOST:/VOLUME or --volfile, not both")
            opts.fsname = f"glusterpy:{args.volfile}"

            async def make_graph():
                return Graph.from_file(args.volfile, args.xlator_option)
        else:
            if not args.spec:
                raise MountError("which volume? give HOST[:PORT]:/VOLUME")
            hosts, port, volume = parse_spec(args.spec)
            opts.fsname = args.spec
            servers = volfile_servers(hosts, port)

            async def make_graph():
                try:
                    graph, fetched, elided = await fetch_client_graph(
                        servers, volume, process_name="fuse")
                except Exception as e:  # LibgfapiException and kin: say why, plainly
                    while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
                        e = e.exceptions[0]  # trio wraps what fails in its nurseries
                    raise MountError(str(e)) from None
                # follow the volfile: FETCHSPEC makes the mount switch graphs
                return graph, Refetch(servers, volume, fetched.text)
    except MountError as e:
        print(f"glusterpy mount: {e}", file=sys.stderr)
        return 2
    return run_mount(make_graph, args.mountpoint, opts, foreground=args.foreground)
