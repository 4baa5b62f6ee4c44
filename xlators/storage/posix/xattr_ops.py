"""The xattr fops (GlusterFS's posix-inode-fd-ops.c, and posix_xattr_fill
of posix-helpers.c): setxattr, getxattr, removexattr and xattrop (and their
fd forms), the keys the brick keeps to itself, the virtual keys it answers,
and the xattrs a lookup asks for in xdata."""

from __future__ import annotations

import errno
import fnmatch
import os
import socket
from typing import Any

from glusterpy import fops
from glusterpy.fops import (GFID, NULL_GFID, ROOT_GFID, DictReply, FopError, Iatt, Reply, UInt,
                            XattropType)
from glusterpy.keys import (ACTIVE_FD_COUNT, CONTENT_KEY, DURABLE_OP, GET_SIZE, GFID2PATH_PREFIX,
                            GFID2PATH_VIRT_KEY, GFID_KEY, GFID_STRING_KEY, GFID_TO_PATH_KEY,
                            GFID_VIRT_KEY, IATT_KEY, INTERNAL_CTX_KEY, IOSTATS_DUMP_KEY, LIST_XATTR,
                            MDATA_KEY, NODE_UUID_KEY, OPEN_FD_COUNT, PATHINFO_KEY, POSTSTAT_KEY,
                            PRESTAT_KEY, REAL_FILENAME_PREFIX, REQUEST_LINK_COUNT, SELINUX_KEY,
                            SET_CTIME_MDATA, USER_PATHINFO_KEY, VOLUME_ID_KEY)

from .handles import hrel
from .helpers import (HIDDEN_DIR, IGNORED_KEYS, O_NOFOLLOW, OpenFile, inline_fop, xattr_bytes, xget,
                      xget_quiet, xremove, xset)
from .mdata import MDATA_C, mdata_decode, mdata_encode
from glusterpy.fops import ClientPid


#: never shown by the "list-xattr" request (list_xattr_ignore_xattrs, marker)
LIST_HIDDEN = frozenset({GFID_KEY, VOLUME_ID_KEY, SELINUX_KEY})
MARKER_PATTERNS = ("trusted.glusterfs.quota.*", "trusted.glusterfs.*.xtime")
#: the sync time: readable by name by gsyncd only (posix_getxattr)
STIME_PATTERN = "*.glusterfs.*.stime"
GEOREP_PATTERNS = (STIME_PATTERN, "*.glusterfs.*.xtime", "*.glusterfs.lockinfo",
                   "*.glusterfs.*.entry_stime", "*.glusterfs.volume-mark.*")


class PosixXattrOps:
    """Stored, virtual and requested xattrs."""

    @inline_fop
    def setxattr(self, loc, xattrs, flags, xdata=None):
        node = self._inode(loc)
        return self._do_setxattr(node.target, node, xattrs, flags, xdata)

    @inline_fop
    def fsetxattr(self, fd, xattrs, flags, xdata=None):
        of = self._of(fd)
        return self._do_setxattr(of.osfd, None, xattrs, flags, xdata, of=of)

    @inline_fop
    def getxattr(self, loc, name, xdata=None):
        """One key (stored or virtual), or with name None or "" every stored
        key but the brick's own."""
        node = self._inode(loc)
        return self._do_getxattr(node.target, node, name, xdata, loc=loc)

    @inline_fop
    def fgetxattr(self, fd, name, xdata=None):
        of = self._of(fd)
        return self._do_getxattr(of.osfd, None, name, xdata, of=of)

    @inline_fop
    def removexattr(self, loc, name, xdata=None):
        """name "" with xdata removes every key of xdata (bulk removal)."""
        node = self._inode(loc)
        return self._do_removexattr(node.target, node, name, xdata)

    @inline_fop
    def fremovexattr(self, fd, name, xdata=None):
        of = self._of(fd)
        return self._do_removexattr(of.osfd, None, name, xdata, of=of)

    @inline_fop
    def xattrop(self, loc, optype, xattrs, xdata=None):
        """Combine each value with the stored one (XattropType) and answer the
        results - replicate's changelog counters."""
        node = self._inode(loc)
        result = self._do_xattrop(node.target, optype, xattrs)
        reply_x = None
        if xdata:
            node.restat()
            reply_x = self._fill_xattrs(node.target, xdata, self._iatt(node), node) or None
        return DictReply(result, xdata=reply_x)

    @inline_fop
    def fxattrop(self, fd, optype, xattrs, xdata=None):
        of = self._of(fd)
        result = self._do_xattrop(of.osfd, optype, xattrs)
        reply_x = None
        if xdata:
            reply_x = self._fill_xattrs(of.osfd, xdata, self._fd_iatt(of), None) or None
        return DictReply(result, xdata=reply_x)

    # ======================================================================
    # helpers: xattrs

    def _fill_xattrs(self, target, req: dict | None, ia: Iatt, node,
                     asked: "Asked | None" = None, stored: dict | None = None,
                     read: dict | None = None) -> dict:
        """posix_xattr_fill: answer the keys a lookup (stat, readdirp, ...)
        asked for in xdata - xattr names or glob patterns, and a few virtual
        keys distribute and replicate depend on.  `asked` is `Asked.of(req)`
        when the caller parsed it already (a readdirp: once per call, not
        per entry); `stored`, the stored xattrs it asks for when the caller
        holds them (`MdataCache.listed_xattrs`); `read`, xattrs this fop
        read already (key -> bytes, None when absent), not read again -
        features/utime asks every lookup for the mdata the iatt was made of."""
        out: dict[str, Any] = {}
        if not req:
            return out
        if asked is None:
            asked = Asked.of(req)
        if asked.stored:
            if stored is None:
                stored = _stored_xattrs_but(target, asked, read) if read else \
                    _stored_xattrs(target, asked)
            out.update(stored)
        for key, value in asked.specials:
            if key == CONTENT_KEY:
                if ia.is_reg and node is not None and _as_int(value) >= ia.size:
                    cfd = os.open(node.at_name, os.O_RDONLY | O_NOFOLLOW,
                                  dir_fd=node.at_fd)
                    try:
                        out[key] = os.pread(cfd, ia.size, 0)
                    finally:
                        os.close(cfd)
            elif key in (OPEN_FD_COUNT, ACTIVE_FD_COUNT):
                if ia.gfid != NULL_GFID:
                    out[key] = UInt(self._opencount.get(ia.gfid, 0))
            elif key == REQUEST_LINK_COUNT:
                out[key] = value
            elif key == GET_SIZE:
                if ia.is_reg:
                    out[key] = UInt(ia.size)
        return out

    def _do_setxattr(self, target, node, xattrs: dict, flags: int, xdata,
                     of: "OpenFile | None" = None) -> Reply:
        if not isinstance(xattrs, dict):
            raise FopError(errno.EINVAL)
        if SET_CTIME_MDATA in xattrs:
            return self._set_legacy_mdata(target, node, of, xattrs[SET_CTIME_MDATA])
        pre = self._target_iatt(target, node, of)
        for key, value in xattrs.items():
            if key in (GFID_KEY, VOLUME_ID_KEY, IOSTATS_DUMP_KEY):
                continue     # GlusterFS drops these silently
            self._set_one_xattr(target, node, key, value, flags)
        if of is not None and xdata and DURABLE_OP in xdata:
            os.fsync(of.osfd)
        self._mdata_touch(target, MDATA_C)
        post = self._target_iatt(target, node, of)
        return Reply(xdata={IATT_KEY: post, PRESTAT_KEY: pre, POSTSTAT_KEY: post})

    def _set_one_xattr(self, target, node, key: str, value, flags: int) -> None:
        """posix_handle_pair: one key of a setxattr (or of a new entry's xdata)."""
        if not isinstance(key, str) or not key or "\0" in key:
            raise FopError(errno.EINVAL)
        if key in (PATHINFO_KEY, USER_PATHINFO_KEY):
            raise FopError(errno.EACCES)
        if key.startswith(GFID2PATH_PREFIX):
            raise FopError(errno.ENOTSUP)
        if key.startswith((INTERNAL_CTX_KEY, "force-replace")):
            return
        if key == MDATA_KEY:
            # from rebalance or self-heal: keep the later of each time
            incoming = mdata_decode(xattr_bytes(value))
            if incoming is None:
                raise FopError(errno.EINVAL, "malformed mdata")
            cur = mdata_decode(xget_quiet(target, MDATA_KEY))
            if cur is not None:
                incoming = tuple(max(a, b) for a, b in zip(incoming, cur))
            xset(target, MDATA_KEY, mdata_encode(*incoming), 0)
            return
        xset(target, key, xattr_bytes(value), flags)

    def _do_getxattr(self, target, node, name, xdata, loc=None,
                     of: "OpenFile | None" = None) -> DictReply:
        who = fops.caller.get()
        internal = who.pid < 0
        gfid = node.gfid if node is not None else (of.gfid if of is not None else None)
        result: dict[str, Any] = {}
        if name:
            if (_matches(name, GEOREP_PATTERNS) and not (
                    who.pid == ClientPid.GSYNCD and _matches(name, (STIME_PATTERN,)))) or \
                    name.startswith(GFID2PATH_PREFIX) or \
                    (name == MDATA_KEY and not internal) or name in (GFID_KEY, VOLUME_ID_KEY):
                raise FopError(errno.ENODATA)
            virtual = self._virtual_xattr(target, node, of, gfid, name, loc)
            if virtual is not None:
                result[name] = virtual
            else:
                value = xget(target, name)
                if value is None:
                    raise FopError(errno.ENODATA)
                result[name] = value
        else:
            for key in _xlist(target):
                if key in (GFID_KEY, VOLUME_ID_KEY) or key.startswith(GFID2PATH_PREFIX) or \
                        _matches(key, GEOREP_PATTERNS) or (key == MDATA_KEY and not internal):
                    continue
                _put_xattr(result, target, key)
        reply_x = None
        if xdata:
            ia = self._target_iatt(target, node, of)
            reply_x = self._fill_xattrs(target, xdata, ia, node) or None
        return DictReply(result, xdata=reply_x)

    def _virtual_xattr(self, target, node, of, gfid, name: str, loc):
        if name == GFID_STRING_KEY:
            return str(gfid or NULL_GFID)
        if name == GFID_VIRT_KEY:
            return bytes(gfid or NULL_GFID)
        if name == OPEN_FD_COUNT:
            return UInt(1 if gfid is not None and self._opencount.get(gfid) else 0)
        if name in (PATHINFO_KEY, USER_PATHINFO_KEY):
            host = str(self.glusterd_uuid) if self.opts.node_uuid_pathinfo and \
                self.glusterd_uuid else (self.opts.hostname or socket.gethostname())
            return f"<POSIX({self.base}):{host}:{self._real_path(node, of, gfid, loc)}>"
        if name == NODE_UUID_KEY and self.glusterd_uuid is not None:
            return str(self.glusterd_uuid)
        if name.startswith(REAL_FILENAME_PREFIX):
            want = name[len(REAL_FILENAME_PREFIX):]
            dfd = node.at_fd if node is not None and node.is_dir else \
                (of.osfd if of is not None and of.is_dir else None)
            if dfd is None:
                raise FopError(errno.ENOTDIR)
            with os.scandir(f"/proc/self/fd/{dfd}") as it:
                for entry in it:
                    if entry.name.lower() == want.lower() and not (
                            entry.name == HIDDEN_DIR and gfid == ROOT_GFID):
                        return entry.name
            raise FopError(errno.ENODATA)
        if name == GFID_TO_PATH_KEY:
            # posix_getxattr's GFID_TO_PATH_KEY: inode_path, which GlusterFS
            # answers "<gfid:UUID>" for an inode it has no name of
            try:
                return self._gfid_to_paths(target, node, of, gfid).split(
                    self.opts.gfid2path_separator)[0]
            except (FopError, OSError):
                return f"<gfid:{gfid or NULL_GFID}>"
        if name == GFID2PATH_VIRT_KEY:
            if not self.opts.gfid2path:
                raise FopError(errno.ENODATA)
            return self._gfid_to_paths(target, node, of, gfid)
        return None

    def _real_path(self, node, of, gfid, loc) -> str:
        is_dir = (node is not None and node.is_dir) or (of is not None and of.is_dir)
        if loc is not None and loc.path and loc.path.startswith("/") and \
                ".." not in loc.path.split("/"):
            return self.base + loc.path.rstrip("/") if loc.path != "/" else self.base
        if gfid is not None and is_dir:
            path = self._dir_path(gfid)
            return self.base + (path if path != "/" else "")
        return f"{self.base}/{HIDDEN_DIR}/{hrel(gfid or NULL_GFID)}"

    def _gfid_to_paths(self, target, node, of, gfid) -> str:
        """glusterfs.gfidtopath: every path of the inode, from its handles
        (directories) or its gfid2path xattrs (files)."""
        is_dir = (node is not None and node.is_dir) or (of is not None and of.is_dir)
        if is_dir:
            return self._dir_path(gfid)
        paths = []
        for key in _xlist(target):
            if not key.startswith(GFID2PATH_PREFIX):
                continue
            value = os.fsdecode(xget(target, key) or b"")
            pgfid, _, bname = value.partition("/")
            try:
                parent = self._dir_path(GFID(pgfid))
            except (ValueError, OSError, FopError):
                continue
            paths.append((parent.rstrip("/") or "") + "/" + bname)
        if not paths:
            raise FopError(errno.ENODATA)
        return self.opts.gfid2path_separator.join(paths)

    def _do_removexattr(self, target, node, name, xdata, of: "OpenFile | None" = None) -> Reply:
        if name and name.startswith(GFID2PATH_PREFIX):
            raise FopError(errno.ENODATA)
        if name in (GFID_KEY, VOLUME_ID_KEY):
            raise FopError(errno.EPERM, f"{name} belongs to the brick")
        pre = self._target_iatt(target, node, of)
        if not name and xdata:
            # bulk removal: every key of xdata, missing ones are fine
            if GFID_KEY in xdata or VOLUME_ID_KEY in xdata:
                raise FopError(errno.EPERM)
            for key in xdata:
                try:
                    xremove(target, key)
                except OSError as e:
                    if e.errno != errno.ENODATA:
                        raise
        else:
            if not name:
                raise FopError(errno.EINVAL)
            xremove(target, name)
        self._mdata_touch(target, MDATA_C)
        post = self._target_iatt(target, node, of)
        return Reply(xdata={IATT_KEY: post, PRESTAT_KEY: pre, POSTSTAT_KEY: post})

    def _target_iatt(self, target, node, of) -> Iatt:
        if of is not None:
            return self._fd_iatt(of)
        node.restat()
        return self._iatt(node)

    def _do_xattrop(self, target, optype: int, xattrs: dict) -> dict:
        """posix's _posix_handle_xattr_keyvalue_pair for each key."""
        try:
            optype = XattropType(optype)
        except ValueError:
            raise FopError(errno.EINVAL, f"unknown xattrop type {optype}") from None
        with_default = optype in (XattropType.ADD_ARRAY_WITH_DEFAULT,
                                  XattropType.ADD_ARRAY64_WITH_DEFAULT)
        result: dict[str, bytes] = {}
        for key, value in (xattrs or {}).items():
            value = xattr_bytes(value)
            count = len(value) // 2 if with_default else len(value)
            stored = xget(target, key)
            if stored is not None and len(stored) > count:
                raise FopError(errno.ERANGE, f"{key}: stored value is longer than the operand")
            old = stored + bytes(count - len(stored)) if stored is not None else bytes(count)
            if optype != XattropType.GET_AND_SET and not any(value):
                # nothing to add: answer the stored value (zeros if none), write nothing
                result[key] = old
                continue
            if optype == XattropType.GET_AND_SET:
                xset(target, key, value, 0)
                if stored is not None:
                    result[key] = old
                continue
            new = combine(optype, old, value, count)
            xset(target, key, new, 0)
            result[key] = new
        return result


#: request keys posix answers from the iatt or its own state, not from
#: stored xattrs (LIST_XATTR is Asked.list_all)
_SPECIAL_KEYS = frozenset({CONTENT_KEY, OPEN_FD_COUNT, ACTIVE_FD_COUNT, REQUEST_LINK_COUNT,
                           GET_SIZE})


class Asked:
    """What a request's xdata asks of posix_xattr_fill, sorted once: the
    keys answered from the iatt or the brick's state (`specials`, with their
    values), and the stored xattrs - exact `names`, glob `patterns`, and
    `list_all` (LIST_XATTR: every key a client may see).  `stored` is the
    latter three as one tuple, the key under which a readdirp's entry holds
    what they read (`MdataCache.keep_xattrs`)."""

    __slots__ = ("specials", "names", "patterns", "list_all", "stored")

    def __init__(self, specials: tuple, names: tuple, patterns: tuple, list_all: bool):
        self.specials = specials
        self.names = names
        self.patterns = patterns
        self.list_all = list_all
        self.stored = (names, patterns, list_all) if names or patterns or list_all else None

    @classmethod
    def of(cls, req: dict) -> "Asked":
        specials, names, patterns = [], [], []
        list_all = False
        for key, value in req.items():
            if key in IGNORED_KEYS:
                continue
            if key in _SPECIAL_KEYS:
                specials.append((key, value))
            elif key == LIST_XATTR:
                list_all = True
            elif any(c in key for c in "*?["):
                patterns.append(key)
            else:
                names.append(key)
        return cls(tuple(specials), tuple(names), tuple(patterns), list_all)


def _stored_xattrs_but(target, asked: Asked, read: dict) -> dict:
    """_stored_xattrs without reading again the names the fop read."""
    known = [name for name in asked.names if name in read]
    if not known:
        return _stored_xattrs(target, asked)
    rest = Asked(asked.specials, tuple(n for n in asked.names if n not in read),
                 asked.patterns, asked.list_all)
    out = _stored_xattrs(target, rest) if rest.stored else {}
    for name in known:
        if read[name] is not None:
            out[name] = read[name]
    return out


def _stored_xattrs(target, asked: Asked) -> dict:
    """The stored xattrs `asked` names, matches or lists.  One name alone
    is read straight (one getxattr, absent or not, as GlusterFS's
    _posix_xattr_get_set_from_backend reads each key); more than one, a
    pattern or list-xattr list the keys first (one listxattr) and read only
    those present - a listing's entries mostly have none of md-cache's and
    distribute's keys, so that is one syscall per entry, not one per key."""
    out: dict[str, Any] = {}
    if len(asked.names) == 1 and not asked.patterns and not asked.list_all:
        _put_xattr(out, target, asked.names[0])
        return out
    present = _xlist(target)
    if not present:
        return out
    have = set(present)
    for name in asked.names:
        if name in have:
            _put_xattr(out, target, name)
    for pattern in asked.patterns:
        if pattern in have:      # a name that looks like a pattern, as asked
            _put_xattr(out, target, pattern)
            continue
        for name in present:
            if fnmatch.fnmatchcase(name, pattern):
                _put_xattr(out, target, name)
    if asked.list_all:
        for name in present:
            if name in out or name in LIST_HIDDEN or name.startswith(GFID2PATH_PREFIX) \
                    or _matches(name, MARKER_PATTERNS) or _matches(name, GEOREP_PATTERNS):
                continue
            _put_xattr(out, target, name)
    return out


def _as_int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _xlist(target) -> list[str]:
    if isinstance(target, int):
        return os.listxattr(target)
    return os.listxattr(target, follow_symlinks=False)


def _put_xattr(out: dict, target, key: str) -> None:
    value = xget_quiet(target, key)
    if value is not None:
        out[key] = value


def _matches(name: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def combine(optype: XattropType, old: bytes, value: bytes, count: int) -> bytes:
    """The arithmetic of xattrop: big-endian 32- or 64-bit sums that wrap,
    with-default variants, and byte-wise OR/AND."""
    if optype == XattropType.OR_ARRAY:
        return bytes(a | b for a, b in zip(old, value))
    if optype == XattropType.AND_ARRAY:
        return bytes(a & b for a, b in zip(old, value))
    width = 8 if optype in (XattropType.ADD_ARRAY64,
                            XattropType.ADD_ARRAY64_WITH_DEFAULT) else 4
    mask = (1 << (8 * width)) - 1
    with_default = optype in (XattropType.ADD_ARRAY_WITH_DEFAULT,
                              XattropType.ADD_ARRAY64_WITH_DEFAULT)
    out = bytearray(old)
    for i in range(0, count - count % width, width):
        dest = int.from_bytes(old[i:i + width], "big")
        add = int.from_bytes(value[i:i + width], "big")
        if with_default and dest == 0:
            dest = int.from_bytes(value[count + i:count + i + width], "big")
        out[i:i + width] = ((dest + add) & mask).to_bytes(width, "big")
    return bytes(out)
