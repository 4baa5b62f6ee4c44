"""The translator's self-heal entry points: healing one inode or name, the
crawls and inspections the self-heal daemon and ``volume heal`` use, the
split-brain virtual xattr, and background heals (afr_throttled_selfheal).
"""

from __future__ import annotations

import errno
import os

from glusterpy.fops import Caller, ClientPid, DictReply, FopError, GFID

from xlators.cluster.replicate import crawl, heal_inode, heal_name as name_heal
from xlators.cluster.replicate.heal_common import (HEAL_OP_BIGGER_FILE, HEAL_OP_LATEST_MTIME,
                                                   HEAL_OP_SOURCE_BRICK, CrawlStats, Outcome)
from xlators.cluster.replicate.state import as_caller


class AfrHeal:
    """Self-heal as methods of the translator."""

    # ======================================================================
    # Self-heal: the building blocks for the self-heal daemon and the CLI
    # (implemented in heal_inode.py, heal_name.py and crawl.py)

    async def heal_gfid(self, gfid: GFID, *, data: bool = True, metadata: bool = True,
                        entry: bool = True) -> Outcome:
        """Heal one inode (afr_selfheal): HEALED, NO_HEAL_NEEDED or CLEAN;
        FopError(EIO) for a split-brain, ENOTCONN when a child is missing."""
        with as_caller(Caller(pid=ClientPid.SELF_HEALD, lk_owner=os.urandom(8))):
            return await heal_inode.heal_gfid(self, gfid, data=data, metadata=metadata,
                                              entry=entry)

    async def heal_name(self, pargfid: GFID, name: str) -> None:
        """Make one name agree on every child (afr_selfheal_name)."""
        with as_caller(Caller(pid=ClientPid.SELF_HEALD, lk_owner=os.urandom(8))):
            await name_heal.heal_name(self, pargfid, name)

    async def pending_entries(self, child: int, kind: str = "xattrop") -> list[GFID]:
        """What child `child`'s heal index lists (kind: xattrop, dirty,
        entry-changes)."""
        return await crawl.pending_entries(self, child, kind)

    async def heal_index(self, child: int) -> CrawlStats:
        """One index crawl of child `child` (what the self-heal daemon does
        every heal-timeout seconds and on ``volume heal``)."""
        return await crawl.heal_index(self, child)

    async def heal_full(self, child: int | None = None) -> CrawlStats:
        """A full crawl (``volume heal NAME full``)."""
        return await crawl.heal_full(self, child)

    async def heal_info(self, gfid: GFID) -> str:
        """GlusterFS's heal-info status of one inode: "heal", "no-heal",
        "split-brain", "possibly-healing" (with "-pending")."""
        return await heal_inode.heal_info(self, gfid)

    async def heal_info_entries(self, child: int, split_brain_only: bool = False
                                ) -> list[tuple[GFID, str, str]]:
        """``volume heal NAME info [split-brain]`` for one brick: (gfid,
        path, status) of every indexed inode that still needs a heal."""
        return await crawl.heal_info_entries(self, child, split_brain_only)

    async def split_brain_status(self, gfid: GFID) -> str:
        """``replica.split-brain-status`` text."""
        return await heal_inode.split_brain_status(self, gfid)

    async def resolve_split_brain(self, gfid: GFID, policy: str,
                                  source_brick: str | None = None) -> str:
        """Resolve a split-brain by "bigger-file", "latest-mtime" or
        "source-brick" (the child's name); returns "" or GlusterFS's
        failure message."""
        return await heal_inode.resolve_split_brain(self, gfid, policy, source_brick)

    async def _heal_sbrain_xattr(self, gfid: GFID, xdata: dict) -> DictReply:
        """getxattr ``glusterfs.heal-sbrain`` with xdata heal-op (10 bigger
        file, 11 source brick + child-name, 14 latest mtime), as glfsheal."""
        op = xdata.get("heal-op")
        policy = {HEAL_OP_BIGGER_FILE: "bigger-file",
                  HEAL_OP_SOURCE_BRICK: "source-brick",
                  HEAL_OP_LATEST_MTIME: "latest-mtime"}.get(op)
        if policy is None:
            raise FopError(errno.EINVAL, f"unknown heal-op {op!r}")
        child = xdata.get("child-name")
        if isinstance(child, bytes):
            child = child.rstrip(b"\0").decode()
        msg = await self.resolve_split_brain(gfid, policy, child)
        return DictReply({"sh-fail-msg": msg} if msg else {})

    def _queue_heal(self, gfid: GFID) -> None:
        """afr_throttled_selfheal: a background heal, at most
        background-self-heal-count at once and heal-wait-queue-length
        waiting; more are dropped (the self-heal daemon will find them)."""
        if self.nursery is None or gfid in self._heal_queued:
            return
        limit = self.opts.background_self_heal_count
        if limit <= 0:
            return
        if len(self._heal_queue) + self._heals_running >= \
                limit + self.opts.heal_wait_queue_length:
            self.log.debug("Max number of heals are pending, background self-heal rejected.")
            return
        self._heal_queue.append(gfid)
        self._heal_queued.add(gfid)
        if self._heals_running < limit:
            self._heals_running += 1
            self.spawn(self._background_healer, name=f"{self.name}:self-heal")

    async def _background_healer(self) -> None:
        try:
            while self._heal_queue:
                gfid = self._heal_queue.popleft()
                self._heal_queued.discard(gfid)
                try:
                    with as_caller(Caller(pid=ClientPid.SELF_HEALD, lk_owner=os.urandom(8))):
                        await heal_inode.heal_gfid(self, gfid, data=self.data_self_heal,
                                                   metadata=self.opts.metadata_self_heal,
                                                   entry=self.opts.entry_self_heal)
                except FopError as e:
                    self.log.debug("background heal of %s: %s", gfid, e)
                ctx = self.itable.ctx(self, gfid)
                if ctx is not None:
                    ctx.need_refresh = True
        finally:
            self._heals_running -= 1
