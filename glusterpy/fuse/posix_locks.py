"""fcntl record locks on a FUSE mount, sent to the bricks as the lk fop.

pyfuse3 (3.5) has no lock handlers: it fills libfuse's table of low-level
operations (struct fuse_lowlevel_ops) without getlk and setlk, so libfuse
never offers the kernel FUSE_CAP_POSIX_LOCKS and the kernel keeps every
fcntl lock to itself - locks that two mounts (two clients) never see.
GlusterFS's fuse-bridge sends them down the graph as lk, where
features/locks on the bricks arbitrates between all clients.

pyfuse3.init clears and fills its table (a static C variable of its
extension module) and hands it to fuse_session_new, which copies it into
the new session; libfuse reads the copy when the kernel's INIT request
arrives - in the session loop, pyfuse3.main - and offers POSIX locks when
both getlk and setlk are set.  So `install()`, called between pyfuse3.init
and pyfuse3.main, fills those two slots of the session's copy with ctypes
callbacks (and takes over its flush slot, see below).  The table and the
session pointer are found by their symbols in the extension's ELF symbol
table and where the extension is mapped; the copy is found inside the
session as the bytes equal to the table.
Nothing is written unless everything matches what this was written
against: both symbols exist, the table has the size of libfuse 3's (44
slots), the copy is found, its lock slots are empty and its flush slot
is set.  Otherwise locks
stay local to the mount, as before, and a warning says why.

A callback runs inside pyfuse3's session loop (in trio's thread), copies
what it needs out of the request, and starts a task in the mount's
nursery; the task sends lk down the graph and answers with
fuse_reply_lock/fuse_reply_err when it completes - libfuse lets a request
be answered later, so an F_SETLKW that waits does not hold the loop up.  A
waiter the kernel interrupts (a signal to the waiting process) is
interrupted as fuse-bridge does it: fgetxattr of
"glusterfs.intrlk.tposix.kblocked" with the waiter's lock owner makes
features/locks fail that waiter with EINTR (and where that does not reach
the waiting lock, the request is answered EINTR here a second later).

The lock owner is the kernel's lock_owner for the request (one per open
file table, i.e. per process for fcntl locks), as fuse-bridge uses it.
close(2) must release the closing owner's locks and nobody else's, and
only FLUSH tells which owner closes, so the flush slot is taken over as
well: the same work as pyfuse3's flush (the bridge's flush), with that
owner as the caller, so features/locks drops that owner's locks - a child
closing the fds it inherited (every fork and exec does) leaves its
parent's locks alone.  flock(2) stays with the kernel (no flock handler, so
libfuse does not ask for FUSE_CAP_FLOCK_LOCKS).  Limit: a graph switch (a
volfile change of the graph's shape) releases the old graph's fds and with
them their locks - GlusterFS migrates them (getactivelk/setactivelk),
glusterpy does not yet.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import struct
from pathlib import Path

import pyfuse3
import trio

from ..fops import Caller, Flock, FopError, LockCmd, LockType, caller
from ..keys import INTERRUPT_KEY

log = logging.getLogger(__name__)

#: struct fuse_lowlevel_ops of libfuse 3 (fuse_lowlevel.h): its slot count
#: and the slots used here
OPS_SLOTS = 44
FLUSH_SLOT, GETLK_SLOT, SETLK_SLOT = 17, 31, 32
TABLE_SYMBOL = b"__pyx_v_7pyfuse3_fuse_ops"
SESSION_SYMBOL = b"__pyx_v_7pyfuse3_session"
#: how far into struct fuse_session its copy of the table is looked for
#: (libfuse 3.14 puts it at 32, after mountpoint, exited, fd, mo, debug
#: and deny_others)
SESSION_SEARCH = 256


class FileInfo(ctypes.Structure):
    """struct fuse_file_info (fuse_common.h): flags, a word of bit fields,
    a word of padding, then fh and lock_owner."""

    _fields_ = [("flags", ctypes.c_int), ("bits", ctypes.c_uint), ("padding2", ctypes.c_uint),
                ("fh", ctypes.c_uint64), ("lock_owner", ctypes.c_uint64),
                ("poll_events", ctypes.c_uint32)]


class CFlock(ctypes.Structure):
    """struct flock of x86-64 and aarch64 Linux."""

    _fields_ = [("l_type", ctypes.c_short), ("l_whence", ctypes.c_short),
                ("l_start", ctypes.c_int64), ("l_len", ctypes.c_int64),
                ("l_pid", ctypes.c_int)]


class FuseCtx(ctypes.Structure):
    _fields_ = [("uid", ctypes.c_uint), ("gid", ctypes.c_uint), ("pid", ctypes.c_int),
                ("umask", ctypes.c_uint)]


GETLK_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.POINTER(FileInfo),
                            ctypes.POINTER(CFlock))
SETLK_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.POINTER(FileInfo),
                            ctypes.POINTER(CFlock), ctypes.c_int)
INTERRUPT_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
FLUSH_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.POINTER(FileInfo))

#: fcntl's lock types <-> GlusterFS's (the numbers differ between platforms)
TO_GF = {fcntl.F_RDLCK: LockType.RDLCK, fcntl.F_WRLCK: LockType.WRLCK,
         fcntl.F_UNLCK: LockType.UNLCK}
FROM_GF = {v: k for k, v in TO_GF.items()}


# -- finding pyfuse3's table ------------------------------------------------------


def elf_symbol(path: str, name: bytes) -> tuple[int, int] | None:
    """(value, size) of a symbol in an ELF64 little-endian file's .symtab,
    and the vaddr of its first loadable segment subtracted; None if absent."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
    first_load = 0
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr = struct.unpack_from("<IIQQ", data, phoff + i * phentsize)
        if p_type == 1 and p_offset == 0:  # PT_LOAD mapping the file's start
            first_load = p_vaddr
            break
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    for sh in sections:
        if sh[1] != 2:  # SHT_SYMTAB
            continue
        strtab = sections[sh[6]][4]
        for off in range(sh[4], sh[4] + sh[5], 24):
            st_name, _, _, _, value, size = struct.unpack_from("<IBBHQQ", data, off)
            start = strtab + st_name
            if data[start:data.index(b"\0", start)] == name:
                return value - first_load, size
    return None


def mapped_base(path: str) -> int | None:
    """Where this process mapped the start of `path` (/proc/self/maps)."""
    real = os.path.realpath(path)
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == real and int(fields[2], 16) == 0:
                return int(fields[0].split("-")[0], 16)
    return None


def session_ops():
    """The running session's copy of the operations table, as an array of
    pointers, or the reason it cannot be found."""
    path = getattr(pyfuse3, "__file__", None)
    if not path or not path.endswith(".so"):
        return None, "pyfuse3 is not its compiled extension"
    table_sym, session_sym = elf_symbol(path, TABLE_SYMBOL), elf_symbol(path, SESSION_SYMBOL)
    if table_sym is None or session_sym is None:
        return None, "pyfuse3's extension carries no symbols for its operations table"
    size = OPS_SLOTS * ctypes.sizeof(ctypes.c_void_p)
    if table_sym[1] != size:
        return None, f"pyfuse3's operations table has {table_sym[1]} bytes, not libfuse 3's"
    base = mapped_base(path)
    if base is None:
        return None, "pyfuse3's extension is not mapped where /proc/self/maps says"
    table = ctypes.string_at(base + table_sym[0], size)
    session = ctypes.c_void_p.from_address(base + session_sym[0]).value
    if not session or not any(table):
        return None, "pyfuse3 has no session yet"
    for offset in range(0, SESSION_SEARCH, ctypes.sizeof(ctypes.c_void_p)):
        if ctypes.string_at(session + offset, size) == table:
            return (ctypes.c_void_p * OPS_SLOTS).from_address(session + offset), None
    return None, "the session's copy of pyfuse3's operations table was not found"


def find_session_ops():
    """`session_ops()`, with a failure to read pyfuse3's extension as the
    reason.  Found once per mount and shared by every slot filled (here
    and copy_range.py): once one slot is written, the session's copy no
    longer equals pyfuse3's table and cannot be found again."""
    try:
        return session_ops()
    except (OSError, ValueError, struct.error) as e:
        return None, f"reading pyfuse3's extension failed: {e}"


# -- the lock requests ------------------------------------------------------------


class _Waiter:
    """An F_SETLKW being answered: what an interrupt needs to end it."""

    __slots__ = ("fh", "who", "scope")

    def __init__(self, fh: int, who: Caller):
        self.fh, self.who = fh, who
        self.scope = trio.CancelScope()


_lib = None


def _libfuse():
    global _lib
    if _lib is None:
        lib = ctypes.CDLL("libfuse3.so.3")
        lib.fuse_reply_err.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.fuse_reply_lock.argtypes = [ctypes.c_void_p, ctypes.POINTER(CFlock)]
        lib.fuse_req_ctx.argtypes = [ctypes.c_void_p]
        lib.fuse_req_ctx.restype = ctypes.POINTER(FuseCtx)
        lib.fuse_req_interrupt_func.argtypes = [ctypes.c_void_p, INTERRUPT_FN, ctypes.c_void_p]
        _lib = lib
    return _lib


#: the mount whose session runs (pyfuse3 runs one session per process): the
#: callbacks are this module's and find the mount here
_active: "PosixLocks | None" = None


def _guarded(name):
    """A C callback: never lets an exception into libfuse's C frames."""
    def wrap(fn):
        def callback(req, *args):
            try:
                mount = _active
                if mount is None or mount.nursery is None:
                    _libfuse().fuse_reply_err(req, errno.ENOSYS)
                    return
                fn(mount, req, *args)
            except BaseException:
                log.exception("%s", name)
                _libfuse().fuse_reply_err(req, errno.EIO)
        return callback
    return wrap


@GETLK_FN
@_guarded("getlk")
def _on_getlk(mount, req, ino, fi, lock) -> None:
    mount.nursery.start_soon(mount._getlk_task, req, *mount._request(req, fi, lock))


@SETLK_FN
@_guarded("setlk")
def _on_setlk(mount, req, ino, fi, lock, sleep) -> None:
    who, fh, flock = mount._request(req, fi, lock)
    waiter = None
    if sleep:
        waiter = mount._waiting[req] = _Waiter(fh, who)
        # called at once if the request was interrupted already
        _libfuse().fuse_req_interrupt_func(req, _on_interrupt, None)
    mount.nursery.start_soon(mount._setlk_task, req, who, fh, flock, waiter)


@FLUSH_FN
@_guarded("flush")
def _on_flush(mount, req, ino, fi) -> None:
    ctx = _libfuse().fuse_req_ctx(req).contents
    who = Caller(uid=ctx.uid, gid=ctx.gid, pid=ctx.pid,
                 lk_owner=int(fi.contents.lock_owner).to_bytes(8, "little"))
    mount.nursery.start_soon(mount._flush_task, req, who, int(fi.contents.fh))


@INTERRUPT_FN
def _on_interrupt(req, data) -> None:
    try:
        mount = _active
        waiter = None if mount is None else mount._waiting.get(req)
        if waiter is not None and mount.nursery is not None:
            mount.nursery.start_soon(mount._interrupt_task, waiter)
    except BaseException:
        log.exception("interrupt")


class PosixLocks:
    """getlk/setlk for the mount (FuseBridge) of this process: `install()`
    after pyfuse3.init, `nursery` set before pyfuse3.main, `uninstall()`
    after pyfuse3.close."""

    def __init__(self, bridge):
        self.bridge = bridge
        self.nursery: trio.Nursery | None = None
        self.installed = False
        self._waiting: dict[int, _Waiter] = {}  # req -> the F_SETLKW it is

    def install(self, found=None) -> bool:
        """Between pyfuse3.init and pyfuse3.main: True if lock requests
        will come here.  `found`: find_session_ops()'s answer, when the
        mount shares it with the other slots it fills."""
        global _active
        ops, why = find_session_ops() if found is None else found
        if ops is None:
            log.warning("fcntl locks stay local to this mount: %s", why)
            return False
        if ops[GETLK_SLOT] or ops[SETLK_SLOT] or not ops[FLUSH_SLOT]:
            log.warning("fcntl locks stay local to this mount: pyfuse3's lock and flush "
                        "handlers are not the ones this was written for")
            return False
        _libfuse()
        ops[GETLK_SLOT] = ctypes.cast(_on_getlk, ctypes.c_void_p).value
        ops[SETLK_SLOT] = ctypes.cast(_on_setlk, ctypes.c_void_p).value
        ops[FLUSH_SLOT] = ctypes.cast(_on_flush, ctypes.c_void_p).value
        _active = self
        self.installed = True
        return True

    def uninstall(self) -> None:
        global _active
        if _active is self:
            _active = None
        self.nursery = None

    def _request(self, req, fi, lock) -> tuple:
        """Copy a request out of libfuse's frame (valid during the call only)."""
        ctx = _libfuse().fuse_req_ctx(req).contents
        who = Caller(uid=ctx.uid, gid=ctx.gid, pid=ctx.pid,
                     lk_owner=int(fi.contents.lock_owner).to_bytes(8, "little"))
        fl = lock.contents
        flock = Flock(type=TO_GF.get(fl.l_type, -1), whence=fl.l_whence, start=fl.l_start,
                      len=fl.l_len, pid=fl.l_pid, owner=who.lk_owner)
        return who, int(fi.contents.fh), flock

    # the graph side

    async def _lk(self, who: Caller, fh: int, cmd: LockCmd, flock: Flock) -> Flock:
        bridge = self.bridge
        while bridge._switching is not None:  # a graph switch is under way
            await bridge._switching.wait()
        fd = bridge._handles.get(fh)
        if fd is None:
            raise FopError(errno.EBADF)
        if flock.type not in FROM_GF:
            raise FopError(errno.EINVAL, "unknown lock type")
        token = caller.set(who)
        try:
            return (await bridge.top.lk(fd, cmd, flock, None)).flock
        finally:
            caller.reset(token)

    async def _getlk_task(self, req, who, fh, flock) -> None:
        try:
            answer = await self._lk(who, fh, LockCmd.GETLK, flock)
        except FopError as e:
            _libfuse().fuse_reply_err(req, e.errno)
            return
        except Exception:
            log.exception("getlk")
            _libfuse().fuse_reply_err(req, errno.EIO)
            return
        out = CFlock(l_type=FROM_GF.get(answer.type, fcntl.F_UNLCK), l_whence=os.SEEK_SET,
                     l_start=answer.start, l_len=answer.len, l_pid=answer.pid)
        _libfuse().fuse_reply_lock(req, ctypes.byref(out))

    async def _setlk_task(self, req, who, fh, flock, waiter: _Waiter | None) -> None:
        cmd = LockCmd.SETLK if waiter is None else LockCmd.SETLKW
        try:
            if waiter is None:
                await self._lk(who, fh, cmd, flock)
            else:
                with waiter.scope:
                    await self._lk(who, fh, cmd, flock)
            err = errno.EINTR if waiter is not None and waiter.scope.cancelled_caught else 0
        except FopError as e:
            err = e.errno
        except Exception:
            log.exception("setlk")
            err = errno.EIO
        finally:
            # before the reply: libfuse frees req with it, and may reuse it
            self._waiting.pop(req, None)
        _libfuse().fuse_reply_err(req, err)

    async def _flush_task(self, req, who: Caller, fh: int) -> None:
        """pyfuse3's flush, with the closing process's lock owner: close(2)
        releases that owner's locks on the file (features/locks' flush),
        and only theirs - a child that closes the fds it inherited (every
        fork and exec does) leaves its parent's locks alone."""
        token = caller.set(who)
        try:
            await self.bridge.flush(fh)
            err = 0
        except pyfuse3.FUSEError as e:
            err = e.errno
        except Exception:
            log.exception("flush")
            err = errno.EIO
        finally:
            caller.reset(token)
        _libfuse().fuse_reply_err(req, err)

    async def _interrupt_task(self, waiter: _Waiter) -> None:
        """fuse-bridge's fuse_setlk_interrupt_handler: fgetxattr of
        INTERRUPT_KEY with the waiter's owner makes features/locks fail its
        waiting lock with EINTR, which answers the request.  That reaches
        the brick the fd's file is on; where a cluster translator sent the
        lock elsewhere (replicate locks on every brick), the request is
        answered EINTR here after a moment, and the lock left waiting on a
        brick goes when the process closes the file (flush, release)."""
        fd = self.bridge._handles.get(waiter.fh)
        if fd is not None:
            token = caller.set(waiter.who)
            try:
                await self.bridge.top.fgetxattr(fd, INTERRUPT_KEY, None)
            except FopError as e:
                log.debug("interrupting a waiting lock: %s", e)
            finally:
                caller.reset(token)
        await trio.sleep(1)
        waiter.scope.cancel()
