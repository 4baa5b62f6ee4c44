"""The trio-native client: a mounted volume as path-based async calls.

`AsyncVolume` does what libgfapi's glfs_* calls do: it resolves paths to
gfids by walking them one component at a time with lookup fops (following
symlinks as POSIX does, ELOOP after 40), keeps a dentry cache for the
directories it passes through, and winds fops into the top of a translator
graph.  `glusterpy.gfapi.Volume` is the synchronous facade over it.

    async with AsyncVolume.from_volfile("demo.vol") as vol:
        async with await vol.open("/a.txt", os.O_CREAT | os.O_WRONLY) as f:
            await f.write(b"hello")

A remote volume (`AsyncVolume.from_server(hosts, volname, port)`) gets its
graph at mount time: the client volfile fetched with GETSPEC from the first
volfile server that answers (`gfapi.mgmt`), whose protocol/client
translators then connect to the bricks.  As libgfapi's glfs_init, mount
waits for the first CHILD_UP or CHILD_DOWN to reach the top of the graph
(CHILD_DOWN fails the mount), and it keeps a connection to the volfile
server: a FETCHSPEC there, or VOLFILE_MODIFIED from a brick, fetches the
volfile again.  A volfile that changes only options is applied to the
running graph (Graph.reconfigure); one that changes the graph's shape (a
brick added, a translator switched on or off) is a graph switch, as
GlusterFS's glfs_graph_setup/glfs_migrate_openfds do: the new graph is
started and must come up, new calls go to it, every open file and
directory is reopened on it by gfid (handles keep working, offsets kept;
their calls wait while they move, and a file's writes still behind on the
old graph are sent there first with an fsync, as glfs_migrate_fd does),
calls already running on the old graph finish there, and only then is the
old graph released and stopped.  Departure: POSIX locks held through an
fd do not move to the new graph (GlusterFS moves them with
lock-migration); a failed switch keeps the old graph.

Errors surface as OSError with the errno the translators raised
(`FopError` never escapes the client).  Following libgfapi, an absolute
symlink target is resolved from the root of the volume.

The client, by concern: `mount.py` the volume's lifecycle (mount, the
remote volfile and graph switches, logging, umount), `resolve.py` path
resolution, `namespace.py` the calls on names and opening, `xattrs.py`
extended attributes, `conveniences.py` the os/shutil-like calls built on
those, `files.py` AsyncFile, `dirs.py` AsyncDir and the directory entries,
`common.py` what they share (errors at the edge, stat results, the graph a
call is pinned to).  Each part of AsyncVolume is a mixin; this module
composes them and is the import path of every public name.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from contextlib import AsyncExitStack

import trio

from ..fops import Caller, Iatt
from ..graph import Graph
from .common import LiveGraph, log, stat_result, statvfs_result
from .conveniences import VolumeConveniences
from .dirs import READDIR_SIZE, AsyncDir, DirEntry, DirectoryEntry
from .files import READ_ALL_CHUNK, SEEK_DATA, SEEK_HOLE, AsyncFile, mode_to_flags
from .mount import SWITCH_DRAIN_TIMEOUT, ForwardHandler, VolumeMount, process_umask
from .namespace import VolumeNamespace
from .resolve import MAX_SYMLINKS, Node, PathResolution
from .xattrs import XATTR_CREATE, XATTR_REPLACE, VolumeXattrs

__all__ = [
    "AsyncVolume", "AsyncFile", "AsyncDir", "DirectoryEntry", "DirEntry", "mode_to_flags",
    "stat_result", "statvfs_result", "SEEK_DATA", "SEEK_HOLE", "XATTR_CREATE", "XATTR_REPLACE",
    "MAX_SYMLINKS", "READDIR_SIZE", "READ_ALL_CHUNK", "SWITCH_DRAIN_TIMEOUT", "log",
]


class AsyncVolume(VolumeMount, PathResolution, VolumeNamespace, VolumeXattrs,
                  VolumeConveniences):
    """A volume mounted through a translator graph, used from trio."""

    def __init__(self, graph: Graph | None, *, volname: str | None = None,
                 mount_timeout: float = 30.0, servers=None):
        if graph is None and (servers is None or volname is None):
            raise ValueError("a volume needs a graph, or volfile servers and a volume name")
        self.graph = graph
        self.volname = volname or graph.top.name
        self.mount_timeout = mount_timeout
        #: volfile servers (mgmt.VolfileServer) when the graph comes from GETSPEC
        self.servers = servers
        #: the pass-through translators left out of the fetched graph
        self.elided: list[str] = []
        self._volfile_text: str | None = None
        self._log_handler: logging.Handler | None = None
        self._log_level = logging.NOTSET
        self._log_forward = ForwardHandler()
        self._nursery: trio.Nursery | None = None
        self._live: LiveGraph | None = None
        self._watch = None  # mgmt.VolfileWatch of a remote volume while mounted
        self.umask = process_umask()
        self.identity = Caller(uid=os.geteuid(), gid=os.getegid(),
                               groups=tuple(os.getgroups()), pid=os.getpid())
        self._stack: AsyncExitStack | None = None
        self._root: Node | None = None
        self._cwd: list[Node] = []
        #: (parent gfid, name) -> iatt of directories passed through, least
        #: recently used first, as many as the graph's inode table keeps
        self._dentries: OrderedDict[tuple[bytes, str], Iatt] = OrderedDict()
        self._open: set[AsyncFile | AsyncDir] = set()
        self._unmounting = False
