"""cluster/replicate's common part (afr-common.c, afr.c's init): the
translator's state and options applied, its life cycle, the children's
events (afr_notify), lookup and discover, the helpers that fan a call out
to the children, and the fops replicate does not serve.
"""

from __future__ import annotations

import errno
import logging
import os
from collections import deque
from typing import Any, Awaitable, Callable, Sequence

import trio

from glusterpy import fops
from glusterpy.fops import Caller, ClientPid, FopError, GFID, Loc, LookupReply, ROOT_GFID, UInt
from glusterpy.keys import (AFR_XATTR_PREFIX, ENTRYLK_COUNT, GFID_REQ, INDEX_COUNT_KEY,
                            INODELK_COUNT, LINK_COUNT, LIST_XATTR, PARENT_ENTRYLK, PATHINFO_KEY)
from glusterpy.options import OptionError
from glusterpy.xlator import DOWNWARD_EVENTS, Event

from xlators.cluster.replicate import changelog as cl
from xlators.cluster.replicate.changelog import QUORUM_AUTO
from xlators.cluster.replicate.heal_name import heal_name
from xlators.cluster.replicate.shd import SelfHealDaemon
from xlators.cluster.replicate.state import (ANON_DIR_PREFIX, ARBITER_BRICK_INDEX, CLEANUP_TIMEOUT,
                                             NOTIFY_TIMEOUT, REPLICATE_TRASH_DIR, as_caller, errno_of, is_ok)


class AfrCommon:
    """The translator's state, events, lookup and fan-out helpers."""

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        #: set by PARENT_DOWN: children going away now is a planned shutdown,
        #: logged quietly rather than as an outage
        self._stopping = False
        n = len(self.children)
        self.child_count = n
        if self.opts.arbiter_count and n != 3:
            raise OptionError("arbiter-count", "option 'arbiter-count': an arbiter needs "
                                               "exactly three subvolumes")
        self.arbiter = ARBITER_BRICK_INDEX if self.opts.arbiter_count else None
        pending = self.opts.afr_pending_xattr
        if pending:
            names = [p for p in pending.split(",") if p]
            if len(names) != n:
                raise OptionError("afr-pending-xattr", f"option 'afr-pending-xattr': "
                                  f"{len(names)} names for {n} subvolumes")
            self.pending_keys = [f"{AFR_XATTR_PREFIX}.{p}" for p in names]
        else:
            self.pending_keys = [f"{AFR_XATTR_PREFIX}.{c.name}" for c in self.children]
        self.dirty_key = self.opts.afr_dirty_xattr
        self.domain = self.name
        self.sh_domain = f"{self.name}:self-heal"
        self._index = {id(c): i for i, c in enumerate(self.children)}
        self.child_up: list[bool] = [False] * n
        self._last_event: list[Event | None] = [None] * n
        self.event_generation = 0
        self.latency = [-1] * n
        self.pending_reads = [0] * n
        self.local = [False] * n
        self.read_child = -1
        self._did_discovery = False
        # afr_inode_ctx_t of each inode: its slot in the graph's inode table
        # (read_txn._ctx; inode_busy keeps the table from dropping one in use)
        self._notify_timer: trio.CancelScope | None = None
        self._heals_running = 0
        #: transaction tails running behind their callers (transaction._behind)
        self._behind_count = 0
        self._behind_idle: trio.Event | None = None
        self._heal_queue: deque = deque()
        self._heal_queued: set[GFID] = set()
        self._parent_down_done: trio.Event | None = None
        #: the self-heal daemon's healers (shd.py), with iam-self-heal-daemon
        self.shd: SelfHealDaemon | None = None
        self._apply_options()

    def _apply_options(self) -> None:
        opts = self.opts
        self.read_child = -1
        if opts.read_subvolume:
            names = [c.name for c in self.children]
            if opts.read_subvolume not in names:
                raise OptionError("read-subvolume", f"option 'read-subvolume': "
                                  f"{opts.read_subvolume} is not a subvolume")
            self.read_child = names.index(opts.read_subvolume)
        if opts.read_subvolume_index >= 0:
            if opts.read_subvolume_index >= self.child_count:
                raise OptionError("read-subvolume-index", f"option 'read-subvolume-index': "
                                  f"{opts.read_subvolume_index} is not a subvolume-index")
            self.read_child = opts.read_subvolume_index
        # fix_quorum_options: auto by default above two children
        qtype = opts.quorum_type
        if "quorum-type" not in opts.given and self.child_count > 2:
            qtype = "auto"
        if qtype == "none":
            self.quorum_count = 0
        elif qtype == "auto":
            self.quorum_count = QUORUM_AUTO
        else:
            self.quorum_count = opts.quorum_count or 0
        if opts.quorum_count and qtype != "fixed":
            self.log.warning("quorum-type %s overriding quorum-count %u", qtype,
                             opts.quorum_count)
        self.data_self_heal = opts.data_self_heal in ("1", "on", "yes", "true", "enable")

    def options_changed(self, old) -> None:
        self._apply_options()
        if self.shd is not None:
            self.shd.reconfigured(old)

    @property
    def selfheal_enabled(self) -> bool:
        """afr_selfheal_enabled."""
        return self.data_self_heal or self.opts.metadata_self_heal or \
            self.opts.entry_self_heal

    # -- life cycle ------------------------------------------------------

    async def init(self) -> None:
        self._notify_sent = False
        if self.opts.iam_self_heal_daemon:
            self.shd = SelfHealDaemon(self)
            self.shd.start()

    async def fini(self) -> None:
        """Finish the delayed post-ops before the children go (GlusterFS
        gets the same from flush/release of every fd at unmount)."""
        if self.shd is not None:
            self.shd.stop()
        with trio.move_on_after(CLEANUP_TIMEOUT) as scope:
            scope.shield = True
            await self._flush_all_delayed()
            await self._behind_drained()
            for child in self.children:
                child.notify(Event.PARENT_DOWN, self, None)

    def dump_state(self) -> dict:
        return {"child_up": list(self.child_up), "event_generation": self.event_generation,
                "quorum_count": self.quorum_count, "read_child": self.read_child,
                "pending_keys": list(self.pending_keys),
                "inodes": sum(1 for _ in self.itable.contexts(self)),
                "heals_running": self._heals_running, "heals_queued": len(self._heal_queue)}

    # ======================================================================
    # Events (afr_notify)

    def notify(self, event: Event, source: Any, data: Any = None) -> None:
        if event == Event.PARENT_DOWN:
            # held back until fini() has finished the delayed post-ops, so the
            # children are still connected for them
            self._stopping = True
            return
        if event in DOWNWARD_EVENTS:
            if event == Event.PARENT_UP and self.nursery is not None:
                self.spawn(self._notify_timer_task)
            for child in self.children:
                child.notify(event, self, data)
            return
        idx = self._index.get(id(source))
        if idx is None:
            self.notify_parents(event, data)
            return
        had_quorum = bool(self.quorum_count) and cl.has_quorum(self.child_up, self.quorum_count)
        if event == Event.CHILD_PING:
            self.latency[idx] = int(data) if isinstance(data, int) else self.latency[idx]
            return
        if event == Event.UPCALL:
            self._handle_upcall(data)
        had_heard_from_all = all(e is not None for e in self._last_event)
        propagate = False
        came_up = event == Event.CHILD_UP  # afr_notify's call_psh
        if event == Event.CHILD_UP:
            if not self.child_up[idx]:
                self.event_generation += 1
            self.child_up[idx] = True
            up = sum(self.child_up)
            if up == 1:
                self.log.info("Subvolume '%s' came back up; going online.", source.name)
            else:
                event = Event.SOME_DESCENDENT_UP
            self._last_event[idx] = event
            self._did_discovery = False
        elif event == Event.CHILD_DOWN:
            if self.child_up[idx]:
                self.event_generation += 1
            self.child_up[idx] = False
            if not any(self.child_up):
                self.log.log(logging.INFO if self._stopping else logging.ERROR,
                             "All subvolumes are down. Going offline until at least "
                             "one of them comes back up.")
            else:
                event = Event.SOME_DESCENDENT_DOWN
            self._last_event[idx] = event
        elif event in (Event.CHILD_CONNECTING, Event.SOME_DESCENDENT_DOWN):
            self._last_event[idx] = event
        else:
            propagate = True
        have_heard_from_all = all(e is not None for e in self._last_event)
        if not had_heard_from_all and have_heard_from_all:
            if self._notify_timer is not None:
                self._notify_timer.cancel()
            event = Event.CHILD_DOWN
            for e in self._last_event:
                if e == Event.CHILD_UP:
                    event = Event.CHILD_UP
                    break
                if e == Event.CHILD_CONNECTING:
                    event = Event.CHILD_CONNECTING
        if self.quorum_count:
            has = cl.has_quorum(self.child_up, self.quorum_count)
            if has and not had_quorum:
                self.log.info("Client-quorum is met")
            elif had_quorum and not has:
                self.log.log(logging.INFO if self._stopping else logging.WARNING,
                             "Client-quorum is not met")
        if have_heard_from_all:
            propagate = True
        if propagate:
            self.notify_parents(event, data)
        if self.shd is not None and have_heard_from_all and (not had_heard_from_all or came_up):
            # afr_selfheal_childup: every up child's index healer crawls
            self.shd.child_up()

    async def _notify_timer_task(self) -> None:
        """__afr_launch_notify_timer: after 10 s, children not heard from
        count as down and the parents are told what there is."""
        with trio.CancelScope() as scope:
            self._notify_timer = scope
            await trio.sleep(NOTIFY_TIMEOUT)
            self._notify_timer = None
            if all(e is not None for e in self._last_event):
                return
            for i, e in enumerate(self._last_event):
                if e is None:
                    self._last_event[i] = Event.SOME_DESCENDENT_DOWN
                    self.child_up[i] = False
            self.notify_parents(Event.CHILD_UP if any(self.child_up) else Event.CHILD_DOWN)
        self._notify_timer = None

    def _handle_upcall(self, upcall: Any) -> None:
        """afr_handle_inodelk_contention: another client waits for our eager
        lock - end its delay so the lock goes."""
        message = getattr(upcall, "message", None)
        if getattr(message, "domain", None) != self.domain:
            return
        ctx = self.itable.ctx(self, getattr(upcall, "gfid", None))
        if ctx is None:
            return
        for lock in ctx.locks.values():
            lock.release = True
            if lock.delayed is not None and self.nursery is not None:
                self.spawn(self._fire_delayed, lock)

    # ======================================================================
    # Entry fops: lookup

    async def lookup(self, loc, xdata=None):
        """afr_lookup / afr_discover: every up child, then pick the gfid,
        the read child and its attributes; heal the name when children
        disagree about it."""
        up = self._up_or_enotconn()
        if loc.name is None:
            return await self._discover(loc, xdata, up)
        if loc.pargfid == ROOT_GFID and self.is_private_dir(loc.name):
            raise FopError(errno.EPERM, f"{loc.name} is private to replicate")
        req = dict(xdata or {})
        gfid_req = req.pop(GFID_REQ, None)
        self._lookup_xattr_req(req)
        replies = await self.fan([i for i in range(self.child_count) if up[i]],
                                  lambda i: self.children[i].lookup(loc, req))
        if loc.pargfid is not None and self._gfids_disagree(replies):
            await self._refresh_parent(loc.pargfid)
        if self._name_heal_needed(loc, replies):
            try:
                await heal_name(self, loc.pargfid, loc.name,
                                         GFID(gfid_req) if gfid_req else None)
            except FopError as e:
                if e.errno == errno.EIO:
                    raise
                self.log.debug("name heal of %s/%s: %s", loc.pargfid, loc.name, e)
            replies = await self.fan([i for i in range(self.child_count) if self.child_up[i]],
                                      lambda i: self.children[i].lookup(loc, req))
        return await self._lookup_done(loc, replies)

    async def _discover(self, loc, xdata, up):
        req = dict(xdata or {})
        req.pop(GFID_REQ, None)
        self._lookup_xattr_req(req)
        replies = await self.fan([i for i in range(self.child_count) if up[i]],
                                  lambda i: self.children[i].lookup(loc, req))
        good = [i for i, r in enumerate(replies) if is_ok(r)]
        if not good:
            raise FopError(self._final_errno(replies) or errno.ENOTCONN)
        if (loc.gfid == ROOT_GFID or loc.path == "/") and self.opts.choose_local and \
                not self._did_discovery:
            self._did_discovery = True
            self.spawn(self._local_discovery)
        iatts = [r.iatt if is_ok(r) else None for r in replies]
        read = -1
        if cl.has_quorum([is_ok(r) for r in replies], self.quorum_count) or not self.quorum_count:
            ctx = self._interpret(iatts, [r.xdata if is_ok(r) else None for r in replies],
                                  start_heal=True)
            read = self._read_subvol_decide(ctx, iatts[good[0]])
        if read < 0:
            read = self._attempt_read_subvol([is_ok(r) for r in replies], replies)
        if read == self.arbiter:
            raise FopError(errno.ENOTCONN, "the arbiter cannot serve reads")
        r = replies[read]
        return LookupReply(r.iatt, r.postparent, xdata=r.xdata)

    @staticmethod
    def _gfids_disagree(replies) -> bool:
        """Two children have the name with different gfids.  (A name one
        child lacks is judged by quorum and name heal, not by the parent's
        set: refreshing it there would only hide a name from name heal that
        the parent's entry heal is to create.)"""
        gfid = None
        for r in replies:
            if is_ok(r):
                if gfid is None:
                    gfid = r.iatt.gfid
                elif r.iatt.gfid != gfid:
                    return True
        return False

    async def _refresh_parent(self, pgfid: GFID) -> None:
        """Lookup judges disagreeing children by the parent's readable entry
        set (its entry changelogs); a set computed before a child went down
        or came back up says nothing of what that child missed meanwhile,
        so it is refreshed first - as GlusterFS's afr_lookup refreshed a
        parent of an older event generation until 2020 (commit 2b08cb8a5b
        dropped it for lookups at large; here it costs only a lookup whose
        children hold two gfids)."""
        pctx = self.itable.ctx(self, pgfid)
        if pctx is not None and pctx.data is not None and not pctx.need_refresh and \
                pctx.generation == self.event_generation:
            return
        try:
            await self._refresh(pgfid)
        except FopError as e:
            # the parent's set stays as it was: the gfid check below then
            # answers EIO rather than guess
            self.log.debug("refresh of the parent %s for a lookup: %s", pgfid, e)

    async def _lookup_done(self, loc, replies):
        """afr_lookup_done."""
        locked_entry = any(is_ok(r) and r.xdata and r.xdata.get(PARENT_ENTRYLK) for r in replies)
        pctx = self.itable.ctx(self, loc.pargfid) if loc.pargfid is not None else None
        par_readable = pctx.data if pctx is not None and pctx.data is not None else \
            [True] * self.child_count
        success = [is_ok(r) for r in replies]
        in_flight_create = locked_entry and any(errno_of(r) == errno.ENOENT for r in replies)
        read = -1
        for i, r in enumerate(replies):
            if is_ok(r) and (read == -1 or not par_readable[read]):
                read = i
        if in_flight_create and not cl.has_quorum(success, self.quorum_count or QUORUM_AUTO):
            raise FopError(errno.ENOENT)
        if read == -1:
            raise FopError(self._final_errno(replies) or errno.ENOTCONN)
        read_gfid = replies[read].iatt.gfid
        can_interpret = True
        for i, r in enumerate(replies):
            if not is_ok(r) or r.iatt.gfid == read_gfid:
                continue
            can_interpret = False
            if locked_entry:
                continue
            if par_readable[read] and not par_readable[i]:
                continue
            raise FopError(errno.EIO, f"gfid mismatch for {loc}: {read_gfid} on "
                                      f"{self.children[read].name}, {r.iatt.gfid} on "
                                      f"{self.children[i].name}")
        iatts = [r.iatt if is_ok(r) else None for r in replies]
        chosen = -1
        if can_interpret and (not self.quorum_count or cl.has_quorum(success,
                                                                      self.quorum_count)):
            ctx = self._interpret(iatts, [r.xdata if is_ok(r) else None for r in replies],
                                  start_heal=True)
            chosen = self._read_subvol_decide(ctx, replies[read].iatt)
        if chosen < 0:
            chosen = self._attempt_read_subvol(success, replies)
            if not can_interpret and par_readable[read]:
                # the gfids disagree and only unreadable copies of the parent
                # hold the other one: answer from a copy the parent vouches
                # for, whatever its index (the first answer may be stale)
                chosen = next((i for i, r in enumerate(replies)
                               if is_ok(r) and r.iatt.gfid == read_gfid and par_readable[i]
                               and i != self.arbiter), read)
        if chosen == self.arbiter:
            raise FopError(errno.ENOTCONN, "the arbiter cannot serve reads")
        r = replies[chosen]
        par = self._parent_read_subvol(pctx, replies)
        return LookupReply(r.iatt, replies[par].postparent if is_ok(replies[par]) else
                           r.postparent, xdata=r.xdata)

    def _attempt_read_subvol(self, success, replies) -> int:
        """afr_attempt_readsubvol_set: any answering child when no quorum is
        enforced (attributes of a split-brain file are still served), else
        only with a quorum of answers."""
        first = next((i for i, ok in enumerate(success) if ok), -1)
        if first < 0:
            raise FopError(self._final_errno(replies) or errno.ENOTCONN)
        if self.quorum_count and fops.caller.get().pid != ClientPid.GLFS_HEAL and \
                not cl.has_quorum(success, self.quorum_count):
            raise FopError(errno.ENOTCONN, "no read subvolume with quorum")
        return first

    def _parent_read_subvol(self, pctx, replies) -> int:
        """afr_get_parent_read_subvol: postparent from the parent's read child."""
        par = self._select_read(pctx.data, pctx.gfid, pctx.mode) if \
            pctx is not None and pctx.data is not None else -1
        best = -1
        for i, r in enumerate(replies):
            if not is_ok(r):
                continue
            if best == -1 or i == par:
                best = i
        return max(best, 0)

    def _name_heal_needed(self, loc, replies) -> bool:
        """afr_lookup_entry_heal: a missing gfid, children that disagree on
        the name's existence or on its gfid call for a name heal."""
        if not all(self.child_up) or loc.pargfid is None:
            return False
        first = None
        gfid = None
        mismatch = False
        errors = []
        for r in replies:
            if r is None:
                continue
            if errno_of(r) == errno.ENODATA:
                return True
            if errno_of(r) not in (None, errno.ENOTCONN, errno.ENOENT, errno.ESTALE):
                errors.append(errno_of(r))
            if first is None:
                first = r
            elif is_ok(first) != is_ok(r):
                mismatch = True
            if is_ok(r):
                if gfid is None:
                    gfid = r.iatt.gfid
                elif r.iatt.gfid != gfid:
                    return True
        if not mismatch:
            return False
        if not self.quorum_count:
            return True
        success = [is_ok(r) for r in replies]
        if not cl.has_quorum(success, self.quorum_count) or errors:
            return True
        pctx = self.itable.ctx(self, loc.pargfid)
        par = pctx.data if pctx is not None and pctx.data else [True] * self.child_count
        return any(par[i] and isinstance(r, FopError) and r.errno != errno.ENOTCONN
                   for i, r in enumerate(replies))

    def _lookup_xattr_req(self, req: dict) -> None:
        """afr_lookup_xattr_req_prepare."""
        self.xattr_req(req)
        req.setdefault(INODELK_COUNT, UInt(0))
        req.setdefault(ENTRYLK_COUNT, UInt(0))
        req.setdefault(PARENT_ENTRYLK, UInt(0))
        req.setdefault(LINK_COUNT, INDEX_COUNT_KEY)

    def xattr_req(self, req: dict) -> dict:
        """afr_xattr_req_prepare: the changelogs and every xattr."""
        for key in self.pending_keys:
            req[key] = UInt(cl.CHANGELOG_SIZE)
        req[self.dirty_key] = UInt(cl.CHANGELOG_SIZE)
        req[LIST_XATTR] = 1
        return req

    def is_private_dir(self, name: str) -> bool:
        """afr_is_private_directory (for names under the root)."""
        if name == REPLICATE_TRASH_DIR:
            return True
        pid = fops.caller.get().pid
        if pid == ClientPid.GSYNCD:  # geo-replication creates them on the secondary
            return False
        if pid in (ClientPid.SELF_HEALD, ClientPid.GLFS_HEAL):
            return name == self.anon_inode_name
        return name.startswith(ANON_DIR_PREFIX)

    @property
    def anon_inode_name(self) -> str:
        return f"{ANON_DIR_PREFIX}-{self.opts.volume_id}" if self.opts.volume_id else \
            ANON_DIR_PREFIX

    async def _local_discovery(self) -> None:
        """afr_attempt_local_discovery: a child whose pathinfo names this
        host is preferred for reads (the arbiter never)."""
        import socket
        host = socket.gethostname()
        for i, child in enumerate(self.children):
            if not self.child_up[i]:
                continue
            try:
                with as_caller(Caller(pid=ClientPid.SELF_HEALD, lk_owner=os.urandom(8))):
                    reply = await child.getxattr(Loc(gfid=ROOT_GFID, path="/"), PATHINFO_KEY,
                                                 None)
            except FopError:
                continue
            info = reply.dict.get(PATHINFO_KEY)
            if isinstance(info, bytes):
                info = info.rstrip(b"\0").decode(errors="replace")
            if isinstance(info, str) and cl.pathinfo_host(info) == host:
                self.local[i] = True
                if i != self.arbiter and self.read_child < 0 and \
                        self.opts.read_subvolume is None and \
                        self.opts.read_subvolume_index < 0:
                    self.log.info("selecting local read_child %s", child.name)
                    self._local_read_child = i

    # -- helpers ------------------------------------------------------------

    async def _gather(self, calls: Sequence[Callable[[], Awaitable]],
                      caller: Caller | None = None) -> list:
        """Run every call concurrently; a FopError is its call's result."""
        results: list = [None] * len(calls)

        async def one(k):
            if caller is not None:
                fops.caller.set(caller)
            try:
                results[k] = await calls[k]()
            except FopError as e:
                results[k] = e
        if len(calls) == 1:
            tok = fops.caller.set(caller) if caller is not None else None
            try:
                results[0] = await calls[0]()
            except FopError as e:
                results[0] = e
            finally:
                if tok is not None:
                    fops.caller.reset(tok)
            return results
        async with trio.open_nursery() as nursery:
            for k in range(len(calls)):
                nursery.start_soon(one, k)
        return results

    async def fan(self, targets: Sequence[int], fn: Callable[[int], Awaitable],
                   caller: Caller | None = None) -> list:
        """`fn(i)` on each child in `targets` concurrently; the result list
        has a reply or FopError per target and None elsewhere."""
        results = await self._gather([lambda i=i: fn(i) for i in targets], caller)
        out: list = [None] * self.child_count
        for i, r in zip(targets, results):
            out[i] = r
        return out

    def _up_or_enotconn(self, quorum: bool = False) -> list[bool]:
        up = list(self.child_up)
        if not any(up):
            raise FopError(errno.ENOTCONN, "no subvolume is up")
        if quorum and self.quorum_count and not cl.has_quorum(up, self.quorum_count):
            raise FopError(errno.ENOTCONN, "quorum is not met")
        return up

    def _replies_quorum(self, replies) -> None:
        """afr_handle_replies_quorum."""
        if self.quorum_count and not cl.has_quorum([is_ok(r) for r in replies],
                                                   self.quorum_count):
            raise FopError(self._final_errno(replies) or errno.ENOTCONN,
                           "quorum is not met")

    @staticmethod
    def _final_errno(replies) -> int:
        return cl.final_errno([r.errno for r in replies if isinstance(r, FopError)])

    async def _gfid_of(self, loc: Loc) -> GFID:
        if loc.gfid is not None:
            return loc.gfid
        return (await self.lookup(loc, None)).iatt.gfid

    # ======================================================================
    # Fops replicate does not serve (GlusterFS winds them to one child, which
    # would leave the others behind)

    async def put(self, loc, mode, umask, flags, data, offset, xattrs, xdata=None):
        raise FopError(errno.ENOTSUP, "put is not replicated")

    async def icreate(self, loc, mode, xdata=None):
        raise FopError(errno.ENOTSUP, "icreate is not served by replicate")

    async def namelink(self, loc, xdata=None):
        raise FopError(errno.ENOTSUP, "namelink is not served by replicate")

    async def lease(self, loc, lease, xdata=None):
        raise FopError(errno.ENOTSUP, "leases are not served by replicate")

    async def getactivelk(self, loc, xdata=None):
        raise FopError(errno.ENOTSUP, "lock migration is not served by replicate")

    async def setactivelk(self, loc, locks, xdata=None):
        raise FopError(errno.ENOTSUP, "lock migration is not served by replicate")

    async def ipc(self, op, xdata=None):
        raise FopError(errno.ENOTSUP, f"ipc op {op} is not handled by replicate")
