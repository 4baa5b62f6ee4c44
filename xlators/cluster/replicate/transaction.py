"""The write transaction (afr-transaction.c): quorum, lock, changelog pre-op,
the fop on every locked child, post-op and unlock, with eager locking and
the delayed post-op.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Awaitable, Callable

import trio

from glusterpy import fops
from glusterpy.fops import Fd, FopError, Loc, XattropType
from glusterpy.keys import ENTRY_IN_KEY, ENTRY_OUT_KEY, INTERNAL_FOP

from xlators.cluster.replicate import changelog as cl
from xlators.cluster.replicate.changelog import DATA, DATA_TXN, ENTRY_TXN, METADATA_TXN, RENAME_TXN
from xlators.cluster.replicate.state import (BEHIND_MAX, CLEANUP_TIMEOUT, DELAY_OPS, EagerLock,
                                            Txn, is_ok)


class AfrTransaction:
    """afr_transaction and its changelog."""

    # ======================================================================
    # The transaction engine (afr-transaction.c; its locks are lk.py's)

    def _new_txn(self, type_: str, op: str, **kw) -> Txn:
        return Txn(type=type_, op=op, n=self.child_count, caller=fops.caller.get(),
                    up=list(self.child_up), generation=self.event_generation, **kw)

    async def _transaction(self, txn: Txn, wind: Callable[[int], Awaitable],
                           finalize: Callable[[Txn], Awaitable]):
        """afr_transaction: quorum, lock, pre-op, the fop on every locked
        child, `finalize` (which computes the fop's answer from the replies
        or raises its error), post-op, unlock."""
        if self.quorum_count and not cl.has_quorum(txn.up, self.quorum_count):
            raise FopError(errno.ENOTCONN, "quorum is not met")
        if not any(txn.up):
            raise FopError(errno.ENOTCONN, "no subvolume is up")
        if txn.type == METADATA_TXN and txn.ctx is not None:
            ctx = txn.ctx
            if ctx.data is None or ctx.need_refresh or ctx.generation != self.event_generation:
                await self._refresh(txn.gfid, txn.fd, txn.loc)
            self._readable_for(ctx, METADATA_TXN)
        eager = bool(self.opts.eager_lock) and txn.type in (DATA_TXN, METADATA_TXN) and \
            txn.ctx is not None
        if eager:
            await self._eager_begin(txn)
        else:
            txn.owner = os.urandom(8)
            await self._lock(txn)
            try:
                await self._pre_op(txn)
            except BaseException:
                await self._cleanup(self._unlock(txn))
                raise
        result: Any = None
        error: BaseException | None = None
        try:
            await self._perform_fop(txn, wind)
            try:
                result = await finalize(txn)
            except FopError as e:
                error = e
        except BaseException as e:
            # cancelled in the middle: what did not answer counts as failed
            for i in range(self.child_count):
                if txn.pre_op[i] and txn.replies[i] is None:
                    txn.failed[i] = True
            error = e
        sb_errno = self._drop_failed_readers(txn)
        if sb_errno is not None and error is None:
            error = FopError(sb_errno, f"{txn.op} failed on the only good copy of {txn.gfid}")
        txn.op_ok = error is None
        if error is not None and isinstance(error, FopError):
            txn.op_errno = error.errno
        if eager:
            await self._cleanup(self._eager_end(txn))
        elif txn.op_ok and self._only_unlock_left(txn) and self._behind(self._unlock, txn):
            pass
        else:
            async def done():
                await self._post_op(txn, final=True)
                await self._unlock(txn)
            await self._cleanup(done())
        if not txn.op_ok:
            if error is not None:
                raise error
            raise FopError(txn.op_errno or errno.EIO)
        return result

    def _drop_failed_readers(self, txn: Txn) -> int | None:
        """afr_set_in_flight_sb_status: as soon as the replies of an inode
        write are in, the children it failed on stop being read sources of
        the inode (data or metadata, as the transaction is), in memory, so
        the next read of this client goes to a copy that has the change -
        the post-op's accusation may not be on disk yet, and a refresh
        meanwhile (`_interpret`) keeps them out too (`InodeCtx.failing`,
        until `_post_op` ends).  Only when the fop succeeded somewhere: the
        same error everywhere, or no answer at all, leaves no copy staler
        than another.

        When every copy that was readable failed and only copies already
        stale took the change, the change is on the wrong copies: the
        transaction fails with the good copy's errno, accuses nobody, and
        the readable set stays as it was (GlusterFS's in-flight
        split-brain; GlusterFS checks it only for a single readable copy,
        here any number, so stale copies never become the only readable
        ones).  Returns that errno, or None."""
        ctx = txn.ctx
        if txn.type not in (DATA_TXN, METADATA_TXN) or ctx is None:
            return None
        n = self.child_count
        failed = [txn.failed[i] for i in range(n)]
        if not any(failed) or not any(txn.pre_op[i] and not failed[i] for i in range(n)):
            return None
        current = ctx.data if txn.type == DATA_TXN else ctx.metadata
        base = txn.write_subvol if txn.type == DATA_TXN and txn.write_subvol is not None \
            else current
        if base is not None and any(base) and \
                not any(base[i] and not failed[i] for i in range(n)):
            good = next(i for i in range(n) if base[i])
            reply = txn.replies[good]
            self.log.error("%s: %s failed on every good copy and succeeded only on stale "
                           "ones; failing it", txn.gfid, txn.op)
            return reply.errno if isinstance(reply, FopError) else errno.EIO
        slot = txn.slot
        for i in range(n):
            if failed[i]:
                ctx.failing[slot][i] += 1
                txn.failing.append(i)
        if current is not None:
            for i in range(n):
                if failed[i] and current[i]:
                    current[i] = False
                    ctx.need_refresh = True
        if txn.type == DATA_TXN and ctx.write_subvol is not None:
            for i in range(n):
                if failed[i]:
                    ctx.write_subvol[i] = False
        return None

    def _forget_failing(self, txn: Txn) -> None:
        """The post-op is over: from now on the changelogs on disk say who
        is stale (see `_drop_failed_readers`)."""
        if txn.failing and txn.ctx is not None:
            counts = txn.ctx.failing[txn.slot]
            for i in txn.failing:
                counts[i] -= 1
            txn.failing = []

    def _only_unlock_left(self, txn: Txn) -> bool:
        """An entry transaction that succeeded on every child without a
        pre-op (optimistic changelog, everything locked) has no post-op to
        do (`_post_op_do` returns at once): only its unlock is left, and
        its answer is final - what __afr_dir_write_cbk unwinds before the
        post-op and unlock when afr_txn_nothing_failed."""
        return txn.type in (ENTRY_TXN, RENAME_TXN) and not txn.dirtied and \
            all(txn.locked) and txn.nothing_failed()

    def _behind(self, fn: Callable[..., Awaitable], *args) -> bool:
        """Run a transaction's tail - an unlock, a released fd's delayed
        post-op - behind its caller, as GlusterFS's AFR does (it unwinds a
        fop that failed nowhere before its unlock, and nobody waits for a
        release): the caller's answer does not depend on it.  False when
        BEHIND_MAX tails already run (or the graph is not running): the
        caller then runs it itself, so they stay bounded."""
        if self.nursery is None or self._behind_count >= BEHIND_MAX:
            return False
        if self._behind_count == 0:
            self._behind_idle = trio.Event()
        self._behind_count += 1
        self.spawn(self._run_behind, fn, args, name=f"{self.name}:behind")
        return True

    async def _run_behind(self, fn: Callable[..., Awaitable], args: tuple) -> None:
        try:
            await self._cleanup(fn(*args))
        except Exception:
            # nobody is waiting for the answer: a tail that went wrong is
            # logged, never allowed to take the graph's nursery down
            self.log.exception("%s behind its caller failed", fn.__name__)
        finally:
            self._behind_count -= 1
            if self._behind_count == 0 and self._behind_idle is not None:
                self._behind_idle.set()

    async def _behind_drained(self) -> None:
        """Wait for the tails still running (fini, before the children go)."""
        if self._behind_count and self._behind_idle is not None:
            await self._behind_idle.wait()

    async def _cleanup(self, coro) -> None:
        """Unlock and post-op happen even when the caller is cancelled
        (bounded, so a dead brick cannot hang the caller forever)."""
        with trio.CancelScope(shield=True, deadline=trio.current_time() + CLEANUP_TIMEOUT):
            await coro

    # -- eager locking ----------------------------------------------------------

    async def _eager_begin(self, txn: Txn) -> None:
        """afr_transaction_start + __afr_eager_lock_handle."""
        lock = txn.eager = txn.ctx.locks[txn.slot]
        txn.owner = lock.owner
        while True:
            if lock.acquired and lock.generation != self.event_generation:
                lock.release = True
                if lock.delayed is not None and not lock.owners:
                    await self._cleanup(self._fire_delayed(lock))
                    continue
            if lock.release:
                await lock.changed.wait()
                continue
            if lock.delayed is not None:
                prev, lock.delayed = lock.delayed, None
                prev.delay_scope.cancel()
                txn.takeover = prev
                break
            if lock.owners or lock.acquiring:
                if not lock.acquired or any(txn.overlaps(o) for o in lock.owners):
                    await lock.changed.wait()
                    continue
                break
            if lock.acquired:
                break
            # nothing held: this transaction takes the lock for everyone
            lock.acquiring = True
            lock.owners.append(txn)
            try:
                await self._lock(txn)
            except BaseException:
                lock.acquiring = False
                lock.owners.remove(txn)
                lock.wake()
                raise
            lock.locked = list(txn.locked)
            lock.held = txn.held
            lock.generation = txn.generation
            try:
                await self._pre_op(txn)
            except BaseException:
                # afr_handle_lock_acquire_failure: the lock goes, waiters retry
                lock.acquiring = False
                lock.owners.remove(txn)
                await self._cleanup(self._unlock(txn))
                lock.locked = None
                lock.wake()
                raise
            lock.acquiring = False
            lock.acquired = True
            lock.wake()
            return
        # sharing a lock that is held
        txn.locked = list(lock.locked)
        txn.held = lock.held
        lock.owners.append(txn)
        try:
            await self._pre_op(txn)
        except BaseException:
            lock.owners.remove(txn)
            lock.post_op.append(txn)
            lock.release = True
            await self._cleanup(self._eager_unlock(txn))
            raise
        finally:
            if txn.takeover is not None:
                prev, txn.takeover = txn.takeover, None
                await self._cleanup(self._eager_finish(prev, final=False))

    async def _eager_end(self, txn: Txn) -> None:
        """afr_changelog_post_op with an eager lock: delay the post-op of a
        write when nobody else uses the lock, otherwise do it now."""
        lock = txn.eager
        lock.owners.remove(txn)
        lock.post_op.append(txn)
        delay = self.opts.post_op_delay_secs
        delayed = False
        if not txn.nothing_failed() or not txn.op_ok:
            lock.release = True
        elif self._conflicting_ops_waiting(txn, lock):
            lock.release = True
        elif lock.owners or lock.release:
            pass
        elif delay and not txn.disable_delay and txn.op in DELAY_OPS:
            delayed = True
        if not delayed and not lock.owners:
            lock.release = True
        lock.wake()
        if delayed:
            lock.delayed = txn
            txn.delay_scope = trio.CancelScope(deadline=trio.current_time() + delay)
            self.spawn(self._delay_timer, txn, name=f"{self.name}:delayed-post-op")
            return
        await self._eager_finish(txn, final=lock.release)

    def _conflicting_ops_waiting(self, txn: Txn, lock: EagerLock) -> bool:
        """afr_are_conflicting_ops_waiting: another client's lock or open fd."""
        if txn.type == METADATA_TXN:
            return txn.ctx.open_fd_count > 1
        return lock.num_inodelks > 1

    async def _delay_timer(self, txn: Txn) -> None:
        lock = txn.eager
        with txn.delay_scope:
            await trio.sleep_forever()
        if lock.delayed is not txn:
            return      # taken over by the next write, or finished by a flush
        lock.delayed = None
        if not lock.owners:
            lock.release = True
        await self._cleanup(self._eager_finish(txn, final=lock.release))

    async def _fire_delayed(self, lock: EagerLock, unlock_behind: bool = False) -> None:
        """End a delayed post-op now (flush, release, contention, a child's
        state change, shutdown)."""
        txn = lock.delayed
        if txn is None:
            return
        lock.delayed = None
        txn.delay_scope.cancel()
        lock.release = True
        await self._eager_finish(txn, final=True, unlock_behind=unlock_behind)

    def _fd_delayed_accuses(self, fd: Fd) -> bool:
        """A delayed post-op waits on this fd and will accuse a copy: its
        transaction missed a child (down, or failed there).  Such a post-op
        stays in front of the release's answer, so whoever is told the fd
        is closed finds the accusation on disk; one that only takes the
        dirty mark off every copy may land after."""
        ctx = self.itable.ctx(self, fd.gfid) if fd.gfid is not None else None
        if ctx is None:
            return False
        return any(not all(t.pre_op) or not t.nothing_failed()
                   for t in (lock.delayed for lock in ctx.locks.values())
                   if t is not None and t.fd is fd)

    async def _wake_fd_delayed(self, fd: Fd, unlock_behind: bool = False) -> None:
        """afr_delayed_changelog_wake_resume for flush and release
        (`unlock_behind`: see `_eager_finish`)."""
        ctx = self.itable.ctx(self, fd.gfid) if fd.gfid is not None else None
        if ctx is None:
            return
        for lock in ctx.locks.values():
            if lock.delayed is not None and lock.delayed.fd is fd:
                await self._cleanup(self._fire_delayed(lock, unlock_behind))

    async def _flush_all_delayed(self) -> None:
        for _, ctx in self.itable.contexts(self):
            for lock in ctx.locks.values():
                if lock.delayed is not None:
                    await self._fire_delayed(lock)

    async def _eager_finish(self, txn: Txn, final: bool, unlock_behind: bool = False) -> None:
        """The post-op, then the unlock - which, with `unlock_behind` (a
        flush: GlusterFS's afr_flush resumes once the post-op is done and
        winds the flush beside the unlock), goes on behind the caller.
        It names the fd the lock was taken on (FINODELK, as GlusterFS's):
        that fd's release waits for it (FdCtx.unlocking)."""
        await self._post_op(txn, final=final)
        if unlock_behind:
            done = trio.Event()
            if self._behind(self._eager_unlock, txn, done):
                for lockee in txn.lockees:
                    fdctx = lockee.fd.ctx.get(self) if lockee.fd is not None else None
                    if fdctx is not None:
                        fdctx.unlocking = [e for e in fdctx.unlocking if not e.is_set()]
                        fdctx.unlocking.append(done)
                return
        await self._eager_unlock(txn)

    async def _eager_unlock(self, txn: Txn, done: trio.Event | None = None) -> None:
        """afr_unlock with an eager lock: the last user releases it
        (`done` is set once it went through, for a release waiting on it)."""
        lock = txn.eager
        if txn in lock.post_op:
            lock.post_op.remove(txn)
        try:
            if not lock.owners and not lock.post_op and lock.locked is not None:
                lock.release = True
                try:
                    await self._unlock(txn, lock.held)
                finally:
                    lock.acquired = False
                    lock.release = False
                    lock.locked = None
                    lock.held = None
                    txn.ctx.write_subvol = None
                    lock.wake()
        finally:
            if done is not None:
                done.set()
        txn.done.set()

    # -- changelog ------------------------------------------------------------

    async def _pre_op(self, txn: Txn) -> None:
        """afr_changelog_pre_op."""
        n = self.child_count
        for i in range(n):
            txn.pre_op[i] = txn.locked[i]
            txn.failed[i] = not txn.locked[i]
        txn.optimistic = bool(self.opts.optimistic_change_log) and all(txn.locked)
        if self._pre_op_inherit(txn):
            return
        if not any(txn.locked):
            raise FopError(errno.ENOTCONN, "nothing locked")
        if self.quorum_count and not cl.has_quorum(txn.locked, self.quorum_count):
            raise FopError(txn.lock_errno or errno.ENOTCONN, "quorum is not met")
        if txn.type != DATA_TXN and txn.optimistic:
            return          # optimistic changelog: no pre-op when all are locked
        dirty = cl.one_slot(txn.slot, 1)
        xattr = cl.changelog_dict(self.pending_keys, None, self.dirty_key, dirty)
        txn.dirtied = True
        await self._changelog_do(txn, xattr, ENTRY_IN_KEY)
        if not any(txn.pre_op[i] and not txn.failed[i] for i in range(n)):
            raise FopError(txn.op_errno or errno.ENOTCONN, "pre-op failed everywhere")

    def _pre_op_inherit(self, txn: Txn) -> bool:
        """afr_changelog_pre_op_inherit: a data transaction under a held
        eager lock rides on the dirty mark already on disk."""
        if txn.type != DATA_TXN or txn.eager is None:
            return False
        ctx, slot = txn.ctx, txn.slot
        if not ctx.on_disk[slot] or txn.pre_op != ctx.pre_op_done[slot]:
            return False
        ctx.inherited[slot] += 1
        txn.inherited = True
        txn.dirtied = True
        return True

    def _pre_op_update(self, txn: Txn) -> None:
        """afr_changelog_pre_op_update: account a hard pre-op for inheriting."""
        if txn.type not in (DATA_TXN, METADATA_TXN) or txn.inherited or not txn.dirtied \
                or not txn.nothing_failed() or txn.ctx is None:
            return
        ctx, slot = txn.ctx, txn.slot
        done = [not f for f in txn.failed]
        if not ctx.on_disk[slot]:
            ctx.pre_op_done[slot] = done
        elif ctx.pre_op_done[slot] != done:
            txn.no_uninherit = True
            return
        ctx.on_disk[slot] += 1

    def _pre_op_uninherit(self, txn: Txn) -> bool:
        """afr_changelog_pre_op_uninherit (idempotent): True when another
        transaction still holds the dirty mark, so no undirty is due."""
        if txn.type != DATA_TXN or txn.ctx is None:
            return not txn.dirtied
        if txn.no_uninherit:
            return False
        if txn.uninherit_value is not None:
            return txn.uninherit_value
        ctx, slot = txn.ctx, txn.slot
        if txn.pre_op != ctx.pre_op_done[slot]:
            value = not txn.dirtied
        else:
            if ctx.inherited[slot]:
                value = True
                ctx.inherited[slot] -= 1
            elif ctx.on_disk[slot]:
                value = False
                ctx.on_disk[slot] -= 1
            else:
                value = False
            if not ctx.inherited[slot] and not ctx.on_disk[slot]:
                ctx.pre_op_done[slot] = [False] * self.child_count
        txn.uninherit_value = value
        return value

    async def _changelog_do(self, txn: Txn, xattr: dict, entry_key: str | None,
                            xdatas: list | None = None) -> None:
        """afr_changelog_do: xattrop ADD_ARRAY on every child that did the
        pre-op and has not failed - on the inode (fd) for data and
        metadata, on the parent(s) for entry transactions."""
        targets = [i for i in range(self.child_count) if txn.pre_op[i] and not txn.failed[i]]
        if not targets:
            return
        calls, owners = [], []
        for i in targets:
            if txn.type in (DATA_TXN, METADATA_TXN):
                child = self.children[i]
                if txn.fd is not None:
                    calls.append(lambda c=child: c.fxattrop(txn.fd, XattropType.ADD_ARRAY,
                                                            xattr, None))
                else:
                    loc = Loc(gfid=txn.gfid, path=txn.loc.path if txn.loc else None)
                    calls.append(lambda c=child, l=loc: c.xattrop(l, XattropType.ADD_ARRAY,
                                                                  xattr, None))
                owners.append(i)
            else:
                for k, (ploc, name) in enumerate(txn.parents):
                    xd = None
                    if entry_key is not None and self.opts.granular_entry_heal and name:
                        xd = {entry_key: name}
                    if xdatas is not None:
                        xd = xdatas[k]
                    child = self.children[i]
                    calls.append(lambda c=child, l=ploc, x=xd: c.xattrop(
                        l, XattropType.ADD_ARRAY, xattr, x))
                    owners.append(i)
        results = await self._gather(calls, self._owner_caller(txn))
        for i, r in zip(owners, results):
            if is_ok(r):
                if txn.changelog_xdata[i] is None:
                    txn.changelog_xdata[i] = r.dict
            else:
                txn.op_errno = r.errno
                txn.failed[i] = True

    async def _post_op(self, txn: Txn, final: bool) -> None:
        """afr_changelog_post_op_safe + afr_changelog_post_op_do."""
        try:
            await self._post_op_do(txn, final)
        finally:
            self._forget_failing(txn)

    async def _post_op_do(self, txn: Txn, final: bool) -> None:
        n = self.child_count
        if final and txn.fd is not None and txn.type == DATA_TXN and txn.ctx is not None \
                and not (self._pre_op_uninherit(txn) and txn.nothing_failed()) \
                and txn.ctx.unstable_write and self.opts.ensure_durability:
            txn.ctx.unstable_write = False
            await self._changelog_fsync(txn)
        self._handle_quorum(txn)
        nothing_failed = txn.nothing_failed()
        need_undirty = not self._pre_op_uninherit(txn)
        if not txn.op_ok and not nothing_failed:
            if self._need_dirty_marking(txn):
                await self._changelog_do(txn, {self.dirty_key: cl.encode(
                    cl.one_slot(txn.slot, 1))}, None)
            return
        if nothing_failed and not need_undirty:
            return
        rows = [cl.one_slot(txn.slot, 1) if txn.failed[i] else (0, 0, 0) for i in range(n)]
        dirty = cl.one_slot(txn.slot, -1) if need_undirty else (0, 0, 0)
        xattr = cl.changelog_dict(self.pending_keys, rows, self.dirty_key, dirty)
        xdatas = None
        if txn.type in (ENTRY_TXN, RENAME_TXN) and self.opts.granular_entry_heal:
            if nothing_failed:
                key = ENTRY_OUT_KEY if not any(txn.failed) and txn.op_ok else None
            else:
                key = ENTRY_IN_KEY
            xdatas = [{key: name} if key and name else None for _, name in txn.parents]
        await self._changelog_do(txn, xattr, None, xdatas)
        if not cl.has_quorum([not f for f in txn.failed], self.quorum_count):
            txn.op_ok = False
            txn.op_errno = txn.op_errno or errno.ENOTCONN

    async def _changelog_fsync(self, txn: Txn) -> None:
        """afr_changelog_fsync: unstable writes reach the disk before the
        post-op that says they did."""
        targets = [i for i in range(self.child_count) if txn.pre_op[i] and not txn.failed[i]]
        xdata = {"batch-fsync": 1, INTERNAL_FOP: "yes"}
        results = await self.fan(targets, lambda i: self.children[i].fsync(txn.fd, 1, xdata),
                                  self._owner_caller(txn))
        for i in targets:
            if not is_ok(results[i]):
                self.log.warning("fsync(%s) failed on subvolume %s. Transaction was %s",
                                 txn.gfid, self.children[i].name, txn.op)
                txn.failed[i] = True

    def _handle_quorum(self, txn: Txn) -> None:
        """afr_handle_quorum: a fop that succeeded on fewer than a quorum of
        children fails, and accuses nobody, rather than make a split-brain."""
        if not self.quorum_count or not txn.op_ok:
            return
        success = [txn.pre_op[i] and not txn.failed[i] for i in range(self.child_count)]
        if cl.has_quorum(success, self.quorum_count):
            return
        if not self._need_dirty_marking(txn):
            for i in range(self.child_count):
                if txn.pre_op[i]:
                    txn.failed[i] = True
        txn.op_ok = False
        errors = [r.errno for r in txn.replies if isinstance(r, FopError)]
        txn.op_errno = cl.final_errno(errors) or errno.ENOTCONN
        self.log.warning("%s: Failing %s as quorum is not met", txn.gfid or txn.loc, txn.op)

    def _need_dirty_marking(self, txn: Txn) -> bool:
        """afr_need_dirty_marking: an optimistic entry transaction that lost
        quorum marks the parent dirty instead of accusing anyone."""
        if not self.quorum_count or not txn.optimistic:
            return False
        if txn.type in (DATA_TXN, METADATA_TXN):
            return False
        if all(txn.failed):
            return False
        success = [txn.pre_op[i] and not txn.failed[i] for i in range(self.child_count)]
        return not cl.has_quorum(success, self.quorum_count)

    # -- the fop itself --------------------------------------------------------

    async def _perform_fop(self, txn: Txn, wind: Callable[[int], Awaitable]) -> None:
        """afr_transaction_perform_fop + afr_transaction_fop (+ the arbiter's
        afr_txn_arbitrate_fop)."""
        n = self.child_count
        if txn.type == DATA_TXN:
            # afr_write_subvol_set: the copies no pre-op reply accuses; a
            # write that reaches none of them fails (EIO) - it would only
            # update stale copies
            if txn.inherited and txn.ctx is not None and txn.ctx.write_subvol is not None:
                txn.write_subvol = txn.ctx.write_subvol
            else:
                accused = cl.accused(txn.changelog_xdata, self.pending_keys, DATA)
                txn.write_subvol = [not accused[i] and i != self.arbiter for i in range(n)]
                if txn.eager is not None and txn.ctx.write_subvol is None:
                    txn.ctx.write_subvol = txn.write_subvol
        self._pre_op_update(txn)
        targets = [i for i in range(n) if txn.pre_op[i] and not txn.failed[i]]
        if not targets or not cl.has_quorum([not f for f in txn.failed], self.quorum_count):
            raise FopError(txn.op_errno or errno.ENOTCONN, "no subvolume to operate on")
        if txn.write_subvol is not None and \
                not any(w and not txn.failed[i] for i, w in enumerate(txn.write_subvol)):
            raise FopError(errno.EIO, "no good copy of the file is up")
        if self.arbiter is not None:
            srcs = self._pre_op_sources(txn)
            if sum(srcs) < 2 and srcs[self.arbiter]:
                for i in range(n):
                    txn.failed[i] = True
                raise FopError(errno.ENOTCONN, "the arbiter is the only source")
        results = await self.fan(targets, wind)
        for i in targets:
            r = results[i]
            txn.replies[i] = r
            if not is_ok(r) and not (txn.type in (ENTRY_TXN, RENAME_TXN)
                                   and r.errno == errno.ENOTEMPTY):
                txn.failed[i] = True
        # afr_handle_symmetric_errors: the same error everywhere is no failure
        errs = [r for r in txn.replies if r is not None]
        if errs and all(isinstance(r, FopError) for r in errs):
            codes = {r.errno for r in errs}
            if len(codes) == 1 and errno.ENOTCONN not in codes:
                for i in range(n):
                    txn.failed[i] = not txn.locked[i]

    def _pre_op_sources(self, txn: Txn) -> list[bool]:
        """afr_compute_pre_op_sources: locked, pre-op done, accused by no one."""
        n = self.child_count
        sources = [not txn.failed[i] for i in range(n)]
        for xd in txn.changelog_xdata:
            if not xd:
                continue
            for j in range(n):
                if cl.pending_of(xd, self.pending_keys[j], txn.slot):
                    sources[j] = False
        return sources
