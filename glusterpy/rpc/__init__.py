"""GlusterFS's wire protocol, sans-IO: bytes in, objects out, and back.

Nothing in this package opens a socket or imports trio (DESIGN.md's sans-IO
rule) except `transport`, the trio driver that moves bytes between a socket
and `RpcConnection`; protocol/server and protocol/client build on it.  The
names below do not import it: `from glusterpy.rpc.transport import
RpcEndpoint`.

Layers, bottom up (each module's docstring has the details and the
GlusterFS sources it follows):

=============  =============================================================
`errors`       `RpcProtocolError`, the one exception decoders raise
`xdr`          XDR `Unpacker`/`Packer` (struct-based, bounded)
`record`       record marking: `RecordDecoder`, `frame_record`
`auth`         AUTH_NULL, AUTH_UNIX, AUTH_GLUSTERFS (5, 390039, 390040)
`message`      ONC RPC call/reply headers: `RpcCall`, `RpcReply`,
               `decode_message`, `encode_call`, `encode_reply`
`structs`      iatt (gfx_iattx, gf_iatt), statfs, flock, lease, locklist
`dicts`        gfx_dict (typed) and the old serialized dict
`fops4`        the 4.x fop program: `FOP_CODECS[name]` for every catalogue
               fop, `FopRequest`, `FopResponse`, `RemoteFd`
`mgmt`         DUMP, HANDSHAKE, PORTMAP messages
`callback`     the callback (upcall) program's messages
`programs`     `Procedure`, `Program`, `ProgramTable`; `ALL_PROGRAMS`
`connection`   `RpcConnection`, the h11-style state machine, and its events
=============  =============================================================

The names below are the public API; import them from `glusterpy.rpc`.
The codec modules may run compiled with mypyc (`compiled` says which and
how to get the pure-Python ones): decided here, before any is imported.
"""

from . import compiled

compiled.choose()

from .auth import (AUTH_GLUSTERFS, AUTH_GLUSTERFS_V2, AUTH_GLUSTERFS_V3, AUTH_NULL,
                   AUTH_NULL_CRED, AUTH_UNIX, Auth, AuthGlusterfs, AuthGlusterfsV2,
                   AuthGlusterfsV3, AuthNull, AuthUnix, OpaqueAuth)
from .callback import (CBK_PROGRAM, CBK_VERSION, CacheInvalidation, EntrylkContention,
                       InodelkContention, RecallLease, Statedump)
from .connection import (NEED_DATA, CallFailed, CallReceived, ConnectionClosed, Event,
                         OrphanReply, RejectedCall, ReplyReceived, RpcConnection, State)
from .dicts import (RawStr, StrOld, decode_dict, decode_old_dict, dict_bytes,
                    encode_old_dict, old_dict_text)
from .errors import RpcProtocolError
from .fops4 import (ANON_FD, CODECS_BY_PROCNUM, FOP_CODECS, FOP_PROGRAM, FOP_VERSION,
                    FopCodec, FopRequest, FopResponse, RemoteFd, encode_fop_request)
from .message import (AcceptStat, AuthStat, RejectStat, ReplyStat, RpcCall, RpcReply,
                      decode_message, encode_call, encode_reply)
from .mgmt import (DUMP_PROGRAM, DUMP_VERSION, HNDSK_PROGRAM, HNDSK_VERSION, PMAP_PROGRAM,
                   PMAP_VERSION, BrickByPortReply, BrickByPortRequest, CommonReply,
                   DumpReply, DumpRequest, EventNotifyReply, EventNotifyRequest,
                   GetSnapshotInfoReply, GetSnapshotInfoRequest, GetSpecReply,
                   GetSpecRequest, GetVolumeInfoReply, GetVolumeInfoRequest, PortByBrickReply,
                   PortByBrickRequest, ProgramInfo, SetLkVerReply, SetLkVerRequest,
                   SetVolumeReply, SetVolumeRequest, SigninReply, SigninRequest,
                   SignoutReply, SignoutRequest)
from .programs import (ALL_PROGRAMS, BRICK_PROGRAMS, CALLBACK, CLIENT_PROGRAMS, DUMP, FOP,
                       FOP_PROCEDURES, GLUSTERD_PROGRAMS, HANDSHAKE, PORTMAP, Procedure,
                       Program, ProgramTable)
from .record import DEFAULT_MAX_RECORD_SIZE, RecordDecoder, frame_record
from .structs import ActiveLock, MdataIatt

__all__ = [
    # errors
    "RpcProtocolError",
    # auth
    "Auth", "AuthNull", "AuthUnix", "AuthGlusterfs", "AuthGlusterfsV2", "AuthGlusterfsV3",
    "OpaqueAuth", "AUTH_NULL", "AUTH_UNIX", "AUTH_GLUSTERFS", "AUTH_GLUSTERFS_V2",
    "AUTH_GLUSTERFS_V3", "AUTH_NULL_CRED",
    # record marking and messages
    "RecordDecoder", "frame_record", "DEFAULT_MAX_RECORD_SIZE",
    "RpcCall", "RpcReply", "ReplyStat", "AcceptStat", "RejectStat", "AuthStat",
    "decode_message", "encode_call", "encode_reply",
    # values
    "ActiveLock", "MdataIatt", "StrOld", "RawStr", "decode_dict", "dict_bytes",
    "decode_old_dict", "encode_old_dict", "old_dict_text",
    # fop program
    "FOP_PROGRAM", "FOP_VERSION", "FOP_CODECS", "CODECS_BY_PROCNUM", "FopCodec",
    "FopRequest", "FopResponse", "RemoteFd", "ANON_FD", "encode_fop_request",
    # management and callbacks
    "DUMP_PROGRAM", "DUMP_VERSION", "HNDSK_PROGRAM", "HNDSK_VERSION", "PMAP_PROGRAM",
    "PMAP_VERSION", "CBK_PROGRAM", "CBK_VERSION", "DumpRequest", "DumpReply",
    "ProgramInfo", "CommonReply", "SetVolumeRequest", "SetVolumeReply", "GetSpecRequest",
    "GetSpecReply", "SetLkVerRequest", "SetLkVerReply", "EventNotifyRequest",
    "EventNotifyReply", "GetVolumeInfoRequest", "GetVolumeInfoReply",
    "GetSnapshotInfoRequest", "GetSnapshotInfoReply", "PortByBrickRequest",
    "PortByBrickReply", "BrickByPortRequest", "BrickByPortReply", "SigninRequest",
    "SigninReply", "SignoutRequest", "SignoutReply", "CacheInvalidation", "RecallLease",
    "Statedump", "InodelkContention", "EntrylkContention",
    # programs
    "Procedure", "Program", "ProgramTable", "DUMP", "HANDSHAKE", "PORTMAP", "FOP",
    "FOP_PROCEDURES", "CALLBACK", "ALL_PROGRAMS", "BRICK_PROGRAMS", "GLUSTERD_PROGRAMS", "CLIENT_PROGRAMS",
    # connection
    "RpcConnection", "State", "NEED_DATA", "Event", "CallReceived", "RejectedCall",
    "ReplyReceived", "CallFailed", "OrphanReply", "ConnectionClosed",
]
