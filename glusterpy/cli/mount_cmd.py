"""`glusterpy mount HOST[:PORT]:/VOL MOUNTPOINT [-o OPTIONS] [-N]`,
`glusterpy umount MOUNTPOINT`, and the mount helper `mount.glusterpy` that
mount(8) runs for `mount -t glusterpy`: the FUSE client, as `mount -t
glusterfs` starts GlusterFS's.

The volume's client volfile comes from the volfile server (glusterpyd,
GlusterFS's glusterd, or `glusterpy volfile-server`) over GETSPEC, as the
glusterfs FUSE client fetches it; `--volfile FILE` (or, for the helper, a
readable volfile as the spec, as mount.glusterfs allows) mounts a local
graph instead (glusterfs -f FILE).  Options (-o) use GlusterFS's names: ro,
direct-io-mode=enable|disable, attribute-timeout=SECONDS,
entry-timeout=SECONDS, gid-timeout=SECONDS, log-level=LEVEL, log-file=PATH,
backup-volfile-servers=H1:H2, server-port=PORT, transport=tcp,
capability, selinux (security xattrs kept on the client otherwise), the
kernel's nosuid/nodev/noexec/noatime/sync/dirsync (and their opposites),
auto_unmount; fstab's housekeeping (defaults, _netdev, nofail, x-*) is
accepted.  A mount from a volfile server follows the volfile's changes
without a remount.

The helper follows util-linux's convention for external helpers,
`/sbin/mount.glusterpy SPEC DIR [-sfnv] [-N NAMESPACE] [-o OPTIONS]
[-t TYPE]`: -s ignores unknown options (sloppy), -f checks everything but
mounts nothing (fake), -n is accepted (there is no mtab to write), -v says
what it does, -N mounts inside that mount namespace (mount(8) passes a
/proc/PID/fd/N path), -t must name glusterpy.  It exits 0, 1 for a wrong
invocation or 32 when the mount failed, mount(8)'s own codes.  Unlike
mount.glusterfs, which shells out to the glusterfs binary, it mounts in
its own process, which stays behind (daemonised) to serve the mount;
`umount DIR` (or `glusterpy umount`, `fusermount3 -u`) ends it.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import sys

from ..fuse.mount import MountError, MountOptions, Refetch, run_mount, unmount
from ..gfapi.mgmt import DEFAULT_PORT, fetch_client_graph, volfile_servers
from ..graph import Graph

SPEC = re.compile(r"^(?P<hosts>\[[0-9a-fA-F:.]+\]|[^:/]+(?:,[^:/]+)*)(?::(?P<port>\d+))?:/?"
                  r"(?P<volume>[^/:]+)/?$")

#: mount(8)'s exit codes (mount(8), RETURN CODES)
EX_USAGE, EX_FAIL = 1, 32
HELPER = "mount.glusterpy"
FS_TYPES = ("glusterpy", "fuse.glusterpy")


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


def parse_spec(spec: str) -> tuple[list[str], int | None, str]:
    """HOST[:PORT]:/VOLUME (also HOST:VOLUME, h1,h2:/VOLUME, [v6]:/VOLUME)."""
    m = SPEC.match(spec)
    if not m:
        raise MountError(f"{spec!r} is not HOST[:PORT]:/VOLUME")
    hosts = [h.strip("[]") for h in m.group("hosts").split(",")]
    port = m.group("port")
    return hosts, int(port) if port else None, m.group("volume")


def graph_maker(spec: str | None, volfile: str | None, opts: MountOptions,
                xlator_options: list[str] = ()):
    """The coroutine function that gives the mount's graph (and, from a
    volfile server, where to follow its changes); sets `opts.fsname`."""
    if volfile:
        if spec:
            raise MountError("give HOST:/VOLUME or a volfile, not both")
        if not os.access(volfile, os.R_OK):
            raise MountError(f"cannot read the volfile {volfile}")
        opts.fsname = f"glusterpy:{volfile}"

        async def from_file():
            return Graph.from_file(volfile, list(xlator_options))
        return from_file
    if not spec:
        raise MountError("which volume? give HOST[:PORT]:/VOLUME")
    if xlator_options:
        # the served volfile is the volume's; options belong in `volume set`
        raise MountError("--xlator-option applies to a --volfile mount only")
    hosts, port, volume = parse_spec(spec)
    if port is None:
        port = opts.server_port or DEFAULT_PORT
    opts.fsname = spec
    servers = volfile_servers(hosts + opts.backup_volfile_servers, port, opts.transport)

    async def fetched():
        try:
            graph, got, elided = await fetch_client_graph(servers, volume, process_name="fuse")
        except Exception as e:  # LibgfapiException and kin: say why, plainly
            while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
                e = e.exceptions[0]  # trio wraps what fails in its nurseries
            raise MountError(str(e)) from None
        # follow the volfile: FETCHSPEC makes the mount switch graphs
        return graph, Refetch(servers, volume, got.text)
    return fetched


def mount_command(args) -> int:
    try:
        opts = MountOptions.parse(args.options)
        make_graph = graph_maker(args.spec, args.volfile, opts, args.xlator_option)
    except MountError as e:
        print(f"glusterpy mount: {e}", file=sys.stderr)
        return 2
    return run_mount(make_graph, args.mountpoint, opts, foreground=args.foreground)


# -- the mount helper -------------------------------------------------------------------

def _helper_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=HELPER, add_help=False,
        usage=f"{HELPER} HOST[:PORT]:/VOLUME|VOLFILE DIR [-sfnv] [-N NS] [-o OPTIONS] "
              "[-t TYPE]",
        description="mount(8)'s helper for `mount -t glusterpy`.")
    p.add_argument("spec", nargs="?")
    p.add_argument("mountpoint", nargs="?")
    p.add_argument("-o", dest="options", action="append", default=[])
    p.add_argument("-s", dest="sloppy", action="store_true")
    p.add_argument("-f", dest="fake", action="store_true")
    p.add_argument("-n", dest="no_mtab", action="store_true")
    p.add_argument("-v", dest="verbose", action="store_true")
    p.add_argument("-N", dest="namespace")
    p.add_argument("-t", dest="type")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("-V", "--version", action="store_true")
    return p


class _UsageError(Exception):
    pass


def helper_main(argv: list[str] | None = None) -> int:
    """`mount.glusterpy SPEC DIR [-sfnv] [-N NS] [-o OPTIONS] [-t TYPE]`."""
    parser = _helper_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, rest = parser.parse_known_args(argv)
        if args.help:
            parser.print_help()
            return 0
        if args.version:
            from .. import __version__
            print(f"{HELPER} (glusterpy) {__version__}")
            return 0
        if rest:
            raise _UsageError(f"unexpected arguments: {' '.join(rest)}")
        if not args.spec or not args.mountpoint:
            raise _UsageError("give the volume and the mount point")
        if args.type and args.type not in FS_TYPES:
            raise _UsageError(f"-t {args.type}: this helper mounts {FS_TYPES[0]} only")
        opts = MountOptions.parse(",".join(args.options), sloppy=args.sloppy)
        # mount.glusterfs's rule: a readable file as the spec is a volfile
        local = os.path.isfile(args.spec) and os.access(args.spec, os.R_OK)
        make_graph = graph_maker(None if local else args.spec, args.spec if local else None,
                                 opts)
    except (_UsageError, MountError) as e:
        print(f"{HELPER}: {e}", file=sys.stderr)
        parser.print_usage(sys.stderr)
        return EX_USAGE
    except Exception as e:  # e.g. a transport volfile_servers() refuses
        print(f"{HELPER}: {e}", file=sys.stderr)
        return EX_USAGE
    mountpoint = os.path.abspath(args.mountpoint)  # before a namespace moves our cwd
    if args.namespace:
        try:
            enter_mount_namespace(args.namespace)
        except OSError as e:
            print(f"{HELPER}: cannot enter the mount namespace {args.namespace}: "
                  f"{e.strerror or e}", file=sys.stderr)
            return EX_FAIL
    if args.verbose:
        source = args.spec if local else f"volume {args.spec} (volfile servers: " \
            f"{', '.join(str(s) for s in _servers_of(args.spec, opts))})"
        print(f"{HELPER}: mounting {source} on {mountpoint}"
              + (" (fake: nothing is mounted)" if args.fake else ""), file=sys.stderr)
    if args.fake:
        from ..fuse.mount import check_mountpoint
        try:
            check_mountpoint(mountpoint)
        except MountError as e:
            print(f"{HELPER}: {e}", file=sys.stderr)
            return EX_FAIL
        return 0
    status = run_mount(make_graph, mountpoint, opts, prog=HELPER, failure_status=EX_FAIL)
    if status == 0 and args.verbose:
        print(f"{HELPER}: mounted on {mountpoint}", file=sys.stderr)
    return status


def _servers_of(spec: str, opts: MountOptions):
    hosts, port, _ = parse_spec(spec)
    return volfile_servers(hosts + opts.backup_volfile_servers,
                           port or opts.server_port or DEFAULT_PORT, opts.transport)


CLONE_NEWNS = 0x00020000


def enter_mount_namespace(target: str) -> None:
    """setns(2) into the mount namespace `target` names: a path such as
    /proc/PID/ns/mnt or mount(8)'s /proc/PID/fd/N, or a bare PID.  The
    process must still be single-threaded (it is: this runs first)."""
    path = f"/proc/{target}/ns/mnt" if target.isdigit() else target
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNS) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


def helper_entry() -> None:
    """The console script `mount.glusterpy`."""
    sys.exit(helper_main())


__all__ = ["helper_main", "helper_entry", "graph_maker", "parse_spec", "mount_command",
           "enter_mount_namespace", "EX_USAGE", "EX_FAIL"]
