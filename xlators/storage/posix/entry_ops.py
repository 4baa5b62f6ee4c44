"""The entry fops (GlusterFS's posix-entry-ops.c): lookup, mknod, mkdir,
symlink, unlink, rmdir, rename, link and create, and what every new entry
gets (owner, mode, xattrs from xdata, gfid and handle)."""

from __future__ import annotations

import errno
import os
import stat
import uuid

from glusterpy import fops
from glusterpy.fops import (GFID, NULL_GFID, ROOT_GFID, CreateReply, EntryReply, FopError, Iatt,
                            LookupReply, ParentReply, RenameReply, UInt)
from glusterpy.keys import (ACL_ACCESS_KEY, ACL_DEFAULT_KEY, DHT_LINKTO_KEY, GET_LINK_COUNT,
                            GFID_KEY, GFID_REQ, GFIDLESS_LOOKUP, INTERNAL_FOP, REQUEST_LINK_COUNT,
                            RESPONSE_LINK_COUNT, SKIP_NON_LINKTO_UNLINK, SKIP_OPEN_FD_UNLINK,
                            MDATA_KEY, UNLINKED_LOOKUP, XATTR_NAMESPACES)

from .handles import gfid2path_key, handle_path, hrel
from .helpers import (IGNORED_KEYS, LANDFILL_DIR, O_NOFOLLOW, UNLINK_DIR, MdataCache, Node,
                      entry_path, inline_fop, quiet, xattr_bytes, xget, xset)
from .mdata import MDATA_A, MDATA_C, MDATA_M


class PosixEntryOps:
    """The fops that add, remove or rename names."""

    @inline_fop
    def lookup(self, loc, xdata=None):
        """By name (parent gfid + name, or path) or by gfid; fills the reply
        xdata with the xattrs (names or globs) and virtual keys xdata asks for,
        as posix_xattr_fill does.  An entry without a gfid is healed from
        gfid-req; `.glusterfs` at the root is EPERM."""
        xdata = xdata or {}
        postparent = None
        if loc.name is None and (loc.gfid is not None or loc.path == "/"):
            # nameless lookup: by gfid (posix_lookup's MAKE_INODE_HANDLE)
            gfid = loc.gfid if loc.gfid is not None else ROOT_GFID
            try:
                node = self._node(gfid)
            except FileNotFoundError:
                if xdata.get(UNLINKED_LOOKUP):
                    st = os.stat(f"{UNLINK_DIR}/{gfid}", dir_fd=self._hdir,
                                 follow_symlinks=False)
                    ia = Iatt.from_stat(st, gfid)
                    ia.nlink = 0
                    return LookupReply(ia)
                raise
        else:
            pfd, pgfid, name = self._parent(loc)
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            self._not_hidden_dir(st)
            node = Node.entry(pfd, name, st, self._read_gfid(pfd, name))
            if node.gfid is None:
                req = _gfid_req(xdata)
                if req is None:
                    if not xdata.get(GFIDLESS_LOOKUP):
                        raise FopError(errno.ENODATA, f"{name}: entry has no gfid")
                else:
                    self._set_gfid(node, req, pgfid, name)
            elif loc.gfid is None:
                # a fresh lookup heals a missing handle, as posix_gfid_heal does
                self._heal_handle(node, pgfid, name)
            postparent = self._dir_iatt(pfd, pgfid)
        read: dict | None = {} if xdata else None
        ia = self._iatt(node, read)
        reply_x = self._fill_xattrs(node.target, xdata, ia, node, read=read) if xdata else None
        return LookupReply(ia, postparent, xdata=reply_x or None)

    @inline_fop
    def mknod(self, loc, mode, rdev, umask, xdata=None):
        """Any file type mode names (regular, fifo, socket, devices).  With
        glusterfs-internal-fop and a gfid-req that already exists, the new
        name links that inode, as distribute needs for linkto files."""
        xdata = xdata or {}
        pfd, pgfid, name = self._parent(loc)
        gfid = self._new_gfid(xdata)
        pre, pknown = self._dir_pre(pfd, pgfid, self._seen_dir(pfd))
        uid, gid, _ = self._owner(pre)
        if xdata.get(INTERNAL_FOP) and self._link_existing_gfid(gfid, pfd, name):
            # distribute's linkto file for a hard-linked file: another name for
            # the inode that already has this gfid (posix_create_link_if_gfid_exists)
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            node = Node.entry(pfd, name, st, gfid)
            if self.opts.gfid2path:
                self._set_gfid2path(node.target, pgfid, name)
        else:
            ftype = stat.S_IFMT(mode) or stat.S_IFREG
            perm = mode & ~umask & 0o7777
            os.mknod(name, ftype | (perm & 0o777), rdev, dir_fd=pfd)
            try:
                node = self._finish_new_entry(pfd, pgfid, name, gfid, uid, gid, perm, xdata)
            except BaseException:
                quiet(os.unlink, name, dir_fd=pfd)
                raise
        return self._entry_reply(node, pfd, pgfid, pre, MDATA_A | MDATA_C | MDATA_M, pknown)

    @inline_fop
    def mkdir(self, loc, mode, umask, xdata=None):
        """A setgid parent gives its group and the setgid bit."""
        xdata = xdata or {}
        pfd, pgfid, name = self._parent(loc)
        gfid = self._new_gfid(xdata)
        pre, pknown = self._dir_pre(pfd, pgfid, self._seen_dir(pfd))
        uid, gid, sgid = self._owner(pre)
        perm = mode & ~umask & 0o7777
        if sgid:
            perm |= stat.S_ISGID
        os.mkdir(name, 0o700, dir_fd=pfd)
        try:
            node = self._finish_new_entry(pfd, pgfid, name, gfid, uid, gid, perm, xdata)
        except BaseException:
            quiet(os.rmdir, name, dir_fd=pfd)
            raise
        return self._entry_reply(node, pfd, pgfid, pre, MDATA_A | MDATA_C | MDATA_M, pknown)

    @inline_fop
    def symlink(self, linkname, loc, umask, xdata=None):
        """The target is stored verbatim and never followed here."""
        xdata = xdata or {}
        pfd, pgfid, name = self._parent(loc)
        if not linkname or "\0" in linkname:
            raise FopError(errno.EINVAL if linkname else errno.ENOENT)
        gfid = self._new_gfid(xdata)
        pre, pknown = self._dir_pre(pfd, pgfid, self._seen_dir(pfd))
        uid, gid, _ = self._owner(pre)
        # the target is stored verbatim: absolute targets are data, never followed
        os.symlink(linkname, name, dir_fd=pfd)
        try:
            node = self._finish_new_entry(pfd, pgfid, name, gfid, uid, gid, None, xdata)
        except BaseException:
            quiet(os.unlink, name, dir_fd=pfd)
            raise
        return self._entry_reply(node, pfd, pgfid, pre, MDATA_A | MDATA_C | MDATA_M, pknown)

    @inline_fop
    def unlink(self, loc, xflags, xdata=None):
        """The last name takes the handle with it, or parks it in
        .glusterfs/unlink while the file is open.  Honours distribute's
        dont-unlink-for-open-fd and unlink-only-if-dht-linkto-file (EBUSY)."""
        xdata = xdata or {}
        pfd, pgfid, name = self._parent(loc)
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            raise FopError(errno.EISDIR)
        gfid = self._read_gfid(pfd, name)
        target = entry_path(pfd, name)
        if gfid is not None and xdata.get(SKIP_OPEN_FD_UNLINK) and self._opencount.get(gfid):
            raise FopError(errno.EBUSY)
        if xdata.get(SKIP_NON_LINKTO_UNLINK) and not (
                _is_linkto_mode(st.st_mode) and xget(target, DHT_LINKTO_KEY)):
            raise FopError(errno.EBUSY)
        pre, pknown = self._dir_pre(pfd, pgfid, self._seen_dir(pfd))
        nlink = st.st_nlink - 1 if gfid is not None else st.st_nlink
        reply_x: dict = {}
        if xdata.get(GET_LINK_COUNT):
            reply_x[GET_LINK_COUNT] = UInt(nlink)
        if gfid is not None and nlink > 1 and self.opts.gfid2path:
            quiet(os.removexattr, target, gfid2path_key(pgfid, name), follow_symlinks=False)
        pin = None
        if nlink <= 1:
            # the inode goes with this name: freeing it is left to the
            # descriptor's last close, in DeferredEviction's helper process
            try:
                pin = os.open(name, os.O_PATH | O_NOFOLLOW, dir_fd=pfd)
            except OSError:
                pass    # gone already: the unlink below says so
        if gfid is not None and nlink == 1:
            self._drop_handle(gfid)    # the last name goes: so does the handle
        try:
            os.unlink(name, dir_fd=pfd)
        finally:
            if pin is not None:
                self._evictions.close(pin)
        if gfid is not None and nlink > 1:
            self._mdata_touch(handle_path(self._hdir, gfid), MDATA_C)
        post = self._dir_iatt(pfd, pgfid, touch=MDATA_C | MDATA_M, known=pknown)
        if xdata.get(REQUEST_LINK_COUNT):
            reply_x[RESPONSE_LINK_COUNT] = UInt(nlink)
        return ParentReply(pre, post, xdata=reply_x or None)

    @inline_fop
    def rmdir(self, loc, xflags, xdata=None):
        """Non-zero xflags move the whole tree to landfill (self-heal)."""
        pfd, pgfid, name = self._parent(loc)
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        gfid = self._read_gfid(pfd, name)
        pre, pknown = self._dir_pre(pfd, pgfid, self._seen_dir(pfd))
        if xflags:
            # self-heal's "remove this tree": move it aside, the janitor purges it
            if not stat.S_ISDIR(st.st_mode):
                raise FopError(errno.ENOTDIR)
            dest = str(gfid) if gfid is not None else str(uuid.uuid4())
            os.rename(name, f"{LANDFILL_DIR}/{dest}", src_dir_fd=pfd, dst_dir_fd=self._hdir)
            self._wake_janitor()
        else:
            try:
                os.rmdir(name, dir_fd=pfd)
            except OSError as e:
                raise FopError(errno.ENOTEMPTY if e.errno == errno.EEXIST else e.errno) from None
        if gfid is not None:
            self._forget_dir(gfid)
            if self._dir_handle_points_to(gfid, pgfid, name):
                quiet(os.unlink, hrel(gfid), dir_fd=self._hdir)
        post = self._dir_iatt(pfd, pgfid, touch=MDATA_C | MDATA_M, known=pknown)
        return ParentReply(pre, post)

    @inline_fop
    def rename(self, oldloc, newloc, xdata=None):
        """Moves a directory's handle to its new parent and name; a replaced
        file loses its handle with its last name."""
        xdata = xdata or {}
        opfd, opgfid, oname = self._parent(oldloc)
        npfd, npgfid, nname = self._parent(newloc)
        ost = os.stat(oname, dir_fd=opfd, follow_symlinks=False)
        ogfid = self._read_gfid(opfd, oname)
        try:
            vst = os.stat(nname, dir_fd=npfd, follow_symlinks=False)
            vgfid = self._read_gfid(npfd, nname)
        except FileNotFoundError:
            vst = vgfid = None
        if vst is not None and stat.S_ISDIR(vst.st_mode) and newloc.gfid is not None \
                and vgfid is not None and newloc.gfid != vgfid:
            raise FopError(errno.EEXIST, "the directory at the target is not the one named")
        preold = self._dir_iatt(opfd, opgfid)
        prenew = self._dir_iatt(npfd, npgfid)
        reply_x: dict = {}
        vnlink = 0
        if vst is not None:
            vnlink = vst.st_nlink - (1 if vgfid is not None and not stat.S_ISDIR(vst.st_mode)
                                     else 0)
            if xdata.get(GET_LINK_COUNT):
                reply_x[GET_LINK_COUNT] = UInt(vnlink)
        os.rename(oname, nname, src_dir_fd=opfd, dst_dir_fd=npfd)
        same_inode = vst is not None and (vst.st_ino, vst.st_dev) == (ost.st_ino, ost.st_dev)
        if not same_inode:
            if vst is not None and vgfid is not None:
                if stat.S_ISDIR(vst.st_mode):
                    self._forget_dir(vgfid)
                    quiet(os.unlink, hrel(vgfid), dir_fd=self._hdir)
                elif vnlink == 1:
                    # the handle was the replaced file's last link: its
                    # inode is freed by DeferredEviction, as unlink's is
                    try:
                        pin = os.open(hrel(vgfid), os.O_PATH | O_NOFOLLOW, dir_fd=self._hdir)
                    except OSError:
                        pin = None
                    try:
                        self._drop_handle(vgfid)
                    finally:
                        if pin is not None:
                            self._evictions.close(pin)
            if ogfid is not None:
                if stat.S_ISDIR(ost.st_mode):
                    self._make_dir_handle(ogfid, npgfid, nname, replace=True)
                elif self.opts.gfid2path:
                    hpath = handle_path(self._hdir, ogfid)
                    quiet(os.removexattr, hpath, gfid2path_key(opgfid, oname),
                          follow_symlinks=False)
                    self._set_gfid2path(hpath, npgfid, nname)
        nst = os.stat(nname, dir_fd=npfd, follow_symlinks=False)
        node = Node.entry(npfd, nname, nst, ogfid)
        self._mdata_touch(node.target, MDATA_C)
        ia = self._iatt(node)
        postold = self._dir_iatt(opfd, opgfid, touch=MDATA_C | MDATA_M)
        postnew = self._dir_iatt(npfd, npgfid, touch=MDATA_C | MDATA_M)
        if vst is not None and xdata.get(REQUEST_LINK_COUNT):
            reply_x[RESPONSE_LINK_COUNT] = UInt(vnlink)
        return RenameReply(ia, preold, postold, prenew, postnew, xdata=reply_x or None)

    @inline_fop
    def link(self, oldloc, newloc, xdata=None):
        node = self._inode(oldloc)
        npfd, npgfid, nname = self._parent(newloc)
        # the kernel's order: the new name's parent, the new name, then the inode
        if _exists(npfd, nname):
            raise FopError(errno.EEXIST)
        if node.is_dir:
            raise FopError(errno.EPERM)
        limit = self.opts.max_hardlinks
        if limit and self._iatt_nlink(node) >= limit:
            raise FopError(errno.EMLINK)
        pre, pknown = self._dir_pre(npfd, npgfid, self._seen_dir(npfd))
        os.link(node.at_name, nname, src_dir_fd=node.at_fd, dst_dir_fd=npfd,
                follow_symlinks=False)
        st = os.stat(nname, dir_fd=npfd, follow_symlinks=False)
        new = Node.entry(npfd, nname, st, node.gfid)
        if node.gfid is not None and self.opts.gfid2path:
            self._set_gfid2path(new.target, npgfid, nname)
        self._mdata_touch(new.target, MDATA_C, inode=(st.st_dev, st.st_ino))
        ia = self._iatt(new)
        post = self._dir_iatt(npfd, npgfid, touch=MDATA_C | MDATA_M, known=pknown)
        return EntryReply(ia, pre, post)

    @inline_fop
    def create(self, loc, flags, mode, umask, fd, xdata=None):
        """flags 0 means O_CREAT|O_RDWR|O_EXCL, as GlusterFS; without O_EXCL
        an existing file is opened.  The fd learns the gfid."""
        xdata = xdata or {}
        pfd, pgfid, name = self._parent(loc)
        pre, pknown = self._dir_pre(pfd, pgfid, self._seen_dir(pfd))
        uid, gid, _ = self._owner(pre)
        oflags = (os.O_CREAT | os.O_RDWR | os.O_EXCL) if not flags else (flags | os.O_CREAT)
        if self.opts.o_direct:
            oflags |= os.O_DIRECT
        perm = mode & ~umask & 0o7777
        # the open itself says whether the name existed: with O_EXCL it
        # makes the file or answers EEXIST, so a new name (a small file's
        # create, after a LOOKUP that found nothing) costs no stat before it
        try:
            osfd = os.open(name, oflags | os.O_EXCL | O_NOFOLLOW, perm & 0o777, dir_fd=pfd)
            st = None
        except FileExistsError:
            if oflags & os.O_EXCL:
                raise
            # O_CREAT without O_EXCL on an existing name opens it (O_TRUNC
            # applied; never a symlink: ELOOP, as a directory is EISDIR)
            osfd = os.open(name, oflags | O_NOFOLLOW, perm & 0o777, dir_fd=pfd)
            try:
                st = os.fstat(osfd)
                gfid = self._read_gfid(pfd, name)
                node = Node.entry(pfd, name, st, gfid)
                if gfid is None:
                    req = self._new_gfid(xdata)
                    self._set_gfid(node, req, pgfid, name)
            except BaseException:
                os.close(osfd)
                raise
        if st is None:
            try:
                gfid = self._new_gfid(xdata)
                node = self._finish_new_entry(pfd, pgfid, name, gfid, uid, gid, perm, xdata,
                                              osfd=osfd)
            except BaseException:
                os.close(osfd)
                quiet(os.unlink, name, dir_fd=pfd)
                raise
        of = self._adopt(fd, osfd, flags | (oflags & os.O_DIRECT), node.gfid, is_dir=False)
        of.inode = (node.st.st_dev, node.st.st_ino)
        if fd.gfid is None:
            fd.gfid = node.gfid
        # Departure: GlusterFS moves the times of an existing file and its
        # parent too; here, as on a local filesystem, only a new file (or
        # O_TRUNC) does.
        known = None
        if st is None:
            touch, parent_touch = MDATA_A | MDATA_C | MDATA_M, MDATA_C | MDATA_M
            if MDATA_KEY not in xdata:
                # the file made just now has no mdata xattr (xdata stored
                # none): nothing to read before storing its times
                known = (MdataCache.last_store(of.inode), None)
        else:
            touch, parent_touch = (MDATA_C | MDATA_M if oflags & os.O_TRUNC else 0), 0
        ia = self._fd_iatt(of, touch=touch, known=known)
        post = self._dir_iatt(pfd, pgfid, touch=parent_touch, known=pknown)
        return CreateReply(fd, ia, pre, post)

    # ======================================================================
    # helpers: new entries

    def _new_gfid(self, xdata: dict) -> GFID:
        req = _gfid_req(xdata)
        return req if req is not None else GFID.random()

    def _owner(self, parent: Iatt) -> tuple[int, int, bool]:
        """uid and gid of a new entry, and whether the parent is setgid."""
        who = fops.caller.get()
        sgid = bool(parent.mode & stat.S_ISGID)
        return who.uid, (parent.gid if sgid else who.gid), sgid

    def _finish_new_entry(self, pfd, pgfid, name, gfid, uid, gid, perm, xdata,
                          osfd: int | None = None) -> "Node":
        """What GlusterFS does after creating an entry: owner, exact mode,
        ACLs and xattrs from xdata, gfid2path, the gfid and its handle."""
        st = os.fstat(osfd) if osfd is not None else \
            os.stat(name, dir_fd=pfd, follow_symlinks=False)
        owned = (st.st_uid, st.st_gid) == (uid, gid)
        if not owned:
            try:
                if osfd is not None:
                    os.fchown(osfd, uid, gid)
                else:
                    os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
            except PermissionError:
                if self._privileged:
                    raise
        if perm is not None and (not owned or stat.S_IMODE(st.st_mode) != perm):
            # after chown, which may clear set-id bits; not needed when the
            # entry already has the owner and the exact mode (the brick's
            # umask took nothing, no set-id bit asked): then the first stat
            # stands too - two syscalls fewer per small file's create
            if osfd is not None:
                os.fchmod(osfd, perm)
            else:
                os.chmod(name, perm, dir_fd=pfd, follow_symlinks=False)
            owned = False
        if not owned:
            st = os.fstat(osfd) if osfd is not None else \
                os.stat(name, dir_fd=pfd, follow_symlinks=False)
        node = Node.entry(pfd, name, st, None)
        target = node.target
        for key in (ACL_ACCESS_KEY, ACL_DEFAULT_KEY):
            if key in xdata:
                try:
                    xset(target, key, xattr_bytes(xdata[key]), 0)
                except OSError as e:
                    self.log.warning("%s: setting %s failed: %s", name, key, e)
        if not stat.S_ISDIR(st.st_mode) and self.opts.gfid2path:
            self._set_gfid2path(target, pgfid, name)
        for key, value in xdata.items():
            if key in IGNORED_KEYS or key in (GFID_KEY, ACL_ACCESS_KEY, ACL_DEFAULT_KEY) \
                    or not key.startswith(XATTR_NAMESPACES):
                continue
            try:
                self._set_one_xattr(target, node, key, value, os.XATTR_CREATE)
            except (OSError, FopError) as e:
                self.log.debug("%s: xattr %s from xdata not set: %s", name, key, e)
        # made just now by this fop (O_EXCL, mknod, mkdir, symlink): it has
        # no gfid yet, so none is read before storing it
        self._set_gfid(node, gfid, pgfid, name, fresh=True)
        return node

    def _entry_reply(self, node, pfd, pgfid, pre, touch, pknown) -> EntryReply:
        """`pknown`: `_dir_pre`'s for the parent, earlier in the fop."""
        node.restat()
        self._mdata_touch(node.target, touch, inode=(node.st.st_dev, node.st.st_ino))
        ia = self._iatt(node)
        post = self._dir_iatt(pfd, pgfid, touch=MDATA_C | MDATA_M, known=pknown)
        return EntryReply(ia, pre, post)


def _gfid_req(xdata: dict | None) -> GFID | None:
    value = (xdata or {}).get(GFID_REQ)
    if value is None:
        return None
    try:
        gfid = GFID(bytes(value) if isinstance(value, (bytearray, memoryview)) else value)
    except (ValueError, TypeError):
        raise FopError(errno.EINVAL, f"gfid-req {value!r} is not a gfid") from None
    if gfid == NULL_GFID:
        raise FopError(errno.EINVAL, "gfid-req is null")
    return gfid


def _exists(dirfd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def _is_linkto_mode(mode: int) -> bool:
    # DHT's linkto files: a regular file whose only permission bit is sticky
    return stat.S_ISREG(mode) and (mode & 0o7777) == stat.S_ISVTX
