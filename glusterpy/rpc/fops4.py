"""The GlusterFS 4.x fop program (1298437, version 400): one codec per fop.

`FOP_CODECS` maps every name in `glusterpy.fops.CATALOGUE` to a `FopCodec`
that knows the fop's request structure (``gfx_<fop>_req`` in
rpc/xdr/src/glusterfs4-xdr.x) and reply structure (the ``xdr_gfx_*_rsp``
that xlators/protocol/server/src/server-rpc-fops_v2.c sends).  The table is
built from the catalogue - a fop without a wire layout below fails at
import - so there is no second list of fops.  Procedure numbers are the
catalogue's `procnum` (GFS3_OP_*); `CODECS_BY_PROCNUM` indexes them.

Requests::

    codec = FOP_CODECS["readv"]
    buffers = codec.encode_request({"fd": RemoteFd(gfid, 3), "size": 4096,
                                    "offset": 0, "flags": 0}, xdata=None)
    req = codec.decode_request(body)        # -> FopRequest
    req.args["fd"], req.args["size"], req.xdata

`args` holds the catalogue's arguments by name, as the fop methods take
them, translated to and from the wire:

* a `loc` argument is a `fops.Loc` built from the request's gfid/pargfid/
  bname fields (path is not on the 4.x wire; null gfids and empty names
  decode as None);
* an `fd` argument is a `RemoteFd(gfid, num)`: the inode's gfid and the
  number the server gave at open (GlusterFS's remote fd).  The fd argument
  of open/create/opendir, which names the fd being opened, is not on the
  wire and decodes as None;
* open/create/put `flags` are host O_* flags; the wire carries GlusterFS's
  GF_O_* (gf_flags_from_flags()/gf_flags_to_flags() in glusterfs3.h), which
  on Linux differ only in O_SYNC;
* `data` (writev, put) is the payload that follows the XDR in the same
  record, as GlusterFS sends it: `encode_request` returns it as a separate
  buffer and `decode_request` hands it out as a memoryview of the record.

Wire fields that no catalogue argument carries (lookup's flags, the namelen
"flag" of getxattr/entrylk, the lock type inodelk repeats beside its flock,
rchecksum's flags) go into `FopRequest.extra`, keyed by their name in the
.x file - only when they differ from what GlusterFS's client would send for
the same arguments (client-common.c), so `extra` is normally empty; so do
open flags whose GF_O_* bits would not map back one to one.  Either way
decode-then-encode reproduces the bytes.

Payload lengths are checked: a WRITE whose `size` differs from the bytes
that follow it is malformed (GlusterFS's server asserts the same), and so
is a READ reply whose `size` differs from its data.

Replies::

    buffers = codec.encode_reply(ReadReply(data=view, iatt=st))
    buffers = codec.encode_reply(FopError(errno.ENOENT))
    resp = codec.decode_reply(body)         # -> FopResponse
    resp.result                              # the Reply object, or a FopError

On the wire a reply is op_ret/op_errno plus the structure's fields.  The
encoder derives op_ret as GlusterFS's server reports it (`default_op_ret`):
bytes read for readv (the data follows the XDR outside it), bytes written
for writev, the entry count for readdir/readdirp, the path length for
readlink, the value size for a getxattr of one name, 0 otherwise; a
FopError becomes op_ret -1 with its errno and xdata.  `FopResponse` keeps
the op_ret and op_errno it decoded (GlusterFS's posix readv reports ENOENT
in op_errno at end of file; success replies often carry a stale errno) and,
in `extra`, any field the result object cannot hold (the iatts an error
reply still carries, rchecksum's flags), so `FopResponse.encode()` gives
back the exact bytes.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Union

from .. import fops as F
from ..fops import GFID, NULL_GFID, FopError, Loc
from .dicts import pack_dict, unpack_dict
from .errors import RpcProtocolError
from .message import SUCCESS_REPLY_CONSTANTS, SUCCESS_REPLY_HEAD
from .record import LAST_FRAGMENT, Buffer
from .structs import (IATTX, ZERO_IATTX, gfid_bytes, iattx_bytes, pack_flock, pack_lease,
                      pack_locklist, pack_statfs, unpack_flock, unpack_gfid,
                      is_zero_iattx, unpack_iattx, unpack_lease, unpack_locklist,
                      unpack_statfs, zero_iatt)
from .xdr import I32, I64, U32, U64, Packer, Unpacker

FOP_PROGRAM = 1298437       # GLUSTER_FOP_PROGRAM
FOP_VERSION = 400           # GLUSTER_FOP_VERSION_v2 (4.0.0)
FOP_VERSION_3 = 330         # the 3.x program ("GlusterFS 3.3"); we speak only 4.x


class RemoteFd(NamedTuple):
    """An fd as the wire names it: the inode's gfid and the server's fd
    number (GlusterFS's remote_fd; -2 is GF_ANON_FD_NO, the anonymous fd)."""

    gfid: GFID | None
    num: int


ANON_FD = -2


# ---------------------------------------------------------------------------
# Open flags: GlusterFS's GF_O_* on the wire (rpc/xdr/src/glusterfs3.h)

GF_O_SYNC = 0o10000
_HOST_O_SYNC = getattr(os, "O_SYNC", 0o4010000)
_SYNC_EXTRA = _HOST_O_SYNC & ~GF_O_SYNC  # Linux's __O_SYNC bit


def flags_to_wire(flags: int) -> int:
    """gf_flags_from_flags() for Linux: every GF_O_* equals the kernel's
    O_* except O_SYNC (O_DSYNC plus __O_SYNC), which GlusterFS sends as
    GF_O_SYNC, the O_DSYNC bit alone."""
    if flags & _HOST_O_SYNC == _HOST_O_SYNC:
        flags &= ~_SYNC_EXTRA
    return flags & 0xFFFFFFFF


def flags_from_wire(gf_flags: int) -> int:
    """gf_flags_to_flags() for Linux: GF_O_SYNC becomes O_SYNC."""
    if gf_flags & GF_O_SYNC:
        gf_flags |= _HOST_O_SYNC
    return gf_flags


# ---------------------------------------------------------------------------
# Wire types: (unpack, pack, zero value as GlusterFS's zeroed structs hold it)


# Integers have no "absent" value: None where an int belongs is a caller's
# bug and raises ValueError; the other packers encode None as GlusterFS
# encodes a missing value (zeros, "", a NULL dict).

def _pack_u32(p: Packer, v: int) -> None:
    p.pack(U32, v)


def _pack_i32(p: Packer, v: int) -> None:
    p.pack(I32, v)


def _pack_u64(p: Packer, v: int) -> None:
    p.pack(U64, v)


def _pack_i64(p: Packer, v: int) -> None:
    p.pack(I64, v)


def _pack_gfid(p: Packer, v: bytes | None) -> None:
    p.buf += gfid_bytes(v)


def _pack_iatt(p: Packer, v: F.Iatt | None) -> None:
    p.buf += ZERO_IATTX if v is None else iattx_bytes(v)


def _pack_str(p: Packer, v: str | bytes | None) -> None:
    p.string("" if v is None else v)


def _pack_opaque(p: Packer, v: Buffer | None) -> None:
    p.opaque(b"" if v is None else v)


class WireType(NamedTuple):
    unpack: Callable[[Unpacker], Any]
    pack: Callable[[Packer, Any], None]
    zero: Any
    fmt: str = ""  # struct format of a fixed-size scalar, to batch runs of them


WIRE_TYPES: dict[str, WireType] = {
    "u32": WireType(Unpacker.u32, _pack_u32, 0, "I"),
    "i32": WireType(Unpacker.i32, _pack_i32, 0, "i"),
    "u64": WireType(Unpacker.u64, _pack_u64, 0, "Q"),
    "i64": WireType(Unpacker.i64, _pack_i64, 0, "q"),
    "gfid": WireType(unpack_gfid, _pack_gfid, NULL_GFID, "16s"),
    "str": WireType(Unpacker.string, _pack_str, ""),
    "opaque": WireType(Unpacker.opaque, _pack_opaque, b""),
    # A dict inside a zero-initialised reply struct has count 0, not -1.
    "dict": WireType(unpack_dict, pack_dict, {}),
    "iatt": WireType(unpack_iattx, _pack_iatt, zero_iatt()),
    "statfs": WireType(unpack_statfs, pack_statfs, F.Statvfs(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)),
    "flock": WireType(unpack_flock, pack_flock, F.Flock(0, 0, 0, 0, 0, b"")),
    "lease": WireType(unpack_lease, pack_lease, F.Lease(0, 0, bytes(16), 0)),
    "locks": WireType(unpack_locklist, pack_locklist, []),
}
GFID_TYPE = WIRE_TYPES["gfid"]
IATT_TYPE = WIRE_TYPES["iatt"]


# ---------------------------------------------------------------------------
# Layouts.  A request field is "type:wirename=binding"; bindings:
#   ARG              catalogue argument ARG
#   ARG.gfid / ARG.pargfid / ARG.name    part of a loc argument
#   ARG.gfid / ARG.num                   part of an fd argument (RemoteFd)
#   oflags:ARG       open flags argument, GF_O_* on the wire
#   len:ARG          len() of the payload argument ARG
#   extra            a wire-only field (see EXTRA_DEFAULTS)
#   xdata            the request's xdata
# A layout ending in "+data:ARG" carries argument ARG as payload after the XDR.
# Reply fields bind to attributes of the fop's reply class, or extra/xdata;
# "fd" binds a RemoteFd attribute, "len:data" the payload length, "+payload"
# marks the read data that follows the XDR.

REQUESTS: dict[str, str] = {
    "lookup": "gfid:gfid=loc.gfid gfid:pargfid=loc.pargfid u32:flags=extra str:bname=loc.name dict:xdata=xdata",
    "stat": "gfid:gfid=loc.gfid dict:xdata=xdata",
    "fstat": "gfid:gfid=fd.gfid i64:fd=fd.num dict:xdata=xdata",
    "access": "gfid:gfid=loc.gfid u32:mask=mask dict:xdata=xdata",
    "readlink": "gfid:gfid=loc.gfid u32:size=size dict:xdata=xdata",
    "mknod": "gfid:pargfid=loc.pargfid u64:dev=rdev u32:mode=mode u32:umask=umask str:bname=loc.name dict:xdata=xdata",
    "mkdir": "gfid:pargfid=loc.pargfid u32:mode=mode u32:umask=umask str:bname=loc.name dict:xdata=xdata",
    "unlink": "gfid:pargfid=loc.pargfid str:bname=loc.name u32:xflags=xflags dict:xdata=xdata",
    "rmdir": "gfid:pargfid=loc.pargfid i32:xflags=xflags str:bname=loc.name dict:xdata=xdata",
    "symlink": "gfid:pargfid=loc.pargfid str:bname=loc.name u32:umask=umask str:linkname=linkname dict:xdata=xdata",
    "rename": "gfid:oldgfid=oldloc.pargfid gfid:newgfid=newloc.pargfid str:oldbname=oldloc.name str:newbname=newloc.name dict:xdata=xdata",
    "link": "gfid:oldgfid=oldloc.gfid gfid:newgfid=newloc.pargfid str:newbname=newloc.name dict:xdata=xdata",
    "truncate": "gfid:gfid=loc.gfid u64:offset=offset dict:xdata=xdata",
    "ftruncate": "gfid:gfid=fd.gfid i64:fd=fd.num u64:offset=offset dict:xdata=xdata",
    "open": "gfid:gfid=loc.gfid u32:flags=oflags:flags dict:xdata=xdata",
    "create": "gfid:pargfid=loc.pargfid u32:flags=oflags:flags u32:mode=mode u32:umask=umask str:bname=loc.name dict:xdata=xdata",
    "readv": "gfid:gfid=fd.gfid i64:fd=fd.num u64:offset=offset u32:size=size u32:flag=flags dict:xdata=xdata",
    "writev": "gfid:gfid=fd.gfid i64:fd=fd.num u64:offset=offset u32:size=len:data u32:flag=flags dict:xdata=xdata +data:data",
    "flush": "gfid:gfid=fd.gfid i64:fd=fd.num dict:xdata=xdata",
    "fsync": "gfid:gfid=fd.gfid i64:fd=fd.num u32:data=datasync dict:xdata=xdata",
    "opendir": "gfid:gfid=loc.gfid dict:xdata=xdata",
    "readdir": "gfid:gfid=fd.gfid i64:fd=fd.num u64:offset=offset u32:size=size dict:xdata=xdata",
    "readdirp": "gfid:gfid=fd.gfid i64:fd=fd.num u64:offset=offset u32:size=size dict:xdata=xdata",
    "fsyncdir": "gfid:gfid=fd.gfid i64:fd=fd.num i32:data=datasync dict:xdata=xdata",
    "release": "gfid:gfid=fd.gfid i64:fd=fd.num dict:xdata=xdata",
    "releasedir": "gfid:gfid=fd.gfid i64:fd=fd.num dict:xdata=xdata",
    "statfs": "gfid:gfid=loc.gfid dict:xdata=xdata",
    "setxattr": "gfid:gfid=loc.gfid u32:flags=flags dict:dict=xattrs dict:xdata=xdata",
    "getxattr": "gfid:gfid=loc.gfid u32:namelen=extra str:name=name dict:xdata=xdata",
    "fsetxattr": "gfid:gfid=fd.gfid i64:fd=fd.num u32:flags=flags dict:dict=xattrs dict:xdata=xdata",
    "fgetxattr": "gfid:gfid=fd.gfid i64:fd=fd.num u32:namelen=extra str:name=name dict:xdata=xdata",
    "removexattr": "gfid:gfid=loc.gfid str:name=name dict:xdata=xdata",
    "fremovexattr": "gfid:gfid=fd.gfid i64:fd=fd.num str:name=name dict:xdata=xdata",
    "xattrop": "gfid:gfid=loc.gfid u32:flags=optype dict:dict=xattrs dict:xdata=xdata",
    "fxattrop": "gfid:gfid=fd.gfid i64:fd=fd.num u32:flags=optype dict:dict=xattrs dict:xdata=xdata",
    "inodelk": "gfid:gfid=loc.gfid u32:cmd=cmd u32:type=extra flock:flock=flock str:volume=volume dict:xdata=xdata",
    "finodelk": "gfid:gfid=fd.gfid i64:fd=fd.num u32:cmd=cmd u32:type=extra flock:flock=flock str:volume=volume dict:xdata=xdata",
    "entrylk": "gfid:gfid=loc.gfid u32:cmd=cmd u32:type=type u64:namelen=extra str:name=basename str:volume=volume dict:xdata=xdata",
    "fentrylk": "gfid:gfid=fd.gfid i64:fd=fd.num u32:cmd=cmd u32:type=type u64:namelen=extra str:name=basename str:volume=volume dict:xdata=xdata",
    "lk": "gfid:gfid=fd.gfid i64:fd=fd.num u32:cmd=cmd u32:type=extra flock:flock=flock dict:xdata=xdata",
    "setattr": "gfid:gfid=loc.gfid iatt:stbuf=stbuf i32:valid=valid dict:xdata=xdata",
    "fsetattr": "gfid:gfid=fd.gfid i64:fd=fd.num iatt:stbuf=stbuf i32:valid=valid dict:xdata=xdata",
    "fallocate": "gfid:gfid=fd.gfid i64:fd=fd.num u32:flags=mode u64:offset=offset u64:size=length dict:xdata=xdata",
    "discard": "gfid:gfid=fd.gfid i64:fd=fd.num u64:offset=offset u64:size=length dict:xdata=xdata",
    "zerofill": "gfid:gfid=fd.gfid i64:fd=fd.num u64:offset=offset u64:size=length dict:xdata=xdata",
    "ipc": "i32:op=op dict:xdata=xdata",
    "seek": "gfid:gfid=fd.gfid i64:fd=fd.num u64:offset=offset i32:what=what dict:xdata=xdata",
    "rchecksum": "gfid:gfid=fd.gfid i64:fd=fd.num u64:offset=offset u32:len=length u32:flags=extra dict:xdata=xdata",
    "lease": "gfid:gfid=loc.gfid lease:lease=lease dict:xdata=xdata",
    "getactivelk": "gfid:gfid=loc.gfid dict:xdata=xdata",
    "setactivelk": "gfid:gfid=loc.gfid locks:request=locks dict:xdata=xdata",
    "icreate": "gfid:gfid=loc.gfid u32:mode=mode dict:xdata=xdata",
    "namelink": "gfid:pargfid=loc.pargfid str:bname=loc.name dict:xdata=xdata",
    "put": "gfid:pargfid=loc.pargfid str:bname=loc.name u32:mode=mode u32:umask=umask u32:flag=oflags:flags u64:offset=offset u32:size=len:data dict:xattr=xattrs dict:xdata=xdata +data:data",
    "copy_file_range": "gfid:gfid1=fd_in.gfid gfid:gfid2=fd_out.gfid i64:fd_in=fd_in.num i64:fd_out=fd_out.num u64:off_in=off_in u64:off_out=off_out u32:size=length u32:flag=flags dict:xdata=xdata",
}

# The fd argument of these fops names the fd being opened; it is not sent.
NOT_ON_WIRE = F.OPENED_FDS

_COMMON = "dict:xdata=xdata"
_IATT = "dict:xdata=xdata iatt:stat=iatt"
_2IATT_PREPOST = "dict:xdata=xdata iatt:prestat=prebuf iatt:poststat=postbuf"
_2IATT_PARENT = "dict:xdata=xdata iatt:prestat=preparent iatt:poststat=postparent"
_3IATT = "dict:xdata=xdata iatt:stat=iatt iatt:preparent=preparent iatt:postparent=postparent"
_DICT = "dict:xdata=xdata dict:dict=dict iatt:prestat=extra iatt:poststat=extra"
_OPEN = "dict:xdata=xdata i64:fd=fd"

REPLIES: dict[str, str] = {
    "lookup": "dict:xdata=xdata iatt:prestat=iatt iatt:poststat=postparent",
    "stat": _IATT, "fstat": _IATT, "icreate": _IATT,
    "access": _COMMON, "flush": _COMMON, "fsyncdir": _COMMON, "release": _COMMON,
    "releasedir": _COMMON, "setxattr": _COMMON, "fsetxattr": _COMMON,
    "removexattr": _COMMON, "fremovexattr": _COMMON, "inodelk": _COMMON,
    "finodelk": _COMMON, "entrylk": _COMMON, "fentrylk": _COMMON, "ipc": _COMMON,
    "setactivelk": _COMMON,
    "readlink": "dict:xdata=xdata iatt:buf=iatt str:path=path",
    "mknod": _3IATT, "mkdir": _3IATT, "symlink": _3IATT, "link": _3IATT, "put": _3IATT,
    "unlink": _2IATT_PARENT, "rmdir": _2IATT_PARENT,
    "rename": ("dict:xdata=xdata iatt:stat=iatt iatt:preoldparent=preoldparent "
               "iatt:postoldparent=postoldparent iatt:prenewparent=prenewparent "
               "iatt:postnewparent=postnewparent"),
    "truncate": _2IATT_PREPOST, "ftruncate": _2IATT_PREPOST, "fsync": _2IATT_PREPOST,
    "setattr": _2IATT_PREPOST, "fsetattr": _2IATT_PREPOST, "fallocate": _2IATT_PREPOST,
    "discard": _2IATT_PREPOST, "zerofill": _2IATT_PREPOST, "namelink": _2IATT_PREPOST,
    "writev": _2IATT_PREPOST,
    "open": _OPEN, "opendir": _OPEN,
    "create": ("dict:xdata=xdata iatt:stat=iatt u64:fd=fd iatt:preparent=preparent "
               "iatt:postparent=postparent"),
    "readv": "iatt:stat=iatt u32:size=len:data dict:xdata=xdata +payload",
    "readdir": "dict:xdata=xdata dirlist:reply=entries",
    "readdirp": "dict:xdata=xdata dirplist:reply=entries",
    "statfs": "dict:xdata=xdata statfs:statfs=statvfs",
    "getxattr": _DICT, "fgetxattr": _DICT, "xattrop": _DICT, "fxattrop": _DICT,
    "lk": "dict:xdata=xdata flock:flock=flock",
    "rchecksum": "dict:xdata=xdata u32:flags=extra u32:weak_checksum=weak opaque:strong_checksum=strong",
    "seek": "dict:xdata=xdata u64:offset=offset",
    "lease": "dict:xdata=xdata lease:lease=lease",
    "getactivelk": "dict:xdata=xdata locks:reply=locks",
    "copy_file_range": ("dict:xdata=xdata iatt:stat=iatt iatt:preparent=prebuf_dst "
                        "iatt:postparent=postbuf_dst"),
}


# Wire-only request fields: what GlusterFS's client (client-common.c) puts
# there for given arguments.  A decoded value equal to this is not kept.
def _namelen(args: Mapping[str, Any]) -> int:
    return 1 if args.get("name") else 0


def _entry_namelen(args: Mapping[str, Any]) -> int:
    return 1 if args.get("basename") else 0


def _flock_type(args: Mapping[str, Any]) -> int:
    flock = args.get("flock")
    return flock.type if flock is not None else 0


EXTRA_DEFAULTS: dict[tuple[str, str], Callable[[Mapping[str, Any]], Any]] = {
    ("lookup", "flags"): lambda args: 0,
    ("getxattr", "namelen"): _namelen,
    ("fgetxattr", "namelen"): _namelen,
    ("entrylk", "namelen"): _entry_namelen,
    ("fentrylk", "namelen"): _entry_namelen,
    ("inodelk", "type"): _flock_type,
    ("finodelk", "type"): _flock_type,
    ("lk", "type"): _flock_type,
    ("rchecksum", "flags"): lambda args: 0,
}


# Reply-side wire-only fields on success: server4_post_rchecksum() sets
# flags to 1 (SHA-256); getxattr-style replies carry zeroed iatts.
REPLY_EXTRA_DEFAULTS: dict[tuple[str, str], Any] = {
    ("rchecksum", "flags"): 1,
}


def default_op_ret(name: str, reply: F.Reply) -> int:
    """op_ret as GlusterFS's server reports a successful fop."""
    # `reply` is the catalogue's reply class for `name` (encode_reply checks
    # it): the ignores below read the attribute that class has, which the
    # name, not the static type, tells.
    if name == "readv":
        return len(reply.data)  # type: ignore[attr-defined]
    if name in ("writev", "copy_file_range"):
        return reply.count  # type: ignore[attr-defined, no-any-return]
    if name in ("readdir", "readdirp"):
        return len(reply.entries)  # type: ignore[attr-defined]
    if name == "readlink":
        return len(reply.path.encode("utf-8", "surrogateescape"))  # type: ignore[attr-defined]
    if name in ("getxattr", "fgetxattr") and reply.dict and len(reply.dict) == 1:  # type: ignore[attr-defined]
        # posix_getxattr: the size of the one value asked for (a string's
        # without its NUL); virtual xattrs answered by other translators
        # (index's gfids) report 0.
        (value,) = reply.dict.values()  # type: ignore[attr-defined]
        if isinstance(value, str):
            return len(value.encode("utf-8", "surrogateescape"))
        if isinstance(value, (bytes, bytearray, memoryview)) and not isinstance(value, GFID):
            return len(value)
    return 0


# ---------------------------------------------------------------------------
# Directory listings (gfx_dirlist / gfx_dirplist, xdr-custom.c)

_DIRENT_HEAD = struct.Struct(">QQII")


def _unpack_dirlist(u: Unpacker, plus: bool) -> list[F.Dirent]:
    entries = []
    while u.optional():
        ino, off, d_len, d_type = u.unpack(_DIRENT_HEAD)
        raw = u.opaque()
        name = raw.decode("utf-8", "surrogateescape")  # as Unpacker.string
        # gf_dirent_t's d_len is strlen(d_name); one that disagrees cannot be
        # kept in a Dirent, so it is malformed for us.
        if d_len != len(raw):
            raise RpcProtocolError(f"dirent {name!r} with d_len {d_len}")
        if plus:
            # an absent iatt: its zeros compared raw, not as two Iatts
            iatt: F.Iatt | None
            if is_zero_iattx(u):
                u.pos += 148
                iatt = None
            else:
                iatt = unpack_iattx(u)
            xdata = unpack_dict(u)
            entries.append(F.Dirent(name, ino, off, d_type, iatt, xdata))
        else:
            entries.append(F.Dirent(name, ino, off, d_type))
    return entries


def _pack_dirlist(p: Packer, entries: Iterable[F.Dirent] | None, plus: bool) -> None:
    for e in entries or ():
        raw = e.name.encode("utf-8", "surrogateescape")
        p.optional(True)
        p.pack(_DIRENT_HEAD, e.ino, e.off, len(raw), e.type)
        p.opaque(raw)
        if plus:
            _pack_iatt(p, e.iatt)
            pack_dict(p, e.xdata)
    p.optional(False)


WIRE_TYPES["dirlist"] = WireType(lambda u: _unpack_dirlist(u, False),
                                 lambda p, v: _pack_dirlist(p, v, False), [])
WIRE_TYPES["dirplist"] = WireType(lambda u: _unpack_dirlist(u, True),
                                  lambda p, v: _pack_dirlist(p, v, True), [])


# ---------------------------------------------------------------------------
# Decoded messages


@dataclass(slots=True)
class FopRequest:
    """A decoded fop call: catalogue arguments by name, xdata, and the
    wire-only fields that differ from GlusterFS's defaults."""

    fop: F.Fop
    args: dict[str, Any]
    xdata: F.GfDict | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.fop.name

    def encode(self) -> list[Buffer]:
        return FOP_CODECS[self.fop.name].encode_request(self.args, self.xdata, self.extra)


@dataclass(slots=True)
class FopResponse:
    """A decoded fop reply: `result` is the catalogue's reply object on
    success or a `FopError` (with the reply's xdata) on failure."""

    fop: F.Fop
    result: F.Reply | FopError
    op_ret: int
    op_errno: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.fop.name

    @property
    def ok(self) -> bool:
        return not isinstance(self.result, FopError)

    @property
    def xdata(self) -> F.GfDict | None:
        return self.result.xdata

    def unwrap(self) -> F.Reply:
        """The reply object, or raise the FopError."""
        if isinstance(self.result, FopError):
            raise self.result
        return self.result

    def encode(self) -> list[Buffer]:
        return FOP_CODECS[self.fop.name].encode_reply(
            self.result, op_ret=self.op_ret, op_errno=self.op_errno, extra=self.extra)


# ---------------------------------------------------------------------------
# The codec


class _Field(NamedTuple):
    wire: str          # field name in the .x file
    wtype: WireType
    kind: str          # arg, loc, fd, oflags, len, extra, xdata (requests)
                       # attr, fd, len, extra, xdata (replies)
    target: str        # argument / attribute name
    part: str = ""     # loc/fd part


def _parse_request(fop: F.Fop, spec: str) -> tuple[tuple[_Field, ...], str | None]:
    kinds = {a.name: a.kind for a in fop.args}
    fields = []
    payload = None
    for item in spec.split():
        if item.startswith("+data:"):
            payload = item[6:]
            continue
        typ, rest = item.split(":", 1)
        wire, binding = rest.split("=", 1)
        wt = WIRE_TYPES[typ]
        if binding in ("xdata", "extra"):
            fields.append(_Field(wire, wt, binding, wire))
        elif binding.startswith("oflags:"):
            fields.append(_Field(wire, wt, "oflags", binding[7:]))
        elif binding.startswith("len:"):
            fields.append(_Field(wire, wt, "len", binding[4:]))
        elif "." in binding:
            arg, part = binding.split(".")
            fields.append(_Field(wire, wt, kinds[arg], arg, part))
        else:
            if binding not in kinds:
                raise AssertionError(f"{fop.name}: {binding} is not a catalogue argument")
            fields.append(_Field(wire, wt, "arg", binding))
    return tuple(fields), payload


def _parse_reply(spec: str) -> tuple[tuple[_Field, ...], bool]:
    fields = []
    payload = False
    for item in spec.split():
        if item == "+payload":
            payload = True
            continue
        typ, rest = item.split(":", 1)
        wire, binding = rest.split("=", 1)
        wt = WIRE_TYPES[typ]
        if binding in ("xdata", "extra"):
            fields.append(_Field(wire, wt, binding, wire))
        elif binding.startswith("len:"):
            fields.append(_Field(wire, wt, "len", binding[4:]))
        elif binding == "fd":
            fields.append(_Field(wire, wt, "fd", "fd"))
        else:
            fields.append(_Field(wire, wt, "attr", binding))
    return tuple(fields), payload


_OP_HEAD = struct.Struct(">ii")
_NULL16 = bytes(16)


def _gfid_or_none(raw: bytes) -> GFID | None:
    """A gfid field: the null gfid is "none"."""
    return None if raw == _NULL16 else bytes.__new__(GFID, raw)


# Decoding and encoding run from plans compiled once per fop: consecutive
# fixed-size fields (gfids, ints, hypers) are read or written with one
# precompiled struct.Struct - for writev's gfid, fd, offset, size and flag
# that is one unpack_from instead of five method calls.

# A step reads (or writes) either a run of fixed-size fields with one
# struct, or one field with its wire type's function: exactly one of the
# two is set.
_ReadStep = Union[tuple[struct.Struct, None], tuple[None, Callable[[Unpacker], Any]]]
_WriteStep = Union[tuple[struct.Struct, None, int, int],
                   tuple[None, Callable[[Packer, Any], None], int, int]]


def _read_steps(fields: Iterable[_Field], head: str = "") -> tuple[_ReadStep, ...]:
    steps: list[_ReadStep] = []
    fmt = head
    for f in fields:
        if f.wtype.fmt:
            fmt += f.wtype.fmt
            continue
        if fmt:
            steps.append((struct.Struct(">" + fmt), None))
            fmt = ""
        steps.append((None, f.wtype.unpack))
    if fmt:
        steps.append((struct.Struct(">" + fmt), None))
    return tuple(steps)


def _read(u: Unpacker, steps: tuple[_ReadStep, ...]) -> list[Any]:
    """One value per field, in field order."""
    vals: list[Any] = []
    data = u.data
    for st, unpack in steps:
        if st is None:
            # a step has its struct or its function (_ReadStep); mypy does
            # not relate the two names unpacked from the tuple
            vals.append(unpack(u))  # type: ignore[misc]
        else:
            p = u.pos
            if st.size > u.end - p:
                raise RpcProtocolError(f"truncated XDR: need {st.size} bytes at offset {p}, "
                                       f"have {u.end - p}")
            u.pos = p + st.size
            vals.extend(st.unpack_from(data, p))
    return vals


def _write_steps(fields: Iterable[_Field], head: str = "") -> tuple[_WriteStep, ...]:
    steps: list[_WriteStep] = []
    fmt, start = head, 0
    index = len(head)
    for f in fields:
        if f.wtype.fmt:
            fmt += f.wtype.fmt
        else:
            if fmt:
                steps.append((struct.Struct(">" + fmt), None, start, index))
                fmt = ""
            steps.append((None, f.wtype.pack, index, index + 1))
            start = index + 1
        index += 1
        if not fmt:
            start = index
    if fmt:
        steps.append((struct.Struct(">" + fmt), None, start, index))
    return tuple(steps)


def _write(p: Packer, steps: tuple[_WriteStep, ...], vals: list[Any]) -> None:
    buf = p.buf
    for st, pack, a, b in steps:
        if st is None:
            pack(p, vals[a])  # type: ignore[misc]  # as in _read: st is None, so pack is not
        else:
            try:
                buf += st.pack(*vals[a:b])
            except struct.error as e:
                raise ValueError(f"cannot XDR-encode {vals[a:b]!r}: {e}") from None


# arg plan operations
_VALUE, _OFLAGS, _LOC, _FD, _PAYLOAD, _ABSENT = range(6)
# reply plan operations
_R_XDATA, _R_LEN, _R_ATTR, _R_OPT_IATT, _R_FD, _R_EXTRA = range(6)


class FopCodec:
    """Request and reply codec of one fop of the 4.x program."""

    def __init__(self, fop: F.Fop) -> None:
        self.fop = fop
        self.name = fop.name
        self.procnum = fop.procnum
        self.request_fields, self.request_payload = _parse_request(fop, REQUESTS[fop.name])
        self.reply_fields, self.reply_payload = _parse_reply(REPLIES[fop.name])
        self.reply_class = fop.reply
        self._check_layouts()
        self._compile_request()
        self._compile_reply()

    def __repr__(self) -> str:
        return f"<FopCodec {self.name} proc {self.procnum}>"

    def _check_layouts(self) -> None:
        """Every catalogue argument and reply attribute has a wire field."""
        fop = self.fop
        absent = {a for (n, a) in NOT_ON_WIRE if n == fop.name}
        bound = {f.target for f in self.request_fields if f.kind not in ("xdata", "extra")}
        if self.request_payload:
            bound.add(self.request_payload)
        unbound = {a.name for a in fop.args} - bound - absent
        if unbound:
            raise AssertionError(f"{fop.name}: arguments {unbound} have no wire field")
        attrs = {f.target for f in self.reply_fields if f.kind in ("attr", "fd")}
        if self.reply_payload:
            attrs.add("data")
        if fop.name in ("writev", "copy_file_range"):
            attrs.add("count")  # op_ret
        missing = {f.name for f in dataclasses.fields(fop.reply)
                   if f.name != "xdata" and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING} - attrs
        if missing:
            raise AssertionError(f"{fop.name}: reply attributes {missing} have no wire field")

    def _compile_request(self) -> None:
        fields = self.request_fields
        index = {(f.target, f.part): i for i, f in enumerate(fields)}
        plan = []
        for a in self.fop.args:
            if (self.name, a.name) in NOT_ON_WIRE:
                plan.append((a.name, _ABSENT, -1, -1, -1))
            elif a.name == self.request_payload:
                plan.append((a.name, _PAYLOAD, -1, -1, -1))
            elif a.kind == "loc":
                plan.append((a.name, _LOC, index.get((a.name, "gfid"), -1),
                             index.get((a.name, "pargfid"), -1), index.get((a.name, "name"), -1)))
            elif a.kind == "fd":
                plan.append((a.name, _FD, index[(a.name, "gfid")], index[(a.name, "num")], -1))
            else:
                i = index[(a.name, "")]
                plan.append((a.name, _OFLAGS if fields[i].kind == "oflags" else _VALUE, i, -1, -1))
        self._arg_plan = tuple(plan)
        self._xdata_index = next(i for i, f in enumerate(fields) if f.kind == "xdata")
        self._len_indexes = tuple(i for i, f in enumerate(fields) if f.kind == "len")
        self._extras = tuple((f.wire, i, EXTRA_DEFAULTS[(self.name, f.target)])
                             for i, f in enumerate(fields) if f.kind == "extra")
        self._oflag_fields = tuple((f.wire, i, f.target) for i, f in enumerate(fields)
                                   if f.kind == "oflags")
        self._req_read = _read_steps(fields)
        self._req_write = _write_steps(fields)

    def _compile_reply(self) -> None:
        optional = {f.name for f in dataclasses.fields(self.reply_class)
                    if f.default is None and f.name != "xdata"}
        plan = []
        for i, f in enumerate(self.reply_fields, start=2):  # after op_ret, op_errno
            if f.kind == "xdata":
                op = _R_XDATA
            elif f.kind == "len":
                op = _R_LEN
            elif f.kind == "fd":
                op = _R_FD
            elif f.kind == "extra":
                op = _R_EXTRA
            elif f.wtype is IATT_TYPE and f.target in optional:
                op = _R_OPT_IATT  # zeros decode as None
            else:
                op = _R_ATTR
            default = REPLY_EXTRA_DEFAULTS.get((self.name, f.wire), f.wtype.zero)
            plan.append((op, i, f.wire, f.target, f.wtype.zero, default))
        self._reply_plan = tuple(plan)
        self._count_from_op_ret = self.name in ("writev", "copy_file_range")
        self._rep_read = _read_steps(self.reply_fields, "ii")
        self._rep_write = _write_steps(self.reply_fields, "ii")

    # -- requests -----------------------------------------------------------

    def encode_request(self, args: Mapping[str, Any], xdata: F.GfDict | None = None,
                       extra: Mapping[str, Any] | None = None) -> list[Buffer]:
        """XDR of the request (and the payload buffer for writev/put)."""
        vals = []
        for f in self.request_fields:
            kind = f.kind
            if extra and f.wire in extra:
                # a wire value that decoding kept because the arguments
                # cannot reproduce it (see decode_request)
                value = extra[f.wire]
            elif kind == "arg":
                value = args[f.target]
            elif kind == "loc":
                loc = args[f.target]
                value = getattr(loc, f.part) if loc is not None else None
            elif kind == "fd":
                fd = args[f.target]
                if not isinstance(fd, RemoteFd):
                    raise TypeError(f"{self.name}: {f.target} must be a RemoteFd, not {fd!r}")
                value = fd.gfid if f.part == "gfid" else fd.num
            elif kind == "xdata":
                value = xdata
            elif kind == "extra":
                value = EXTRA_DEFAULTS[(self.name, f.target)](args)
            elif kind == "oflags":
                value = flags_to_wire(args[f.target])
            else:  # len
                value = len(args[f.target])
            if f.wtype is GFID_TYPE:
                value = gfid_bytes(value)
            vals.append(value)
        p = Packer()
        _write(p, self._req_write, vals)
        if self.request_payload:
            return [p.buf, args[self.request_payload]]
        return [p.buf]

    def decode_request(self, body: Buffer) -> FopRequest:
        """Decode the program part of a call (XDR plus any payload)."""
        u = Unpacker(body)
        vals = _read(u, self._req_read)
        data = None
        if self.request_payload:
            data = u.rest()
            for i in self._len_indexes:
                if vals[i] != len(data):
                    raise RpcProtocolError(
                        f"{self.name}: size {vals[i]} but {len(data)} payload bytes follow")
        else:
            u.done()
        args: dict[str, Any] = {}
        for name, op, a, b, c in self._arg_plan:
            if op == _VALUE:
                args[name] = vals[a]
            elif op == _LOC:
                args[name] = Loc(gfid=_gfid_or_none(vals[a]) if a >= 0 else None,
                                 pargfid=_gfid_or_none(vals[b]) if b >= 0 else None,
                                 name=(vals[c] or None) if c >= 0 else None)
            elif op == _FD:
                args[name] = RemoteFd(_gfid_or_none(vals[a]), vals[b])
            elif op == _OFLAGS:
                args[name] = flags_from_wire(vals[a])
            elif op == _PAYLOAD:
                args[name] = data
            else:
                args[name] = None
        extra = {}
        for wire, i, default in self._extras:
            if vals[i] != default(args):
                extra[wire] = vals[i]
        for wire, i, name in self._oflag_fields:
            if flags_to_wire(args[name]) != vals[i]:
                # GF_O_* bits that do not map back one to one (__O_SYNC's
                # with GF_O_SYNC): keep the wire value as it came
                extra[wire] = vals[i]
        return FopRequest(self.fop, args, vals[self._xdata_index], extra)

    # -- replies ------------------------------------------------------------

    def encode_reply(self, result: F.Reply | FopError, *, op_ret: int | None = None,
                     op_errno: int | None = None,
                     extra: Mapping[str, Any] | None = None) -> list[Buffer]:
        """XDR of the reply (and, for readv, the data buffer after it)."""
        # (the test decides the branch itself, not a `failed` flag, so the
        # type checker narrows `result` in each)
        if isinstance(result, FopError):
            failed = True
            ret = -1 if op_ret is None else op_ret
            err = result.errno if op_errno is None else op_errno
        else:
            failed = False
            if not isinstance(result, self.reply_class):
                raise TypeError(f"{self.name} replies with {self.reply_class.__name__}, "
                                f"not {type(result).__name__}")
            ret = default_op_ret(self.name, result) if op_ret is None else op_ret
            err = 0 if op_errno is None else op_errno
        # reply_payload is set for readv only, whose ReadReply has `data`
        data = result.data if self.reply_payload and not failed else b""  # type: ignore[union-attr]
        vals = [ret, err]
        value: Any  # a field's value, of its wire type
        for op, _i, wire, target, zero, default in self._reply_plan:
            if op == _R_XDATA:
                value = result.xdata
            elif extra and wire in extra:
                value = extra[wire]
            elif op == _R_LEN:
                value = len(data)
            elif failed:
                value = zero
            elif op == _R_ATTR or op == _R_OPT_IATT:
                value = getattr(result, target)
            elif op == _R_FD:
                # only open/create/opendir replies have an _R_FD field,
                # and a failed reply never gets here: the reply has `fd`
                fd = result.fd  # type: ignore[union-attr]
                if not isinstance(fd, RemoteFd):
                    raise TypeError(f"{self.name}: reply fd must be a RemoteFd, not {fd!r}")
                value = fd.num
            else:  # a wire-only field: its success default
                value = default
            vals.append(value)
        p = Packer()
        _write(p, self._rep_write, vals)
        if data:
            return [p.buf, data]
        return [p.buf]

    def decode_reply(self, body: Buffer) -> FopResponse:
        u = Unpacker(body)
        vals = _read(u, self._rep_read)
        if self.reply_payload:
            data = u.rest()
        else:
            data = None
            u.done()
        op_ret, op_errno = vals[0], vals[1]
        failed = op_ret < 0
        xdata = None
        extra: dict[str, Any] = {}
        attrs: dict[str, Any] = {}
        for op, i, wire, target, zero, default in self._reply_plan:
            v = vals[i]
            if op == _R_XDATA:
                xdata = v
            elif op == _R_LEN:
                # only readv's plan has a _R_LEN field, and readv has a
                # reply_payload: data is the payload, not None
                if v != len(data):  # type: ignore[arg-type]
                    raise RpcProtocolError(
                        f"{self.name}: size {v} but {len(data)} payload bytes follow")  # type: ignore[arg-type]
            elif failed:
                if v != zero:
                    extra[wire] = v
            elif op == _R_ATTR:
                attrs[target] = v
            elif op == _R_OPT_IATT:
                # (the gfid test first: a full comparison costs 22 fields)
                attrs[target] = None if v.gfid == _NULL16 and v == zero else v
            elif op == _R_FD:
                attrs["fd"] = RemoteFd(None, v)
            elif v != default:  # _R_EXTRA
                extra[wire] = v
        if failed:
            if data:
                raise RpcProtocolError(f"{self.name}: error reply with {len(data)} payload bytes")
            return FopResponse(self.fop, FopError(op_errno, xdata=xdata), op_ret, op_errno, extra)
        if data is not None:
            attrs["data"] = data
        if self._count_from_op_ret:
            attrs["count"] = op_ret
        return FopResponse(self.fop, self.reply_class(**attrs, xdata=xdata), op_ret, op_errno,
                           extra)


FOP_CODECS: dict[str, FopCodec] = {fop.name: FopCodec(fop) for fop in F.CATALOGUE}
CODECS_BY_PROCNUM: dict[int, FopCodec] = {c.procnum: c for c in FOP_CODECS.values()}

# A READ reply's whole header in one struct (the brick's hottest reply):
# the RPC header of an accepted SUCCESS reply (message.SUCCESS_REPLY_HEAD),
# then gfx_read_rsp - op_ret, op_errno, the gfx_iattx (structs.IATTX), the
# payload's size - and the NULL gfx_dict (dicts._NULL_DICT: 0, -1, 0).
_READ_RECORD = struct.Struct(SUCCESS_REPLY_HEAD + "ii" + IATTX.format[1:] + "I" + "IiI")


def encode_read_reply_record(xid: int, result: object, max_fragment: int) -> list[Buffer] | None:
    """The record-marked buffers of a READ reply - its header packed at once,
    the data buffer after it as it is (no copy) - or None when the reply is
    not the plain case this packs (an error, xdata, no iatt, `extra` wire
    fields, an op_ret that is not the data's length, a record over
    `max_fragment`): the caller then encodes it the general way
    (`RpcConnection.send_reply`; the bytes are the same,
    tests/test_rpc_connection.py)."""
    op_errno = 0
    if isinstance(result, FopResponse):
        reply = result.result
        if result.extra or not isinstance(reply, F.ReadReply) or result.op_ret != len(reply.data):
            return None
        op_errno = result.op_errno
    elif isinstance(result, F.ReadReply):
        reply = result
    else:
        return None
    a = reply.iatt
    if a is None or reply.xdata is not None:
        return None
    data = reply.data
    n = len(data)
    total = _READ_RECORD.size - 4 + n
    if total > max_fragment:
        return None
    # structs.iattx_bytes' field order
    try:
        head = _READ_RECORD.pack(
            LAST_FRAGMENT | total, xid, *SUCCESS_REPLY_CONSTANTS, n, op_errno,
            a.gfid, a.flags, a.ino, a.dev, a.rdev, a.size, a.blocks, a.attributes,
            a.attributes_mask, a.atime, a.mtime, a.ctime, a.btime, a.atime_nsec,
            a.mtime_nsec, a.ctime_nsec, a.btime_nsec, a.nlink, a.uid, a.gid,
            a.blksize, a.mode, n, 0, -1, 0)
    except struct.error:
        return None     # the general encoder reports what does not fit
    return [head, data] if n else [head]


def encode_fop_request(name: str, *, xdata: F.GfDict | None = None, **args: Any) -> list[Buffer]:
    """Shorthand: ``encode_fop_request("stat", loc=Loc(gfid=g))``."""
    return FOP_CODECS[name].encode_request(args, xdata)


__all__ = [
    "FOP_PROGRAM", "FOP_VERSION", "RemoteFd", "ANON_FD", "FopRequest",
    "FopResponse", "FopCodec", "FOP_CODECS", "CODECS_BY_PROCNUM",
    "default_op_ret", "flags_to_wire", "flags_from_wire", "encode_fop_request",
    "REQUESTS", "REPLIES", "EXTRA_DEFAULTS", "NOT_ON_WIRE", "encode_read_reply_record",
]
