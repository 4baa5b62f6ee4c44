"""Geo-replication's changelog crawl (issue 19; glusterpy/georep/crawl.py).

Two glusterpyd clusters on this machine (test_georep's Pair: a replica 3
primary, a distribute secondary) and a session between them, the bricks'
changelog rolled over every second.  After the first full crawl the Active
worker replays the brick's changelogs: creates, renames (also over an
existing name, a directory moved), unlinks, hard links, xattrs, a new
directory with files arrive while no full crawl runs (the worker's status
file counts its crawls by kind); a 32 MiB file rewritten whole in three
changelogs is sent once by one batch (the worker's byte counter), not
three times; when the Active worker is killed with kill -9 the Passive one that takes over resumes from the stime with a
history crawl, not a full one; the changelog switched off makes the next
crawl a full one again, with the reason.
"""

from __future__ import annotations

import json
import os
import signal
import stat as st
import time

import pytest

from glusterpy import changelog as cl
from glusterpy.fops import GFID
from glusterpy.georep import crawl
from glusterpy.georep.worker import Worker
from test_georep import Pair
from test_glusterd_support import wait_for

FULL, HISTORY, LIVE = "Hybrid Crawl", "History Crawl", "Changelog Crawl"
BIG = 32 << 20


# -- the proof rules, on journals written here -------------------------------------


def _journal(tmp_path, start: int, rolls: list[int], empty=(), corrupt=()) -> str:
    """A brick whose journal was switched on at `start` and rolled over at
    each of `rolls` (one D record each, none for `empty`), indexed as
    features/changelog indexes it."""
    brick = tmp_path / "brick"
    cdir = brick / cl.DEFAULT_DIR
    (cdir / cl.HTIME_DIR).mkdir(parents=True)
    index = b""
    for ts in rolls:
        path = cl.rolled_name(str(cdir), ts, empty=ts in empty)
        if ts not in empty:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            data = cl.encode([cl.Record.data(GFID.random())])
            with open(path, "wb") as f:
                f.write(data[:-5] if ts in corrupt else data)
        index += cl.htime_record(path)
    (cdir / cl.HTIME_DIR / cl.htime_name(start)).write_bytes(index)
    return str(brick)


def test_pending_replays_from_the_stime(tmp_path):
    brick = _journal(tmp_path, 1000, [1001, 1002, 1003, 1004, 1005], empty=[1004])
    rolls, before = crawl.pending(brick, 1002.5, None, 1, now=1005.5)
    assert [r[0] for r in rolls] == [1002, 1003, 1004, 1005] and before == 1001
    batch = crawl.read_batch(rolls, before)
    assert len(batch.records) == 3 and batch.end == 1005   # the empty one has none
    rolls, before = crawl.pending(brick, 1002.5, 1003, 1, now=1005.5)
    assert [r[0] for r in rolls] == [1004, 1005] and before == 1003
    assert crawl.pending(brick, 1002.5, 1005, 1, now=1005.5)[0] == []
    # a name one second after the rollover before may be ahead of its cut
    assert crawl.synced_to(crawl.read_batch(rolls, before)) == 1004
    assert crawl.synced_to(crawl.Batch([(1005, "", False)], [], 1001)) == 1005


@pytest.mark.parametrize("start, rolls, stime, now, why", [
    (1003, [1004, 1005], 1002.0, 1005.5, "switched on at 1003"),      # journal off before
    (1000, [1001, 1002, 1030], 1001.0, 1030.5, "no rollover from 1002 to 1030"),
    (1000, [1001, 1002], 1001.0, 1100.0, "not being written"),        # stopped since
])
def test_a_journal_with_a_hole_asks_for_a_full_crawl(tmp_path, start, rolls, stime, now, why):
    brick = _journal(tmp_path, start, rolls)
    with pytest.raises(crawl.FullCrawlNeeded, match=why):
        crawl.pending(brick, stime, None, 1, now=now)


def test_no_index_or_a_bad_changelog_asks_for_a_full_crawl(tmp_path):
    with pytest.raises(crawl.FullCrawlNeeded, match="no changelog index"):
        crawl.pending(str(tmp_path), 1000.0, None, 15, now=1001.0)
    brick = _journal(tmp_path, 1000, [1001, 1002], corrupt=[1002])
    rolls, before = crawl.pending(brick, 1000.0, None, 15, now=1003.0)
    with pytest.raises(crawl.FullCrawlNeeded, match="truncated"):
        crawl.read_batch(rolls, before)


def test_the_workers_lock_directory_is_never_replayed(tmp_path):
    """The election locks live in the primary volume (LOCK_DIR): their
    creation is journaled like any entry, but the secondary never gets them
    (the full crawl skips them too)."""
    from glusterpy.fops import ROOT_GFID
    from glusterpy.georep import LOCK_DIR
    brick = tmp_path / "brick"
    (brick / LOCK_DIR).mkdir(parents=True)
    (brick / "f").write_bytes(b"x")
    ids = {"mode": 0o40700, "uid": 0, "gid": 0}
    records = [cl.Record.entry(GFID.random(), "mkdir", ROOT_GFID, LOCK_DIR, **ids),
               cl.Record.entry(GFID.random(), "create", ROOT_GFID, "f", **ids)]
    p = crawl.plan(str(brick), records)
    assert p.names == {"/f"} and not p.gone
    # and a lock directory the brick no longer has is not deleted either
    (brick / LOCK_DIR).rmdir()
    assert crawl.plan(str(brick), records[:1]).gone == set()


def test_worker_without_stime_or_journal_crawls_in_full(tmp_path):
    now = int(time.time())
    brick = _journal(tmp_path, now - 2, [now - 1])
    conf = {"brick": brick, "status_file": str(tmp_path / "status.json"),
            "changelog": {"changelog": False, "rollover-time": 15}}
    (tmp_path / "conf.json").write_text(json.dumps(conf))
    w = Worker(tmp_path / "conf.json")
    with pytest.raises(crawl.FullCrawlNeeded, match="no sync time"):
        w.next_batch()
    w.stime = now - 1.5
    with pytest.raises(crawl.FullCrawlNeeded, match="changelog.changelog is off"):
        w.next_batch()
    w.conf["changelog"]["changelog"] = True
    assert w.next_batch().end is not None


def _append_rollovers(brick: str, htime_ts: int, rolls: list[int], partial: bool = False):
    """Rollovers added to the HTIME file `htime_ts` as features/changelog adds
    them; `partial`: the last one cut short (being written)."""
    cdir = os.path.join(brick, cl.DEFAULT_DIR)
    data = b"".join(cl.htime_record(cl.rolled_name(cdir, ts, empty=True)) for ts in rolls)
    with open(os.path.join(cdir, cl.HTIME_DIR, cl.htime_name(htime_ts)), "ab") as f:
        f.write(data[:-7] if partial else data)
    return len(data)


def test_the_index_is_read_as_it_grows(tmp_path):
    """The worker's htime reader reads only what was appended since its last
    read (not the whole index every crawl), leaves a record being written
    for the next read, and starts over on a new HTIME file (the journal
    switched off and on); pending() gives the same as a reader made anew."""
    brick = _journal(tmp_path, 1000, list(range(1001, 1101)))
    index = cl.HtimeReader(os.path.join(brick, cl.DEFAULT_DIR))
    rolls, before = crawl.pending(brick, 1050.0, None, 1, now=1100.5, index=index)
    assert [r[0] for r in rolls] == list(range(1050, 1101)) and before == 1049
    whole = index.bytes_read
    added = _append_rollovers(brick, 1000, [1101, 1102])
    rolls, before = crawl.pending(brick, 1050.0, 1100, 1, now=1102.5, index=index)
    assert [r[0] for r in rolls] == [1101, 1102] and before == 1100
    assert index.bytes_read == whole + added           # the new lines only
    assert crawl.pending(brick, 1050.0, 1100, 1, now=1102.5) == (rolls, before)
    # a record being written: not read until it is whole
    _append_rollovers(brick, 1000, [1103], partial=True)
    assert [r[0] for r in index.read()][-1] == 1102
    with open(os.path.join(brick, cl.DEFAULT_DIR, cl.HTIME_DIR, "HTIME.1000"), "ab") as f:
        f.write(cl.htime_record(cl.rolled_name(os.path.join(brick, cl.DEFAULT_DIR), 1103,
                                               empty=True))[-7:])
    assert [r[0] for r in index.read()][-1] == 1103
    # an earlier stime than the lines forgotten: read again from the start
    assert crawl.pending(brick, 1010.0, None, 1, now=1103.5, index=index)[0][0][0] == 1010
    # the journal off and on: a new HTIME file, followed from its beginning
    _append_rollovers(brick, 1200, [1201, 1202])
    assert [r[0] for r in index.read()] == [1201, 1202]
    rolls, before = crawl.pending(brick, 1200.0, None, 1, now=1202.5, index=index)
    assert [r[0] for r in rolls] == [1201, 1202] and before is None
    with pytest.raises(crawl.FullCrawlNeeded, match="switched on at 1200"):
        crawl.pending(brick, 1150.0, None, 1, now=1202.5, index=index)


# -- two clusters --------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("chown on the bricks needs root")
    pr = Pair(tmp_path)
    try:
        pr.start()
        yield pr
    finally:
        pr.cleanup()


def _worker(pair, brick: str | None = None) -> dict:
    """The status file of the worker of `brick`, by default the Active one's
    (its crawl counts and byte counter)."""
    rows = pair.rows()
    row = next(r for r in rows if (r["primary_brick"] == brick if brick
                                   else r["status"] == "Active"))
    for f in (pair.p.workdir / "geo-replication").rglob("*.status.json"):
        try:
            doc = json.loads(f.read_text())
        except ValueError:
            continue  # (being replaced)
        if doc.get("pid") == row["worker_pid"]:
            return doc
    raise AssertionError(f"no status file of worker {row['worker_pid']}")


def _active(pair) -> dict:
    return _worker(pair)


def _crawls(pair) -> dict:
    return dict(_active(pair).get("crawls") or {})


def _brick_of_active(pair) -> str:
    return next(r for r in pair.rows() if r["status"] == "Active")["primary_brick"]


def _changelogs_naming(brick: str, gfid: str) -> int:
    """How many rolled-over changelogs of `brick` hold a D record of `gfid`."""
    n = 0
    cdir = os.path.join(brick, cl.DEFAULT_DIR)
    for _, path, usable in cl.history(cdir):
        if usable and any(r.type == cl.DATA and str(r.gfid) == gfid
                          for r in cl.parse(open(path, "rb").read())):
            n += 1
    return n


@pytest.mark.slow
def test_changelog_crawl(pair):
    v = pair.pvol
    pair.p.ok("volume", "set", "pv", "changelog.rollover-time", "1")
    v.makedirs("/d/sub")
    with v.fopen("/d/f", "wb") as f:
        f.write(b"first " * 100)
    with v.fopen("/victim", "wb") as f:
        f.write(b"replaced by a rename")
    with v.fopen("/gone", "wb") as f:
        f.write(b"unlinked")
    with v.fopen("/big", "wb") as f:
        f.write(os.urandom(BIG))
    assert pair.geo("create").rc == 0
    # the session switched the bricks' changelog on
    assert "changelog.changelog: on" in pair.p.ok("volume", "info", "pv").out
    pair.geo("config", "change-interval", "1")
    assert pair.geo("start").rc == 0
    pair.checkpoint()
    pair.assert_mirrored()
    # the first crawl is a full one; then the journal drives the crawls
    assert _crawls(pair).get(FULL, 0) >= 1
    wait_for(lambda: _active(pair)["crawl_status"] in (HISTORY, LIVE), 60,
             "the changelog crawl")
    full_before = _crawls(pair).get(FULL, 0)

    # changes of every kind, replayed from the changelogs
    with v.fopen("/d/f", "ab") as f:
        f.write(b"appended")
    v.link("/d/f", "/d/hard")
    v.rename("/d/hard", "/victim")          # over an existing name
    v.unlink("/gone")
    v.rename("/d/sub", "/moved")            # a directory moves
    v.makedirs("/new/deep")
    with v.fopen("/new/deep/file", "wb") as f:
        f.write(b"in a new directory")
    v.symlink("../d/f", "/new/link")
    v.mknod("/fifo", 0o640 | st.S_IFIFO)
    v.setxattr("/d/f", "user.colour", b"blue")
    v.chmod("/moved", 0o700)
    v.chown("/new/deep/file", 1234, 4321)
    with v.fopen("/moved/inside", "wb") as f:
        f.write(b"written into the moved directory")
    pair.checkpoint()
    pair.assert_mirrored()
    # (on the bricks: the test's client caches names it looked up before)
    for b in ("sb0", "sb1"):
        assert not os.path.lexists(pair.tmp / b / "gone")
        assert not os.path.lexists(pair.tmp / b / "d" / "sub")
    assert pair.svol.getxattr("/victim", "glusterfs.gfid.string") == \
        v.getxattr("/d/f", "glusterfs.gfid.string")
    crawls = _crawls(pair)
    assert crawls.get(FULL, 0) == full_before, (crawls, _active(pair))
    assert crawls.get(LIVE, 0) + crawls.get(HISTORY, 0) >= 1, crawls

    # a large file rewritten whole in three changelogs: sent once per batch
    gfid = v.getxattr("/big", "glusterfs.gfid.string").decode()
    brick = _brick_of_active(pair)
    assert pair.geo("pause").rc == 0
    assert wait_for(lambda: all(r["status"] == "Paused" for r in pair.rows()), 30)
    for _ in range(3):
        with v.fopen("/big", "r+b") as f:
            f.write(os.urandom(BIG))
        time.sleep(1.5)                     # the next rewrite in the next changelog
    time.sleep(1.5)                         # the last one rolled over too
    assert _changelogs_naming(brick, gfid) >= 3   # (written before the journal was on)
    before = _bytes(_worker(pair, brick))
    assert pair.geo("resume").rc == 0
    pair.checkpoint()
    pair.assert_mirrored()
    sent = _bytes(_worker(pair, brick)) - before
    assert BIG // 2 < sent <= BIG + (BIG >> 3), sent
    assert _crawls(pair).get(FULL, 0) == full_before

    # kill -9 the Active worker: a Passive one of the replica set takes over
    # (the election lock) and resumes from the set's stime with its own
    # brick's changelogs, not a full crawl
    active = next(r for r in pair.rows() if r["status"] == "Active")
    pid = active["worker_pid"]
    os.kill(pid, signal.SIGKILL)
    v.unlink("/new/link")
    v.rename("/d/f", "/d/renamed-while-dead")
    with v.fopen("/while-dead", "wb") as f:
        f.write(b"written while the worker was dead")

    def taken_over():
        return any(r["status"] == "Active" and r["worker_pid"] not in (None, pid)
                   for r in pair.rows())
    assert wait_for(taken_over, 60), pair.rows()
    pair.checkpoint()
    pair.assert_mirrored()
    crawls = _crawls(pair)
    assert FULL not in crawls and crawls.get(HISTORY, 0) >= 1, (crawls, _active(pair).get("crawl_reason"), pair._logs()[-3000:])

    # the journal switched off: the next crawl is a full one, and says why
    pair.p.ok("volume", "set", "pv", "changelog.changelog", "off")
    with v.fopen("/while-off", "wb") as f:
        f.write(b"not in any changelog")
    wait_for(lambda: _crawls(pair).get(FULL, 0) >= 1, 60, "a full crawl")
    assert "changelog.changelog is off" in (_active(pair).get("crawl_reason") or "")
    pair.checkpoint()
    pair.assert_mirrored()
    # on again: a new HTIME file after the stime - one full crawl, then changelogs
    pair.p.ok("volume", "set", "pv", "changelog.changelog", "on")
    wait_for(lambda: _active(pair)["crawl_status"] in (HISTORY, LIVE) and
             _crawls(pair).get(FULL, 0) >= 2, 60, "the changelog crawl again")
    with v.fopen("/after-on", "wb") as f:
        f.write(b"journaled again")
    pair.checkpoint()
    pair.assert_mirrored()


@pytest.mark.slow
def test_no_waiting_for_the_rollover(pair):
    """With GlusterFS's default rollover-time (15 s) a change reaches the
    secondary, and a checkpoint completes, within a few seconds: the worker
    asks its bricks for an explicit rollover instead of waiting for it."""
    v = pair.pvol
    pair.p.ok("volume", "set", "pv", "changelog.rollover-time", "15")
    with v.fopen("/before", "wb") as f:
        f.write(b"in the first full crawl")
    assert pair.geo("create").rc == 0
    pair.geo("config", "change-interval", "1")
    assert pair.geo("start").rc == 0
    pair.checkpoint()
    wait_for(lambda: _active(pair)["crawl_status"] in (HISTORY, LIVE), 60,
             "the changelog crawl")
    full = _crawls(pair).get(FULL, 0)
    for i in range(2):
        with v.fopen(f"/live{i}", "wb") as f:
            f.write(b"journaled %d" % i)
        t0 = time.monotonic()
        assert wait_for(lambda: pair.svol.exists(f"/live{i}"), 30), pair._logs()
        assert time.monotonic() - t0 < 8, time.monotonic() - t0
        # a checkpoint with nothing new since: a rollover after it is asked for
        t0 = time.monotonic()
        pair.checkpoint(timeout=30)
        assert time.monotonic() - t0 < 8, time.monotonic() - t0
    pair.assert_mirrored()
    doc = _active(pair)
    assert doc.get("rollovers_asked", 0) >= 2 and _crawls(pair).get(FULL, 0) == full, doc
    # the journal's files are GlusterFS's, and the rollovers asked for are in them
    brick = _brick_of_active(pair)
    hist = cl.history(os.path.join(brick, cl.DEFAULT_DIR))
    gfid = v.getxattr("/live1", "glusterfs.gfid.string").decode()
    assert any(usable and any(str(r.gfid) == gfid for r in cl.parse(open(p, "rb").read()))
               for _, p, usable in hist)


def _bytes(doc: dict) -> int:
    return int(doc.get("bytes_synced_total") or 0)
