"""cluster/stripe: the per-fop fan-out - a fop sent to several children
at once, or a plan's calls child by child, and their replies judged
(every piece must answer, a directory may be missing, a single-child
inode keeps the first) and merged into one (stripe.c's STRIPE_STACK_WIND
loops and their callbacks' stripe_iatt_merge)."""

from __future__ import annotations

import dataclasses
import errno
import functools
from typing import Any, Awaitable, Callable, Sequence

import trio

from glusterpy.fops import GFID, EntryReply, Fd, FopError, Iatt, Loc, PrePostReply
from glusterpy.keys import GFID_REQ
from glusterpy.xlator import Event

from .layout import DIRECTORY, FILE, SINGLE, FdCtx, Geometry, Op


class StripeFanout:
    """Children asked at once, their replies made one."""

    # ======================================================================
    # helpers: children and their replies

    def _check_up(self) -> None:
        """Every piece is needed: refuse while any child is down."""
        for child, state in zip(self.children, self._child_state):
            if state != Event.CHILD_UP:
                raise FopError(errno.ENOTCONN, f"{self.name}: subvolume {child.name} "
                                               f"is {'down' if state else 'not up yet'}")

    async def _fan(self, calls: Sequence[Callable[[], Awaitable]]) -> list:
        """Run the calls concurrently; each result is its reply or its FopError."""
        if len(calls) <= 1:
            return [await _outcome(call) for call in calls]
        results: list = [None] * len(calls)

        async def run(i, call):
            results[i] = await _outcome(call)
        async with trio.open_nursery() as nursery:
            for i, call in enumerate(calls):
                nursery.start_soon(run, i, call)
        return results

    async def _run_ops(self, ops: list[Op], call_of) -> list:
        """Run the ops of a plan: each child's in order, the children in
        parallel.  Results come back in the order of `ops`."""
        by_child: dict[int, list[int]] = {}
        for n, op in enumerate(ops):
            by_child.setdefault(op.child, []).append(n)
        results: list = [None] * len(ops)

        async def child_ops(numbers):
            for n in numbers:
                results[n] = await _outcome(call_of(ops[n]))
        if len(by_child) == 1:
            await child_ops(next(iter(by_child.values())))
            return results
        async with trio.open_nursery() as nursery:
            for numbers in by_child.values():
                nursery.start_soon(child_ops, numbers)
        return results

    def _raise_first(self, results: list) -> None:
        for r in results:
            if isinstance(r, FopError):
                raise r

    def _raise_first_piece(self, results: list, ops: list[Op], what: str) -> None:
        """A piece that is gone makes the file unreadable: EIO, not ENOENT."""
        for op, r in zip(ops, results):
            if isinstance(r, FopError):
                raise self._piece_error(r, op.child, what)

    def _piece_error(self, error: FopError, index: int, what: str) -> FopError:
        if error.errno in (errno.ENOENT, errno.ESTALE):
            return FopError(errno.EIO, f"{what}: the piece on {self.children[index].name} "
                                       f"is missing")
        return error

    def _raise_unless_missing(self, rest: list, what: str = "") -> None:
        """The other children's results of a fop whose target may live on the
        first child only: a missing name is fine, another error is not."""
        for r in rest:
            if isinstance(r, FopError) and r.errno not in (errno.ENOENT, errno.ESTALE):
                if what:
                    self.log.error("%s: %s after the first subvolume succeeded", what, r)
                raise r

    @staticmethod
    def _kind_of(iatt: Iatt) -> Any:
        if iatt.is_reg:
            return FILE
        return DIRECTORY if iatt.is_dir else SINGLE

    def _settle_by_iatt(self, results: list, iatt_of, where) -> tuple[list, Any]:
        """Results of a fop sent to every child, judged by what the first
        child's reply says the inode is: a regular file needs every piece;
        a directory may be missing on other children (they are skipped); a
        single-child inode keeps only the first reply."""
        first = results[0]
        if isinstance(first, FopError):
            raise first
        kind = self._kind_of(iatt_of(first))
        if kind == SINGLE:
            return [first] + [None] * (len(results) - 1), SINGLE
        if kind == DIRECTORY:
            self._raise_unless_missing(results[1:])
            return [r if not isinstance(r, FopError) else None for r in results], DIRECTORY
        return self._settle_file(results, f"{where}"), FILE

    def _settle_file(self, results: list, what: str) -> list:
        """Every piece must have answered."""
        for i, r in enumerate(results):
            if isinstance(r, FopError):
                raise r if i == 0 else self._piece_error(r, i, what)
        return results

    def _settle_rest(self, rest: list, is_file: bool, what: str) -> list:
        if is_file:
            for i, r in enumerate(rest, 1):
                if isinstance(r, FopError):
                    self.log.error("%s: %s on %s after the first subvolume succeeded",
                                   what, r, self.children[i].name)
                    raise self._piece_error(r, i, what)
            return rest
        self._raise_unless_missing(rest, what)
        return [r if not isinstance(r, FopError) else None for r in rest]

    def _settle_fd(self, results: list, ctx: FdCtx, what: str) -> list:
        """Results of an fd fop sent to ctx.children, aligned to all children."""
        aligned: list = [None] * len(self.children)
        for i, r in zip(ctx.children, results):
            if isinstance(r, FopError):
                raise r if i == 0 else self._piece_error(r, i, what)
            aligned[i] = r
        return aligned

    async def _new_entry_made(self, first, rest: list, loc: Loc, gfid: GFID,
                              fd: Fd | None = None, rmdir: bool = False) -> list:
        """The other children's results of an entry the first child made: if
        one failed, take the entry away again from those that made it and
        raise (a stale piece on a child is EIO, not the first child's say)."""
        failed = [(i, r) for i, r in enumerate(rest, 1) if isinstance(r, FopError)]
        if not failed:
            return [first] + rest
        made = [0] + [i for i, r in enumerate(rest, 1) if not isinstance(r, FopError)]
        index, error = failed[0]
        self.log.error("%s: %s on %s; removing it from %s", loc, error,
                       self.children[index].name,
                       ", ".join(self.children[i].name for i in made))
        target = Loc(path=loc.path, gfid=gfid, pargfid=loc.pargfid, name=loc.name)
        undo = []
        for i in made:
            child = self.children[i]
            if fd is not None:
                undo.append(functools.partial(_then, child.release, (fd, None),
                                              child.unlink, (target, 0, None)))
            elif rmdir:
                undo.append(functools.partial(child.rmdir, target, 0, None))
            else:
                undo.append(functools.partial(child.unlink, target, 0, None))
        for r in await self._fan(undo):
            if isinstance(r, FopError):
                self.log.error("%s: could not undo: %s", loc, r)
        if error.errno in (errno.EEXIST, errno.ENOENT):
            raise FopError(errno.EIO, f"{loc}: {error} on {self.children[index].name} "
                                      f"after the first subvolume made it")
        raise error

    async def _opened_everywhere(self, rest: list, fd: Fd, loc: Loc) -> None:
        """The other children's opens of a file the first child opened: on a
        failure release what was opened and raise."""
        if not any(isinstance(r, FopError) for r in rest):
            return
        await self._release_opened([True] + rest, fd)
        for i, r in enumerate(rest, 1):
            if isinstance(r, FopError):
                raise self._piece_error(r, i, f"open {loc}")

    async def _release_opened(self, results: list, fd: Fd, directory: bool = False) -> None:
        calls = [functools.partial(getattr(self.children[i],
                                           "releasedir" if directory else "release"), fd, None)
                 for i, r in enumerate(results) if not isinstance(r, FopError)]
        await self._fan(calls)

    async def _lookup_all(self, loc: Loc) -> list:
        req = self._ask_geometry(None)
        results = await self._fan([functools.partial(c.lookup, loc, req)
                                   for c in self.children])
        replies, _ = self._settle_by_iatt(results, lambda r: r.iatt, loc)
        return replies

    # ======================================================================
    # helpers: gfids, attributes

    @staticmethod
    def _gfid_req(xdata: dict, gfid: GFID) -> dict:
        out = dict(xdata)
        out[GFID_REQ] = gfid
        return out

    def _with_gfid_req(self, xdata: dict | None) -> tuple[dict, GFID]:
        """Every child must give a new entry the same gfid: make sure there
        is a gfid-req (gfapi and the FUSE bridge always send one)."""
        out = dict(xdata) if xdata else {}
        req = out.get(GFID_REQ)
        if isinstance(req, (bytearray, memoryview)):
            req = bytes(req)
        gfid = GFID(req) if req is not None else GFID.random()
        out[GFID_REQ] = gfid
        return out, gfid

    def _merge(self, iatts: list[Iatt | None], geometry: Geometry | None) -> Iatt | None:
        """One inode's attributes from its children's (one per child, None
        where a child has nothing): the first child's, with the size the
        pieces imply, their blocks summed and the latest of each time."""
        present = [(i, ia) for i, ia in enumerate(iatts) if ia is not None]
        if not present:
            return None
        merged = dataclasses.replace(present[0][1])
        if len(present) == 1 and geometry is None:
            return merged
        if geometry is not None:
            merged.size = max(geometry.implied_size(i, ia.size) for i, ia in present)
        else:
            merged.size = max(ia.size for _, ia in present)
        merged.blocks = sum(ia.blocks for _, ia in present)
        for sec, nsec in (("atime", "atime_nsec"), ("mtime", "mtime_nsec"),
                          ("ctime", "ctime_nsec")):
            latest = max(present, key=lambda p: (getattr(p[1], sec), getattr(p[1], nsec)))[1]
            setattr(merged, sec, getattr(latest, sec))
            setattr(merged, nsec, getattr(latest, nsec))
        return merged

    def _prepost(self, replies: list, geometry: Geometry | None) -> PrePostReply:
        first = next(r for r in replies if r is not None)
        return PrePostReply(self._merge([r.prebuf if r else None for r in replies], geometry),
                            self._merge([r.postbuf if r else None for r in replies], geometry),
                            xdata=first.xdata)

    def _entry_reply(self, replies: list, geometry: Geometry | None) -> EntryReply:
        return EntryReply(self._merge([r.iatt if r else None for r in replies], geometry),
                          self._merge([r.preparent if r else None for r in replies], None),
                          self._merge([r.postparent if r else None for r in replies], None),
                          xdata=replies[0].xdata)


async def _outcome(call):
    try:
        return await call()
    except FopError as e:
        return e


async def _then(first, first_args, second, second_args):
    """Two calls in order, the second whatever error the first gave."""
    try:
        await first(*first_args)
    except FopError:
        pass
    return await second(*second_args)
