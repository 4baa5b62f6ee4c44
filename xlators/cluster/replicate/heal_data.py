"""Data self-heal (afr-self-heal-data.c): a regular file's content from its
source to its sinks, block by block.

A sparse source (fewer blocks allocated than its size) keeps its holes on
the sinks: the sinks are first truncated to the source's size, zero blocks
past a sink's old size are not written (the truncate made them holes), and
zero blocks inside it are punched as holes (discard) rather than written -
so a discard the sink missed heals as a hole.  tests/test_replicate_heal.py
(`*holes*`, `*discard*`) compares the bricks' SEEK_DATA/SEEK_HOLE extents.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable

from glusterpy.fops import GFID, Fd, FopError, Iatt, Loc, LockCmd, LockType

from xlators.cluster.replicate import changelog as cl
from xlators.cluster.replicate.changelog import DATA
from xlators.cluster.replicate.heal_common import (SFILE_NOT_IN_SPLIT_BRAIN, Heal, MetadataHold,
                                                   Outcome, both, guard)
from xlators.cluster.replicate.state import is_ok

_BLOCK = 128 * 1024


# -- data (afr-self-heal-data.c) ---------------------------------------------


async def heal_data(h: Heal, gfid: GFID, on_locked: Callable[[], None] | None = None,
                    hold: MetadataHold | None = None, unlocked: list | None = None) -> Outcome:
    """afr_selfheal_data.  The open, the self-heal domain's lock and the
    whole file's data lock go out together (GlusterFS opens, then locks
    the one, then the other; `_lock_both`), and so do the unlock and the
    release: neither needs the other, and each pair is one round trip
    instead of two.  `on_locked` is called once, when the whole file's
    data lock is held on every child and the copies were looked at under
    it, or else when the heal ends
    (heal_inode.heal_gfid starts the metadata heal then); with `hold`,
    the metadata heal is handed the lock and the look under it, and the
    lock is kept until that heal ends (heal_common.MetadataHold).

    `unlocked`: the look at the copies before any lock (heal_gfid's).
    GlusterFS opens the file on every child; only the source read from
    and the sinks use the fd, so with `unlocked` it is opened on the
    children that look like those (`_fd_children`) - a source that is not
    read from is spared an open and a release.  Should the look under the
    lock choose otherwise, the fd is opened then on the children it lacks
    (a round trip more, in that rare case)."""
    try:
        return await _heal_data(h, gfid, on_locked, hold, unlocked)
    finally:
        if on_locked is not None:
            on_locked()


async def _heal_data(h: Heal, gfid: GFID, on_locked: Callable[[], None] | None,
                     hold: MetadataHold | None, unlocked: list | None) -> Outcome:
    afr = h.afr
    fd = Fd(gfid=gfid, flags=os.O_RDWR)
    loc = Loc(gfid=gfid)
    opened, (locked_on, data_pre) = await both(
        lambda: h.on(_fd_children(h, unlocked),
                     lambda i: afr.children[i].open(loc, os.O_RDWR, fd, None)),
        lambda: _lock_both(h, gfid))
    open_on = [is_ok(r) for r in opened]
    #: the whole file's data unlock, when the heal ends holding it: sent
    #: with the self-heal domain's unlock and the release
    later: list[Callable[[], Awaitable[None]]] = []
    try:
        if not any(open_on):
            raise next((r for r in opened if isinstance(r, FopError)),
                       FopError(errno.ENOTCONN))
        if sum(locked_on) < h.n:
            raise FopError(errno.ENOTCONN, "Skipping self-heal: not every subvolume "
                                           "could be locked")
        pre, data_pre = data_pre, None      # _heal_data_locked lets it go
        return await _heal_data_locked(h, gfid, fd, on_locked, later, hold, open_on, pre)
    finally:
        if data_pre is not None:
            await h.uninodelk(afr.domain, gfid, 0, 0, data_pre)
        if hold is not None and later:
            # the whole file's data unlock waits for the metadata heal
            # running under it, and what it left is sent (MetadataHold)
            if on_locked is not None:
                on_locked()
            await hold.send_left(h, gfid)
        await both(lambda: both(lambda: h.uninodelk(afr.sh_domain, gfid, 0, 0, locked_on),
                                later[0] if later else _nothing),
                   lambda: h.on([i for i in range(h.n) if open_on[i]],
                                lambda i: afr.children[i].release(fd, None)))


async def _lock_both(h: Heal, gfid: GFID) -> tuple[list[bool], list[bool] | None]:
    """The self-heal domain's lock and the whole file's data lock, tried
    at once (one round trip; GlusterFS takes the one, then the other):
    (the self-heal domain's lock on each child, the data lock when every
    child granted both, else None - __afr_selfheal_data takes it then).
    Both are tried without waiting; unless every child granted both, the
    data locks granted are let go before anything waits (a blocking wait
    for the self-heal domain's lock while holding the data lock could
    deadlock with another daemon holding the first and waiting for the
    second), and the self-heal domain's lock is taken as before."""
    afr = h.afr
    up = h.up()

    def attempt(dom):
        return lambda: h.on(up, lambda i: h._inodelk(i, dom, gfid, 0, 0, LockCmd.SETLK,
                                                      LockType.WRLCK))
    sh_try, data_try = await both(attempt(afr.sh_domain), attempt(afr.domain))
    sh_ok = [is_ok(r) for r in sh_try]
    data_ok = [is_ok(r) for r in data_try]
    if sum(sh_ok) == h.n and sum(data_ok) == h.n:
        return sh_ok, data_ok
    if any(data_ok):
        await h.uninodelk(afr.domain, gfid, 0, 0, data_ok)
    if sum(sh_ok) == h.n:
        return sh_ok, None
    if any(sh_ok):
        await h.uninodelk(afr.sh_domain, gfid, 0, 0, sh_ok)
    return await h.inodelk(afr.sh_domain, gfid, tie_breaker=True), None


def _fd_children(h: Heal, unlocked: list | None) -> list[int]:
    """The children to open the file on: every one that is up, or, given
    the unlocked look, the source the heal would read from and the
    children that are not data sources (sinks, or all in a split-brain)."""
    up = h.up()
    if unlocked is None or h.heal_op is not None:
        return up
    try:
        d = h.direction(unlocked, DATA, [is_ok(r) for r in unlocked])
    except FopError:
        return up
    if not any(d.sources):
        return up
    source = h.choose_source(d.sources, DATA)
    return [i for i in up if i == source or not d.sources[i]]


async def _open_missing(h: Heal, fd: Fd, gfid: GFID, source: int, healed: list[bool],
                        open_on: list[bool] | None) -> None:
    """The fd on the children the locked look chose and the open skipped
    (heal_data's `unlocked`); a failed open there fails as a failed open
    at the start would have (the source's read, the sink's writes)."""
    if open_on is None:
        return
    missing = [i for i in range(h.n) if (healed[i] or i == source) and not open_on[i]]
    if not missing:
        return
    loc = Loc(gfid=gfid)
    got = await h.on(missing, lambda i: h.afr.children[i].open(loc, os.O_RDWR, fd, None))
    for i in missing:
        open_on[i] = is_ok(got[i])


def _has_holes(ia: Iatt) -> bool:
    return ia.blocks * 512 < ia.size


async def _heal_data_locked(h: Heal, gfid: GFID, fd: Fd,
                            on_locked: Callable[[], None] | None = None,
                            later: list | None = None,
                            hold: MetadataHold | None = None,
                            open_on: list[bool] | None = None,
                            data_lock: list[bool] | None = None) -> Outcome:
    """__afr_selfheal_data.

    A file that fits in one copy window (``data-self-heal-window-size``
    blocks) keeps the full data lock from the ftruncate to the post-op:
    GlusterFS unlocks after the ftruncate, locks the one block, unlocks,
    and locks the whole file again for the post-op - four round trips
    that let a client's write slip in between, only to wait for the
    block's lock anyway (the block is the whole file).  A bigger file is
    healed as GlusterFS heals it, block by block, each under its own
    lock, so clients are not held off for the length of a long copy."""
    afr = h.afr
    n = h.n
    undid = [False] * n
    if data_lock is None:
        data_lock = await h.inodelk(afr.domain, gfid)
    arbiter_only = empty = held = False
    #: the first window of the source, read ahead (above)
    first: bytes | None = None
    try:
        if sum(data_lock) < n:
            raise FopError(errno.ENOTCONN, "not every subvolume could be locked")
        replies = await h.discover(gfid)
        if hold is not None:
            # the metadata heal runs under this lock now, with this look;
            # the lock is not let go before it ends (MetadataHold)
            hold.hand(data_lock, replies)
        if on_locked is not None:
            on_locked()
        d = h.direction(replies, DATA, data_lock)
        sources, sinks = d.sources, d.sinks
        healed = [sinks[i] and data_lock[i] for i in range(n)]
        source = await _data_finalize_source(h, gfid, replies, d, healed, data_lock, undid)
        if not any(healed):
            return Outcome.NO_HEAL_NEEDED
        await _open_missing(h, fd, gfid, source, healed, open_on)
        iatts = [r.iatt if is_ok(r) else None for r in replies]
        if source == afr.arbiter:
            empty = all(ia is not None and ia.size == 0 for ia in iatts)
            if not empty:
                return Outcome.NO_HEAL_NEEDED
        else:
            size = iatts[source].size
            targets = [i for i in range(n) if healed[i]]
            window = _window(afr, iatts[source])
            # a file of one window whose sinks hold none of it: no checksum
            # will be asked, so the source's read needs nothing of the
            # sinks' ftruncate and goes out with it (read again in the copy
            # if it failed)
            if 0 < size <= window and not _has_holes(iatts[source]) and \
                    all(iatts[i] is not None and iatts[i].size == 0 for i in targets):
                trunc, got = await both(
                    lambda: h.on(targets, lambda i: afr.children[i].ftruncate(fd, size, None)),
                    lambda: guard(h.one(source, lambda i: afr.children[i].readv(
                        fd, window, 0, 0, None))))
                if not isinstance(got, FopError):
                    first = bytes(got.data)
            else:
                trunc = await h.on(targets, lambda i: afr.children[i].ftruncate(fd, size, None))
            for i in range(n):
                if healed[i] and not is_ok(trunc[i]):
                    healed[i] = False
            if afr.arbiter is not None and sum(healed) == 1 and healed[afr.arbiter]:
                arbiter_only = True
        copy = not empty and not arbiter_only
        held = copy and iatts[source].size <= _window(afr, iatts[source])
    finally:
        if not held:
            if hold is not None:
                await hold.send_left(h, gfid)
            await h.uninodelk(afr.domain, gfid, 0, 0, data_lock)
    if held:
        async def times():
            # after the metadata heal's changes (they touch the ctime),
            # and for its sinks too when it healed from the same source
            if hold is not None:
                await hold.wait_done()
            targets = list(healed)
            more = hold.take_times(source) if hold is not None else None
            for i in range(n):
                targets[i] = targets[i] or bool(more and more[i])
            await h.restore_time(gfid, iatts[source], targets)
        try:
            await _copy_data(h, gfid, fd, source, healed, iatts, locked=True, first=first)
            await both(lambda: _sync_sinks(h, fd, healed), times)
            await h.undo_pending(gfid, replies, DATA, sinks, healed, data_lock, undid,
                                 more=hold.take_post_op() if hold is not None else None)
        finally:
            await _unlock_at_end(h, gfid, data_lock, later, hold)
        _log_healed(afr, gfid, sources, healed)
        return Outcome.HEALED
    if copy:
        await _copy_data(h, gfid, fd, source, healed, iatts)
    # the sinks' fsync (ensure-durability) and their times go out together:
    # a sink whose fsync fails is no longer counted healed, and the times
    # it got meanwhile do no harm, as it stays pending
    await both(lambda: _sync_sinks(h, fd, healed) if copy else _nothing(),
               lambda: h.restore_time(gfid, iatts[source], list(healed)))
    if copy:
        data_lock = await h.inodelk(afr.domain, gfid)
        if sum(data_lock) < n:
            await h.uninodelk(afr.domain, gfid, 0, 0, data_lock)
            raise FopError(errno.ENOTCONN, "could not lock every subvolume for the post-op")
    try:
        await h.undo_pending(gfid, replies, DATA, sinks, healed, data_lock, undid)
    finally:
        await _unlock_at_end(h, gfid, data_lock, later, hold)
    _log_healed(afr, gfid, sources, healed)
    return Outcome.HEALED


async def _unlock_at_end(h: Heal, gfid: GFID, lock: list[bool], later: list | None,
                         hold: MetadataHold | None = None) -> None:
    """The whole file's data unlock as the heal ends: left to `later`
    (heal_data sends it with its last unlock and the release: one round
    trip instead of two), else now."""
    if later is None:
        if hold is not None:
            await hold.send_left(h, gfid)
        await h.uninodelk(h.afr.domain, gfid, 0, 0, lock)
    else:
        later.append(lambda: h.uninodelk(h.afr.domain, gfid, 0, 0, lock))


def _log_healed(afr, gfid, sources, healed) -> None:
    afr.log.info("Completed data selfheal on %s. sources=%s sinks=%s", gfid,
                 [i for i, s in enumerate(sources) if s], [i for i, s in enumerate(healed) if s])


def _window(afr, src: Iatt) -> int:
    """The bytes one step of the copy covers: ``data-self-heal-window-size``
    blocks, one block for a sparse source (its holes are found block by
    block)."""
    return _BLOCK if _has_holes(src) else _BLOCK * afr.opts.data_self_heal_window_size


async def _data_finalize_source(h: Heal, gfid, replies, d: cl.Direction, healed,
                                locked_on, undid) -> int:
    """__afr_selfheal_data_finalize_source; EIO for an unresolved
    split-brain."""
    afr = h.afr
    n = h.n
    sources, sinks = d.sources, d.sinks
    iatts = [r.iatt if is_ok(r) else None for r in replies]
    if healed == list(locked_on) or not any(sources):
        source = h.split_brain_source(replies, sources, sinks, healed, locked_on, DATA)
        if source < 0:
            afr.log.error("Unable to self-heal contents of %s (possible split-brain). "
                          "Please delete the file from all but the preferred subvolume.",
                          gfid)
            raise FopError(errno.EIO, h.fail_msg or f"{gfid} is in data split-brain")
        await h.reset_sink_xattrs(gfid, replies, source, healed, locked_on, DATA, undid)
    else:
        if h.heal_op is not None:
            h.fail_msg = SFILE_NOT_IN_SPLIT_BRAIN
            raise FopError(errno.EIO, SFILE_NOT_IN_SPLIT_BRAIN)
        if cl.size_mismatch(sources, iatts, afr.arbiter) or \
                any(sources[i] and d.witness[i] for i in range(n)):
            cl.largest_file(sources, iatts)
            cl.biggest_witness(sources, d.witness)
            cl.newest_ctime(sources, iatts)
            if afr.arbiter is not None:
                h.if_file_empty(replies, sources, sinks, healed, locked_on, DATA)
    for i in range(n):
        healed[i] = not sources[i] and bool(locked_on[i])
    return h.choose_source(sources, DATA)


async def _copy_data(h: Heal, gfid, fd, source, healed, iatts, locked: bool = False,
                     first: bytes | None = None) -> None:
    """afr_selfheal_data_do: block by block, each under its own range lock
    (none when `locked`: the caller holds the whole file's; `first`: the
    first block, already read)."""
    afr = h.afr
    arbiter_sink = False
    if afr.arbiter is not None and healed[afr.arbiter]:
        arbiter_sink = True
        healed[afr.arbiter] = False
    try:
        src = iatts[source]
        block = _window(afr, src)
        algo = afr.opts.data_self_heal_algorithm
        if algo is None:
            algo = "diff" if any(iatts[i].size for i in range(h.n)
                                 if healed[i] or i == source) else "full"
        off = 0
        while off < src.size:
            if not any(healed):
                raise FopError(errno.ENOTCONN, "every sink failed")
            await _heal_block(h, gfid, fd, source, healed, off, block, algo, iatts, locked,
                              first if off == 0 else None)
            off += block
    finally:
        if arbiter_sink:
            healed[afr.arbiter] = True


async def _sync_sinks(h: Heal, fd, healed) -> None:
    """afr_selfheal_data_fsync: with ensure-durability, a sink whose fsync
    fails is not counted as healed (the arbiter holds no data: not synced)."""
    afr = h.afr
    if not afr.opts.ensure_durability:
        return
    targets = [i for i in range(h.n) if healed[i] and i != afr.arbiter]
    res = await h.on(targets, lambda i: afr.children[i].fsync(fd, 0, None))
    for i in targets:
        if not is_ok(res[i]):
            healed[i] = False


async def _nothing() -> None:
    return None


async def _heal_block(h: Heal, gfid, fd, source, healed, off, size, algo, iatts,
                      locked: bool = False, data: bytes | None = None) -> None:
    """afr_selfheal_data_block (`locked`: under the caller's lock of the
    whole file, which every child granted; `data`: the block, already
    read)."""
    afr = h.afr
    lock = [True] * h.n if locked else await h.inodelk(afr.domain, gfid, off, size)
    try:
        if not lock[source] or not any(healed[i] and lock[i] for i in range(h.n)):
            raise FopError(errno.ENOTCONN, "source or sinks not locked")
        # a sink that ended before this block holds nothing of it (its
        # ftruncate made zeros there): no checksum can spare the copy, so
        # none is asked for when every sink is such a one
        if algo == "diff" and any(healed[i] and iatts[i].size > off for i in range(h.n)) \
                and await _block_matches(h, fd, source, healed, off, size, iatts[source]):
            return
        if data is None:
            data = bytes((await h.one(source, lambda i: afr.children[i].readv(
                fd, size, off, 0, None))).data)
        if not data:
            return
        zero = not any(data)
        src = iatts[source]
        for i in range(h.n):
            if not healed[i]:
                continue
            # Zeros past the sink's size before this heal are holes there
            # already: the ftruncate to the source's size made them.  AFR also
            # writes the last block to set the size; the ftruncate set it
            # here, and writing it would allocate a source's trailing hole.
            if _has_holes(src) and off >= iatts[i].size and zero:
                continue
            try:
                if _has_holes(src) and zero and await _punch(h, i, fd, off, len(data)):
                    continue
                w = await h.one(i, lambda j: afr.children[j].writev(fd, data, off, 0, None))
                if w.count != len(data):
                    healed[i] = False
            except FopError:
                healed[i] = False
    finally:
        if not locked:
            await h.uninodelk(afr.domain, gfid, off, size, lock)


async def _punch(h: Heal, i: int, fd, off: int, length: int) -> bool:
    """Zeros of a sparse source inside the sink's old size (a discard the
    sink missed, most often): a hole punched on the sink, so the copies
    keep the same holes instead of the sink's allocating zeros.  False
    when the sink's brick cannot punch holes: then the zeros are written."""
    try:
        await h.one(i, lambda j: h.afr.children[j].discard(fd, off, length, None))
    except FopError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            return False
        raise
    return True


async def _block_matches(h: Heal, fd, source, healed, off, size, src: Iatt) -> bool:
    """__afr_can_skip_data_block_heal: equal checksums everywhere."""
    afr = h.afr
    targets = [i for i in range(h.n) if i == source or healed[i]]
    sums = await h.on(targets, lambda i: afr.children[i].rchecksum(
        fd, off, size, {"check-zero-filled": 1}))
    if not is_ok(sums[source]):
        return False
    for i in targets:
        if i != source and is_ok(sums[i]) and sums[i].strong != sums[source].strong:
            return False
    if _has_holes(src):
        return True
    return not (sums[source].xdata or {}).get("buf-has-zeroes")
