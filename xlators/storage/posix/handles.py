"""The .glusterfs handles (GlusterFS's posix-handle.c) and gfid2path
(posix-gfid-path.c): a gfid's handle path, a directory handle's symlink,
making, healing and dropping handles, and the gfid of a new entry."""

from __future__ import annotations

import errno
import os
import stat
import uuid

from glusterpy.fops import GFID, NULL_GFID, ROOT_GFID, FopError
from glusterpy.keys import GFID2PATH_PREFIX, GFID_KEY

from .helpers import UNLINK_DIR, Node, quiet, xget, xremove, xset


def hrel(gfid: bytes) -> str:
    """A handle's path relative to .glusterfs: xx/yy/<gfid>."""
    return f"{gfid[0]:02x}/{gfid[1]:02x}/{uuid.UUID(bytes=bytes(gfid))}"


def handle_path(hdir: int, gfid: bytes) -> str:
    return f"/proc/self/fd/{hdir}/{hrel(gfid)}"


def parse_dir_handle(link: str, gfid: GFID) -> tuple[GFID, str]:
    """`../../pp/qq/<pargfid>/<name>` -> (pargfid, name), checked as
    posix_is_malformed_link does."""
    if link == "../../..":
        if gfid == ROOT_GFID:
            return ROOT_GFID, "/"
        raise FopError(errno.ESTALE, f"malformed handle for {gfid}")
    if len(link) < 50 or not link.startswith("../../") or link[11] != "/" or link[48] != "/":
        raise FopError(errno.ESTALE, f"malformed handle {link!r} for {gfid}")
    try:
        pgfid = GFID(link[12:48])
    except ValueError:
        raise FopError(errno.ESTALE, f"malformed handle {link!r} for {gfid}") from None
    name = link[49:]
    if link[6:8] != f"{pgfid[0]:02x}" or link[9:11] != f"{pgfid[1]:02x}" or \
            not name or "/" in name or name in (".", ".."):
        raise FopError(errno.ESTALE, f"malformed handle {link!r} for {gfid}")
    return pgfid, name


def gfid2path_key(pgfid: GFID, name: str) -> str:
    return GFID2PATH_PREFIX + f"{xxh64(os.fsencode(f'{pgfid}/{name}')):016x}"


_P1, _P2, _P3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
_P4, _P5, _M64 = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5, (1 << 64) - 1


def xxh64(data: bytes, seed: int = 0) -> int:
    """XXH64, the hash GlusterFS names gfid2path keys with (seed 0)."""
    def rotl(x, r):
        return ((x << r) | (x >> (64 - r))) & _M64

    def rnd(acc, lane):
        return (rotl((acc + lane * _P2) & _M64, 31) * _P1) & _M64

    n, i = len(data), 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _M64, (seed + _P2) & _M64, seed, (seed - _P1) & _M64]
        while i + 32 <= n:
            for k in range(4):
                v[k] = rnd(v[k], int.from_bytes(data[i:i + 8], "little"))
                i += 8
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & _M64
        for k in range(4):
            h = ((h ^ rnd(0, v[k])) * _P1 + _P4) & _M64
    else:
        h = (seed + _P5) & _M64
    h = (h + n) & _M64
    while i + 8 <= n:
        h ^= rnd(0, int.from_bytes(data[i:i + 8], "little"))
        h = (rotl(h, 27) * _P1 + _P4) & _M64
        i += 8
    if i + 4 <= n:
        h ^= (int.from_bytes(data[i:i + 4], "little") * _P1) & _M64
        h = (rotl(h, 23) * _P2 + _P3) & _M64
        i += 4
    while i < n:
        h ^= (data[i] * _P5) & _M64
        h = (rotl(h, 11) * _P1) & _M64
        i += 1
    h ^= h >> 33
    h = (h * _P2) & _M64
    h ^= h >> 29
    h = (h * _P3) & _M64
    return h ^ (h >> 32)


class PosixHandles:
    """Gfids and their handles in .glusterfs."""

    def _set_gfid(self, node: "Node", gfid: GFID, pgfid: GFID, name: str,
                  fresh: bool = False) -> None:
        """posix_gfid_set: store the gfid (if none yet) and make the handle.
        `fresh`: the entry was made by this fop, so it has no gfid to read
        first (XATTR_CREATE would still refuse one)."""
        if gfid in (NULL_GFID, ROOT_GFID):
            raise FopError(errno.EINVAL, f"gfid-req {gfid} cannot name a new entry")
        current = None if fresh else xget(node.target, GFID_KEY)
        if current is not None and len(current) == 16:
            gfid = GFID(current)
        else:
            # the inode named: a create retires no other file's cached mdata
            xset(node.target, GFID_KEY, gfid, os.XATTR_CREATE, (node.st.st_dev, node.st.st_ino))
        node.gfid = gfid
        if node.is_dir:
            self._make_dir_handle(gfid, pgfid, name, replace=True)
        else:
            try:
                self._make_file_handle(gfid, node)
            except BaseException:
                # retires MdataCache.listed
                quiet(xremove, node.target, GFID_KEY, (node.st.st_dev, node.st.st_ino))
                raise

    def _heal_handle(self, node: "Node", pgfid: GFID, name: str) -> None:
        """Re-create a missing handle for an entry that has a gfid."""
        rel = hrel(node.gfid)
        try:
            os.stat(rel, dir_fd=self._hdir, follow_symlinks=False)
            return
        except FileNotFoundError:
            pass
        try:
            if node.is_dir:
                self._make_dir_handle(node.gfid, pgfid, name, replace=False)
            else:
                self._make_file_handle(node.gfid, node)
        except (OSError, FopError) as e:
            self.log.warning("%s: could not heal the handle of %s: %s", name, node.gfid, e)

    def _make_file_handle(self, gfid: GFID, node: "Node") -> None:
        """posix_handle_hard: .glusterfs/xx/yy/<gfid> is another hard link."""
        rel = hrel(gfid)
        self._mkdir_hash(gfid)
        # the link first: a new gfid has no handle, so the stat that would
        # find one is made only when the link says a handle is there
        try:
            os.link(node.at_name, rel, src_dir_fd=node.at_fd, dst_dir_fd=self._hdir,
                    follow_symlinks=False)
            return
        except FileExistsError:
            pass
        hst = os.stat(rel, dir_fd=self._hdir, follow_symlinks=False)
        if (hst.st_ino, hst.st_dev) == (node.st.st_ino, node.st.st_dev):
            return
        if hst.st_nlink > 1 or stat.S_ISLNK(hst.st_mode) and hst.st_nlink == 1:
            raise FopError(errno.EEXIST, f"gfid {gfid} already names another inode")
        os.unlink(rel, dir_fd=self._hdir)     # an orphaned handle: no names left
        os.link(node.at_name, rel, src_dir_fd=node.at_fd, dst_dir_fd=self._hdir,
                follow_symlinks=False)

    def _make_dir_handle(self, gfid: GFID, pgfid: GFID, name: str, replace: bool) -> None:
        """posix_handle_soft: the symlink ../../pp/qq/<pargfid>/<name>,
        swapped in atomically when it replaces an older one."""
        rel = hrel(gfid)
        target = f"../../{pgfid[0]:02x}/{pgfid[1]:02x}/{pgfid}/{name}"
        try:
            hst = os.stat(rel, dir_fd=self._hdir, follow_symlinks=False)
        except FileNotFoundError:
            hst = None
        if hst is not None:
            if not (stat.S_ISLNK(hst.st_mode) and hst.st_nlink == 1):
                raise FopError(errno.EEXIST, f"gfid {gfid} already names a non-directory")
            if not replace or os.readlink(rel, dir_fd=self._hdir) == target:
                return
            tmp = f"{rel}.{os.getpid()}.tmp"
            quiet(os.unlink, tmp, dir_fd=self._hdir)
            os.symlink(target, tmp, dir_fd=self._hdir)
            os.rename(tmp, rel, src_dir_fd=self._hdir, dst_dir_fd=self._hdir)
            return
        self._mkdir_hash(gfid)
        os.symlink(target, rel, dir_fd=self._hdir)

    def _dir_handle_points_to(self, gfid: GFID, pgfid: GFID, name: str) -> bool:
        """posix_symlinks_match: is this directory's handle for pgfid/name?"""
        try:
            return parse_dir_handle(os.readlink(hrel(gfid), dir_fd=self._hdir), gfid) == \
                (pgfid, name)
        except (OSError, FopError):
            return False

    def _mkdir_hash(self, gfid: GFID) -> None:
        """Make .glusterfs/xx/yy once; only this translator adds or removes
        them, so a set of the ones made saves two mkdir calls per new entry."""
        prefix = gfid[:2]
        if prefix in self._hash_dirs:
            return
        for rel in (f"{gfid[0]:02x}", f"{gfid[0]:02x}/{gfid[1]:02x}"):
            try:
                os.mkdir(rel, 0o700, dir_fd=self._hdir)
                os.chmod(rel, 0o700, dir_fd=self._hdir)
            except FileExistsError:
                pass
        self._hash_dirs.add(prefix)

    def _drop_handle(self, gfid: GFID) -> None:
        """The last name of a file goes: its handle goes too, unless the file
        is still open - then it waits in .glusterfs/unlink for the last release."""
        rel = hrel(gfid)
        if self._opencount.get(gfid):
            try:
                os.rename(rel, f"{UNLINK_DIR}/{gfid}", src_dir_fd=self._hdir,
                          dst_dir_fd=self._hdir)
                self._unlinked.add(gfid)
                return
            except FileNotFoundError:
                return
        quiet(os.unlink, rel, dir_fd=self._hdir)

    def _link_existing_gfid(self, gfid: GFID, pfd: int, name: str) -> bool:
        rel = hrel(gfid)
        try:
            hst = os.stat(rel, dir_fd=self._hdir, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(hst.st_mode) and hst.st_nlink == 1:
            return False
        os.link(rel, name, src_dir_fd=self._hdir, dst_dir_fd=pfd, follow_symlinks=False)
        return True

    def _set_gfid2path(self, target, pgfid: GFID, name: str) -> None:
        value = f"{pgfid}/{name}"
        try:
            xset(target, gfid2path_key(pgfid, name), os.fsencode(value), os.XATTR_CREATE)
        except FileExistsError:
            pass
        except OSError as e:
            self.log.warning("setting gfid2path for %s failed: %s", value, e)
