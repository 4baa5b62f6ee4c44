"""Readability and reads (afr-read-txn.c, and afr-common.c's inode refresh
and afr_replies_interpret): which children may serve a read of an inode,
and the read transaction that picks one and fails over.
"""

from __future__ import annotations

import errno
import os
import stat as _stat
from typing import Awaitable, Callable, Sequence

import trio

from glusterpy.fops import GFID, Fd, FopError, Iatt, Loc
from glusterpy.keys import INDEX_COUNT_KEY, INODELK_COUNT, INODELK_DOM_COUNT, LINK_COUNT

from xlators.cluster.replicate import changelog as cl
from xlators.cluster.replicate.changelog import DATA_TXN, METADATA_TXN
from xlators.cluster.replicate.state import InodeCtx, is_ok


class AfrReadTxn:
    """The inode table, readability and the read transaction."""

    # ======================================================================
    # Readability and the read child

    def _ctx(self, gfid: GFID) -> InodeCtx:
        """afr's inode context: its slot in the graph's inode table."""
        ctx = self.itable.ctx(self, gfid)
        if ctx is None:
            ctx = InodeCtx(gfid, self.child_count)
            self.itable.set_ctx(self, gfid, ctx)
        return ctx

    def inode_busy(self, ctx: InodeCtx) -> bool:
        # a lock held or being taken, a delayed post-op, a refresh running:
        # the context must outlive the table's LRU bound until it is done
        return ctx.busy

    def _interpret(self, iatts: Sequence[Iatt | None], xdatas: Sequence[dict | None],
                   start_heal: bool = False) -> InodeCtx | None:
        """afr_replies_interpret: record the readable children of the inode
        the replies describe; start a background heal when asked and a
        child that is up is accused."""
        first = next((ia for ia in iatts if ia is not None), None)
        if first is None:
            return None
        under_txn = any(xd and xd.get(INODELK_COUNT) for xd in xdatas if xd)
        r = cl.readables(iatts, xdatas, self.pending_keys, self.arbiter,
                         accuse_small_files=not under_txn)
        ctx = self._ctx(first.gfid)
        ctx.mode = first.mode
        ctx.data, ctx.metadata = r.data, r.metadata
        # a write that failed on a child whose post-op has not accused it on
        # disk yet (transaction.py's _drop_failed_readers): the changelogs
        # show no more than a dirty mark, the failure seen here says more
        for slot, readable in ((cl.DATA, ctx.data), (cl.METADATA, ctx.metadata)):
            failing = ctx.failing[slot]
            if any(failing) and any(readable[i] and not failing[i]
                                    for i in range(self.child_count)):
                for i in range(self.child_count):
                    if failing[i]:
                        readable[i] = False
        ctx.generation = self.event_generation
        if r.accused:
            ctx.need_refresh = True
            if self.selfheal_enabled and start_heal and any(
                    self.child_up[i] and not (r.data[i] and r.metadata[i])
                    for i in range(self.child_count) if i != self.arbiter):
                self._queue_heal(first.gfid)
        return ctx

    def _read_subvol_decide(self, ctx: InodeCtx | None, iatt: Iatt) -> int:
        """afr_read_subvol_decide: a child readable for data and metadata."""
        if ctx is None or ctx.data is None:
            return -1
        both = [d and m for d, m in zip(ctx.data, ctx.metadata)]
        if not any(both):
            return -1
        return self._select_read(both, iatt.gfid, iatt.mode)

    def _select_read(self, readable: Sequence[bool], gfid: GFID, mode: int) -> int:
        """afr_read_subvol_select_by_policy."""
        if self.read_child >= 0 and readable[self.read_child]:
            return self.read_child
        local = getattr(self, "_local_read_child", -1)
        if self.opts.choose_local and local >= 0 and readable[local]:
            return local
        child = self._hash_child(readable, gfid, mode)
        if child >= 0 and readable[child]:
            return child
        return next((i for i, r in enumerate(readable) if r), -1)

    def _hash_child(self, readable: Sequence[bool], gfid: GFID, mode: int) -> int:
        """afr_hash_child for the six read-hash-modes."""
        mode_ = self.opts.read_hash_mode
        n = self.child_count
        candidates = [i for i in range(n) if readable[i] and i != self.arbiter]
        if mode_ == 1:
            return cl.super_fast_hash(bytes(gfid)) % n
        if mode_ == 2:
            raw = bytearray(bytes(gfid))
            if not _stat.S_ISDIR(mode):
                pid = os.getpid().to_bytes(4, "little")
                for k in range(4):
                    raw[k] ^= pid[k]
            return cl.super_fast_hash(bytes(raw)) % n
        if mode_ == 3:
            return min(candidates, key=lambda i: self.pending_reads[i], default=-1)
        if mode_ == 4:
            known = [i for i in candidates if self.latency[i] >= 0]
            return min(known, key=lambda i: self.latency[i], default=-1)
        if mode_ == 5:
            known = [i for i in candidates if self.latency[i] >= 0]
            return min(known, key=lambda i: (self.pending_reads[i] + 1) * self.latency[i],
                       default=-1)
        return -1

    async def _refresh(self, gfid: GFID, fd: Fd | None = None, loc: Loc | None = None,
                       start_heal: bool = True) -> InodeCtx:
        """afr_inode_refresh: look the inode up on every child (fstat where
        `fd` is open) with the changelogs and recompute its readability."""
        ctx = self._ctx(gfid)
        if ctx.refreshing is not None:
            await ctx.refreshing.wait()
            if ctx.generation == self.event_generation and ctx.data is not None:
                return ctx
        ctx.refreshing = done = trio.Event()
        try:
            up = list(self.child_up)
            req = self.xattr_req({})
            req[LINK_COUNT] = INDEX_COUNT_KEY
            req[INODELK_DOM_COUNT] = self.domain
            fdctx = fd.ctx.get(self) if fd is not None else None
            if fd is not None and fdctx is not None:
                await self._fix_open(fd)
                targets = [i for i in range(self.child_count) if up[i] and fdctx.opened_on[i]]
                if not targets:
                    raise FopError(errno.EBADFD if any(up) else errno.ENOTCONN)
                replies = await self.fan(targets, lambda i: self.children[i].fstat(fd, req))
            else:
                targets = [i for i in range(self.child_count) if up[i]]
                if not targets:
                    raise FopError(errno.ENOTCONN)
                where = Loc(gfid=gfid, path=loc.path if loc is not None else None)
                replies = await self.fan(targets, lambda i: self.children[i].lookup(where, req))
            success = [is_ok(r) for r in replies]
            if not any(success):
                raise FopError(self._final_errno(replies) or errno.ENOTCONN)
            if self.quorum_count and not cl.has_quorum(success, self.quorum_count):
                raise FopError(self._final_errno(replies) or errno.ENOTCONN)
            self._interpret([r.iatt if is_ok(r) else None for r in replies],
                            [r.xdata if is_ok(r) else None for r in replies],
                            start_heal=start_heal)
            ctx.need_refresh = False
            return ctx
        finally:
            ctx.refreshing = None
            done.set()

    def _readable_for(self, ctx: InodeCtx, type_: str, op: str = "") -> list[bool]:
        """afr_inode_get_readable: EIO for a split-brain file (no child
        readable for data or for metadata), for a directory only when its
        metadata is split and metadata is wanted."""
        data = ctx.data or [False] * self.child_count
        metadata = ctx.metadata or [False] * self.child_count
        if _stat.S_ISDIR(ctx.mode):
            if (type_ == METADATA_TXN or op in ("stat", "fstat")) and not any(metadata):
                raise self._split_brain(ctx)
        elif not any(data) or not any(metadata):
            raise self._split_brain(ctx)
        if type_ == METADATA_TXN:
            return list(metadata)
        return list(data) if any(data) else list(self.child_up)

    def _read_candidates(self, ctx: InodeCtx, readable: Sequence[bool]) -> list[bool]:
        """The children a read may go to: readable for the transaction's
        type, up, not the arbiter - and, where one such child is readable
        for data and metadata both, only those (afr_read_txn intersects the
        two maps: a stat answers size and mode at once, and a child that
        just failed a setattr or a write must not answer either)."""
        cands = [r and self.child_up[i] and i != self.arbiter for i, r in enumerate(readable)]
        if ctx.data is not None and ctx.metadata is not None:
            both = [c and ctx.data[i] and ctx.metadata[i] for i, c in enumerate(cands)]
            if any(both):
                return both
        return cands

    def _split_brain(self, ctx: InodeCtx) -> FopError:
        self.log.error("Failing operation on gfid %s: split-brain observed.", ctx.gfid)
        return FopError(errno.EIO, f"{ctx.gfid} is in split-brain")

    async def _read_txn(self, gfid: GFID, readfn: Callable[[int], Awaitable], *,
                        type_: str = DATA_TXN, op: str = "", fd: Fd | None = None,
                        loc: Loc | None = None):
        """afr_read_txn: read from the chosen child; refresh once and try
        the other readable children when it fails."""
        if self.quorum_count and not cl.has_quorum(self.child_up, self.quorum_count):
            raise FopError(errno.ENOTCONN, "quorum is not met")
        ctx = self._ctx(gfid)
        attempted = [not u for u in self.child_up]
        refreshed = False
        if ctx.data is None or ctx.need_refresh or ctx.generation != self.event_generation:
            ctx = await self._refresh(gfid, fd, loc)
            refreshed = True
        try:
            readable = self._readable_for(ctx, type_, op)
        except FopError as e:
            # afr_split_brain_read_subvol_get: replica.split-brain-choice
            # lets a split-brain file be read from the chosen copy
            choice = ctx.spb_choice
            if e.errno == errno.EIO and choice >= 0 and self.child_up[choice]:
                return await readfn(choice)
            raise
        readable = self._read_candidates(ctx, readable)
        sub = self._select_read(readable, gfid, ctx.mode)
        if sub < 0 and not refreshed:
            ctx = await self._refresh(gfid, fd, loc)
            refreshed = True
            readable = self._read_candidates(ctx, self._readable_for(ctx, type_, op))
            sub = self._select_read(readable, gfid, ctx.mode)
        if sub < 0:
            raise FopError(errno.EIO if any(self.child_up) else errno.ENOTCONN,
                           f"no readable subvolume for {gfid}")
        last_error: FopError | None = None
        while sub >= 0:
            attempted[sub] = True
            self.pending_reads[sub] += 1
            try:
                return await readfn(sub)
            except FopError as e:
                last_error = e
            finally:
                self.pending_reads[sub] -= 1
            if not refreshed:
                refreshed = True
                try:
                    ctx = await self._refresh(gfid, fd, loc)
                    readable = self._read_candidates(ctx, self._readable_for(ctx, type_, op))
                except FopError:
                    pass
                sub = self._select_read(readable, gfid, ctx.mode)
                if sub >= 0 and not attempted[sub]:
                    continue
            sub = next((i for i in range(self.child_count)
                        if readable[i] and not attempted[i]), -1)
        raise last_error
