"""XDR codecs for the value structures that fops carry.

Each pair `pack_X(packer, value)` / `unpack_X(unpacker) -> value` maps one
GlusterFS wire structure to the glusterpy value type from `glusterpy.fops`:

=====================  ===================  ====================================
wire (rpc/xdr/src)     glusterpy            notes
=====================  ===================  ====================================
gfx_iattx              fops.Iatt            4.x iatt, 148 bytes; `mode` is
                                            st_mode (type + permission bits)
gf_iatt                fops.Iatt            3.x iatt, still used by the
                                            CACHE_INVALIDATION upcall
gfx_mdata_iatt         MdataIatt            the dict's GF_DATA_TYPE_MDATA
gf_statfs              fops.Statvfs
gf_proto_flock         fops.Flock           start/len are u_quad on the wire;
                                            negative values wrap as in C
gf_proto_lease         fops.Lease
gfs3_locklist          list[fops.ActiveLock] getactivelk/setactivelk
=====================  ===================  ====================================

`MdataIatt` (the dict's MDATA value, a wire-only type) lives here.  Field orders follow glusterfs4-xdr.x / glusterfs3-xdr.x and
the conversion helpers in rpc/xdr/src/glusterfs3.h.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..fops import GFID, ActiveLock, Flock, Iatt, Lease, Statvfs
from .errors import RpcProtocolError
from .xdr import U64_MAX, Packer, Unpacker

if TYPE_CHECKING:
    from collections.abc import Iterable

# gfx_iattx: gfid[16]; flags ino dev rdev size blocks attributes
# attributes_mask (u64 x8); atime mtime ctime btime (s64 x4); atime_nsec
# mtime_nsec ctime_nsec btime_nsec nlink uid gid blksize mode (u32 x9).
IATTX = struct.Struct(">16s8Q4q9I")
IATTX_SIZE = IATTX.size  # 148
ZERO_IATTX = bytes(IATTX_SIZE)

_new_gfid = bytes.__new__  # GFID(b) re-validates; the struct already gave 16 bytes


def unpack_iattx(u: Unpacker) -> Iatt:
    p = u.pos
    if u.end - p < 148:
        raise RpcProtocolError(f"truncated XDR: gfx_iattx at offset {p}")
    u.pos = p + 148
    (gfid, flags, ino, dev, rdev, size, blocks, attrs, attrs_mask,
     atime, mtime, ctime, btime, atime_ns, mtime_ns, ctime_ns, btime_ns,
     nlink, uid, gid, blksize, mode) = IATTX.unpack_from(u.data, p)
    return Iatt(_new_gfid(GFID, gfid), ino, dev, rdev, size, blocks, mode, nlink,
                uid, gid, blksize, atime, atime_ns, mtime, mtime_ns, ctime,
                ctime_ns, btime, btime_ns, flags, attrs, attrs_mask)


def is_zero_iattx(u: Unpacker) -> bool:
    """The next gfx_iattx is all zeros (an absent iatt, see pack_iattx):
    compared as bytes, before anything is decoded."""
    p = u.pos
    return u.data[p:p + 148] == ZERO_IATTX


def iattx_bytes(a: Iatt) -> bytes:
    try:
        return IATTX.pack(
            a.gfid, a.flags, a.ino, a.dev, a.rdev, a.size, a.blocks, a.attributes,
            a.attributes_mask, a.atime, a.mtime, a.ctime, a.btime, a.atime_nsec,
            a.mtime_nsec, a.ctime_nsec, a.btime_nsec, a.nlink, a.uid, a.gid,
            a.blksize, a.mode)
    except struct.error as e:
        raise ValueError(f"cannot encode {a!r} as gfx_iattx: {e}") from None


def pack_iattx(p: Packer, a: Iatt | None) -> None:
    """An absent iatt travels as zeros, as GlusterFS's zero-initialised
    reply structures send it."""
    p.buf += ZERO_IATTX if a is None else iattx_bytes(a)


def zero_iatt() -> Iatt:
    """The Iatt that decodes from 148 zero bytes (the same as Iatt())."""
    return Iatt()


# gf_iatt (3.x): gfid[16] ino dev (u64) mode nlink uid gid (u32) rdev size
# (u64) blksize (u32) blocks (u64) atime atime_nsec mtime mtime_nsec ctime
# ctime_nsec (u32).
GF_IATT = struct.Struct(">16sQQIIIIQQIQ6I")


def unpack_gf_iatt(u: Unpacker) -> Iatt:
    (gfid, ino, dev, mode, nlink, uid, gid, rdev, size, blksize, blocks,
     atime, atime_ns, mtime, mtime_ns, ctime, ctime_ns) = u.unpack(GF_IATT)
    return Iatt(gfid=_new_gfid(GFID, gfid), ino=ino, dev=dev, rdev=rdev, size=size,
                blocks=blocks, mode=mode, nlink=nlink, uid=uid, gid=gid,
                blksize=blksize, atime=atime, atime_nsec=atime_ns, mtime=mtime,
                mtime_nsec=mtime_ns, ctime=ctime, ctime_nsec=ctime_ns)


def pack_gf_iatt(p: Packer, a: Iatt | None) -> None:
    if a is None:
        p.buf += bytes(GF_IATT.size)
        return
    p.pack(GF_IATT, a.gfid, a.ino, a.dev, a.mode, a.nlink, a.uid, a.gid, a.rdev,
           a.size, a.blksize, a.blocks, a.atime, a.atime_nsec, a.mtime,
           a.mtime_nsec, a.ctime, a.ctime_nsec)


@dataclass(frozen=True, slots=True)
class MdataIatt:
    """GlusterFS's mdata_iatt (GF_DATA_TYPE_MDATA dict values): the times
    the ctime feature keeps for an inode."""

    atime: int = 0
    mtime: int = 0
    ctime: int = 0
    atime_nsec: int = 0
    mtime_nsec: int = 0
    ctime_nsec: int = 0


MDATA = struct.Struct(">3q3I")


def unpack_mdata(u: Unpacker) -> MdataIatt:
    return MdataIatt(*u.unpack(MDATA))


def pack_mdata(p: Packer, m: MdataIatt) -> None:
    p.pack(MDATA, m.atime, m.mtime, m.ctime, m.atime_nsec, m.mtime_nsec, m.ctime_nsec)


STATFS = struct.Struct(">11Q")


def unpack_statfs(u: Unpacker) -> Statvfs:
    return Statvfs(*u.unpack(STATFS))


def pack_statfs(p: Packer, s: Statvfs | None) -> None:
    if s is None:
        p.buf += bytes(STATFS.size)
        return
    p.pack(STATFS, s.bsize, s.frsize, s.blocks, s.bfree, s.bavail, s.files,
           s.ffree, s.favail, s.fsid, s.flag, s.namemax)


# gf_proto_flock: type whence (u32) start len (u64) pid (u32) lk_owner<>
FLOCK_HEAD = struct.Struct(">IIQQI")
# GlusterFS's lk_owner is at most GF_MAX_LOCK_OWNER_LEN (1024) bytes.
MAX_LK_OWNER = 1024


def unpack_flock(u: Unpacker) -> Flock:
    type_, whence, start, len_, pid = u.unpack(FLOCK_HEAD)
    owner = u.opaque(MAX_LK_OWNER)
    return Flock(type_, whence, start, len_, pid, owner)


def pack_flock(p: Packer, f: Flock | None) -> None:
    if f is None:
        f = Flock()
    p.pack(FLOCK_HEAD, f.type, f.whence, f.start & U64_MAX, f.len & U64_MAX,
           f.pid & 0xFFFFFFFF)
    p.opaque(f.owner)


LEASE = struct.Struct(">II16sI")


def unpack_lease(u: Unpacker) -> Lease:
    cmd, type_, lease_id, flags = u.unpack(LEASE)
    return Lease(cmd, type_, lease_id, flags)


def pack_lease(p: Packer, lease: Lease | None) -> None:
    if lease is None:
        lease = Lease()
    p.pack(LEASE, lease.cmd, lease.type, lease.lease_id, lease.flags)


def unpack_locklist(u: Unpacker) -> list[ActiveLock]:
    """An XDR linked list (`*nextentry`); each entry is at least 40 bytes,
    so a hostile list is bounded by the message length."""
    locks = []
    while u.optional():
        flock = unpack_flock(u)
        client_uid = u.string()
        lk_flags = u.u32()
        locks.append(ActiveLock(flock, client_uid, lk_flags))
    return locks


def pack_locklist(p: Packer, locks: Iterable[ActiveLock] | None) -> None:
    for lock in locks or ():
        p.optional(True)
        pack_flock(p, lock.flock)
        p.string(lock.client_uid)
        p.u32(lock.lk_flags)
    p.optional(False)


def unpack_gfid(u: Unpacker) -> GFID:
    p = u.pos
    if u.end - p < 16:
        raise RpcProtocolError(f"truncated XDR: gfid at offset {p}")
    u.pos = p + 16
    return _new_gfid(GFID, bytes(u.data[p:p + 16]))


def gfid_bytes(g: bytes | bytearray | memoryview | None) -> bytes:
    """A gfid field's 16 bytes; None is the null gfid."""
    if g is None:
        return bytes(16)
    if len(g) != 16:
        raise ValueError(f"a gfid is 16 bytes, not {len(g)}")
    return bytes(g)


__all__ = [
    "ActiveLock", "MdataIatt", "IATTX", "IATTX_SIZE", "ZERO_IATTX",
    "unpack_iattx", "pack_iattx", "iattx_bytes", "zero_iatt", "is_zero_iattx",
    "unpack_gf_iatt", "pack_gf_iatt", "unpack_mdata", "pack_mdata",
    "unpack_statfs", "pack_statfs", "unpack_flock", "pack_flock",
    "unpack_lease", "pack_lease", "unpack_locklist", "pack_locklist",
    "unpack_gfid", "gfid_bytes",
]
