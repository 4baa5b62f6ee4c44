"""storage/posix's life cycle (GlusterFS's posix-common.c): its options,
init (the brick's checks and .glusterfs), fini, reconfigure, the state dump,
and the janitor that empties .glusterfs/landfill."""

from __future__ import annotations

import errno
import os
import stat

import trio

from glusterpy.fops import GFID, ROOT_GFID, FopError
from glusterpy.keys import GFID_KEY, VOLUME_ID_KEY
from glusterpy.linux_aio import AioContext
from glusterpy.options import Option, OptionType

from .handles import hrel
from .helpers import HIDDEN_DIR, LANDFILL_DIR, O_NOFOLLOW, UNLINK_DIR, quiet, xget


# --------------------------------------------------------------------------
# Options (GlusterFS's names; only those this translator implements)

OPTIONS = (
    Option("directory", OptionType.PATH, None,
           "The brick directory this translator serves.", reconfigurable=False),
    Option("volume-id", OptionType.STR, None,
           "The volume's UUID; a brick whose trusted.glusterfs.volume-id differs is "
           "refused, an empty directory without one is stamped with it.",
           reconfigurable=False),
    Option("o-direct", OptionType.BOOL, "off",
           "Open every file with O_DIRECT (applies to later opens)."),
    Option("linux-aio", OptionType.BOOL, "on",
           "Reads and writes on O_DIRECT descriptors go to the disk through Linux "
           "native AIO (io_submit) while performance/io-threads is above, instead of "
           "a worker thread (GlusterFS's default: off).",
           set_keys=("storage.linux-aio",)),
    Option("brick-uid", OptionType.INT, "-1",
           "Owner uid given to the brick root; -1 leaves it.", min=-1,
           set_keys=("storage.owner-uid",)),
    Option("brick-gid", OptionType.INT, "-1",
           "Owner gid given to the brick root; -1 leaves it.", min=-1,
           set_keys=("storage.owner-gid",)),
    Option("export-statfs-size", OptionType.BOOL, "on",
           "Report the brick filesystem's sizes in statfs (off: zeros)."),
    Option("shared-brick-count", OptionType.INT, "1",
           "Number of bricks sharing the same filesystem; statfs divides the sizes "
           "by it.", min=1),
    Option("fips-mode-rchecksum", OptionType.BOOL, "off",
           "rchecksum's strong checksum is SHA256 (on) or MD5 (off).",
           set_keys=("storage.fips-mode-rchecksum",)),
    Option("ctime", OptionType.BOOL, "on",
           "Keep the times in the trusted.glusterfs.mdata xattr and report them, "
           "as GlusterFS 10 does.", set_keys=("features.ctime",)),
    Option("gfid2path", OptionType.BOOL, "on",
           "Record each name of a file in a trusted.gfid2path.<hash> xattr.",
           set_keys=("storage.gfid2path",)),
    Option("gfid2path-separator", OptionType.STR, ":",
           "Separator between the paths of glusterfs.gfidtopath.",
           set_keys=("storage.gfid2path-separator",)),
    Option("max-hardlinks", OptionType.INT, "100",
           "Most hard links one inode may have (0: no limit).", min=0,
           set_keys=("storage.max-hardlinks",)),
    Option("janitor-sleep-duration", OptionType.INT, "10",
           "Seconds between purges of .glusterfs/landfill.", min=1),
    Option("hostname", OptionType.STR, None,
           "Host name reported in the pathinfo xattr (default: this host)."),
    Option("glusterd-uuid", OptionType.STR, None,
           "The node's UUID, reported as trusted.glusterfs.node-uuid.", reconfigurable=False),
    Option("node-uuid-pathinfo", OptionType.BOOL, "off",
           "Report the node UUID instead of the host name in pathinfo.",
           set_keys=("storage.node-uuid-pathinfo",)),
)


class PosixCommon:
    """init, fini, reconfigure, dump; the brick's set-up."""

    # -- life cycle ------------------------------------------------------

    async def init(self) -> None:
        """posix_init: check the brick, then build and open .glusterfs."""
        base = self.base
        try:
            st = os.stat(base)
        except OSError as e:
            raise FopError(e.errno, f"{self.name}: brick directory {base}: "
                                    f"{os.strerror(e.errno)}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise FopError(errno.ENOTDIR, f"{self.name}: {base} is not a directory")
        self._root = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._check_brick_identity()
            self._open_hidden_dir()
            self._purge_unlink_dir()
            self._purge_landfill()
            self._set_brick_owner()
        except BaseException:
            self._close_all()
            raise
        self._janitor_wake = trio.Event()
        self._janitor_done = trio.Event()
        self._janitor_scope = trio.CancelScope()
        self._trio_token = trio.lowlevel.current_trio_token()
        self.spawn(self._janitor)
        self._start_aio()

    async def fini(self) -> None:
        if self._janitor_scope is not None:
            self._janitor_scope.cancel()
            if self._janitor_done is not None:
                await self._janitor_done.wait()
        if self._aio is not None:
            self._aio.close()
            self._aio = None
        if self._serial_pool is not None:
            self._serial_pool.close()
            self._serial_pool = None
        self._close_all()

    def options_changed(self, old) -> None:
        if (self.opts.brick_uid, self.opts.brick_gid) != (old.brick_uid, old.brick_gid):
            self._set_brick_owner()
        if self.opts.linux_aio and not old.linux_aio:
            self._start_aio()

    def _start_aio(self) -> None:
        if self.opts.linux_aio and self._aio is None:
            self._aio = AioContext.open()
            if self._aio is not None:
                self.spawn(self._aio.run)

    def dump_state(self) -> dict:
        return {"directory": self.base, "volume-id": str(self.volume_id or ""),
                "open-fds": sum(self._opencount.values()),
                "cached-directories": len(self._dirs),
                "unlinked-open": sorted(str(g) for g in self._unlinked)}

    # ======================================================================
    # helpers: brick set-up

    def _check_brick_identity(self) -> None:
        """posix_init's xattr checks: xattrs work, volume-id, root gfid."""
        root = self._root
        try:
            vol = xget(root, VOLUME_ID_KEY)
        except OSError as e:
            if e.errno in (errno.ENOTSUP, errno.ENOSYS):
                raise FopError(e.errno, f"{self.name}: {self.base} does not support "
                                        f"extended attributes") from None
            raise
        if self.volume_id is not None:
            if vol is None:
                with os.scandir(f"/proc/self/fd/{root}") as it:
                    empty = next(it, None) is None
                if not empty:
                    raise FopError(errno.ENODATA,
                                   f"{self.name}: {self.base} has no {VOLUME_ID_KEY} and is "
                                   f"not empty: refusing a directory that is not this "
                                   f"volume's brick")
                os.setxattr(root, VOLUME_ID_KEY, self.volume_id, os.XATTR_CREATE)
            elif len(vol) != 16:
                raise FopError(errno.EINVAL, f"{self.name}: {self.base}: malformed "
                                             f"{VOLUME_ID_KEY}")
            elif vol != self.volume_id:
                raise FopError(errno.EEXIST,
                               f"{self.name}: {self.base} is already part of volume "
                               f"{GFID(vol)}, not {self.volume_id}")
        gfid = xget(root, GFID_KEY)
        if gfid is None:
            try:
                os.setxattr(root, GFID_KEY, ROOT_GFID, os.XATTR_CREATE)
            except PermissionError:
                raise FopError(errno.EPERM, f"{self.name}: setting {GFID_KEY} on {self.base} "
                                            f"needs CAP_SYS_ADMIN: bricks run as root, as "
                                            f"GlusterFS's do") from None
        elif gfid != ROOT_GFID:
            raise FopError(errno.EINVAL, f"{self.name}: {self.base} has gfid "
                                         f"{_fmt_gfid(gfid)}, not the root's")

    def _open_hidden_dir(self) -> None:
        """.glusterfs, its 256 hash directories, the root handle, landfill and
        unlink - what posix_init and posix_handle_init make."""
        self._hdir = _open_or_make_dir(self._root, HIDDEN_DIR, 0o600)
        hst = os.fstat(self._hdir)
        self._hdir_id = (hst.st_ino, hst.st_dev)
        for i in range(256):
            try:
                os.mkdir(f"{i:02x}", 0o700, dir_fd=self._hdir)
                os.chmod(f"{i:02x}", 0o700, dir_fd=self._hdir)
            except FileExistsError:
                pass
        rel = hrel(ROOT_GFID)
        try:
            st = os.stat(rel, dir_fd=self._hdir)      # follows ../../..
        except FileNotFoundError:
            self._mkdir_hash(ROOT_GFID)
            os.symlink("../../..", rel, dir_fd=self._hdir)
        else:
            rst = os.fstat(self._root)
            if (st.st_ino, st.st_dev) != (rst.st_ino, rst.st_dev):
                raise FopError(errno.EINVAL, f"{self.name}: {self.base}/{HIDDEN_DIR}/{rel} "
                                             f"is not the brick root")
        for name, mode in ((LANDFILL_DIR, 0o755), (UNLINK_DIR, 0o600)):
            try:
                os.mkdir(name, mode, dir_fd=self._hdir)
                os.chmod(name, mode, dir_fd=self._hdir)
            except FileExistsError:
                st = os.stat(name, dir_fd=self._hdir, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise FopError(errno.ENOTDIR, f"{self.name}: {self.base}/{HIDDEN_DIR}/"
                                                  f"{name} is not a directory") from None

    def _purge_unlink_dir(self) -> None:
        """Files left in .glusterfs/unlink by a previous run have no open fd
        any more (posix_create_unlink_dir empties it at start)."""
        for entry in os.scandir(f"/proc/self/fd/{self._hdir}/{UNLINK_DIR}"):
            _remove_tree(entry.path)

    def _purge_landfill(self) -> None:
        """The janitor's walk: remove what rmdir moved to landfill, dropping
        the handles of its files and directories (janitor_walker)."""
        landfill = f"/proc/self/fd/{self._hdir}/{LANDFILL_DIR}"
        for top in os.scandir(landfill):
            if not top.is_dir(follow_symlinks=False):
                quiet(os.unlink, top.path)
                continue
            for dirpath, dirnames, filenames in os.walk(top.path, topdown=False):
                for name in filenames + [d for d in dirnames
                                         if os.path.islink(os.path.join(dirpath, d))]:
                    path = os.path.join(dirpath, name)
                    try:
                        st = os.lstat(path)
                        gfid = xget(path, GFID_KEY)
                        os.unlink(path)
                    except OSError:
                        continue
                    if gfid is not None and len(gfid) == 16 and st.st_nlink == 2:
                        quiet(os.unlink, hrel(GFID(gfid)), dir_fd=self._hdir)
                for name in dirnames:
                    path = os.path.join(dirpath, name)
                    if os.path.islink(path):
                        continue
                    gfid = quiet(xget, path, GFID_KEY)
                    if quiet(os.rmdir, path) is not False and gfid and len(gfid) == 16:
                        self._drop_stale_dir_handle(GFID(gfid))
            gfid = quiet(xget, top.path, GFID_KEY)
            if quiet(os.rmdir, top.path) is not False and gfid and len(gfid) == 16:
                self._drop_stale_dir_handle(GFID(gfid))

    def _drop_stale_dir_handle(self, gfid: GFID) -> None:
        """del_stale_dir_handle: a directory handle whose target is gone or has
        another gfid is removed."""
        try:
            self._resolve_dir_uncached(gfid)
        except (OSError, FopError):
            quiet(os.unlink, hrel(gfid), dir_fd=self._hdir)

    def _wake_janitor(self) -> None:
        """Thread-safe: fops may run in a gfapi caller's thread
        (FOPS_NEVER_SUSPEND), where trio.Event.set() is not allowed."""
        if self._janitor_wake is not None:
            try:
                self._trio_token.run_sync_soon(lambda: self._janitor_wake.set())
            except trio.RunFinishedError:
                pass

    async def _janitor(self) -> None:
        """Purge landfill every janitor-sleep-duration seconds, or at once when
        rmdir moved something there."""
        try:
            with self._janitor_scope:
                while True:
                    with trio.move_on_after(self.opts.janitor_sleep_duration):
                        await self._janitor_wake.wait()
                    self._janitor_wake = trio.Event()
                    try:
                        await trio.to_thread.run_sync(self._purge_landfill)
                    except (OSError, FopError) as e:
                        self.log.warning("landfill purge failed: %s", e)
        finally:
            self._janitor_done.set()

    def _set_brick_owner(self) -> None:
        uid, gid = self.opts.brick_uid, self.opts.brick_gid
        if uid == -1 and gid == -1:
            return
        st = os.fstat(self._root)
        if (uid == -1 or st.st_uid == uid) and (gid == -1 or st.st_gid == gid):
            return
        os.fchown(self._root, uid, gid)

    def _close_all(self) -> None:
        for closer in list(self._open_files.values()):
            closer()
        self._open_files.clear()
        for osfd in self._close_later - set(self._busy):
            quiet(os.close, osfd)
        self._close_later.intersection_update(self._busy)
        for fd in list(self._dirs.values()) + self._retired:
            quiet(os.close, fd)
        self._dirs.clear()
        self._retired.clear()
        for fd in (self._hdir, self._root):
            if fd >= 0:
                quiet(os.close, fd)
        self._hdir = self._root = -1


def _fmt_gfid(raw: bytes) -> str:
    return str(GFID(raw)) if len(raw) == 16 else raw.hex()


def _open_or_make_dir(parent: int, name: str, mode: int) -> int:
    try:
        os.mkdir(name, mode, dir_fd=parent)
        os.chmod(name, mode, dir_fd=parent)
    except FileExistsError:
        pass
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | O_NOFOLLOW, dir_fd=parent)
    except OSError as e:
        raise FopError(e.errno, f"{name}: {os.strerror(e.errno)} (must be a directory)") from None


def _remove_tree(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        for dirpath, dirnames, filenames in os.walk(path, topdown=False):
            for name in filenames:
                quiet(os.unlink, os.path.join(dirpath, name))
            for name in dirnames:
                p = os.path.join(dirpath, name)
                quiet(os.unlink if os.path.islink(p) else os.rmdir, p)
        quiet(os.rmdir, path)
    else:
        quiet(os.unlink, path)
