"""The inode fops (GlusterFS's posix-inode-fd-ops.c): stat, access,
readlink, truncate, setattr and statfs (and their fd forms), and the fops
GlusterFS's posix leaves to other translators."""

from __future__ import annotations

import errno
import os
import stat

from glusterpy import fops
from glusterpy import iothreads
from glusterpy.fops import (NULL_GFID, FopError, Iatt, PrePostReply, ReadlinkReply, Reply,
                            StatfsReply, StatReply, Statvfs)
from glusterpy.keys import MDATA_KEY

from .helpers import O_NOFOLLOW, Node, inline_fop, offloading_fop, xget_quiet, xset
from .mdata import MDATA_C, MDATA_M, apply_mdata, mdata_decode, mdata_encode


class PosixInodeOps:
    """Attributes of an inode."""

    @inline_fop
    def stat(self, loc, xdata=None):
        node = self._inode(loc)
        ia = self._iatt(node)
        reply_x = self._fill_xattrs(node.target, xdata, ia, node) if xdata else None
        return StatReply(ia, xdata=reply_x or None)

    @inline_fop
    def fstat(self, fd, xdata=None):
        of = self._of(fd)
        ia = self._fd_iatt(of)
        reply_x = self._fill_xattrs(of.osfd, xdata, ia, None) if xdata else None
        return StatReply(ia, xdata=reply_x or None)

    @inline_fop
    def access(self, loc, mask, xdata=None):
        node = self._inode(loc)
        if not os.access(node.at_name, mask & 0o7, dir_fd=node.at_fd, follow_symlinks=False):
            raise FopError(errno.EACCES)
        return Reply()

    @inline_fop
    def readlink(self, loc, size, xdata=None):
        node = self._inode(loc)
        target = os.readlink(os.fsencode(node.at_name), dir_fd=node.at_fd)
        if size and size > 0:      # readlink(2) truncates to the buffer it is given
            target = target[:size]
        return ReadlinkReply(os.fsdecode(target), self._iatt(node))

    @offloading_fop
    async def truncate(self, loc, offset, xdata=None):
        node = self._inode(loc)
        pre = self._iatt(node)
        if iothreads.lane.get() is None:
            self._truncate_node(node, offset)
            node.restat()
            self._mdata_touch(node.target, MDATA_C | MDATA_M)
            return PrePostReply(pre, self._iatt(node))
        # through a worker: after the await only the descriptor opened here
        # is used (the cached directory descriptors may be gone by then)
        tfd = self._open_to_truncate(node)
        try:
            await self._blocking(None, os.ftruncate, tfd, offset)
            self._mdata_touch(tfd, MDATA_C | MDATA_M)
            post = Iatt.from_stat(os.fstat(tfd), node.gfid or NULL_GFID)
            if post.nlink and node.gfid is not None:
                post.nlink -= 1     # the handle is not a name
            if self.opts.ctime:
                apply_mdata(post, xget_quiet(tfd, MDATA_KEY))
        finally:
            os.close(tfd)
        return PrePostReply(pre, post)

    @offloading_fop
    async def ftruncate(self, fd, offset, xdata=None):
        of = self._of(fd)
        pre = self._fd_iatt(of)
        await self._blocking(of, os.ftruncate, of.osfd, offset)
        return PrePostReply(pre, self._fd_iatt(of, touch=MDATA_C | MDATA_M))

    @inline_fop
    def setattr(self, loc, stbuf, valid, xdata=None):
        node = self._inode(loc)
        pre = self._iatt(node)
        self._apply_setattr(node, None, stbuf, valid, pre)
        node.restat()
        post = self._iatt(node)
        reply_x = self._fill_xattrs(node.target, xdata, post, node) if xdata else None
        return PrePostReply(pre, post, xdata=reply_x or None)

    @inline_fop
    def fsetattr(self, fd, stbuf, valid, xdata=None):
        of = self._of(fd)
        pre = self._fd_iatt(of)
        self._apply_setattr(None, of, stbuf, valid, pre)
        post = self._fd_iatt(of)
        reply_x = self._fill_xattrs(of.osfd, xdata, post, None) if xdata else None
        return PrePostReply(pre, post, xdata=reply_x or None)

    @inline_fop
    def statfs(self, loc, xdata=None):
        node = self._inode(loc)
        if node.is_dir:
            sv = os.fstatvfs(node.at_fd)
        else:
            pfd = os.open(node.at_name, os.O_PATH | O_NOFOLLOW, dir_fd=node.at_fd)
            try:
                sv = os.fstatvfs(pfd)
            finally:
                os.close(pfd)
        shared = max(1, self.opts.shared_brick_count)
        blocks, bfree, bavail = sv.f_blocks // shared, sv.f_bfree // shared, \
            sv.f_bavail // shared
        files, ffree, favail = sv.f_files // shared, sv.f_ffree // shared, sv.f_favail // shared
        if not self.opts.export_statfs_size:
            blocks = bfree = bavail = files = ffree = favail = 0
        return StatfsReply(Statvfs(bsize=sv.f_bsize, frsize=sv.f_frsize, blocks=blocks,
                                   bfree=bfree, bavail=bavail, files=files, ffree=ffree,
                                   favail=favail, fsid=sv.f_fsid, flag=sv.f_flag,
                                   namemax=sv.f_namemax))

    # -- helpers: setattr and truncate ---------------------------------------

    def _apply_setattr(self, node, of, stbuf: Iatt, valid: int, pre: Iatt) -> None:
        """setattr/fsetattr: owner, mode, size, times; then the mdata times."""
        is_link = node is not None and stat.S_ISLNK(node.st.st_mode)
        if valid & (fops.SET_ATTR_UID | fops.SET_ATTR_GID):
            uid = stbuf.uid if valid & fops.SET_ATTR_UID else -1
            gid = stbuf.gid if valid & fops.SET_ATTR_GID else -1
            if of is not None:
                os.fchown(of.osfd, uid, gid)
            else:
                os.chown(node.at_name, uid, gid, dir_fd=node.at_fd, follow_symlinks=False)
        if valid & fops.SET_ATTR_MODE and not is_link:
            # Linux has no symlink modes; GlusterFS also treats this as success
            perm = stbuf.mode & 0o7777
            if of is not None:
                os.fchmod(of.osfd, perm)
            else:
                os.chmod(node.at_name, perm, dir_fd=node.at_fd, follow_symlinks=False)
        target = of.osfd if of is not None else node.target
        if valid & fops.SET_ATTR_SIZE:
            # before the times, which a size change would otherwise overwrite
            if of is not None:
                os.ftruncate(of.osfd, stbuf.size)
            else:
                self._truncate_node(node, stbuf.size)
            self._mdata_touch(target, MDATA_C | MDATA_M)
        times = fops.SET_ATTR_ATIME | fops.SET_ATTR_MTIME | fops.SET_ATTR_ATIME_NOW | \
            fops.SET_ATTR_MTIME_NOW
        now = self._clock()
        if valid & times:
            st = os.fstat(of.osfd) if of is not None else \
                os.stat(node.at_name, dir_fd=node.at_fd, follow_symlinks=False)
            atime, mtime = st.st_atime_ns, st.st_mtime_ns
            set_a = set_m = None
            if valid & fops.SET_ATTR_ATIME_NOW:
                atime = set_a = now
            elif valid & fops.SET_ATTR_ATIME:
                atime = set_a = stbuf.atime_ns
            if valid & fops.SET_ATTR_MTIME_NOW:
                mtime = set_m = now
            elif valid & fops.SET_ATTR_MTIME:
                mtime = set_m = stbuf.mtime_ns
            if of is not None:
                os.utime(of.osfd, ns=(atime, mtime))
            else:
                os.utime(node.at_name, ns=(atime, mtime), dir_fd=node.at_fd,
                         follow_symlinks=False)
            if self.opts.ctime:
                # posix_update_utime_in_mdata: only an existing xattr is updated
                cur = mdata_decode(xget_quiet(target, MDATA_KEY))
                if cur is not None:
                    c, m, a = cur
                    xset(target, MDATA_KEY, mdata_encode(
                        max(c, now), m if set_m is None else set_m,
                        a if set_a is None else set_a), 0)
        if valid & fops.SET_ATTR_CTIME and self.opts.ctime:
            cur = mdata_decode(xget_quiet(target, MDATA_KEY))
            if cur is not None and stbuf.ctime_ns > cur[0]:
                xset(target, MDATA_KEY, mdata_encode(stbuf.ctime_ns, cur[1], cur[2]), 0)
        if not valid:
            # GlusterFS's lchown(-1, -1): a setattr that changes nothing but ctime
            if of is not None:
                os.fchown(of.osfd, -1, -1)
            else:
                os.chown(node.at_name, -1, -1, dir_fd=node.at_fd, follow_symlinks=False)
        # features/utime flags ctime for owner and mode changes and for an
        # empty setattr; a size change also moves mtime, as truncate does
        if not valid or valid & (fops.SET_ATTR_UID | fops.SET_ATTR_GID | fops.SET_ATTR_MODE):
            self._mdata_touch(target, MDATA_C)

    def _open_to_truncate(self, node: "Node") -> int:
        mode = node.st.st_mode
        if stat.S_ISDIR(mode):
            raise FopError(errno.EISDIR)
        if not stat.S_ISREG(mode):
            raise FopError(errno.EINVAL)
        return os.open(node.at_name, os.O_WRONLY | O_NOFOLLOW, dir_fd=node.at_fd)

    def _truncate_node(self, node: "Node", offset: int) -> None:
        tfd = self._open_to_truncate(node)
        try:
            os.ftruncate(tfd, offset)
        finally:
            os.close(tfd)

    # -- fops GlusterFS's posix leaves to other translators -----------------
    # posix_lk, posix_inodelk, ... answer ENOSYS: "features/locks is not loaded"

    @inline_fop
    def lk(self, fd, cmd, flock, xdata=None):
        raise FopError(errno.ENOSYS, "byte-range locks are served by features/locks")

    @inline_fop
    def inodelk(self, volume, loc, cmd, flock, xdata=None):
        raise FopError(errno.ENOSYS, "inode locks are served by features/locks")

    @inline_fop
    def finodelk(self, volume, fd, cmd, flock, xdata=None):
        raise FopError(errno.ENOSYS, "inode locks are served by features/locks")

    @inline_fop
    def entrylk(self, volume, loc, basename, cmd, type, xdata=None):
        raise FopError(errno.ENOSYS, "entry locks are served by features/locks")

    @inline_fop
    def fentrylk(self, volume, fd, basename, cmd, type, xdata=None):
        raise FopError(errno.ENOSYS, "entry locks are served by features/locks")

    @inline_fop
    def lease(self, loc, lease, xdata=None):
        raise FopError(errno.ENOSYS, "leases are served by features/leases")

    @inline_fop
    def ipc(self, op, xdata=None):
        raise FopError(errno.EOPNOTSUPP, f"ipc op {op} is not handled by storage/posix")

    # GlusterFS's storage/posix has no icreate, namelink, getactivelk or
    # setactivelk (features/locks serves the last two)

    @inline_fop
    def icreate(self, loc, mode, xdata=None):
        raise FopError(errno.ENOTSUP, "icreate is not served by storage/posix")

    @inline_fop
    def namelink(self, loc, xdata=None):
        raise FopError(errno.ENOTSUP, "namelink is not served by storage/posix")

    @inline_fop
    def getactivelk(self, loc, xdata=None):
        raise FopError(errno.ENOTSUP, "lock migration is served by features/locks")

    @inline_fop
    def setactivelk(self, loc, locks, xdata=None):
        raise FopError(errno.ENOTSUP, "lock migration is served by features/locks")
