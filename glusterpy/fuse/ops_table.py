"""Handlers put into libfuse's operations table behind pyfuse3's back.

pyfuse3 (3.5) fills libfuse's table of low-level operations (struct
fuse_lowlevel_ops) without getlk/setlk, copy_file_range or lseek, so
libfuse answers those requests ENOSYS and the kernel handles them alone
(locks local to one mount, copies and hole searches through the mount).
posix_locks.py and copy_range.py fill those slots; this module is what
they share:

- finding the table: pyfuse3.init clears and fills its table (a static C
  variable of its extension module) and hands it to fuse_session_new,
  which copies it into the new session; libfuse reads the copy when the
  kernel's INIT request arrives - in the session loop (session_loop.py,
  or pyfuse3.main).  So slots are written between pyfuse3.init and the
  session loop, into the
  session's copy, found by the two symbols in the extension's ELF symbol
  table and where the extension is mapped, then as the bytes inside the
  session equal to the table.  Nothing is written unless everything
  matches what this was written against (both symbols, libfuse 3's 44
  slots, the copy found, the slots as expected);
- `SlotHandlers`, the install/uninstall of one group of slots and the
  mount (nursery) their callbacks find;
- `guarded`, a C callback that never lets an exception into libfuse's
  C frames, and `reply_when_done`, the shape of a task answering a
  request: the graph's errno, EIO for a crash, or the handler's reply.

A callback runs inside the session loop (in trio's thread), copies
what it needs out of the request (valid during the call only) and starts
a task in the mount's nursery that answers with fuse_reply_* - libfuse
lets a request be answered later, so a slow one does not hold the loop up.
"""

from __future__ import annotations

import abc
import ctypes
import errno
import logging
import os
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pyfuse3
import trio

from ..fops import FopError

log = logging.getLogger(__name__)

#: struct fuse_lowlevel_ops of libfuse 3 (fuse_lowlevel.h): its slot count
OPS_SLOTS = 44
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
    """struct fuse_ctx: the request's caller."""

    _fields_ = [("uid", ctypes.c_uint), ("gid", ctypes.c_uint), ("pid", ctypes.c_int),
                ("umask", ctypes.c_uint)]


INTERRUPT_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


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


def extension_addresses(*names: bytes):
    """([(address, size)] of each of pyfuse3's C globals `names` in this
    process, None) or (None, the reason they cannot be found)."""
    path = getattr(pyfuse3, "__file__", None)
    if not path or not path.endswith(".so"):
        return None, "pyfuse3 is not its compiled extension"
    try:
        symbols = [elf_symbol(path, name) for name in names]
        base = mapped_base(path)
    except (OSError, ValueError, struct.error) as e:
        return None, f"reading pyfuse3's extension failed: {e}"
    missing = [name.decode() for name, sym in zip(names, symbols) if sym is None]
    if missing:
        return None, f"pyfuse3's extension carries no symbols {', '.join(missing)}"
    if base is None:
        return None, "pyfuse3's extension is not mapped where /proc/self/maps says"
    return [(base + value, size) for value, size in symbols], None


def session_ops():
    """The running session's copy of the operations table, as an array of
    pointers, or the reason it cannot be found."""
    found, why = extension_addresses(TABLE_SYMBOL, SESSION_SYMBOL)
    if found is None:
        return None, why
    (table_addr, table_size), (session_addr, _) = found
    size = OPS_SLOTS * ctypes.sizeof(ctypes.c_void_p)
    if table_size != size:
        return None, f"pyfuse3's operations table has {table_size} bytes, not libfuse 3's"
    table = ctypes.string_at(table_addr, size)
    session = ctypes.c_void_p.from_address(session_addr).value
    if not session or not any(table):
        return None, "pyfuse3 has no session yet"
    for offset in range(0, SESSION_SEARCH, ctypes.sizeof(ctypes.c_void_p)):
        if ctypes.string_at(session + offset, size) == table:
            return (ctypes.c_void_p * OPS_SLOTS).from_address(session + offset), None
    return None, "the session's copy of pyfuse3's operations table was not found"


def find_session_ops():
    """`session_ops()`, with a failure to read pyfuse3's extension as the
    reason.  Found once per mount and shared by every group of slots
    filled: once one slot is written, the session's copy no longer equals
    pyfuse3's table and cannot be found again."""
    try:
        return session_ops()
    except (OSError, ValueError, struct.error) as e:
        return None, f"reading pyfuse3's extension failed: {e}"


# -- libfuse's reply functions ----------------------------------------------------

_lib = None


def libfuse():
    """libfuse3, its reply functions' argument types declared."""
    global _lib
    if _lib is None:
        lib = ctypes.CDLL("libfuse3.so.3")
        lib.fuse_reply_err.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.fuse_reply_lock.argtypes = [ctypes.c_void_p, ctypes.POINTER(CFlock)]
        lib.fuse_reply_write.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lib.fuse_reply_lseek.argtypes = [ctypes.c_void_p, ctypes.c_int64]
        lib.fuse_req_ctx.argtypes = [ctypes.c_void_p]
        lib.fuse_req_ctx.restype = ctypes.POINTER(FuseCtx)
        lib.fuse_req_interrupt_func.argtypes = [ctypes.c_void_p, INTERRUPT_FN, ctypes.c_void_p]
        _lib = lib
    return _lib


# -- a group of slots -------------------------------------------------------------


class SlotHandlers(abc.ABC):
    """One group of slots for the mount (FuseBridge) of this process:
    `install()` after pyfuse3.init, `nursery` set before the session loop,
    `uninstall()` after pyfuse3.close.  pyfuse3 runs one session per
    process, so the callbacks (module-level C functions) find the mount as
    their class's `active`."""

    #: what the mount does without these handlers, for the warning
    WITHOUT: ClassVar[str] = ""
    #: slots this group writes, and slots it expects pyfuse3 to have set
    #: (it takes them over)
    SLOTS: ClassVar[tuple[int, ...]] = ()
    TAKES_OVER: ClassVar[tuple[int, ...]] = ()
    active: ClassVar[SlotHandlers | None] = None

    def __init__(self, bridge):
        self.bridge = bridge
        self.nursery: trio.Nursery | None = None
        self.installed = False

    @abc.abstractmethod
    def callbacks(self) -> dict[int, Any]:
        """slot -> the ctypes callback to write there."""

    def install(self, found=None) -> bool:
        """Between pyfuse3.init and the session loop: True if the kernel's
        requests for these slots will come here.  `found`:
        find_session_ops()'s answer, shared by every group of the mount."""
        ops, why = find_session_ops() if found is None else found
        if ops is None:
            log.warning("%s: %s", self.WITHOUT, why)
            return False
        if any(ops[s] for s in self.SLOTS) or not all(ops[s] for s in self.TAKES_OVER):
            log.warning("%s: pyfuse3's operations table is not the one this was written "
                        "for (slots %s expected empty, %s set)", self.WITHOUT, self.SLOTS,
                        self.TAKES_OVER)
            return False
        libfuse()
        for slot, fn in self.callbacks().items():
            ops[slot] = ctypes.cast(fn, ctypes.c_void_p).value
        type(self).active = self
        self.installed = True
        return True

    def uninstall(self) -> None:
        if type(self).active is self:
            type(self).active = None
        self.nursery = None


def guarded(name: str, owner: Callable[[], type[SlotHandlers]], unavailable: int):
    """A C callback's body: called with the active mount first; answers
    `unavailable` when no mount runs, EIO if the body raises."""
    def wrap(fn):
        def callback(req, *args):
            try:
                mount = owner().active
                if mount is None or mount.nursery is None:
                    libfuse().fuse_reply_err(req, unavailable)
                    return
                fn(mount, req, *args)
            except BaseException:
                log.exception("%s", name)
                libfuse().fuse_reply_err(req, errno.EIO)
        return callback
    return wrap


async def reply_when_done(name: str, req, work: Awaitable[Any],
                          reply: Callable[[Any], None]) -> None:
    """Answer `req` from `work`: `reply(result)`, or the errno of the
    graph's error (FopError, or pyfuse3.FUSEError from the bridge), or EIO
    for anything else (logged)."""
    try:
        result = await work
    except (FopError, pyfuse3.FUSEError) as e:
        libfuse().fuse_reply_err(req, e.errno)
        return
    except Exception:
        log.exception("%s", name)
        libfuse().fuse_reply_err(req, errno.EIO)
        return
    reply(result)
