"""Where the CLI finds its node's glusterpyd without a network: the unix socket.

glusterpyd listens on WORKDIR/run/glusterpyd.socket (mode 0600, so only its
owner - root - can connect) and checks each caller's uid with SO_PEERCRED;
that is what makes local administration need no credentials, like
gluster's /var/run/glusterd.socket.

The CLI names a daemon the way it always has - HOST:PORT, 127.0.0.1:24007
by default - so that every command and script keeps working.  When HOST is
an address of this machine the CLI looks the port up in REGISTRY_DIR, where
each daemon links `<netns>-<port>.socket` to its socket.  The network
namespace's inode is part of the name because the same 127.0.0.1:24007 is
a different daemon in another namespace.  REGISTRY_DIR is root's
(/run/glusterpy, 0755): nobody else can plant a link there, and the CLI
also checks that the process at the other end is root or itself.
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

REGISTRY_DIR = Path(os.environ.get("GLUSTERPY_RUN_DIR", "/run/glusterpy"))
SOCKET_NAME = "glusterpyd.socket"


def netns_id() -> int:
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return 0


def registry_path(port: int) -> Path:
    return REGISTRY_DIR / f"{netns_id()}-{port}.socket"


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a unix socket,
    as the kernel recorded them at connect time."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def is_local_address(host: str) -> bool:
    """Whether `host` names this machine: its name, or an address a socket
    can bind to here - true exactly for the addresses of local interfaces,
    in this network namespace."""
    if host in ("localhost", socket.gethostname()):
        return True
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        # no such name, or not a name at all ("..", an empty or 64-byte label)
        return False
    for family, _, _, _, addr in infos:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((addr[0], 0))
            return True
        except OSError:
            continue
    return False


def trusted_uid(uid: int) -> bool:
    """Root, or whoever runs this process (a daemon run by a user for
    itself trusts that user)."""
    return uid == 0 or uid == os.geteuid()


__all__ = ["REGISTRY_DIR", "SOCKET_NAME", "netns_id", "registry_path", "is_local_address", "peer_credentials",
           "trusted_uid"]
