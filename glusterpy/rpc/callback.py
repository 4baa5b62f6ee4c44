"""GlusterFS's callback program: calls that flow from server to client.

GLUSTER_CBK_PROGRAM (52743234 v1, protocol-common.h `gf_cbk_procnum`).  A
brick (xlators/protocol/server/src/server.c) or glusterd sends these on the
connection the client opened, with AUTH_NULL and a per-connection xid
(rpcsvc.c, rpc_callback_new_callid); the client never replies
(client-callback.c, glusterfsd-mgmt.c, api/src/glfs-mgmt.c register them as
rpcclnt_cb actors).  So every procedure here is one-way: it has argument
codecs and no result codecs.

==  ===================  =====================================  ============
 #  procedure            arguments                              sender
==  ===================  =====================================  ============
 1  FETCHSPEC            none ("the volfile changed")           glusterd
 2  INO_FLUSH            none (obsolete)                        -
 3  EVENT_NOTIFY         raw bytes (no structure defined;       glusterd
                         receivers ignore the body)
 4  GET_SNAPS            none                                   glusterd
 5  CACHE_INVALIDATION   CacheInvalidation (gfs3_cbk_cache_     brick
                         invalidation_req, 3.x iatts)
 6  CHILD_UP             none                                   brick
 7  CHILD_DOWN           none                                   brick
 8  RECALL_LEASE         RecallLease (gfs3_recall_lease_req)    brick
 9  STATEDUMP            Statedump (gf_statedump)               glusterd
10  INODELK_CONTENTION   InodelkContention (gfs4_inodelk_       brick
                         contention_req)
11  ENTRYLK_CONTENTION   EntrylkContention (gfs4_entrylk_       brick
                         contention_req)
==  ===================  =====================================  ============

The xdata of these structures is an opaque<> holding an old serialized dict
(GF_PROTOCOL_DICT_SERIALIZE in glusterfs3.h), decoded as in the handshake
program.  CACHE_INVALIDATION names the inode by its gfid *as text*
(uuid_utoa), unlike every other structure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .. import fops as F
from .xdrmsg import XdrMessage

CBK_PROGRAM, CBK_VERSION = 52743234, 1
(GF_CBK_NULL, GF_CBK_FETCHSPEC, GF_CBK_INO_FLUSH, GF_CBK_EVENT_NOTIFY,
 GF_CBK_GET_SNAPS, GF_CBK_CACHE_INVALIDATION, GF_CBK_CHILD_UP, GF_CBK_CHILD_DOWN,
 GF_CBK_RECALL_LEASE, GF_CBK_STATEDUMP, GF_CBK_INODELK_CONTENTION,
 GF_CBK_ENTRYLK_CONTENTION) = range(12)


@dataclass(slots=True)
class CacheInvalidation(XdrMessage):
    """gfs3_cbk_cache_invalidation_req: upcall's cache-invalidation event.
    `flags` is the UP_* mask of what changed (upcall-utils.h)."""

    _layout: ClassVar = (("gfid", "string"), ("event_type", "u32"), ("flags", "u32"),
                         ("expire_time_attr", "u32"), ("stat", "gf_iatt"),
                         ("parent_stat", "gf_iatt"), ("oldparent_stat", "gf_iatt"),
                         ("xdata", "olddict"))
    gfid: str = ""
    event_type: int = 0
    flags: int = 0
    expire_time_attr: int = 0
    stat: F.Iatt = field(default_factory=F.Iatt)
    parent_stat: F.Iatt = field(default_factory=F.Iatt)
    oldparent_stat: F.Iatt = field(default_factory=F.Iatt)
    xdata: dict[str, Any] | None = None


@dataclass(slots=True)
class RecallLease(XdrMessage):
    _layout: ClassVar = (("gfid", "gfid"), ("lease_type", "u32"), ("tid", "opaque16"),
                         ("xdata", "olddict"))
    gfid: F.GFID = F.NULL_GFID
    lease_type: int = 0
    tid: bytes = bytes(16)
    xdata: dict[str, Any] | None = None


@dataclass(slots=True)
class Statedump(XdrMessage):
    """gf_statedump: glusterd asks the process with this pid to dump."""

    _layout: ClassVar = (("pid", "u32"),)
    pid: int = 0


@dataclass(slots=True)
class InodelkContention(XdrMessage):
    """Another client waits for an inodelk this client holds."""

    _layout: ClassVar = (("gfid", "gfid"), ("flock", "flock"), ("pid", "u32"),
                         ("domain", "string"), ("xdata", "olddict"))
    gfid: F.GFID = F.NULL_GFID
    flock: F.Flock = field(default_factory=F.Flock)
    pid: int = 0
    domain: str = ""
    xdata: dict[str, Any] | None = None


@dataclass(slots=True)
class EntrylkContention(XdrMessage):
    """Another client waits for an entrylk this client holds."""

    _layout: ClassVar = (("gfid", "gfid"), ("type", "u32"), ("pid", "u32"),
                         ("name", "string"), ("domain", "string"), ("xdata", "olddict"))
    gfid: F.GFID = F.NULL_GFID
    type: int = 0
    pid: int = 0
    name: str = ""
    domain: str = ""
    xdata: dict[str, Any] | None = None


__all__ = [
    "CBK_PROGRAM", "CBK_VERSION", "GF_CBK_NULL", "GF_CBK_FETCHSPEC",
    "GF_CBK_INO_FLUSH", "GF_CBK_EVENT_NOTIFY", "GF_CBK_GET_SNAPS",
    "GF_CBK_CACHE_INVALIDATION", "GF_CBK_CHILD_UP", "GF_CBK_CHILD_DOWN",
    "GF_CBK_RECALL_LEASE", "GF_CBK_STATEDUMP", "GF_CBK_INODELK_CONTENTION",
    "GF_CBK_ENTRYLK_CONTENTION", "CacheInvalidation", "RecallLease",
    "Statedump", "InodelkContention", "EntrylkContention",
]
