"""`glusterpy gsyncd`: one geo-replication worker, for one brick of the primary.

GlusterFS's gsyncd worker, in this project's words.  glusterpyd starts one
per local brick of the primary volume for each running session
(glusterpy/glusterd/georep.py supervises it: restarted with back-off when it
dies, stopped when the session stops) and gives it a configuration file,
which the worker reads again before every crawl (pause, resume, config and
checkpoints apply without a restart).  It writes its status beside it
(STATUS, CRAWL STATUS, the secondary node it uses, LAST_SYNCED, counts,
the reason when Faulty), which `geo-replication status` shows.

Transport: the worker is a client of both volumes over the project's
GlusterFS protocol (glusterpy/gfapi): of the primary through this node's
glusterpyd, of the secondary through any of its hosts - the one named at
create time first, then the other hosts serving the secondary (the bricks'
hosts its volfile names), so a secondary node that is down does not stop
the session (GlusterFS issue #3956).  Across networks it is encrypted and
authenticated by the protocol's TLS (glusterpy/rpc/tls.py) rather than SSH
as GlusterFS's gsyncd uses: the worker then needs no shell account, no
authorized_keys with forced commands and no second daemon on the secondary
- the set-up that fails most often for GlusterFS's users (#1754, #4374,
#4480) - and the secondary may be any GlusterFS 10 or glusterpy cluster,
which already speaks that protocol.  `create push-pem` sets it up in one
command (glusterpy/glusterd/georep_pem.py): with a token the secondary's
admin made once, the secondary admits this pool's node certificates (its
glusterfs.ca, the volume's auth.ssl-allow) and answers its CA list; the
worker is given an OpenSSL directory of its own (the configuration's
"tls_dir": its node's certificate and key, that CA list) as
$GLUSTERPY_SSL_CERT_DIR, and its client of the secondary speaks TLS when
the secondary's volfile says client.ssl (push-pem refuses a secondary
volume without it).  A session created without push-pem uses the node's
OpenSSL directory as it is (a secondary without TLS, or trust set up by
hand).  Departure: the secondary's volfile is fetched (GETSPEC) in plain
text unless management TLS (secure-access) is on on both sides.

Active/Passive: the bricks of a replica set hold the same files, so one
worker per set syncs (Active) and the others wait (Passive).  As GlusterFS
does with its meta volume, the Active one is the worker that holds its
set's election lock: a POSIX lock (the `lk` fop, through its client of the
primary) on /.glusterpy-georep/PRIMARYID_SECONDARYID_subvolN.lock in the
primary volume itself (a hidden directory that the crawl skips and that
never reaches the secondary).  Every worker whose own brick answers tries
to take it every ELECTION_INTERVAL seconds; the bricks' features/locks drop
a lock with its holder's connection, so when the Active worker dies (kill
-9, its node down) a Passive one takes over within seconds, and the dead
one, restarted by glusterpyd, stays Passive (no flapping back, GlusterFS
#4304).  The Active worker asserts the lock again before each crawl, and
goes back to Passive if it lost it (its connection to the bricks broke).
A worker whose own brick is down is Faulty (its crawl reads that brick)
and releases the lock; arbiters never try it (they hold no data).
Departure: the lock file lives on whichever replica set DHT places it; if
every brick of that set is down no worker of the session is Active.

The crawl ("Hybrid Crawl", GlusterFS's name for its full xsync crawl): the
brick directory is walked (not .glusterfs, not DHT link files), which gives
this brick's part of the volume with each entry's gfid (trusted.gfid);
the secondary is walked through its client, which gives its gfid -> path
index.  Then, directories before their contents:

* entries: a name missing on the secondary is created with the primary's
  gfid (gfid-req in the create's xdata, as gsyncd's entry_ops asks for it):
  mkdir, mknod (files and devices), symlink; a gfid the secondary holds
  under another name that the primary no longer uses is renamed there (a
  rename on the primary, also over an existing name); one the primary
  holds under both names is hard-linked; a name the secondary holds with
  another gfid is removed first (the primary replaced it);
* data: a regular file whose size or mtime differ is compared in blocks of
  128 KiB with the `rchecksum` fop on both sides, and only the blocks that
  differ are sent (read through the primary's client, written through the
  secondary's): each file once per crawl however often it changed;
* metadata: mode, owner, atime/mtime (directories after their contents),
  and user.* xattrs (`sync-xattrs`);
* deletions (unless `ignore-deletes`): a name on the secondary that the
  primary (the whole volume, asked through its client, so workers of other
  bricks' parts never delete each other's files) does not have.

After a crawl the worker records its sync time - the time a full crawl
started, the time of the last changelog a changelog crawl replayed - on
the secondary's root as the xattr
trusted.glusterfs.PRIMARY-VOLUME-ID.SECONDARY-VOLUME-ID.SET.stime (GlusterFS's
stime key, per replica set as GlusterFS keeps it per brick; value: seconds
and nanoseconds as two big-endian 32-bit numbers).  A restarted worker reads
it (as gsyncd's pid, ClientPid.GSYNCD: the bricks show sync times to no
other client): LAST_SYNCED is shown at once, and the changelogs from it on
are replayed instead of a full crawl (a full crawl, when one is needed,
does not compare again entries whose ctime is older unless the secondary
lacks them).  A checkpoint (`config checkpoint
now`) is complete when the sync time reaches it.

Changelogs (crawl.py): after the first full crawl the worker replays the
brick's changelogs from stime on ("History Crawl", then "Changelog Crawl"),
each batch's inodes synced once however many changelogs name them; any
crawl whose journal cannot prove it holds every change since stime is a
full one again (crawl.py says when).

Faults: any error of a crawl (a volume that cannot be mounted, a brick
that does not answer) makes the worker Faulty with the reason, and it tries
again after a back-off that doubles from 2 s to 60 s; entries that fail one
by one are counted as FAILURES and retried at the next crawl.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import logging
import os
import stat as st
import struct
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import trio

from . import LOCK_DIR, NOT_MIRRORED
from ..fops import ClientPid, GFID
from ..keys import DHT_LINKTO_KEY, GFID_KEY, GFID_STRING_KEY
from ..volfile import GSYNCD_SUFFIX, NOPERF_SUFFIX
from .crawl import ChangelogCrawl

log = logging.getLogger("glusterpy.georep")

#: the unit of the data comparison (AFR's data self-heal uses the same)
BLOCK = 128 << 10
BACKOFF_MIN, BACKOFF_MAX = 2.0, 60.0
#: a brick that does not accept a connection within this is down
PROBE_TIMEOUT = 2.0
#: how long a worker starting tries to read its stime from the secondary
STIME_READ_TIMEOUT = 15.0
STATUS_NAMES = ("Initializing...", "Active", "Passive", "Faulty", "Paused", "Stopped")
CRAWL_FULL = "Hybrid Crawl"
#: seconds between a Passive worker's tries of the lock
ELECTION_INTERVAL = 2.0
USER_XATTR = "user."


def stime_key(primary_id: str, secondary_id: str, set_index: int) -> str:
    return f"trusted.glusterfs.{primary_id}.{secondary_id}.{set_index}.stime"


def pack_time(t: float) -> bytes:
    sec = int(t)
    return struct.pack("!II", sec, int((t - sec) * 1e9))


def unpack_time(value: bytes) -> float:
    sec, nsec = struct.unpack("!II", value[:8])
    return sec + nsec / 1e9


@dataclass
class Status:
    """What the worker tells glusterpyd (its status file)."""

    path: Path
    status: str = "Initializing..."
    crawl_status: str = "N/A"
    secondary_node: str = "N/A"
    last_synced: float | None = None
    entry: int = 0
    data: int = 0
    meta: int = 0
    failures: int = 0
    checkpoint_completed: bool = False
    checkpoint_completion_time: float | None = None
    faulty_reason: str | None = None
    extra: dict = field(default_factory=dict)

    def write(self) -> None:
        doc = {"pid": os.getpid(), "status": self.status, "crawl_status": self.crawl_status,
               "secondary_node": self.secondary_node, "last_synced": self.last_synced,
               "entry": self.entry, "data": self.data, "meta": self.meta,
               "failures": self.failures, "checkpoint_completed": self.checkpoint_completed,
               "checkpoint_completion_time": self.checkpoint_completion_time,
               "faulty_reason": self.faulty_reason, "updated": time.time(), **self.extra}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(doc, sort_keys=True) + "\n")
        os.replace(tmp, self.path)


@dataclass
class Entry:
    """One entry of the brick's part of the primary."""

    path: str  # from the volume's root: "/a/b"
    gfid: GFID
    mode: int
    ctime: float


class Counts:
    """What one crawl did: entries, files whose data, and entries whose
    metadata it synced; failures; data bytes it sent."""

    def __init__(self):
        self.entry = self.data = self.meta = self.failures = self.bytes = 0


def _read_config(path: Path) -> dict:
    return json.loads(path.read_text())


def _flag(value: str) -> bool:
    return str(value).lower() in ("true", "on", "yes", "1")


async def brick_up(host: str, port: int) -> bool:
    if not port:
        return False
    with trio.move_on_after(PROBE_TIMEOUT):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            return False
        await stream.aclose()
        return True
    return False


async def own_brick_down(conf: dict) -> str | None:
    """Why this worker cannot work at all (its brick does not answer), or None."""
    own = conf["replica_set"][conf["index_in_set"]]
    if not await brick_up(own["host"], own["port"]):
        return f"its brick {own['host']}:{own['path']} is not running"
    return None


def lock_path(conf: dict) -> str:
    """The replica set's election lock in the primary volume (GlusterFS's
    meta volume keeps geo-rep/PRIMARYID_SECONDARYID_subvolN.lock)."""
    s = conf["session"]
    return (f"/{LOCK_DIR}/{conf['primary_id']}_{s.get('secondary_id') or s['id']}"
            f"_subvol{int(conf['set_index']) + 1}.lock")


class ElectionLock:
    """The Active worker's POSIX lock (the `lk` fop) on its replica set's
    lock file: the bricks' features/locks release it when the holder's
    connection goes (a worker killed, its node down), so a Passive worker's
    next try wins.  One owner per worker process."""

    def __init__(self, primary, path: str):
        self.primary, self.path = primary, path
        self.owner = uuid.uuid4().bytes[:8]
        self.file = None

    async def try_take(self) -> bool:
        """One non-blocking try (also re-asserts a lock held: a lock this
        owner holds is granted again, one lost to a reconnection is not)."""
        from ..fops import Flock, LockCmd, LockType
        if self.file is None:
            with contextlib.suppress(FileExistsError):
                await self.primary.mkdir("/" + LOCK_DIR, 0o700)
            self.file = await self.primary.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await self.file.lock(LockCmd.SETLK, Flock(type=LockType.WRLCK, pid=os.getpid(),
                                                      owner=self.owner))
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                await self.drop()
                raise
            return False
        return True

    async def drop(self) -> None:
        """Close the file (its locks go with it)."""
        f, self.file = self.file, None
        if f is not None:
            with contextlib.suppress(OSError):
                await f.close()


def is_dht_linkfile(path: str, s: os.stat_result) -> bool:
    """A DHT link file: the data is on another brick."""
    if st.S_ISREG(s.st_mode) and (s.st_mode & 0o7777) == st.S_ISVTX and s.st_size == 0:
        try:
            os.getxattr(path, DHT_LINKTO_KEY, follow_symlinks=False)
        except OSError:
            return False
        return True
    return False


def crawl_brick(brick: str, top: str = "") -> list[Entry]:
    """This brick's part of the volume (below `top`, a path from the
    volume root: "/d"), parents before children."""
    out: list[Entry] = []
    stack = [top.rstrip("/")]
    while stack:
        rel = stack.pop()
        try:
            it = os.scandir(brick + rel if rel else brick)
        except OSError as e:
            log.warning("cannot read %s%s: %s", brick, rel, e.strerror)
            continue
        with it:
            names = sorted(it, key=lambda e: e.name)
        subdirs = []
        for e in names:
            if not rel and e.name in NOT_MIRRORED:
                continue
            try:
                s = e.stat(follow_symlinks=False)
                gfid = GFID(os.getxattr(e.path, GFID_KEY, follow_symlinks=False))
            except (OSError, ValueError):
                continue  # being created, or gone: the next crawl sees it
            if is_dht_linkfile(e.path, s):
                continue
            out.append(Entry(f"{rel}/{e.name}", gfid, s.st_mode, s.st_ctime))
            if st.S_ISDIR(s.st_mode):
                subdirs.append(f"{rel}/{e.name}")
        stack.extend(reversed(subdirs))
    # parents before children: a depth-first pre-order
    return out


class Worker(ChangelogCrawl):
    def __init__(self, config_path: Path):
        self.config_path = config_path
        self.conf = _read_config(config_path)
        self.status = Status(Path(self.conf["status_file"]))
        self.status.path.parent.mkdir(parents=True, exist_ok=True)
        self.stime: float | None = None

    # -- the loop ------------------------------------------------------------

    async def run(self) -> None:
        self.status.write()
        backoff = BACKOFF_MIN
        while True:
            try:
                await self._session()
                backoff = BACKOFF_MIN
            except Exception as e:  # noqa: BLE001 - any failure is Faulty, with its reason
                reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                log.error("worker faulty: %s; retrying in %.0fs", reason, backoff)
                self.status.status, self.status.faulty_reason = "Faulty", reason
                self.status.crawl_status = "N/A"
                self.status.write()
                await trio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _reload(self) -> dict:
        try:
            self.conf = _read_config(self.config_path)
        except (OSError, ValueError) as e:
            log.warning("cannot read %s (%s): keeping the previous configuration",
                        self.config_path, e)
        return self.conf

    async def _passive(self, why: str = "Passive") -> None:
        self.status.status, self.status.crawl_status = why, "N/A"
        self.status.faulty_reason = None
        self.status.write()

    async def _session(self) -> None:
        """Connected to the primary: Passive until this worker holds its
        replica set's lock, then Active (`_active`) until it loses it."""
        from ..gfapi.aio import AsyncVolume
        while self._reload().get("arbiter"):  # holds no data: never Active
            await self._passive()
            await trio.sleep(ELECTION_INTERVAL * 5)
        host, _, port = self.conf["volfile_server"].rpartition(":")
        # the noperf graph logged in as the volume's internal user
        # (VOL.gsyncd, served to this node only): gsyncd's pid, with which it
        # reads and sets sync times on the bricks, counts only from a trusted
        # client on a volume that squashes root
        primary = AsyncVolume.from_server([host], self.conf["primary"] + GSYNCD_SUFFIX,
                                          int(port))
        async with primary:
            primary.umask = 0
            # every fop on the primary as gsyncd's (GlusterFS mounts it with
            # --client-pid=-1): with root-squash on there, a trusted client's
            # internal pid is what spares its uid 0 from squashing, so the
            # worker reads root's files and takes its lock in the root
            primary.identity = dataclasses.replace(primary.identity, pid=ClientPid.GSYNCD)
            lock = ElectionLock(primary, lock_path(self.conf))
            try:
                while True:
                    conf = self._reload()
                    why = await own_brick_down(conf)
                    if why:
                        raise RuntimeError(why)
                    if await lock.try_take():
                        await self._active(primary, lock)
                        continue  # lost the lock: Passive again
                    await self._passive("Paused" if conf.get("paused") else "Passive")
                    await trio.sleep(ELECTION_INTERVAL)
            finally:
                with trio.CancelScope(shield=True):
                    await lock.drop()

    async def _active(self, primary, lock: ElectionLock) -> None:
        """Holding the lock: connect to the secondary and crawl every
        change-interval; returns when the lock is lost."""
        from ..gfapi import mgmt
        from ..gfapi.aio import AsyncVolume
        s = self.conf["session"]
        servers = mgmt.volfile_servers(s["secondary_hosts"] or [s["secondary_host"]],
                                       s["secondary_port"])
        # the secondary's client without performance translators (VOL.noperf):
        # a cache would show the worker names that another client removed
        # (GlusterFS 10's glusterd has no such volfile: its plain one then)
        skey = s["secondary_volume"] + NOPERF_SUFFIX
        try:
            fetched = await mgmt.fetch_volfile(servers, skey)
        except mgmt.VolfileFetchError as e:
            if e.errno != errno.ENOENT:
                raise
            skey = s["secondary_volume"]
            fetched = await mgmt.fetch_volfile(servers, skey)
        first = fetched.server.host
        hosts = [first] + [h for h in (s["secondary_hosts"] or []) if h != first]
        secondary = AsyncVolume.from_server(hosts, skey, s["secondary_port"])
        async with secondary:
            secondary.umask = 0
            self.status.secondary_node = first
            self.stime = await self._read_stime(secondary)
            log.info("Active (holding %s); the sync time on the secondary: %s", lock.path,
                     self.stime)
            self.status.last_synced = self.stime
            self.status.faulty_reason = None
            self._live_since = time.time()
            self._done = None
            while True:
                conf = self._reload()
                why = await own_brick_down(conf)
                if why:
                    raise RuntimeError(why)
                if not await lock.try_take():
                    log.warning("the election lock %s was lost: Passive", lock.path)
                    await lock.drop()
                    return
                if conf.get("paused"):
                    await self._passive("Paused")
                    await trio.sleep(1)
                    continue
                self.status.status = "Active"
                started = time.time()
                counts, synced_to = await self.crawl(primary, secondary, started)
                self.status.entry, self.status.data, self.status.meta = \
                    counts.entry, counts.data, counts.meta
                self.status.failures = counts.failures
                self.status.extra["bytes_synced"] = counts.bytes
                self.status.extra["bytes_synced_total"] = \
                    self.status.extra.get("bytes_synced_total", 0) + counts.bytes
                if counts.failures == 0 and synced_to is not None:
                    await self._write_stime(secondary, synced_to)
                    self.stime = self.status.last_synced = synced_to
                cp = self.conf["session"].get("checkpoint")
                if cp is not None and self.stime is not None and self.stime >= cp and not (
                        self.status.checkpoint_completed and
                        (self.status.checkpoint_completion_time or 0) >= cp):
                    self.status.checkpoint_completed = True
                    self.status.checkpoint_completion_time = time.time()
                self.status.write()
                await trio.sleep(int(self.conf["config"]["change-interval"]))

    def _stime_key(self) -> str:
        s = self.conf["session"]
        return stime_key(self.conf["primary_id"], s.get("secondary_id") or s["id"],
                         self.conf["set_index"])

    async def _read_stime(self, secondary) -> float | None:
        """The stime on the secondary's root; None when it has none.  Any
        other error (a secondary brick not connected yet) is tried again
        for a while, then raised: taken for "no stime", it would cost a
        full crawl where the changelogs would do."""
        deadline = time.monotonic() + STIME_READ_TIMEOUT
        while True:
            # the bricks hand sync times to gsyncd's pid only (posix here,
            # marker on GlusterFS's); the other fops keep the worker's own
            own = secondary.identity
            secondary.identity = dataclasses.replace(own, pid=ClientPid.GSYNCD)
            try:
                return unpack_time(await secondary.getxattr("/", self._stime_key()))
            except struct.error:
                return None
            except OSError as e:
                if e.errno in (errno.ENODATA, errno.ENOENT):
                    return None
                if time.monotonic() >= deadline:
                    raise
                log.info("stime unreadable (%s): trying again", e)
            finally:
                secondary.identity = own
            await trio.sleep(0.5)

    async def _write_stime(self, secondary, t: float) -> None:
        await secondary.setxattr("/", self._stime_key(), pack_time(t))

    # -- the crawl -------------------------------------------------------------

    async def walk_secondary(self, secondary) -> dict[str, tuple[GFID, os.stat_result]]:
        """path -> (gfid, lstat) of every entry of the secondary."""
        from ..gfapi.common import stat_result
        out: dict[str, tuple[GFID, os.stat_result]] = {}
        stack = ["/"]
        while stack:
            d = stack.pop()
            try:
                async with await secondary.opendir(d, readdirplus=True) as it:
                    async for e in it:
                        if e.name in (".", "..") or (d == "/" and e.name == ".trashcan"):
                            continue
                        p = f"{d.rstrip('/')}/{e.name}"
                        out[p] = (GFID(e.iatt.gfid), stat_result(e.iatt))
                        if e.iatt.is_dir:
                            stack.append(p)
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                    raise
        return out

    async def full_crawl(self, primary, secondary) -> Counts:
        counts = Counts()
        brick = self.conf["brick"]
        entries = await trio.to_thread.run_sync(crawl_brick, brick)
        sec = await self.walk_secondary(secondary)
        by_gfid: dict[bytes, list[str]] = {}
        for p, (g, _) in sec.items():
            by_gfid.setdefault(bytes(g), []).append(p)
        primary_paths = {e.path for e in entries}
        #: gfid -> its names in this brick's part of the primary
        self._brick_paths: dict[bytes, list[str]] = {}
        for e in entries:
            self._brick_paths.setdefault(bytes(e.gfid), []).append(e.path)
        sync_xattrs = _flag(self.conf["config"].get("sync-xattrs", "true"))
        dirs: list[tuple[Entry, os.stat_result]] = []
        for e in entries:
            try:
                pst = await primary.lstat(e.path)
            except OSError as err:
                if err.errno in (errno.ENOENT, errno.ESTALE):
                    continue  # gone since the brick was read
                counts.failures += 1
                log.warning("%s: lstat on the primary: %s", e.path, err)
                continue
            try:
                await self.sync_entry(primary, secondary, e, pst, sec, by_gfid,
                                      primary_paths, counts, sync_xattrs)
            except OSError as err:
                counts.failures += 1
                log.warning("%s: %s", e.path, err)
            if st.S_ISDIR(e.mode):
                dirs.append((e, pst))
        if not _flag(self.conf["config"].get("ignore-deletes", "false")):
            await self.sync_deletes(primary, secondary, counts)
        # directories' times last: their contents' changes moved them
        for e, pst in reversed(dirs):
            with contextlib.suppress(OSError):
                cur = await secondary.lstat(e.path)
                if cur.st_mtime_ns != pst.st_mtime_ns:
                    await secondary.utime(e.path, ns=(pst.st_atime_ns, pst.st_mtime_ns),
                                          follow_symlinks=False)
                    counts.meta += 1
        return counts

    async def _sec_gfid(self, secondary, path: str) -> GFID | None:
        try:
            value = await secondary.getxattr(path, GFID_STRING_KEY, follow_symlinks=False)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ESTALE):
                return None
            raise
        return GFID(value.decode().rstrip("\0"))

    async def _primary_gfid(self, primary, path: str) -> GFID | None:
        try:
            value = await primary.getxattr(path, GFID_STRING_KEY, follow_symlinks=False)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ESTALE, errno.ENOTDIR):
                return None
            raise
        return GFID(value.decode().rstrip("\0"))

    async def _remove(self, secondary, path: str) -> None:
        st_ = await secondary.lstat(path)
        if st.S_ISDIR(st_.st_mode):
            await secondary.rmtree(path)
        else:
            await secondary.unlink(path)

    async def sync_entry(self, primary, secondary, e: Entry, pst: os.stat_result, sec: dict,
                         by_gfid: dict, primary_paths: set, counts: Counts,
                         sync_xattrs: bool) -> None:
        path, gfid = e.path, e.gfid
        have = await self._sec_gfid(secondary, path)
        fresh = False
        if have is not None and have != gfid:
            # the primary replaced this name (a rename over it, or delete and
            # create): the secondary's entry goes, unless the primary still
            # has its gfid elsewhere - then it moves there below
            elsewhere = self._brick_paths.get(bytes(have), [])
            target = elsewhere[0] if elsewhere else None
            if target and not await secondary.exists(target) and \
                    await secondary.isdir(target.rsplit("/", 1)[0] or "/"):
                await secondary.rename(path, target)
                by_gfid[bytes(have)] = [target]
            else:
                await self._remove(secondary, path)
            counts.entry += 1
            have = None
        if have is None:
            action, src = "create", None
            for p in by_gfid.get(bytes(gfid), []):
                if p == path or await self._sec_gfid(secondary, p) != gfid:
                    continue  # (the index is from before this crawl's renames)
                if not st.S_ISDIR(e.mode) and (
                        p in primary_paths or await self._primary_gfid(primary, p) == gfid):
                    action, src = "link", p  # both names are the primary's
                else:
                    action, src = "rename", p  # the primary renamed it
                break
            if action == "link":
                await secondary.link(src, path)
                by_gfid[bytes(gfid)].append(path)
            elif action == "rename":
                await secondary.rename(src, path)
                by_gfid[bytes(gfid)] = [path]
            else:
                await self._create(primary, secondary, e, pst)
                by_gfid.setdefault(bytes(gfid), []).append(path)
                fresh = True
            counts.entry += 1
        elif self.stime is not None and max(pst.st_ctime, pst.st_mtime) < self.stime - 1 \
                and path in sec and not st.S_ISDIR(e.mode):
            # synced by a crawl after its last change (mtime too: GlusterFS's
            # utime stamps fallocate and zerofill with mtime, not ctime)
            return
        sst = await secondary.lstat(path)
        if st.S_ISREG(e.mode) and (fresh or sst.st_size != pst.st_size or
                                   sst.st_mtime_ns != pst.st_mtime_ns):
            await self._copy_data(primary, secondary, path, fresh, counts)
            counts.data += 1
            sst = await secondary.lstat(path)
        changed = False
        if not st.S_ISLNK(e.mode) and st.S_IMODE(sst.st_mode) != st.S_IMODE(pst.st_mode):
            await secondary.chmod(path, st.S_IMODE(pst.st_mode))
            changed = True
        if (sst.st_uid, sst.st_gid) != (pst.st_uid, pst.st_gid):
            await secondary.lchown(path, pst.st_uid, pst.st_gid)
            changed = True
        if sync_xattrs and not st.S_ISLNK(e.mode):
            changed |= await self._sync_xattrs(secondary, path)
        if not st.S_ISDIR(e.mode) and (
                changed or (sst.st_mtime_ns, sst.st_atime_ns) !=
                (pst.st_mtime_ns, pst.st_atime_ns)):
            await secondary.utime(path, ns=(pst.st_atime_ns, pst.st_mtime_ns),
                                  follow_symlinks=False)
            changed = True
        if changed:
            counts.meta += 1

    async def _create(self, primary, secondary, e: Entry, pst: os.stat_result) -> None:
        mode = st.S_IMODE(pst.st_mode)
        try:
            if st.S_ISDIR(e.mode):
                await secondary.mkdir(e.path, mode, gfid=e.gfid)
            elif st.S_ISLNK(e.mode):
                await secondary.symlink(await primary.readlink(e.path), e.path, gfid=e.gfid)
            else:
                await secondary.mknod(e.path, st.S_IFMT(pst.st_mode) | mode,
                                      pst.st_rdev, gfid=e.gfid)
        except FileExistsError:
            # another worker (another replica set's) made it meanwhile
            if await self._sec_gfid(secondary, e.path) != e.gfid:
                raise

    async def _copy_data(self, primary, secondary, path: str, fresh: bool,
                         counts: Counts) -> None:
        """The file's data onto the secondary's copy, holes kept as holes:
        only the primary's data extents (SEEK_DATA/SEEK_HOLE, the `seek`
        fop) are compared and sent, and a range that is a hole on the
        primary but holds data on the secondary is punched there (`discard`;
        zeros written when the secondary cannot punch), so a sparse file
        arrives sparse.  Within the data, block by block: a block whose
        checksums (the rchecksum fop on both sides: only the sums cross the
        wire) are equal is not sent, so an append or an overwrite in a large
        file sends what changed (GlusterFS #4321).  Departure from rsync:
        fixed blocks, no rolling checksum - an insert moves every block
        after it."""
        async with await primary.open(path, os.O_RDONLY) as src, \
                await secondary.open(path, os.O_RDWR) as dst:  # (rchecksum reads)
            size = (await src.fstat()).st_size
            have = 0 if fresh else (await dst.fstat()).st_size
            end = size
            pos = 0
            for start, stop in await _extents(src, size):
                if pos < start and pos < have:  # a hole of the primary's
                    await _punch(dst, pos, min(start, have) - pos)
                short = await self._copy_range(src, dst, start, stop, have, counts)
                if short is not None:  # the file shrank while it was read
                    end = short
                    break
                pos = stop
            else:
                if pos < min(size, have):
                    await _punch(dst, pos, min(size, have) - pos)
            if have != end:
                await dst.ftruncate(end)

    async def _copy_range(self, src, dst, start: int, stop: int, have: int,
                          counts: Counts) -> int | None:
        """[start, stop) of the primary's data; the offset where the data
        ended early, or None."""
        offset = start
        while offset < stop:
            length = min(BLOCK - offset % BLOCK, stop - offset)
            if offset + length <= have:
                try:
                    same = await src.rchecksum(offset, length) == \
                        await dst.rchecksum(offset, length)
                except OSError as e:
                    if e.errno not in (errno.ENOTSUP, errno.ENOSYS, errno.EOPNOTSUPP):
                        raise
                    same = False  # a secondary without rchecksum: send it
                if same:
                    offset += length
                    continue
            data = await src.pread(length, offset)
            if not data:
                return offset
            await dst.pwrite(data, offset)
            counts.bytes += len(data)
            offset += len(data)
        return None

    async def _sync_xattrs(self, secondary, path: str) -> bool:
        brick_path = self.conf["brick"] + path
        try:
            names = [n for n in os.listxattr(brick_path, follow_symlinks=False)
                     if n.startswith(USER_XATTR)]
            want = {n: os.getxattr(brick_path, n, follow_symlinks=False) for n in names}
        except OSError:
            return False
        have_names = [n for n in await secondary.listxattr(path, follow_symlinks=False)
                      if n.startswith(USER_XATTR)]
        changed = False
        for n, v in want.items():
            cur = None
            if n in have_names:
                cur = await secondary.getxattr(path, n, follow_symlinks=False)
            if cur != v:
                await secondary.setxattr(path, n, v, follow_symlinks=False)
                changed = True
        for n in have_names:
            if n not in want:
                await secondary.removexattr(path, n, follow_symlinks=False)
                changed = True
        return changed

    async def sync_deletes(self, primary, secondary, counts: Counts) -> None:
        sec = await self.walk_secondary(secondary)
        await self.delete_absent(primary, secondary, sec, counts)

    async def delete_absent(self, primary, secondary, paths: Iterable[str],
                            counts: Counts) -> None:
        """Remove from the secondary, deepest first, each of `paths` that the
        whole primary lacks - asked through its client, never by this
        brick's listing alone (another brick's part, or made again)."""
        for path in sorted(paths, key=lambda p: p.count("/"), reverse=True):
            try:
                if await self._primary_gfid(primary, path) is not None:
                    continue
            except OSError as e:
                counts.failures += 1
                log.warning("%s: lookup on the primary: %s", path, e)
                continue
            try:
                await self._remove(secondary, path)
                counts.entry += 1
            except FileNotFoundError:
                pass
            except OSError as e:
                counts.failures += 1
                log.warning("%s: delete on the secondary: %s", path, e)


async def _extents(src, size: int) -> list[tuple[int, int]]:
    """The data extents of an open file of the primary: [(start, stop)],
    the whole file when its bricks cannot tell (no SEEK_DATA)."""
    from ..gfapi.files import SEEK_DATA, SEEK_HOLE
    out: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        try:
            start = await src.lseek(pos, SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                break  # nothing but a hole up to the end
            if e.errno in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                return [(0, size)]
            raise
        if start >= size:
            break
        stop = min(await src.lseek(start, SEEK_HOLE), size)
        out.append((start, stop))
        pos = stop
    return out


async def _punch(dst, offset: int, length: int) -> None:
    """[offset, offset+length) of the secondary's copy made a hole, unless it
    is one already."""
    from ..gfapi.files import SEEK_DATA
    if length <= 0:
        return
    try:
        if await dst.lseek(offset, SEEK_DATA) >= offset + length:
            return
    except OSError as e:
        if e.errno == errno.ENXIO:
            return
    try:
        await dst.discard(offset, length)
    except OSError as e:
        if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
        for at in range(offset, offset + length, BLOCK):  # zeros, then
            await dst.pwrite(bytes(min(BLOCK, offset + length - at)), at)


def _setup_logging(log_file: str | None, level: str) -> None:
    handler: logging.Handler
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO) if level != "TRACE"
                  else logging.DEBUG)


def main(args: argparse.Namespace) -> int:
    config = Path(args.config)
    try:
        conf = _read_config(config)
    except (OSError, ValueError) as e:
        print(f"gsyncd: cannot read {config}: {e}", file=sys.stderr)
        return 1
    _setup_logging(args.log_file, conf.get("config", {}).get("log-level", "INFO"))
    if conf.get("tls_dir"):
        # this session's identity and the secondary's CA list (Transport, above)
        from ..rpc import tls
        os.environ[tls.CERT_DIR_ENV] = conf["tls_dir"]
    if args.pidfile:
        Path(args.pidfile).parent.mkdir(parents=True, exist_ok=True)
        Path(args.pidfile).write_text(f"{os.getpid()}\n")
    worker = Worker(config)
    log.info("gsyncd worker for %s:%s -> %s (session %s)", conf["brick_host"], conf["brick"],
             conf["session"]["key"], conf["session"]["id"])
    try:
        trio.run(worker.run)
    except KeyboardInterrupt:
        pass
    return 0


__all__ = ["Worker", "main", "crawl_brick", "stime_key", "pack_time", "unpack_time"]
