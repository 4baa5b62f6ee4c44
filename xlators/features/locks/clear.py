"""features/locks: clearing locks - `gluster volume clear-locks`
(getxattr of glusterfs.clrlk.*), an interrupted F_SETLKW (fgetxattr of
glusterfs.intrlk.*) and a departed client's locks.

GlusterFS's clear.c and pl_client_disconnect_cbk (posix.c).
"""

from __future__ import annotations

import contextlib
import errno
from typing import Any, Callable

import trio

from glusterpy import fops
from glusterpy.fops import DictReply, Flock, FopError, Loc
from glusterpy.keys import CLRLK_CMD, INTRLK_CMD, PATHINFO_KEY

from .common import client_uid, fd_gfid


# clear.c's lock types and kinds (kinds are bit sets: all = blocked|granted)
CLRLK_TYPES = ("inode", "entry", "posix")
CLRLK_BLOCKED, CLRLK_GRANTED, CLRLK_ALL = 1, 2, 3
_CLRLK_KINDS = {"blocked": CLRLK_BLOCKED, "granted": CLRLK_GRANTED, "all": CLRLK_ALL}


class ClearLocks:
    """clear-locks, lock revocation, lock interrupts and a departed client; see the
    package docstring."""

    def _revocation_reason(self, held: list, blocked: list,
                           conflicts: Callable[[Any], bool]) -> tuple[str | None, float | None]:
        """Why a request's conflicting locks are to be revoked, and the age
        of the oldest conflicting holder (GlusterFS's __*_prune_stale): a
        holder older than revocation-secs, or revocation-max-blocked waiters."""
        now = trio.current_time()
        for lock in held:
            if conflicts(lock) and now - lock.granted_at > self.opts.revocation_secs:
                return "age", now - lock.granted_at
        max_blocked = self.opts.revocation_max_blocked
        if max_blocked and len(blocked) >= max_blocked:
            return "max blocked", None
        return None, None

    def _revocation_kind(self) -> int:
        return CLRLK_ALL if self.opts.revocation_clear_all else CLRLK_GRANTED


    async def getxattr(self, loc, name, xdata=None):
        if name and name.startswith(CLRLK_CMD):
            gfid = await self._gfid_of(loc)
            summary = await self._clear_locks(name, gfid, Loc(gfid=gfid), None)
            return DictReply({name: summary})
        return await self.first_child.getxattr(loc, name, xdata)

    async def fgetxattr(self, fd, name, xdata=None):
        if name and (name.startswith(CLRLK_CMD) or name.startswith(INTRLK_CMD)):
            gfid = fd_gfid(fd)
            interrupt = None
            if name.startswith(INTRLK_CMD):
                who = fops.caller.get()
                if who.client is None or who.pid < 0:
                    raise FopError(errno.EINVAL, "lock interrupts come from clients")
                interrupt = (client_uid(who.client), who.pid)
            summary = await self._clear_locks(name, gfid, Loc(gfid=gfid), interrupt)
            return DictReply({name: summary})
        return await self.first_child.fgetxattr(fd, name, xdata)

    async def _clear_locks(self, name, gfid, loc, interrupt) -> str:
        """pl_getxattr_clrlk: clear the locks `name` describes; the summary
        names the brick as GlusterFS's format_brickname makes it."""
        type_name, kind, opts = _parse_clrlk(name)
        pinode = self._inodes.get(gfid)
        blocked = granted = 0
        if pinode is not None:
            try:
                if type_name == "posix":
                    blocked, granted = self._clear_posixlks(pinode, kind, opts, interrupt)
                else:
                    for dom in list(pinode.domains.values()):
                        if type_name == "inode":
                            b, g = self._clear_inodelks(pinode, dom, kind, opts)
                        else:
                            b, g = self._clear_entrylks(dom, kind, opts)
                        blocked, granted = blocked + b, granted + g
                    self._wake_removals(pinode)
            finally:
                self._tidy(pinode)
        if not blocked and not granted:
            return "No locks cleared."
        brick = self.name
        try:
            pathinfo = (await self.first_child.getxattr(loc, PATHINFO_KEY, None)).dict
            brick = _format_brickname(str(pathinfo[PATHINFO_KEY])) or brick
        except (FopError, KeyError):
            self.log.warning("Couldn't get brickname")
        return f"{brick}: {type_name} blocked locks={blocked} granted locks={granted}"

    def _clear_inodelks(self, pinode, dom, kind, opts) -> tuple[int, int]:
        """clrlk_clear_inodelk; `opts` is "whence,start-len" or None."""
        match = _range_matcher(opts)
        blocked = granted = 0
        if kind & CLRLK_BLOCKED:
            for lock in [lk for lk in dom.blocked_inodelks if match(lk.flock)]:
                dom.blocked_inodelks.remove(lock)
                self._fail(lock, errno.EAGAIN)
                blocked += 1
        if kind & CLRLK_GRANTED:
            before = len(dom.inodelks)
            dom.inodelks = self._without(dom.inodelks, lambda lk: match(lk.flock))
            granted = before - len(dom.inodelks)
        self._grant_blocked_inodelks(pinode, dom)
        return blocked, granted

    def _clear_entrylks(self, dom, kind, opts) -> tuple[int, int]:
        """clrlk_clear_entrylk; `opts` is a basename or None (every lock)."""
        def match(lock):
            return opts is None or lock.basename == opts
        blocked = granted = 0
        if kind & CLRLK_BLOCKED:
            for lock in [lk for lk in dom.blocked_entrylks if match(lk)]:
                dom.blocked_entrylks.remove(lock)
                self._fail(lock, errno.EAGAIN)
                blocked += 1
        if kind & CLRLK_GRANTED:
            before = len(dom.entrylks)
            dom.entrylks = self._without(dom.entrylks, match)
            granted = before - len(dom.entrylks)
            self._grant_blocked_entrylks(dom)
        return blocked, granted

    def _clear_posixlks(self, pinode, kind, opts, interrupt) -> tuple[int, int]:
        """clrlk_clear_posixlk; an interrupt clears only the caller's own
        waiters (same client uid and pid), failing them with EINTR."""
        range_match = _range_matcher(opts)

        def match(lock):
            if not range_match(Flock(whence=lock.whence, start=lock.start,
                                     len=lock.to_flock().len)):
                return False
            return interrupt is None or (lock.client_uid, lock.pid) == interrupt
        blocked = granted = 0
        if kind & CLRLK_BLOCKED:
            for lock in [lk for lk in pinode.blocked_posixlks if match(lk)]:
                pinode.blocked_posixlks.remove(lock)
                self._fail(lock, errno.EINTR)
                blocked += 1
        if kind & CLRLK_GRANTED:
            before = len(pinode.posixlks)
            pinode.posixlks = self._without(pinode.posixlks, match)
            granted = before - len(pinode.posixlks)
        self._grant_blocked_posixlks(pinode)
        return blocked, granted

    # ======================================================================
    # A departed client

    async def client_disconnected(self, client: Any) -> None:
        """Drop everything `client` holds and fail everything it waits for
        (pl_client_disconnect_cbk, plus the POSIX locks of its fds)."""
        if client is not None:
            with contextlib.suppress(TypeError):  # an object a WeakSet cannot hold
                self._departed.add(client)
        released = 0
        for pinode in list(self._inodes.values()):
            for dom in list(pinode.domains.values()):
                for queue in (dom.blocked_inodelks, dom.blocked_entrylks):
                    for lock in [lk for lk in queue if lk.client is client]:
                        queue.remove(lock)
                        self._fail(lock, errno.EAGAIN)
                        released += 1
                before = len(dom.inodelks) + len(dom.entrylks)
                dom.inodelks = self._without(dom.inodelks, lambda lk: lk.client is client)
                dom.entrylks = self._without(dom.entrylks, lambda lk: lk.client is client)
                released += before - len(dom.inodelks) - len(dom.entrylks)
                self._grant_blocked_inodelks(pinode, dom)
                self._grant_blocked_entrylks(dom)
            for lock in [lk for lk in pinode.blocked_posixlks if lk.client is client]:
                pinode.blocked_posixlks.remove(lock)
                self._fail(lock, errno.EAGAIN)
                released += 1
            before = len(pinode.posixlks)
            pinode.posixlks = self._without(
                pinode.posixlks, lambda lk: lk.client is client and lk.fd is not None)
            released += before - len(pinode.posixlks)
            self._grant_blocked_posixlks(pinode)
            self._wake_removals(pinode)
            self._tidy(pinode)
        if released:
            self.log.warning("released %d locks of disconnected client %r", released, client)


def _parse_clrlk(name: str) -> tuple[str, int, str | None]:
    """clrlk_parse_args: "<prefix>.t<type>.k<kind>[.<opts>]"; the options
    end at the first "/".  Anything else is EINVAL."""
    for prefix in (CLRLK_CMD + ".", INTRLK_CMD + "."):
        if name.startswith(prefix):
            rest = name[len(prefix):].split(None, 1)[0] if name[len(prefix):].strip() else ""
            break
    else:
        raise FopError(errno.EINVAL, f"malformed clear-locks request {name!r}")
    parts = rest.split(".", 2)
    if len(parts) < 2 or not parts[0].startswith("t") or not parts[1].startswith("k") \
            or parts[0][1:] not in CLRLK_TYPES or parts[1][1:] not in _CLRLK_KINDS:
        raise FopError(errno.EINVAL, f"malformed clear-locks request {name!r}")
    opts = parts[2].split("/", 1)[0] if len(parts) == 3 else None
    return parts[0][1:], _CLRLK_KINDS[parts[1][1:]], opts or None


def _range_matcher(opts: str | None) -> Callable[[Flock], bool]:
    """clrlk_get_lock_range: "whence,start-len" selects the locks asked for
    with exactly that range; no range selects all."""
    if opts is None:
        return lambda flock: True
    try:
        whence_text, span = opts.split(",", 1)
        start_text, len_text = span.split("-", 1)
        whence, start, length = int(whence_text), int(start_text), int(len_text)
    except ValueError:
        raise FopError(errno.EINVAL, f"bad lock range {opts!r}") from None
    return lambda flock: (flock.whence, flock.start, flock.len) == (whence, start, length)


def _format_brickname(pathinfo: str) -> str | None:
    """format_brickname: "<POSIX(/b):host:/b/f>" -> "host:/b/f>" (up to the
    first ".", as GlusterFS cuts it)."""
    parts = pathinfo.split(":", 2)
    if len(parts) < 3 or not parts[1]:
        return None
    return f"{parts[1]}:{parts[2].split('.', 1)[0]}"
