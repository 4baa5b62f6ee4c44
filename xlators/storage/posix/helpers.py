"""storage/posix's shared pieces (GlusterFS's posix.h and posix-helpers.c):
the brick's hidden directories, the fop decorators, the resolved inode and
the open file, and the xattr calls on a descriptor or a /proc path - with the
cache of the mdata xattr that every store through them retires."""

from __future__ import annotations

import ctypes
import errno
import functools
import itertools
import logging
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from glusterpy.fops import GFID, FopError
from glusterpy.keys import (ENTRYLK_COUNT, GFID_KEY, GFID_REQ, GFIDLESS_LOOKUP, INODELK_COUNT,
                            INODELK_DOM_COUNT, INTERNAL_FOP, MDATA_KEY, PARENT_ENTRYLK,
                            POSIXLK_COUNT)

from .evictor import SYNC as _EVICTOR_SYNC

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------
# GlusterFS's names and numbers

HIDDEN_DIR = ".glusterfs"
LANDFILL_DIR = "landfill"
UNLINK_DIR = "unlink"

#: xdata keys that are requests to posix, never xattrs (posix_ignore_xattrs)
IGNORED_KEYS = frozenset({
    GFID_REQ, INTERNAL_FOP, ENTRYLK_COUNT, INODELK_COUNT, POSIXLK_COUNT, PARENT_ENTRYLK,
    GFIDLESS_LOOKUP, INODELK_DOM_COUNT})
O_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC   # on every open: links are data
DIR_CACHE_MAX = 1024

# the C library, for the syscalls os has no call for (fallocate64, getdents64)
libc = ctypes.CDLL(None, use_errno=True)


def inline_fop(fn):
    """Make a fop from a synchronous implementation.

    The body runs inline in the calling trio task with no await in its
    middle, so fops never interleave; OSError becomes FopError with the same
    errno; and the cache of directory descriptors is trimmed between fops,
    never while one may still be using a descriptor it took from the cache.
    """
    @functools.wraps(fn)
    async def fop(self, *args, **kwargs):
        if self._retired or len(self._dirs) > DIR_CACHE_MAX:
            self._trim_dir_cache()
        try:
            return fn(self, *args, **kwargs)
        except OSError as e:
            raise FopError(e.errno if e.errno else errno.EIO) from None
    return fop


def offloading_fop(fn):
    """`inline_fop` for a fop whose body is a coroutine: the same trim of
    the descriptor cache before it and the same OSError -> FopError.  The
    body awaits at most one thing, `self._blocking(...)` (a worker of
    performance/io-threads, or inline without it); it uses no cached
    directory descriptor after that await."""
    @functools.wraps(fn)
    async def fop(self, *args, **kwargs):
        if self._retired or len(self._dirs) > DIR_CACHE_MAX:
            self._trim_dir_cache()
        try:
            return await fn(self, *args, **kwargs)
        except OSError as e:
            raise FopError(e.errno if e.errno else errno.EIO) from None
    return fop


class Node:
    """A resolved inode: its stat, gfid, and where *at calls reach it
    (at_fd, at_name) - a directory is reached as "." of its own descriptor."""

    __slots__ = ("gfid", "st", "at_fd", "at_name", "is_dir")

    def __init__(self, gfid: GFID | None, st: os.stat_result, at_fd: int, at_name: str):
        self.gfid = gfid
        self.st = st
        self.at_fd = at_fd
        self.at_name = at_name
        self.is_dir = stat.S_ISDIR(st.st_mode)

    @classmethod
    def directory(cls, dfd: int, st, gfid: GFID | None) -> "Node":
        return cls(gfid, st, dfd, ".")

    @classmethod
    def entry(cls, pfd: int, name: str, st, gfid: GFID | None) -> "Node":
        return cls(gfid, st, pfd, name)

    @property
    def target(self):
        """What xattr calls take: the descriptor of a directory, or a
        /proc/self/fd path used without following its last component."""
        if self.at_name == ".":
            return self.at_fd
        return entry_path(self.at_fd, self.at_name)

    def restat(self) -> None:
        self.st = os.stat(self.at_name, dir_fd=self.at_fd, follow_symlinks=False) \
            if self.at_name != "." else os.fstat(self.at_fd)
        self.is_dir = stat.S_ISDIR(self.st.st_mode)


class OpenFile:
    """What storage/posix keeps in fd.ctx: the OS descriptor and its flags."""

    __slots__ = ("osfd", "flags", "is_dir", "gfid", "odirect", "iatt_key", "iatt_fields",
                 "mdata", "inode")

    def __init__(self, osfd: int, flags: int, is_dir: bool, gfid: GFID | None):
        self.osfd = osfd
        self.flags = flags
        self.is_dir = is_dir
        self.gfid = gfid
        self.odirect = bool(flags & os.O_DIRECT)
        #: the last iatt made for this descriptor and what it was made of
        #: (PosixMdata._fd_iatt)
        self.iatt_key: tuple | None = None
        self.iatt_fields: tuple = ()
        #: the mdata xattr those fields were made with (None: absent, or ctime off)
        self.mdata: bytes | None = None
        #: (st_dev, st_ino) once an fstat or the fop that opened it showed
        #: them: a store of its mdata then retires only its own cache entry
        self.inode: tuple[int, int] | None = None


def entry_path(dirfd: int, name: str) -> str:
    # the kernel follows the magic /proc link to the directory we hold, then
    # looks `name` up in it; callers never follow the last component
    return f"/proc/self/fd/{dirfd}/{name}"


def xattr_bytes(value) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise FopError(errno.EINVAL, f"xattr values are bytes or str, not {type(value).__name__}")


def xget(target, key: str) -> bytes | None:
    """getxattr without following a link; None when the xattr is absent."""
    try:
        if isinstance(target, int):
            return os.getxattr(target, key)
        return os.getxattr(target, key, follow_symlinks=False)
    except OSError as e:
        if e.errno == errno.ENODATA:
            return None
        raise


def xget_quiet(target, key: str) -> bytes | None:
    try:
        return xget(target, key)
    except OSError:
        return None


def xset(target, key: str, value: bytes, flags: int,
         inode: tuple[int, int] | None = None) -> int:
    """setxattr without following a link.  `inode`, the (st_dev, st_ino)
    of `target` when the caller knows it, keeps a store of mdata or the
    gfid from retiring what MdataCache holds of other inodes; the answer
    is the store's number (MdataCache.stored)."""
    try:
        if isinstance(target, int):
            os.setxattr(target, key, value, flags)
        else:
            os.setxattr(target, key, value, flags, follow_symlinks=False)
    finally:
        n = MdataCache.xattr_stored(key, inode)
    return n


def xremove(target, key: str, inode: tuple[int, int] | None = None) -> None:
    try:
        if isinstance(target, int):
            os.removexattr(target, key)
        else:
            os.removexattr(target, key, follow_symlinks=False)
    finally:
        MdataCache.xattr_stored(key, inode)


#: MdataCache.stored's numbers
_STORE_NUMBERS = itertools.count(1)


# beside xset and xremove, not in mdata.py: every store through them retires it
class MdataCache:
    """The mdata xattr of the files (and directories) fops were answered
    for, so that a read costs one fstat and no fgetxattr (GlusterFS keeps
    the same in posix's inode context).  An entry is good while the inode's
    ctime is the one seen when it was read - a change by anyone, inside
    this process or not, moves ctime - and while nothing stored mdata on
    that inode through this process since: our own stores can land in the
    clock tick of the ctime seen (the kernel's coarse clock), which ctime
    cannot show.  So every store through `xset` or `xremove` gets a number
    once it is done and records it as its inode's last store (`stored`); an
    entry holds the inode's last store as it was before the xattr was read
    (or the number of the store that wrote it, `put`) and is good only
    while that is still the last one - a store in an io-threads worker that
    overlaps a read cannot leave the read's entry behind.  A store whose
    caller does not name the inode (a path of a handle, a setattr) retires
    every entry, as does forgetting the per-inode numbers past their bound.
    A read-mostly workload (a VM's image) hits; so do the writes of several
    files at once and a directory's times during a create storm in it,
    which per-process retiring cleared at every store (bench/notes/qemu.md
    (16))."""

    #: entries kept; beyond it the table starts over
    LIMIT = 4096
    #: the number of the last store of mdata or a gfid in this process
    #: (all bricks)
    seq = 0
    #: the number of the last such store whose inode was not named: no
    #: entry older than it is good
    unnamed = 0
    #: (st_dev, st_ino) -> the number of its last store, at most
    #: STORES_LIMIT of them (then forgotten, as an unnamed store)
    inode_stores: dict[tuple[int, int], int] = {}
    STORES_LIMIT = 16384
    #: bumped by every store of any xattr in this process (what `listed`
    #: keeps depends on all of them)
    xattr_generation = 0

    #: an entry's xattrs are admitted only when its ctime is older than
    #: this (ns): a change in the same tick of the kernel's coarse clock
    #: could otherwise leave ctime as it was (one jiffy is at most 10 ms)
    SETTLED_NS = 50_000_000

    #: entries of `listed` kept (GlusterFS's brick keeps an inode's gfid
    #: and mdata in its inode table, whose inode-lru-limit is 16384)
    LISTED_LIMIT = 16384

    __slots__ = ("_entries", "_listed", "_listed_generation")

    def __init__(self) -> None:
        #: (dev, ino) -> (ctime ns, mdata, the inode's last store it is good for)
        self._entries: dict[tuple[int, int], tuple[int, bytes | None, int]] = {}
        #: (dev, ino) -> (ctime ns, gfid, mdata, what was asked, its xattrs,
        #: what the iatt was made of, the iatt's fields)
        self._listed: dict[tuple[int, int], tuple] = {}
        self._listed_generation = 0

    @classmethod
    def stored(cls, inode: tuple[int, int] | None = None) -> int:
        """A store of mdata or a gfid on `inode` ((st_dev, st_ino); None:
        not known, so every inode) is done: its number."""
        # next() of a count is atomic under the GIL: the stores of bricks
        # served by different threads of one process never share a number
        n = next(_STORE_NUMBERS)
        if n > cls.seq:
            cls.seq = n
        if inode is None:
            cls.unnamed = max(cls.unnamed, n)
        else:
            stores = cls.inode_stores
            if len(stores) >= cls.STORES_LIMIT:
                stores.clear()
                cls.unnamed = max(cls.unnamed, n)
            stores[inode] = n
        cls.xattr_generation += 1
        return n

    @classmethod
    def xattr_stored(cls, key: str, inode: tuple[int, int] | None = None) -> int:
        """Every xattr stored or removed through `xset`/`xremove`: the
        listed entries' xattrs go; the mdata entries only for mdata and
        gfid, and only `inode`'s when it is named."""
        if key == MDATA_KEY or key == GFID_KEY:
            return cls.stored(inode)
        cls.xattr_generation += 1
        return cls.seq

    @classmethod
    def last_store(cls, inode: tuple[int, int] | None) -> int:
        """The number of the last store that may have changed `inode`'s
        mdata (None: an inode not known, so any store)."""
        if inode is None:
            return cls.seq
        n = cls.inode_stores.get(inode, 0)
        u = cls.unnamed
        return n if n > u else u

    def get(self, osfd: int, st: os.stat_result) -> bytes | None:
        """The mdata of the file open as `osfd`, whose fstat is `st`."""
        entries = self._entries
        key = (st.st_dev, st.st_ino)
        last = MdataCache.last_store(key)
        hit = entries.get(key)
        if hit is not None and hit[0] == st.st_ctime_ns and hit[2] == last:
            return hit[1]
        raw = xget_quiet(osfd, MDATA_KEY)
        if len(entries) >= self.LIMIT:
            entries.clear()
        # `last` was taken before the read: a store that lands after it
        # makes the entry no good, even if it came before the read
        entries[key] = (st.st_ctime_ns, raw, last)
        return raw

    def put(self, st: os.stat_result, raw: bytes, n: int) -> None:
        """`raw` was just stored (through xset, whose number was `n`) on the
        file whose fstat after the store is `st`: a read or write that
        follows finds it without an fgetxattr, while no other store lands."""
        entries = self._entries
        if len(entries) >= self.LIMIT:
            entries.clear()
        entries[(st.st_dev, st.st_ino)] = (st.st_ctime_ns, raw, n)

    def listed(self, pfd: int, name: str, st: os.stat_result,
               mdata: bool) -> tuple[bytes | None, bytes | None]:
        """(trusted.gfid, and the mdata xattr if `mdata`) of `name` in the
        directory open as `pfd`, whose lstat is `st`: what a readdirp reads
        of every entry beside the stat, two getxattr through /proc each
        time - and a listing shows the same files again and again.  Kept as
        `get` keeps mdata: good while the inode's ctime is the one seen and
        no xattr was stored through this process since (xset and xremove
        retire every entry; one that lands while the entry is read keeps
        it out).  An OSError of the gfid's read (the entry went away)
        propagates, as from a read."""
        entries = self._listed
        generation = MdataCache.xattr_generation
        if self._listed_generation != generation:
            entries.clear()
            self._listed_generation = generation
        key = (st.st_dev, st.st_ino)
        hit = entries.get(key)
        if hit is not None and hit[0] == st.st_ctime_ns and (hit[2] is not None or not mdata):
            return hit[1], hit[2]
        path = entry_path(pfd, name)
        gfid = xget(path, GFID_KEY)
        raw = xget_quiet(path, MDATA_KEY) if mdata else None
        # full: nothing more is admitted until a store retires the lot.  A
        # walk of more inodes than the bound repeats in the same order, so
        # starting over (or evicting the oldest) would leave it no hit at
        # all; this way the first LISTED_LIMIT of each walk hit
        if (hit is not None or len(entries) < self.LISTED_LIMIT) and \
                generation == MdataCache.xattr_generation:
            entries[key] = (st.st_ctime_ns, gfid, raw, None, None, None, ())
        return gfid, raw

    def unlisted(self, dev: int, inos) -> list[int]:
        """The positions of `inos` (inode numbers on device `dev`) that
        `listed` holds nothing for: the entries a listing will read from
        the disk (dir_ops' prefetch of a cold directory)."""
        if self._listed_generation != MdataCache.xattr_generation:
            return list(range(len(inos)))
        entries = self._listed
        return [i for i, ino in enumerate(inos) if (dev, ino) not in entries]

    def listed_iatt(self, st: os.stat_result, made_of: tuple) -> tuple:
        """The fields of the iatt made of `made_of` (every field of the
        lstat an iatt takes, the ctime option) and the entry's gfid and
        mdata as `listed` answered them just before, when one was kept
        (`keep_iatt`); else ().  Making
        an iatt from a stat and decoding the mdata costs more than the
        lstat itself: a listing seen before reuses them while every field
        of the stat is the same."""
        hit = self._listed.get((st.st_dev, st.st_ino))
        if hit is not None and hit[5] == made_of:
            return hit[6]
        return ()

    def keep_iatt(self, st: os.stat_result, made_of: tuple, fields: tuple) -> None:
        """Hold the iatt `fields` made of `made_of` and of the gfid and
        mdata `listed` answered just before (so only while that entry, its
        ctime and the generation are the ones they were made with)."""
        key = (st.st_dev, st.st_ino)
        hit = self._listed.get(key)
        if hit is not None and hit[0] == st.st_ctime_ns and \
                self._listed_generation == MdataCache.xattr_generation:
            self._listed[key] = (*hit[:5], made_of, fields)

    def listed_xattrs(self, st: os.stat_result, asked: tuple) -> dict | None:
        """The stored xattrs a readdirp asked of the entry whose lstat is
        `st` (`asked`: the request's names, patterns and list-xattr, as
        `keep_xattrs` was given them), held with its gfid and mdata while
        the same ctime and generation stand; None: read them."""
        hit = self._listed.get((st.st_dev, st.st_ino))
        if hit is not None and hit[0] == st.st_ctime_ns and hit[3] == asked and \
                self._listed_generation == MdataCache.xattr_generation:
            return hit[4]
        return None

    def keep_xattrs(self, st: os.stat_result, asked: tuple, xattrs: dict,
                    generation: int) -> None:
        """Hold `xattrs`, read after `st` was taken and while the
        xattr generation was `generation`, beside the entry's gfid and
        mdata (`listed` admitted it, within the bound).  Not held when a
        store went through this process meanwhile, or when the ctime is
        so recent that a change in the same clock tick would not move it:
        every change to an xattr moves ctime, also one made beside the
        brick, so what is held cannot outlive the xattrs it was read from."""
        key = (st.st_dev, st.st_ino)
        hit = self._listed.get(key)
        if hit is None or hit[0] != st.st_ctime_ns or generation != MdataCache.xattr_generation \
                or time.time_ns() - st.st_ctime_ns < self.SETTLED_NS:
            return
        self._listed[key] = (hit[0], hit[1], hit[2], asked, xattrs, hit[5], hit[6])


def quiet(fn, *args, **kwargs):
    """Call fn, ignoring OSError (cleanup paths); False when it failed."""
    try:
        return fn(*args, **kwargs)
    except (OSError, FopError):
        return False


class DeferredEviction:
    """Frees the inodes of unlinked files outside the brick's process.  An
    unlink of a file's last name costs ~0.7-1.2 ms inside the syscall on
    the disks of bench/RESULTS.md, nearly all of it the inode's eviction
    (its data blocks and, on ext4 with 256-byte inodes, the xattr block
    every brick file has); with the inode held open by an O_PATH
    descriptor the unlink returns in microseconds and the last close frees
    it (Linux evicts in the closing process), as XFS's background inode
    inactivation does in the kernel.  The name is gone when the fop
    answers; only the space comes back a little later.

    Where that last close runs: the descriptor goes over a unix socket
    (SCM_RIGHTS) to a helper process (evictor.py, started at the first
    one) and is closed here at once - while the message is in flight the
    socket holds the file, so this close is not the last.  Closing in
    threads of the brick instead cost its event loop ~160 us more per
    unlink than not closing at all: each thread's return from close(2)
    wanted the GIL, and every syscall of the loop thread then handed it
    over and waited to get it back (bench/notes/metadata.md).

    Bounded: the socket's send buffer holds about LIMIT messages and the
    kernel limits descriptors in flight; past either (or if the helper
    cannot start or has gone) `close` closes in the caller, which then
    pays the eviction as before.  `drain` (the translator's fini) returns
    once the helper has closed everything sent, and stops it."""

    LIMIT = 256
    #: what one waiting message costs the send buffer (the kernel's skb
    #: for a 1-byte datagram with one descriptor: ~1 KiB of truesize)
    MESSAGE_BYTES = 1024
    #: how long drain waits for the helper to close what it was sent
    DRAIN_TIMEOUT = 60.0

    def __init__(self, name: str):
        self.name = name
        self._sock: socket.socket | None = None
        self._helper: subprocess.Popen | None = None
        self._failed = False
        #: handed to the helper, and closed in the caller (LIMIT waiting,
        #: no helper): counts for tests and benches
        self.deferred = 0
        self.inline = 0

    def close(self, fd: int) -> None:
        sock = self._sock if self._sock is not None or self._failed else self._start()
        if sock is not None:
            try:
                socket.send_fds(sock, [b"C"], [fd])
            except (BlockingIOError, InterruptedError):
                pass    # LIMIT waiting
            except OSError as e:
                if e.errno != errno.ETOOMANYREFS:    # not just too many in flight
                    self._lost(f"sending to it failed: {e}")
            else:
                self.deferred += 1
                os.close(fd)    # not the last reference: the message holds one
                return
        self.inline += 1
        os.close(fd)

    def _start(self) -> socket.socket | None:
        if not self.LIMIT:
            return None
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                            self.LIMIT * self.MESSAGE_BYTES // 2)   # the kernel doubles it
            self._helper = subprocess.Popen(
                [sys.executable, "-I", "-S", str(Path(__file__).with_name("evictor.py")),
                 str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL)
        except OSError as e:
            mine.close()
            self._failed = True
            log.warning("%s: no helper to free unlinked inodes (%s): unlink frees them "
                        "itself", self.name, e)
            return None
        finally:
            theirs.close()
        mine.setblocking(False)
        self._sock = mine
        return mine

    def _lost(self, why: str) -> None:
        log.warning("%s: the helper freeing unlinked inodes %s: unlink frees them itself",
                    self.name, why)
        self._failed = True
        self._stop(wait=0)

    def _stop(self, wait: float) -> None:
        """Close the socket (the helper's end of file) and reap the helper,
        killed if it has not ended within `wait` seconds."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._helper is not None:
            try:
                self._helper.wait(wait)
            except subprocess.TimeoutExpired:
                self._helper.kill()
                self._helper.wait()
            self._helper = None

    def drain(self) -> None:
        if self.deferred or self.inline:
            log.info("%s: %d unlinked inodes freed by the helper, %d by unlink itself",
                     self.name, self.deferred, self.inline)
        sock = self._sock
        if sock is not None:
            try:
                sock.settimeout(self.DRAIN_TIMEOUT)
                sock.sendall(_EVICTOR_SYNC)
                sock.recv(16)       # the helper answers once all before it is closed
            except OSError as e:
                log.warning("%s: draining the helper freeing unlinked inodes: %s", self.name, e)
        self._stop(wait=self.DRAIN_TIMEOUT)
