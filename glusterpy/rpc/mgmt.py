"""The management programs a GlusterFS client, brick and glusterd exchange
before (and beside) the fop program: DUMP, HANDSHAKE and PORTMAP.

Program numbers and procedures are from rpc/rpc-lib/src/protocol-common.h
and xdr-common.h; structures from rpc/xdr/src/rpc-common-xdr.x,
glusterfs3-xdr.x and portmap-xdr.x.  A GlusterFS 10 client starts every
connection the same way (see the captures' README): GETSPEC to glusterd,
DUMP and PORTBYBRICK to glusterd, then DUMP and SETVOLUME to the brick.

DUMP (123451501 v1, "GF-DUMP"), served by every rpcsvc:
    1 DUMP      DumpRequest(gfs_id)        -> DumpReply(gfs_id, op_ret, op_errno, programs)
    2 PING      (no arguments)             -> CommonReply(op_ret, op_errno, xdata)

HANDSHAKE (14398633 v2, "GlusterFS Handshake"); these still carry the old
serialized dict (dict_serialize) in opaque fields, decoded with
`dicts.decode_old_dict` (values are `StrOld`; `.text` reads them):
    1 SETVOLUME         SetVolumeRequest(dict)         -> SetVolumeReply(op_ret, op_errno, dict)
    2 GETSPEC           GetSpecRequest(flags, key, xdata) -> GetSpecReply(op_ret, op_errno, spec, xdata)
    3 PING              (no arguments)                 -> CommonReply
    4 SET_LK_VER        SetLkVerRequest(uid, lk_ver)   -> SetLkVerReply(op_ret, op_errno, lk_ver)
    5 EVENT_NOTIFY      EventNotifyRequest(op, dict)   -> EventNotifyReply(op_ret, op_errno, dict)
    6 GET_VOLUME_INFO   GetVolumeInfoRequest(dict)     -> GetVolumeInfoReply(op_ret, op_errno, op_errstr, dict)
    7 GET_SNAPSHOT_INFO GetSnapshotInfoRequest(dict)   -> GetSnapshotInfoReply(op_ret, op_errno, op_errstr, dict)

GETSPEC's reply op_ret is the length of the volfile text (glusterd's
server_getspec); SETVOLUME's dict keys are GlusterFS's (`remote-subvolume`,
`process-uuid`, `volfile-key`, `fops-version`, ... in the request;
`ERROR`, `process-uuid`, `child_up`, `volume-id`, ... in the reply).

PORTMAP (34123456 v1, "Gluster Portmap"), served by glusterd:
    1 PORTBYBRICK  PortByBrickRequest(brick)            -> PortByBrickReply(op_ret, op_errno, status, port)
    2 BRICKBYPORT  BrickByPortRequest(port)             -> BrickByPortReply(op_ret, op_errno, status, brick)
    4 SIGNIN       SigninRequest(brick, port, pid)      -> SigninReply(op_ret, op_errno)
    5 SIGNOUT      SignoutRequest(brick, port, rdma_port) -> SignoutReply(op_ret, op_errno)
(3, SIGNUP, is reserved and unused, as protocol-common.h says.)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .xdr import Packer, Unpacker
from .xdrmsg import XdrMessage

DUMP_PROGRAM, DUMP_VERSION = 123451501, 1
GF_DUMP_NULL, GF_DUMP_DUMP, GF_DUMP_PING = 0, 1, 2

HNDSK_PROGRAM, HNDSK_VERSION = 14398633, 2
(GF_HNDSK_NULL, GF_HNDSK_SETVOLUME, GF_HNDSK_GETSPEC, GF_HNDSK_PING,
 GF_HNDSK_SET_LK_VER, GF_HNDSK_EVENT_NOTIFY, GF_HNDSK_GET_VOLUME_INFO,
 GF_HNDSK_GET_SNAPSHOT_INFO) = range(8)

PMAP_PROGRAM, PMAP_VERSION = 34123456, 1
(GF_PMAP_NULL, GF_PMAP_PORTBYBRICK, GF_PMAP_BRICKBYPORT, GF_PMAP_SIGNUP,
 GF_PMAP_SIGNIN, GF_PMAP_SIGNOUT) = range(6)

# gf_getspec_flags_type
GF_GETSPEC_FLAG_SERVERS_LIST = 1
# gf_get_volume_info_type
GF_GET_VOLUME_UUID = 1


# --- DUMP ------------------------------------------------------------------


@dataclass(slots=True)
class DumpRequest(XdrMessage):
    _layout: ClassVar = (("gfs_id", "u64"),)
    gfs_id: int = 0


@dataclass(frozen=True, slots=True)
class ProgramInfo:
    """One gf_prog_detail: a program the peer serves."""

    name: str
    number: int
    version: int


_PROG_NUMS = struct.Struct(">QQ")


@dataclass(slots=True)
class DumpReply(XdrMessage):
    """gf_dump_rsp; `programs` is the gf_prog_detail linked list."""

    gfs_id: int = 0
    op_ret: int = 0
    op_errno: int = 0
    programs: list[ProgramInfo] = field(default_factory=list)

    def pack(self, p: Packer) -> None:
        p.u64(self.gfs_id)
        p.i32(self.op_ret)
        p.i32(self.op_errno)
        for prog in self.programs:
            p.optional(True)
            p.string(prog.name)
            p.pack(_PROG_NUMS, prog.number, prog.version)
        p.optional(False)

    @classmethod
    def unpack(cls, u: Unpacker) -> "DumpReply":
        gfs_id, op_ret, op_errno = u.u64(), u.i32(), u.i32()
        programs = []
        while u.optional():
            name = u.string()
            number, version = u.unpack(_PROG_NUMS)
            programs.append(ProgramInfo(name, number, version))
        return cls(gfs_id, op_ret, op_errno, programs)


@dataclass(slots=True)
class CommonReply(XdrMessage):
    """gf_common_rsp (PING replies); xdata is an old serialized dict."""

    _layout: ClassVar = (("op_ret", "i32"), ("op_errno", "i32"), ("xdata", "olddict"))
    op_ret: int = 0
    op_errno: int = 0
    xdata: dict[str, Any] | None = None


# --- HANDSHAKE -------------------------------------------------------------


@dataclass(slots=True)
class SetVolumeRequest(XdrMessage):
    _layout: ClassVar = (("dict", "olddict"),)
    dict: dict[str, Any] | None = None


@dataclass(slots=True)
class SetVolumeReply(XdrMessage):
    _layout: ClassVar = (("op_ret", "i32"), ("op_errno", "i32"), ("dict", "olddict"))
    op_ret: int = 0
    op_errno: int = 0
    dict: dict[str, Any] | None = None


@dataclass(slots=True)
class GetSpecRequest(XdrMessage):
    """`key` names the volfile: the volume name for clients, or
    `<vol>.<host>.<brick-path-with-dashes>` for a brick, `gluster/...` for
    daemons."""

    _layout: ClassVar = (("flags", "u32"), ("key", "string"), ("xdata", "olddict"))
    flags: int = 0
    key: str = ""
    xdata: dict[str, Any] | None = None


@dataclass(slots=True)
class GetSpecReply(XdrMessage):
    _layout: ClassVar = (("op_ret", "i32"), ("op_errno", "i32"), ("spec", "string"),
                         ("xdata", "olddict"))
    op_ret: int = 0
    op_errno: int = 0
    spec: str = ""
    xdata: dict[str, Any] | None = None

    @classmethod
    def for_volfile(cls, spec: str, xdata: dict[str, Any] | None = None) -> "GetSpecReply":
        """A successful reply as glusterd sends it: op_ret = the size."""
        return cls(len(spec.encode("utf-8", "surrogateescape")), 0, spec, xdata)


@dataclass(slots=True)
class SetLkVerRequest(XdrMessage):
    _layout: ClassVar = (("uid", "string"), ("lk_ver", "i32"))
    uid: str = ""
    lk_ver: int = 0


@dataclass(slots=True)
class SetLkVerReply(XdrMessage):
    _layout: ClassVar = (("op_ret", "i32"), ("op_errno", "i32"), ("lk_ver", "i32"))
    op_ret: int = 0
    op_errno: int = 0
    lk_ver: int = 0


@dataclass(slots=True)
class EventNotifyRequest(XdrMessage):
    _layout: ClassVar = (("op", "i32"), ("dict", "olddict"))
    op: int = 0
    dict: dict[str, Any] | None = None


@dataclass(slots=True)
class EventNotifyReply(XdrMessage):
    _layout: ClassVar = (("op_ret", "i32"), ("op_errno", "i32"), ("dict", "olddict"))
    op_ret: int = 0
    op_errno: int = 0
    dict: dict[str, Any] | None = None


@dataclass(slots=True)
class GetVolumeInfoRequest(XdrMessage):
    _layout: ClassVar = (("dict", "olddict"),)
    dict: dict[str, Any] | None = None


@dataclass(slots=True)
class GetVolumeInfoReply(XdrMessage):
    _layout: ClassVar = (("op_ret", "i32"), ("op_errno", "i32"), ("op_errstr", "string"),
                         ("dict", "olddict"))
    op_ret: int = 0
    op_errno: int = 0
    op_errstr: str = ""
    dict: dict[str, Any] | None = None


@dataclass(slots=True)
class GetSnapshotInfoRequest(XdrMessage):
    _layout: ClassVar = (("dict", "olddict"),)
    dict: dict[str, Any] | None = None


@dataclass(slots=True)
class GetSnapshotInfoReply(XdrMessage):
    _layout: ClassVar = (("op_ret", "i32"), ("op_errno", "i32"), ("op_errstr", "string"),
                         ("dict", "olddict"))
    op_ret: int = 0
    op_errno: int = 0
    op_errstr: str = ""
    dict: dict[str, Any] | None = None


# --- PORTMAP ---------------------------------------------------------------

@dataclass(slots=True)
class PortByBrickRequest(XdrMessage):
    _layout: ClassVar = (("brick", "string"),)
    brick: str = ""


@dataclass(slots=True)
class PortByBrickReply(XdrMessage):
    """glusterd-pmap.c leaves `status` 0 and answers op_ret -1 (port 0)
    for a brick it does not know."""

    _layout: ClassVar = (("op_ret", "i32"), ("op_errno", "i32"), ("status", "i32"),
                         ("port", "i32"))
    op_ret: int = 0
    op_errno: int = 0
    status: int = 0
    port: int = 0


@dataclass(slots=True)
class BrickByPortRequest(XdrMessage):
    _layout: ClassVar = (("port", "i32"),)
    port: int = 0


@dataclass(slots=True)
class BrickByPortReply(XdrMessage):
    _layout: ClassVar = (("op_ret", "i32"), ("op_errno", "i32"), ("status", "i32"),
                         ("brick", "string"))
    op_ret: int = 0
    op_errno: int = 0
    status: int = 0
    brick: str = ""


@dataclass(slots=True)
class SigninRequest(XdrMessage):
    _layout: ClassVar = (("brick", "string"), ("port", "i32"), ("pid", "i32"))
    brick: str = ""
    port: int = 0
    pid: int = 0


@dataclass(slots=True)
class SigninReply(XdrMessage):
    _layout: ClassVar = (("op_ret", "i32"), ("op_errno", "i32"))
    op_ret: int = 0
    op_errno: int = 0


@dataclass(slots=True)
class SignoutRequest(XdrMessage):
    _layout: ClassVar = (("brick", "string"), ("port", "i32"), ("rdma_port", "i32"))
    brick: str = ""
    port: int = 0
    rdma_port: int = 0


@dataclass(slots=True)
class SignoutReply(XdrMessage):
    _layout: ClassVar = (("op_ret", "i32"), ("op_errno", "i32"))
    op_ret: int = 0
    op_errno: int = 0

