"""RPC authentication flavours: AUTH_NULL, AUTH_UNIX and GlusterFS's own.

An ONC RPC call carries a credential and a verifier, each an
``opaque_auth``: a flavour number and an opaque body of at most 400 bytes
(RFC 5531 §8.2).  GlusterFS defines three flavours of its own
(rpc/rpc-lib/src/xdr-rpc.h, rpc-common-xdr.x, glusterfs4-xdr.x):

* AUTH_GLUSTERFS (5): the 3.x credential with a fixed array of 16 groups;
  still accepted by rpcsvc, never sent by a GlusterFS 10 client.
* AUTH_GLUSTERFS_v2 (390039): pid, uid, gid, groups<>, lk_owner<> - what a
  client sends to glusterd (GETSPEC, DUMP, PORTBYBRICK).
* AUTH_GLUSTERFS_v3 (390040): v2 plus flags and the frame's ctime - what a
  client sends to bricks once the 4.x fop program is negotiated.

rpc-clnt.c (xdr_serialize_glusterfs_auth) sends a frame's lk_owner when it
has one, otherwise four bytes holding the pid in little-endian order; the
number of groups and the lk_owner length share the 400-byte budget
(GF_AUTH_GLUSTERFS_MAX_GROUPS in xdr-common.h), and the encoders here
refuse what would not fit.

Every credential has `flavor`, `body()` (the opaque bytes) and a
`parse(body)` class method that raises `RpcProtocolError` unless the body
is exactly one well-formed structure.  `decode_auth(flavor, body)` turns an
opaque_auth into the matching class, and into `OpaqueAuth` (the raw form)
for flavours it does not know or bodies that do not parse, so that a
server can answer AUTH_ERROR/AUTH_BADCRED instead of dropping the
connection.

The credential classes are plain (not frozen) slotted dataclasses: a brick
decodes one per request, and a frozen dataclass's __init__ sets each field
through object.__setattr__, ~3x the cost (bench/notes/qemu.md (11)).  Treat
them as values all the same - nothing changes a decoded credential.

This module is compiled with mypyc like the rest of the codec (compiled.py).
That is why `flavor` is a property of the instances rather than a
`ClassVar` of the classes: mypyc passes a ClassVar to the dataclass as an
ordinary annotation, which makes it an __init__ parameter of a read-only
attribute.  A class's flavour is its key in `FLAVORS`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol, Union

from ..fops import Caller
from .errors import RpcProtocolError
from .xdr import Packer, Unpacker

AUTH_NULL = 0
AUTH_UNIX = 1  # AUTH_SYS in RFC 5531
AUTH_SHORT = 2
AUTH_DES = 3
AUTH_GLUSTERFS = 5
AUTH_GLUSTERFS_V2 = 390039
AUTH_GLUSTERFS_V3 = 390040

MAX_AUTH_BYTES = 400  # RFC 5531 opaque_auth body<400>
AUTH_UNIX_MAX_MACHINENAME = 255
AUTH_UNIX_MAX_GIDS = 16
AUTH_GLUSTERFS_GROUPS = 16  # auth_glusterfs_parms: unsigned groups[16]


@dataclass(slots=True, unsafe_hash=True)
class OpaqueAuth:
    """An opaque_auth kept raw: unknown flavours, verifiers, and known
    flavours whose body did not parse (see `decode_auth`)."""

    flavor: int
    raw: bytes = b""

    def body(self) -> bytes:
        return self.raw


@dataclass(slots=True, unsafe_hash=True)
class AuthNull:

    @property
    def flavor(self) -> int:
        return AUTH_NULL

    def body(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, body: bytes) -> "AuthNull":
        if body:
            raise RpcProtocolError("AUTH_NULL with a non-empty body")
        return cls()


AUTH_NULL_CRED = AuthNull()


@dataclass(slots=True, unsafe_hash=True)
class AuthUnix:
    """RFC 5531 authsys_parms."""

    stamp: int = 0
    machinename: str = ""
    uid: int = 0
    gid: int = 0
    gids: tuple[int, ...] = ()

    @property
    def flavor(self) -> int:
        return AUTH_UNIX

    def body(self) -> bytes:
        if len(self.gids) > AUTH_UNIX_MAX_GIDS:
            raise ValueError(f"AUTH_UNIX carries at most 16 gids, not {len(self.gids)}")
        p = Packer()
        p.u32(self.stamp)
        p.string(self.machinename)
        p.u32(self.uid)
        p.u32(self.gid)
        p.u32(len(self.gids))
        for g in self.gids:
            p.u32(g)
        return _check_size(p.getvalue())

    @classmethod
    def parse(cls, body: bytes) -> "AuthUnix":
        u = Unpacker(body)
        stamp = u.u32()
        machinename = u.string(AUTH_UNIX_MAX_MACHINENAME)
        uid, gid = u.u32(), u.u32()
        n = u.u32()
        if n > AUTH_UNIX_MAX_GIDS:
            raise RpcProtocolError(f"AUTH_UNIX with {n} gids")
        gids = u.u32_array(n)
        u.done()
        return cls(stamp, machinename, uid, gid, gids)

    def caller(self) -> Caller:
        return Caller(uid=self.uid, gid=self.gid, groups=self.gids)


_GLUSTERFS_V1 = struct.Struct(">QIIII16I")


@dataclass(slots=True, unsafe_hash=True)
class AuthGlusterfs:
    """auth_glusterfs_parms (flavour 5): lk_owner as a u64, 16 group slots
    of which `ngrps` count."""

    lk_owner: int = 0
    pid: int = 0
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    unused_groups: tuple[int, ...] = ()  # slots past ngrps, kept for exactness

    @property
    def flavor(self) -> int:
        return AUTH_GLUSTERFS

    def body(self) -> bytes:
        slots = tuple(self.groups) + tuple(self.unused_groups)
        if len(slots) > AUTH_GLUSTERFS_GROUPS:
            raise ValueError("AUTH_GLUSTERFS carries at most 16 groups")
        slots += (0,) * (AUTH_GLUSTERFS_GROUPS - len(slots))
        try:
            return _GLUSTERFS_V1.pack(self.lk_owner, self.pid, self.uid, self.gid,
                                      len(self.groups), *slots)
        except struct.error as e:
            raise ValueError(f"cannot encode {self!r}: {e}") from None

    @classmethod
    def parse(cls, body: bytes) -> "AuthGlusterfs":
        u = Unpacker(body)
        lk_owner, pid, uid, gid, ngrps, *slots = u.unpack(_GLUSTERFS_V1)
        u.done()
        if ngrps > AUTH_GLUSTERFS_GROUPS:
            raise RpcProtocolError(f"AUTH_GLUSTERFS with {ngrps} groups")
        unused = tuple(slots[ngrps:])
        while unused and unused[-1] == 0:
            unused = unused[:-1]
        return cls(lk_owner, pid, uid, gid, tuple(slots[:ngrps]), unused)

    def caller(self) -> Caller:
        # auth-glusterfs.c: the u64 lk_owner becomes 8 little-endian bytes.
        return Caller(uid=self.uid, gid=self.gid, groups=self.groups, pid=self.pid,
                      lk_owner=self.lk_owner.to_bytes(8, "little"))


def _pid_owner(pid: int) -> bytes:
    """rpc-clnt.c's default lk_owner: the pid's four bytes, low byte first."""
    return (pid & 0xFFFFFFFF).to_bytes(4, "little")


def _check_size(body: bytes) -> bytes:
    if len(body) > MAX_AUTH_BYTES:
        raise ValueError(f"credential of {len(body)} bytes exceeds {MAX_AUTH_BYTES}")
    return body


@dataclass(slots=True, unsafe_hash=True, init=False)
class AuthGlusterfsV2:
    """auth_glusterfs_parms_v2 (flavour 390039)."""

    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...]
    lk_owner: bytes

    # Written out rather than the dataclass's: compiled, a dataclass's
    # generated __init__ stays interpreted; this one is native, half the
    # cost of a credential made per request (bench/notes/qemu.md (12)).
    def __init__(self, pid: int = 0, uid: int = 0, gid: int = 0,
                 groups: tuple[int, ...] = (), lk_owner: bytes = b"") -> None:
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.lk_owner = lk_owner

    @property
    def flavor(self) -> int:
        return AUTH_GLUSTERFS_V2

    def body(self) -> bytes:
        try:
            head = _V2_HEAD.pack(self.pid, self.uid, self.gid, len(self.groups))
        except struct.error as e:
            raise ValueError(f"cannot encode {self!r}: {e}") from None
        return _check_size(head + _groups_owner(self.groups, self.lk_owner))

    @classmethod
    def parse(cls, body: bytes) -> "AuthGlusterfsV2":
        if len(body) < _V2_HEAD.size:
            raise RpcProtocolError("truncated AUTH_GLUSTERFS_v2 credential")
        pid, uid, gid, ngroups = _V2_HEAD.unpack_from(body)
        groups, lk_owner = _parse_groups_owner(body, _V2_HEAD.size, ngroups)
        return cls(pid, uid, gid, groups, lk_owner)

    @classmethod
    def from_caller(cls, c: Caller) -> "AuthGlusterfsV2":
        return cls(c.pid, c.uid, c.gid, tuple(c.groups), c.lk_owner or _pid_owner(c.pid))

    def caller(self) -> Caller:
        return Caller(uid=self.uid, gid=self.gid, groups=self.groups, pid=self.pid,
                      lk_owner=self.lk_owner)


@dataclass(slots=True, unsafe_hash=True, init=False)
class AuthGlusterfsV3:
    """auth_glusterfs_params_v3 (flavour 390040).  flags bit 0x1 marks an
    internal (GlusterFS's own, e.g. self-heal) frame."""

    pid: int
    uid: int
    gid: int
    flags: int
    ctime_nsec: int
    ctime_sec: int
    groups: tuple[int, ...]
    lk_owner: bytes

    # native when compiled, as AuthGlusterfsV2's
    def __init__(self, pid: int = 0, uid: int = 0, gid: int = 0, flags: int = 0,
                 ctime_nsec: int = 0, ctime_sec: int = 0, groups: tuple[int, ...] = (),
                 lk_owner: bytes = b"") -> None:
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.flags = flags
        self.ctime_nsec = ctime_nsec
        self.ctime_sec = ctime_sec
        self.groups = groups
        self.lk_owner = lk_owner

    @property
    def flavor(self) -> int:
        return AUTH_GLUSTERFS_V3

    def body(self) -> bytes:
        try:
            head = _V3_HEAD.pack(self.pid, self.uid, self.gid, self.flags, self.ctime_nsec,
                                 self.ctime_sec, len(self.groups))
        except struct.error as e:
            raise ValueError(f"cannot encode {self!r}: {e}") from None
        return _check_size(head + _groups_owner(self.groups, self.lk_owner))

    @classmethod
    def parse(cls, body: bytes) -> "AuthGlusterfsV3":
        if len(body) < _V3_HEAD.size:
            raise RpcProtocolError("truncated AUTH_GLUSTERFS_v3 credential")
        pid, uid, gid, flags, ctime_nsec, ctime_sec, ngroups = _V3_HEAD.unpack_from(body)
        groups, lk_owner = _parse_groups_owner(body, _V3_HEAD.size, ngroups)
        return cls(pid, uid, gid, flags, ctime_nsec, ctime_sec, groups, lk_owner)

    @classmethod
    def from_caller(cls, c: Caller, flags: int = 0, ctime_ns: int = 0) -> "AuthGlusterfsV3":
        return cls(c.pid, c.uid, c.gid, flags, ctime_ns % 1_000_000_000,
                   ctime_ns // 1_000_000_000, tuple(c.groups),
                   c.lk_owner or _pid_owner(c.pid))

    def caller(self) -> Caller:
        return Caller(uid=self.uid, gid=self.gid, groups=self.groups, pid=self.pid,
                      lk_owner=self.lk_owner)


# The fixed heads of the v2/v3 credentials, up to and including the group
# count: one struct call each way (a credential rides on every fop call).
_V2_HEAD = struct.Struct(">iIII")      # pid uid gid ngroups
_V3_HEAD = struct.Struct(">iIIIIQI")   # pid uid gid flags ctime_nsec ctime_sec ngroups


def _groups_owner(groups: tuple[int, ...], lk_owner: bytes) -> bytes:
    """The groups (count already written) and the lk_owner opaque."""
    p = Packer()
    if groups:
        p.pack(struct.Struct(f">{len(groups)}I"), *groups)
    p.opaque(lk_owner)
    return p.getvalue()


def _parse_groups_owner(body: bytes, pos: int, ngroups: int) -> tuple[tuple[int, ...], bytes]:
    u = Unpacker(body, pos)
    groups = u.u32_array(ngroups)
    lk_owner = u.opaque(MAX_AUTH_BYTES)
    u.done()
    return groups, lk_owner


Auth = Union[OpaqueAuth, AuthNull, AuthUnix, AuthGlusterfs, AuthGlusterfsV2, AuthGlusterfsV3]

class CredentialClass(Protocol):
    """What `FLAVORS` maps a flavour to: a credential class, seen through
    its `parse` class method (the flavour is the key: `flavor` is a
    property of the instances, not an attribute of the classes)."""

    def parse(self, body: bytes, /) -> Auth: ...


FLAVORS: dict[int, CredentialClass] = {
    AUTH_NULL: AuthNull,
    AUTH_UNIX: AuthUnix,
    AUTH_GLUSTERFS: AuthGlusterfs,
    AUTH_GLUSTERFS_V2: AuthGlusterfsV2,
    AUTH_GLUSTERFS_V3: AuthGlusterfsV3,
}


def decode_auth(flavor: int, body: bytes) -> Auth:
    """The structured credential for a known flavour whose body parses
    exactly; otherwise the raw `OpaqueAuth`."""
    cls = FLAVORS.get(flavor)
    if cls is not None:
        try:
            return cls.parse(body)
        except RpcProtocolError:
            pass
    return OpaqueAuth(flavor, bytes(body))


class CredentialCache:
    """The last credential a connection decoded, by its flavour and bytes: a
    client sends the same one with nearly every call (its pid, ids, groups
    and lock owner change rarely), so an equal one is not parsed again - the
    call gets the same object (credentials are treated as immutable), which
    also lets protocol/server reuse the Caller it made from it."""

    __slots__ = ("flavor", "body", "cred")

    def __init__(self) -> None:
        self.flavor = -1
        self.body = b""
        self.cred: Auth = AUTH_NULL_CRED

    def unpack(self, u: Unpacker) -> Auth:
        """unpack_auth, answered from the cache when the bytes are the last ones."""
        flavor = u.u32()
        body = u.opaque(MAX_AUTH_BYTES)
        if flavor == self.flavor and body == self.body:
            return self.cred
        cred = AUTH_NULL_CRED if flavor == AUTH_NULL and not body else decode_auth(flavor, body)
        self.flavor, self.body, self.cred = flavor, body, cred
        return cred


def is_malformed(auth: Auth) -> bool:
    """True for a credential of a known flavour whose body did not parse
    (the server answers AUTH_ERROR with AUTH_BADCRED)."""
    return isinstance(auth, OpaqueAuth) and auth.flavor in FLAVORS


def pack_auth(p: Packer, auth: Auth) -> None:
    body = auth.body()
    if len(body) > MAX_AUTH_BYTES:
        raise ValueError(f"auth body of {len(body)} bytes exceeds {MAX_AUTH_BYTES}")
    p.u32(auth.flavor)
    p.opaque(body)


def unpack_auth(u: Unpacker) -> Auth:
    flavor = u.u32()
    body = u.opaque(MAX_AUTH_BYTES)
    if flavor == AUTH_NULL and not body:
        return AUTH_NULL_CRED
    return decode_auth(flavor, body)


__all__ = [
    "AUTH_NULL", "AUTH_UNIX", "AUTH_SHORT", "AUTH_DES", "AUTH_GLUSTERFS",
    "AUTH_GLUSTERFS_V2", "AUTH_GLUSTERFS_V3", "MAX_AUTH_BYTES", "Auth",
    "OpaqueAuth", "AuthNull", "AUTH_NULL_CRED", "AuthUnix", "AuthGlusterfs",
    "AuthGlusterfsV2", "AuthGlusterfsV3", "FLAVORS", "decode_auth",
    "is_malformed", "pack_auth", "unpack_auth", "CredentialCache",
]
