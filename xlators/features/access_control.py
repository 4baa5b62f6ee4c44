"""features/access-control: POSIX permissions checked on the brick.

GlusterFS's bricks run as root, so the kernel checks nothing for a client:
this translator, which glusterd stacks right above features/changelog
(under features/locks, brick_graph_add_acl, unless `volume set
features.acl off`), decides instead from the uid, gid and auxiliary groups
of each request's credentials.  It follows GlusterFS 10's
xlators/system/posix-acl (type name features/access-control):

* Who passes everything: uid 0 and the `super-uid` option's uid, and every
  internal client - a negative pid (fops.ClientPid: gsyncd, self-heal,
  rebalance, ...), as acl_permits and sticky_permits let them.  Root passes
  even where it has no exec bit, as GlusterFS's acl_permits does (the
  kernel would want one x bit for exec).  setattr, setxattr and
  removexattr let only root (and super-uid) past their owner rules, not
  the internal pids, again as GlusterFS does.
* The check (acl_permits): the owner gets the owner bits; else a named user
  entry of the access ACL (under its mask); else the owning group's bits
  (the ACL's group entry when an ACL exists) or a named group's entry, for
  the caller's gid or any of its groups, the first that grants all of the
  wanted bits, under the mask; a caller in one of those groups granted
  nothing more goes no further; everyone else gets the other bits.
* Per fop: lookup by name wants x on the parent (a nameless lookup by gfid
  and the root pass); access(mask) the bits asked (EACCES); open by its
  access mode, plus w for O_TRUNC or O_APPEND; truncate w; opendir,
  readdir and readdirp r; getxattr/fgetxattr r except for the two ACL
  keys; create, mkdir, mknod, symlink and put w+x on the parent; unlink and
  rmdir w+x on the parent and the sticky rule (a sticky parent: only its
  owner or the entry's owner); rename w on both parents and the sticky rule
  on the old entry and on a replaced one; link w and the sticky rule on
  the new parent; setattr/fsetattr: mode only by the owner (EPERM; the
  set-group-id bit dropped when the caller is not in the file's group),
  times by the owner or with w (EACCES), the owner only changed by root,
  the group only by the owner and to one of its groups (EPERM);
  setxattr/fsetxattr/removexattr/fremovexattr: the ACL keys only by the
  owner (EPERM), any other key wants w.  A refusal is EACCES unless said.
* New entries inherit the parent's default ACL (posix_acl_inherit): the
  access ACL of a new file, directory or device is the default ACL with its
  owner, other and mask (or group) entries cut down to the mode asked, the
  mode becomes those entries' bits, the umask is not applied, and a new
  directory carries the default ACL on; both go down in xdata as the
  ACL keys, which storage/posix sets on the new entry.

Data through fds.  An fd opened through open or create here was checked
then: its readv, writev, ftruncate, fallocate, discard, zerofill, seek,
rchecksum and copy_file_range go down after one dict lookup (the fd carries
this translator's mark), and fsync, flush, lk, the lock fops and the rest are bound
straight to the translator below (the graph skips this one for them).  An
fd never opened here - protocol/server's *anonymous* fd (number -2 with a
gfid, opened O_RDWR by storage/posix), which open-behind reads and writes
through without sending the open - is checked as that open would have
been: r for readv, seek and rchecksum, w for the writes.  GlusterFS checks
those fops for its NFS server's pid only, so its gfapi clients can read
what they could not open; here they cannot.  Likewise quick-read's file
content, which storage/posix reads (as root) into the reply of any fop
whose xdata asks for `glusterfs.content`: a lookup's reply keeps it only
for a caller with r on the file, and the request is dropped from stat,
fstat, readdirp, setattr, fsetattr, xattrop, fxattrop, getxattr and
fgetxattr for any caller but root and the internal ones (only quick-read
asks, and only in lookups).  A create of a name that
exists (without O_EXCL, which storage/posix answers by opening the file) is
checked as the open it becomes.

Not checked, as in GlusterFS: stat, fstat, readlink, statfs, xattrop and
fxattrop (replicate's counters), the lock fops, lease, flush and fsync; a
nameless lookup (by gfid) - so a caller who knows a gfid reaches the inode
without x on the directories above it; the xattrs a lookup, stat or
readdirp asks for in xdata (answered without r, as getxattr is not);
which xattr namespaces (trusted.*,
security.*) an unprivileged caller may set is left to storage/posix; an
exec open (O_FMODE_EXEC, kernel-internal) is not told from a read.  What
the client caches (md-cache, io-cache, quick-read) is shared by the
client's users and not checked again; the FUSE mount's kernel checks
(default_permissions) stand in front of it as they do for GlusterFS.

What is known of an inode (owner, group, mode, access and default ACL)
is kept in the inode table, fetched from storage/posix (stat and
getxattr) the first time it is needed, refreshed by every lookup's
attributes, and dropped after any setattr, setxattr or removexattr that
reaches the inode through here, so the next check fetches it again.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat as _stat
import struct
from dataclasses import dataclass, replace

from glusterpy import fops
from glusterpy.fops import (SET_ATTR_ATIME, SET_ATTR_GID, SET_ATTR_MODE, SET_ATTR_MTIME,
                            SET_ATTR_UID, FopError, Loc)
from glusterpy.keys import ACL_ACCESS_KEY, ACL_DEFAULT_KEY, CONTENT_KEY
from glusterpy.options import Option, OptionType
from glusterpy.xlator import Translator

R, W, X = 4, 2, 1

# the Linux xattr form of a POSIX ACL (posix_acl_xattr.h): a version word,
# then (tag u16, perm u16, id u32) per entry, little-endian
_ACL_VERSION = 2
_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_UNDEFINED_ID = 0xFFFFFFFF
#: an ACL of USER_OBJ, GROUP_OBJ and OTHER only says no more than the mode
_MINIMAL_ENTRIES = 3

#: GlusterFS's own string forms of the ACLs (GF_POSIX_ACL_ACCESS/DEFAULT),
#: which setxattr_scrutiny treats as the ACL keys too
GF_ACL_ACCESS_KEY = "glusterfs.posix.acl"
GF_ACL_DEFAULT_KEY = "glusterfs.posix.default_acl"
_ACL_KEYS = (ACL_ACCESS_KEY, ACL_DEFAULT_KEY, GF_ACL_ACCESS_KEY, GF_ACL_DEFAULT_KEY)

Acl = tuple[tuple[int, int, int], ...]


def parse_acl(value: bytes | None) -> Acl | None:
    """The entries of an ACL xattr; None when absent or malformed."""
    if not value or len(value) < _HEADER.size or (len(value) - _HEADER.size) % _ENTRY.size:
        return None
    if _HEADER.unpack_from(value)[0] != _ACL_VERSION:
        return None
    return tuple(_ENTRY.iter_unpack(bytes(value[_HEADER.size:])))


def dump_acl(acl: Acl) -> bytes:
    return _HEADER.pack(_ACL_VERSION) + b"".join(_ENTRY.pack(*e) for e in acl)


@dataclass(slots=True, frozen=True)
class Perm:
    """What a check needs of an inode (GlusterFS's posix_acl_ctx)."""

    uid: int
    gid: int
    mode: int
    acl: Acl | None = None       # the access ACL, when more than minimal
    default: Acl | None = None   # a directory's default ACL


def in_group(caller: fops.Caller, gid: int) -> bool:
    return caller.gid == gid or gid in caller.groups


def permits(caller: fops.Caller, p: Perm, want: int) -> bool:
    """acl_permits for a caller that is neither root nor internal."""
    if caller.uid == p.uid:
        return (p.mode >> 6) & want == want
    acl = p.acl
    mask = 7
    if acl is not None:
        for tag, perm, ident in acl:
            if tag == MASK:
                mask = perm
        for tag, perm, ident in acl:
            if tag == USER and ident == caller.uid:
                return perm & mask & want == want
    found = False
    group_perm = (p.mode >> 3) & 7
    if acl is not None:
        group_perm = next((perm for tag, perm, _ in acl if tag == GROUP_OBJ), group_perm)
    candidates = [(p.gid, group_perm)]
    if acl is not None:
        candidates += [(ident, perm) for tag, perm, ident in acl if tag == GROUP]
    for gid, perm in candidates:
        if in_group(caller, gid):
            found = True
            if perm & want == want:
                return perm & mask & want == want
    if found:
        return False
    return p.mode & 7 & want == want


def inherit(default: Acl, mode: int) -> tuple[Acl, int]:
    """posix_acl_inherit_mode: the access ACL a new entry takes from its
    parent's default ACL, and its mode."""
    owner, group, other = (mode >> 6) & 7, (mode >> 3) & 7, mode & 7
    has_mask = any(tag == MASK for tag, _, _ in default)
    out = []
    for tag, perm, ident in default:
        if tag == USER_OBJ:
            perm &= owner
            owner = perm
        elif tag == OTHER:
            perm &= other
            other = perm
        elif tag == MASK or (tag == GROUP_OBJ and not has_mask):
            perm &= group
            group = perm
        out.append((tag, perm, ident))
    special = mode & (0o170000 | _stat.S_ISUID | _stat.S_ISGID | _stat.S_ISVTX)
    return tuple(out), special | owner << 6 | group << 3 | other


def _open_wants(flags: int) -> int:
    """posix_acl_open: the bits an open's flags want."""
    mode = flags & os.O_ACCMODE
    want = R if mode == os.O_RDONLY else W if mode == os.O_WRONLY else R | W
    if flags & (os.O_TRUNC | os.O_APPEND):
        want |= W
    return want


OPTIONS = (
    Option("super-uid", OptionType.INT, "0",
           "UID to be treated as super user's id instead of 0", min=0, max=0xFFFFFFFF),
)


class AccessControl(Translator):
    """features/access-control: see the module docstring."""

    OPTIONS = OPTIONS
    #: what this class does not override passes through unchanged
    SKIP_DEFAULT_FOPS = True

    # -- who, what -------------------------------------------------------------------

    def _privileged(self, caller: fops.Caller) -> bool:
        return caller.pid < 0 or caller.uid == 0 or caller.uid == self.opts.super_uid

    def _super(self, caller: fops.Caller) -> bool:
        return caller.uid == 0 or caller.uid == self.opts.super_uid

    async def _perm(self, loc: Loc) -> Perm:
        """What is known of the inode `loc` names, fetched when not yet."""
        if loc.gfid is not None:
            known = self.itable.ctx(self, loc.gfid)
            if known is not None:
                return known
        child = self.first_child
        iatt = (await child.stat(loc, None)).iatt
        known = self.itable.ctx(self, iatt.gfid)
        if known is not None:  # found by name: the fresh attributes win
            if (known.uid, known.gid, known.mode) != (iatt.uid, iatt.gid, iatt.mode):
                known = replace(known, uid=iatt.uid, gid=iatt.gid, mode=iatt.mode)
                self.itable.set_ctx(self, iatt.gfid, known)
            return known
        where = Loc(path=loc.path, gfid=iatt.gfid)
        acl = await self._acl(where, ACL_ACCESS_KEY)
        if acl is not None and len(acl) <= _MINIMAL_ENTRIES:
            acl = None
        default = await self._acl(where, ACL_DEFAULT_KEY) \
            if _stat.S_ISDIR(iatt.mode) else None
        known = Perm(iatt.uid, iatt.gid, iatt.mode, acl, default)
        self.itable.set_ctx(self, iatt.gfid, known)
        return known

    async def _acl(self, loc: Loc, key: str) -> Acl | None:
        try:
            reply = await self.first_child.getxattr(loc, key, None)
        except FopError as e:
            if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
                return None
            raise
        return parse_acl((reply.dict or {}).get(key))

    @staticmethod
    def _parent(loc: Loc) -> Loc | None:
        if loc.pargfid is not None:
            return Loc(gfid=loc.pargfid)
        if loc.path and loc.path.strip("/"):
            return Loc(path=posixpath.dirname(loc.path.rstrip("/")) or "/")
        return None

    async def _check(self, loc: Loc | None, want: int, what: str) -> None:
        caller = fops.caller.get()
        if loc is None or self._privileged(caller):
            return
        if not permits(caller, await self._perm(loc), want):
            raise FopError(errno.EACCES, f"{what}: permission denied to uid {caller.uid}")

    async def _check_parent(self, loc: Loc, want: int, what: str) -> None:
        parent = self._parent(loc)
        if parent is None and not self._privileged(fops.caller.get()):
            raise FopError(errno.EINVAL, f"{what}: {loc} names no parent to check")
        await self._check(parent, want, what)

    async def _fd_loc(self, fd) -> Loc:
        """The inode of an fd; one that create opened may not carry its
        gfid, ask storage/posix then."""
        if fd.gfid is not None:
            return Loc(gfid=fd.gfid)
        return Loc(gfid=(await self.first_child.fstat(fd, None)).iatt.gfid)

    async def _sticky(self, parent: Loc | None, entry: Loc, what: str,
                      must_exist: bool = True) -> None:
        """sticky_permits: in a sticky directory only its owner and the
        entry's owner may remove or replace the entry."""
        caller = fops.caller.get()
        if parent is None or self._privileged(caller):
            return
        par = await self._perm(parent)
        if not par.mode & _stat.S_ISVTX or caller.uid == par.uid:
            return
        try:
            owner = (await self._perm(entry)).uid
        except FopError as e:
            if e.errno == errno.ENOENT and not must_exist:
                return
            raise
        if caller.uid != owner:
            raise FopError(errno.EACCES, f"{what}: sticky directory, not the owner")

    def _forget_perm(self, gfid) -> None:
        self.itable.del_ctx(self, gfid)

    # -- lookups and reads ---------------------------------------------------------------

    async def lookup(self, loc, xdata=None):
        if loc.name not in (None, "", ".") or loc.gfid is None:
            # a nameless lookup (by gfid) has no parent to ask, as in GlusterFS
            await self._check(self._parent(loc), X, "lookup")
        reply = await self.first_child.lookup(loc, xdata)
        ia = reply.iatt
        if ia is None:
            return reply
        known = self.itable.peek_ctx(self, ia.gfid)
        if known is not None and (known.uid, known.gid, known.mode) != \
                (ia.uid, ia.gid, ia.mode):
            self.itable.set_ctx(self, ia.gfid, replace(known, uid=ia.uid, gid=ia.gid,
                                                       mode=ia.mode))
        if reply.xdata and CONTENT_KEY in reply.xdata:
            # quick-read's content comes with the lookup, read as root: only
            # for a caller who may read the file
            caller = fops.caller.get()
            if not self._privileged(caller) and not permits(
                    caller, await self._perm(Loc(path=loc.path, gfid=ia.gfid)), R):
                reply = replace(reply, xdata={k: v for k, v in reply.xdata.items()
                                              if k != CONTENT_KEY})
        return reply

    def _no_content(self, xdata):
        """storage/posix answers quick-read's content request (read as
        root) in every fop that fills requested xattrs - stat, fstat,
        readdirp, setattr, xattrop, ...; only lookup's is checked (above),
        the others are dropped for a caller who is neither root nor
        internal."""
        if xdata and CONTENT_KEY in xdata and not self._privileged(fops.caller.get()):
            return {k: v for k, v in xdata.items() if k != CONTENT_KEY}
        return xdata

    async def stat(self, loc, xdata=None):
        return await self.first_child.stat(loc, self._no_content(xdata))

    async def fstat(self, fd, xdata=None):
        return await self.first_child.fstat(fd, self._no_content(xdata))

    async def xattrop(self, loc, optype, xattrs, xdata=None):
        return await self.first_child.xattrop(loc, optype, xattrs, self._no_content(xdata))

    async def fxattrop(self, fd, optype, xattrs, xdata=None):
        return await self.first_child.fxattrop(fd, optype, xattrs, self._no_content(xdata))

    async def access(self, loc, mask, xdata=None):
        want = (R if mask & os.R_OK else 0) | (W if mask & os.W_OK else 0) | \
               (X if mask & os.X_OK else 0)
        if mask and not want:
            raise FopError(errno.EINVAL, f"access: mask {mask:#o} asks nothing")
        if want:
            await self._check(loc, want, "access")
        return await self.first_child.access(loc, mask, xdata)

    async def open(self, loc, flags, fd, xdata=None):
        await self._check(loc, _open_wants(flags), "open")
        reply = await self.first_child.open(loc, flags, fd, xdata)
        fd.ctx[self] = True  # checked: its reads and writes need no more
        return reply

    # -- data through fds never opened here ---------------------------------------------

    async def _check_fd(self, fd, want: int, what: str) -> None:
        """An fd that did not come through open or create here - protocol/
        server's anonymous fd, which open-behind reads and writes through
        without ever opening - is checked as its open would have been."""
        if not self._privileged(fops.caller.get()):
            await self._check(await self._fd_loc(fd), want, what)

    async def readv(self, fd, size, offset, flags, xdata=None):
        if self not in fd.ctx:
            await self._check_fd(fd, R, "readv")
        return await self.first_child.readv(fd, size, offset, flags, xdata)

    async def writev(self, fd, data, offset, flags, xdata=None):
        if self not in fd.ctx:
            await self._check_fd(fd, W, "writev")
        return await self.first_child.writev(fd, data, offset, flags, xdata)

    async def ftruncate(self, fd, offset, xdata=None):
        if self not in fd.ctx:
            await self._check_fd(fd, W, "ftruncate")
        return await self.first_child.ftruncate(fd, offset, xdata)

    async def fallocate(self, fd, mode, offset, length, xdata=None):
        if self not in fd.ctx:
            await self._check_fd(fd, W, "fallocate")
        return await self.first_child.fallocate(fd, mode, offset, length, xdata)

    async def discard(self, fd, offset, length, xdata=None):
        if self not in fd.ctx:
            await self._check_fd(fd, W, "discard")
        return await self.first_child.discard(fd, offset, length, xdata)

    async def zerofill(self, fd, offset, length, xdata=None):
        if self not in fd.ctx:
            await self._check_fd(fd, W, "zerofill")
        return await self.first_child.zerofill(fd, offset, length, xdata)

    async def rchecksum(self, fd, offset, length, xdata=None):
        if self not in fd.ctx:
            await self._check_fd(fd, R, "rchecksum")
        return await self.first_child.rchecksum(fd, offset, length, xdata)

    async def seek(self, fd, offset, what, xdata=None):
        if self not in fd.ctx:
            await self._check_fd(fd, R, "seek")
        return await self.first_child.seek(fd, offset, what, xdata)

    async def copy_file_range(self, fd_in, off_in, fd_out, off_out, length, flags,
                              xdata=None):
        if self not in fd_in.ctx:
            await self._check_fd(fd_in, R, "copy_file_range")
        if self not in fd_out.ctx:
            await self._check_fd(fd_out, W, "copy_file_range")
        return await self.first_child.copy_file_range(fd_in, off_in, fd_out, off_out, length,
                                                      flags, xdata)

    async def truncate(self, loc, offset, xdata=None):
        await self._check(loc, W, "truncate")
        return await self.first_child.truncate(loc, offset, xdata)

    async def opendir(self, loc, fd, xdata=None):
        await self._check(loc, R, "opendir")
        return await self.first_child.opendir(loc, fd, xdata)

    async def readdir(self, fd, size, offset, xdata=None):
        if not self._privileged(fops.caller.get()):
            await self._check(await self._fd_loc(fd), R, "readdir")
        return await self.first_child.readdir(fd, size, offset, xdata)

    async def readdirp(self, fd, size, offset, xdata=None):
        if not self._privileged(fops.caller.get()):
            await self._check(await self._fd_loc(fd), R, "readdirp")
        return await self.first_child.readdirp(fd, size, offset, self._no_content(xdata))

    async def getxattr(self, loc, name, xdata=None):
        if name not in (ACL_ACCESS_KEY, ACL_DEFAULT_KEY):
            await self._check(loc, R, "getxattr")
        return await self.first_child.getxattr(loc, name, self._no_content(xdata))

    async def fgetxattr(self, fd, name, xdata=None):
        if name not in (ACL_ACCESS_KEY, ACL_DEFAULT_KEY) and \
                not self._privileged(fops.caller.get()):
            await self._check(await self._fd_loc(fd), R, "fgetxattr")
        return await self.first_child.fgetxattr(fd, name, self._no_content(xdata))

    # -- new entries ---------------------------------------------------------------------

    async def _inherit(self, loc: Loc, mode: int, umask: int, xdata, is_dir: bool):
        """The mode, umask and xdata a new entry goes down with: the
        parent's default ACL, when it has one, wins over the umask."""
        parent = self._parent(loc)
        if parent is None:
            return mode, umask, xdata
        default = (await self._perm(parent)).default
        if default is None:
            return mode, umask, xdata
        acl, mode = inherit(default, mode)
        xdata = dict(xdata or {})
        xdata[ACL_ACCESS_KEY] = dump_acl(acl)
        if is_dir:
            xdata[ACL_DEFAULT_KEY] = dump_acl(default)
        return mode, 0, xdata

    async def mkdir(self, loc, mode, umask, xdata=None):
        await self._check_parent(loc, W | X, "mkdir")
        mode, umask, xdata = await self._inherit(loc, mode, umask, xdata, True)
        return await self.first_child.mkdir(loc, mode, umask, xdata)

    async def mknod(self, loc, mode, rdev, umask, xdata=None):
        await self._check_parent(loc, W | X, "mknod")
        mode, umask, xdata = await self._inherit(loc, mode, umask, xdata, False)
        return await self.first_child.mknod(loc, mode, rdev, umask, xdata)

    async def create(self, loc, flags, mode, umask, fd, xdata=None):
        await self._check_parent(loc, W | X, "create")
        if not flags & os.O_EXCL and not self._privileged(fops.caller.get()):
            # storage/posix opens a name that exists: the open's check
            # then, as the kernel's open(O_CREAT) makes it
            try:
                await self._perm(loc)
            except FopError as e:
                if e.errno != errno.ENOENT:
                    raise
            else:
                await self._check(loc, _open_wants(flags), "create")
        mode, umask, xdata = await self._inherit(loc, mode, umask, xdata, False)
        reply = await self.first_child.create(loc, flags, mode, umask, fd, xdata)
        fd.ctx[self] = True
        return reply

    async def put(self, loc, mode, umask, flags, data, offset, xattrs, xdata=None):
        await self._check_parent(loc, W | X, "put")
        mode, umask, xdata = await self._inherit(loc, mode, umask, xdata, False)
        return await self.first_child.put(loc, mode, umask, flags, data, offset, xattrs, xdata)

    async def symlink(self, linkname, loc, umask, xdata=None):
        await self._check_parent(loc, W | X, "symlink")
        return await self.first_child.symlink(linkname, loc, umask, xdata)

    # -- removing and renaming -----------------------------------------------------------

    async def unlink(self, loc, xflags, xdata=None):
        await self._sticky(self._parent(loc), loc, "unlink")
        await self._check_parent(loc, W | X, "unlink")
        return await self.first_child.unlink(loc, xflags, xdata)

    async def rmdir(self, loc, xflags, xdata=None):
        await self._sticky(self._parent(loc), loc, "rmdir")
        await self._check_parent(loc, W | X, "rmdir")
        return await self.first_child.rmdir(loc, xflags, xdata)

    async def rename(self, oldloc, newloc, xdata=None):
        await self._check_parent(oldloc, W, "rename")
        await self._check_parent(newloc, W, "rename")
        await self._sticky(self._parent(oldloc), oldloc, "rename")
        await self._sticky(self._parent(newloc), newloc, "rename", must_exist=False)
        return await self.first_child.rename(oldloc, newloc, xdata)

    async def link(self, oldloc, newloc, xdata=None):
        await self._check_parent(newloc, W, "link")
        await self._sticky(self._parent(newloc), oldloc, "link")
        return await self.first_child.link(oldloc, newloc, xdata)

    # -- attributes ------------------------------------------------------------------------

    async def _scrutiny(self, loc: Loc, stbuf, valid: int):
        """setattr_scrutiny: the stbuf to go down with, or FopError."""
        caller = fops.caller.get()
        if self._super(caller):
            return stbuf
        p = await self._perm(loc)
        owner = caller.uid == p.uid
        if valid & SET_ATTR_MODE:
            if not owner:
                raise FopError(errno.EPERM, "chmod: not the owner")
            if stbuf.mode & _stat.S_ISGID and not in_group(caller, p.gid):
                stbuf = replace(stbuf, mode=stbuf.mode & ~_stat.S_ISGID)
        if valid & (SET_ATTR_ATIME | SET_ATTR_MTIME) and not owner and \
                not (caller.pid < 0 or permits(caller, p, W)):
            raise FopError(errno.EACCES, "utimes: neither the owner nor writable")
        if valid & SET_ATTR_UID and stbuf.uid != p.uid:
            raise FopError(errno.EPERM, "chown: only root gives a file away")
        if valid & SET_ATTR_GID and (not owner or not in_group(caller, stbuf.gid)):
            raise FopError(errno.EPERM, "chgrp: not the owner, or not one of its groups")
        return stbuf

    async def setattr(self, loc, stbuf, valid, xdata=None):
        stbuf = await self._scrutiny(loc, stbuf, valid)
        try:
            reply = await self.first_child.setattr(loc, stbuf, valid, self._no_content(xdata))
        finally:
            self._forget_perm(loc.gfid)
        if reply.postbuf is not None:
            self._forget_perm(reply.postbuf.gfid)
        return reply

    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        loc = None
        if not self._super(fops.caller.get()):
            loc = await self._fd_loc(fd)
            stbuf = await self._scrutiny(loc, stbuf, valid)
        try:
            reply = await self.first_child.fsetattr(fd, stbuf, valid, self._no_content(xdata))
        finally:
            self._forget_perm(fd.gfid if loc is None else loc.gfid)
        if reply.postbuf is not None:
            self._forget_perm(reply.postbuf.gfid)
        return reply

    async def _xattr_scrutiny(self, loc: Loc, keys, what: str) -> None:
        """setxattr_scrutiny and removexattr's: the ACL keys are the
        owner's, any other key wants w."""
        caller = fops.caller.get()
        if self._super(caller):
            return
        p = await self._perm(loc)
        if any(k in _ACL_KEYS for k in keys):
            if caller.uid != p.uid:
                raise FopError(errno.EPERM, f"{what}: only the owner sets an ACL")
            return
        if caller.pid >= 0 and not permits(caller, p, W):
            raise FopError(errno.EACCES, f"{what}: permission denied to uid {caller.uid}")

    async def setxattr(self, loc, xattrs, flags, xdata=None):
        await self._xattr_scrutiny(loc, xattrs or {}, "setxattr")
        try:
            return await self.first_child.setxattr(loc, xattrs, flags, xdata)
        finally:
            self._forget_perm(loc.gfid)

    async def fsetxattr(self, fd, xattrs, flags, xdata=None):
        gfid = fd.gfid
        if not self._super(fops.caller.get()):
            loc = await self._fd_loc(fd)
            gfid = loc.gfid
            await self._xattr_scrutiny(loc, xattrs or {}, "fsetxattr")
        try:
            return await self.first_child.fsetxattr(fd, xattrs, flags, xdata)
        finally:
            self._forget_perm(gfid)

    async def removexattr(self, loc, name, xdata=None):
        await self._xattr_scrutiny(loc, (name,), "removexattr")
        try:
            return await self.first_child.removexattr(loc, name, xdata)
        finally:
            self._forget_perm(loc.gfid)

    async def fremovexattr(self, fd, name, xdata=None):
        gfid = fd.gfid
        if not self._super(fops.caller.get()):
            loc = await self._fd_loc(fd)
            gfid = loc.gfid
            await self._xattr_scrutiny(loc, (name,), "fremovexattr")
        try:
            return await self.first_child.fremovexattr(fd, name, xdata)
        finally:
            self._forget_perm(gfid)


TRANSLATOR = AccessControl
