"""Geo-replication sessions under glusterpyd: validate-then-plan, workers, status.

A session mirrors a volume of this pool (the primary) to a volume of
another cluster (the secondary), asynchronously, as GlusterFS's
geo-replication does (`gluster volume geo-replication PRIMARY
[USER@]HOST::SECONDARY ...`).  The session is part of the primary's
volume document (model.Session under "georep"), so every operation on it
is a volume transaction (lock, stage, commit on every node, undone as a
whole) and it travels with the volume to a node that joins.

    {"key": "HOST::SVOL" (":PORT" after HOST when not 24007), "id": uuid,
     "secondary_host", "secondary_port", "secondary_volume", "secondary_user",
     "secondary_id" (the secondary volume's uuid), "secondary_hosts": [every
     host serving the secondary: the named one, then its bricks' hosts],
     "status": Created|Started|Paused|Stopped, "config": {KEY: VALUE},
     "checkpoint": seconds|null, "secondary_ca": the secondary's CA list after
     `create push-pem` (glusterd/georep_pem.py), "" otherwise}

`prepare_georep` is the operation (ops.PREPARE["geo-replication"]): create,
start, stop, pause, resume, delete, config, with glusterd's messages.  The
route (routes/georep.py) asks the secondary before `create` - GETSPEC and
GET_VOLUME_INFO on its management port, which glusterpyd and GlusterFS 10's
glusterd both answer - so a session is never created towards a volume that
does not exist, and learns the secondary's other hosts from the bricks its
volfile names (workers use them when the named host is down).

Workers (`GeorepService`): one `glusterpy gsyncd` process per local brick
of the primary for each Started or Paused session of a Started volume,
supervised as a brick is (bricks.py: restarted with back-off, adopted after
a daemon restart, SIGTERM when unwanted).  Each reads its configuration
from WORKDIR/geo-replication/PRIMARY_HOST_SVOL/BRICK.json, which
`reconcile()` rewrites (the worker reads it again before each crawl, so
pause, resume and config need no restart), and writes its status to
BRICK.status.json beside it (glusterpy/georep/worker.py), which `status()`
reads - GlusterFS's monitor.status and brick status files.

Files: WORKDIR/geo-replication/SESSION/*.json, *.status.json, ssl/ (push-pem);
WORKDIR/run/geo-replication/SESSION/*.pid; WORKDIR/logs/geo-replication/SESSION/*.log.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..options import OptionError
from . import volgen
from .bricks import BrickProcess, Supervisor
from .georep_pem import write_worker_tls
from .common import check_volname
from .model import Session, Volume
from .store import write_atomic

log = logging.getLogger("glusterpy.glusterd.georep")

DEFAULT_PORT = 24007
ACTIONS = ("create", "start", "stop", "pause", "resume", "delete", "config")

#: `config` keys: name -> (default, check); GlusterFS's gsyncd names
CONFIG: dict[str, tuple[str, str]] = {
    # seconds between two crawls (gsyncd's change_interval)
    "change-interval": ("5", "int"),
    # user.* xattrs go to the secondary too
    "sync-xattrs": ("true", "bool"),
    # deletions on the primary are not replayed on the secondary
    "ignore-deletes": ("false", "bool"),
    "log-level": ("INFO", "level"),
}
_BOOLS = {"true", "false", "on", "off", "yes", "no", "1", "0"}
_LEVELS = {"ERROR", "WARNING", "INFO", "DEBUG", "TRACE", "CRITICAL"}
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_HOST = re.compile(r"[A-Za-z0-9._-]{1,253}")


def parse_secondary(text) -> tuple[str, str, int, str]:
    """`[USER@]HOST[:PORT]::VOLUME` -> (user, host, port, volume);
    ValueError with what is wrong."""
    usage = (f"invalid secondary {text!r}: use [<user>@]<host>[:<port>]::<volume> "
             "(e.g. root@backup1::backupvol)")
    if not isinstance(text, str) or text.count("::") != 1:
        raise ValueError(usage)
    where, volume = text.split("::")
    user = "root"
    if "@" in where:
        user, _, where = where.partition("@")
        if not _USER.fullmatch(user):
            raise ValueError(f"invalid secondary user {user!r} in {text!r}")
    host, port = where, DEFAULT_PORT
    if where.count(":") == 1:
        host, port_text = where.split(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"invalid port {port_text!r} in {text!r}")
        port = int(port_text)
    if not _HOST.fullmatch(host or "") or ".." in host:
        raise ValueError(usage)
    try:
        check_volname(volume)
    except ValueError as e:
        raise ValueError(f"invalid secondary volume in {text!r}: {e}") from None
    return user, host, port, volume


def session_key(host: str, port: int, volume: str) -> str:
    return f"{host}{'' if port == DEFAULT_PORT else f':{port}'}::{volume}"


def session_dir_name(primary: str, s: Session) -> str:
    """GlusterFS's PRIMARYVOL_SECONDARYHOST_SECONDARYVOL."""
    host = s.secondary_host + ("" if s.secondary_port == DEFAULT_PORT
                               else f"-{s.secondary_port}")
    return f"{primary}_{host}_{s.secondary_volume}"


def check_config(key: str, value: str) -> str:
    if key not in CONFIG:
        raise ValueError(f"Invalid option name: {key} (known: {', '.join(sorted(CONFIG))}, "
                         "checkpoint)")
    kind = CONFIG[key][1]
    if kind == "int":
        if not value.isdigit() or not 0 < int(value) <= 3600:
            raise ValueError(f"{key} must be a number of seconds from 1 to 3600, not "
                             f"{value!r}")
    elif kind == "bool":
        if value.lower() not in _BOOLS:
            raise ValueError(f"{key} must be true or false, not {value!r}")
        value = "true" if value.lower() in ("true", "on", "yes", "1") else "false"
    elif kind == "level" and value.upper() not in _LEVELS:
        raise ValueError(f"{key} must be one of {', '.join(sorted(_LEVELS))}")
    return value.upper() if kind == "level" else value


def effective_config(s: Session) -> dict[str, str]:
    return {k: s.config.get(k, default) for k, (default, _) in CONFIG.items()}


def _between(vol: Volume, key: str) -> str:
    return f"{vol.name} and {key}"


def prepare_georep(cluster, args: dict) -> Volume:
    """The primary's new document for one geo-replication command
    (module docstring); ValueError with glusterd's message otherwise."""
    vol = copy.deepcopy(cluster.volume(args.get("name")))
    action = args.get("action")
    if action not in ACTIONS:
        raise ValueError(f"geo-replication command must be one of {', '.join(ACTIONS)}")
    user, host, port, svol = parse_secondary(args.get("secondary"))
    key = session_key(host, port, svol)
    force = bool(args.get("force"))
    s = vol.georep.get(key)
    if action == "create":
        if s is not None and not force:
            raise ValueError(f"Session between {_between(vol, key)} is already created. "
                             "Use force to update it")
        if s is not None and s.status in ("Started", "Paused"):
            raise ValueError(f"Session between {_between(vol, key)} is running: stop it "
                             "before creating it again")
        hosts = args.get("secondary_hosts") or [host]
        if not isinstance(hosts, list) or not all(isinstance(h, str) and _HOST.fullmatch(h)
                                                  for h in hosts):
            raise ValueError("secondary_hosts must be a list of host names")
        sid = args.get("secondary_id") or ""
        if sid:
            uuid.UUID(str(sid))
        ca = args.get("secondary_ca")
        if ca is not None and not isinstance(ca, str):
            raise ValueError("secondary_ca must be PEM text")
        if ca is None:  # create [force] without push-pem keeps what push-pem got
            ca = s.secondary_ca if s else ""
        new = Session(key=key, id=s.id if s else str(uuid.uuid4()), secondary_host=host,
                      secondary_volume=svol, secondary_port=port, secondary_user=user,
                      secondary_id=str(sid), secondary_hosts=list(dict.fromkeys(hosts)),
                      status="Created", config=dict(s.config) if s else {},
                      checkpoint=s.checkpoint if s else None, secondary_ca=ca)
        vol.georep[key] = new
        _journal_on(vol)
        return vol
    if s is None:
        raise ValueError(f"Geo-replication session between {_between(vol, key)} does not "
                         "exist.")
    if action == "start":
        if vol.status != "Started":
            raise ValueError(f"Volume {vol.name} needs to be started before geo-replication "
                             "start")
        if s.status in ("Started", "Paused") and not force:
            raise ValueError(f"Geo-replication session between {_between(vol, key)} already "
                             "started.")
        s.status = "Started"
        _journal_on(vol)
    elif action == "stop":
        if s.status not in ("Started", "Paused") and not force:
            raise ValueError(f"Geo-replication session between {_between(vol, key)} is not "
                             "running.")
        s.status = "Stopped"
    elif action == "pause":
        if s.status != "Started":
            raise ValueError(f"Geo-replication session between {_between(vol, key)} is not "
                             f"running (it is {s.status}).")
        s.status = "Paused"
    elif action == "resume":
        if s.status != "Paused":
            raise ValueError(f"Geo-replication session between {_between(vol, key)} is not "
                             "paused.")
        s.status = "Started"
    elif action == "delete":
        if s.status in ("Started", "Paused"):
            raise ValueError(f"Geo-replication session between {_between(vol, key)} is "
                             "still active. Please stop the session and retry.")
        del vol.georep[key]
    else:  # config
        ckey, value = args.get("key"), args.get("value")
        if not isinstance(ckey, str) or not isinstance(value, str):
            raise ValueError("config needs a KEY and a VALUE (config KEY VALUE)")
        if ckey == "checkpoint":
            if value != "now":
                raise ValueError("checkpoint takes 'now'")
            s.checkpoint = round(time.time(), 3)
        elif args.get("reset"):
            check_config(ckey, CONFIG.get(ckey, ("", ""))[0] or "x")
            s.config.pop(ckey, None)
        else:
            s.config[ckey] = check_config(ckey, value)
    return vol


def _journal_on(vol: Volume) -> None:
    """The bricks' changelog on, which the workers' changelog crawl reads
    (GlusterFS's gsync create sets changelog.changelog and
    geo-replication.indexing; glusterpy has no marker translator, whose
    xtime indexing is what the second switches on).  Never switched off
    again by a session: another session may be reading the journal."""
    vol.options["changelog.changelog"] = "on"


def _journal_conf(vol: Volume) -> dict:
    """The bricks' changelog as the worker's changelog crawl needs it:
    on or off, and rollover-time in seconds (parsed here, once: "1min")."""
    out = {}
    for key, name in (("changelog.changelog", "changelog"),
                      ("changelog.rollover-time", "rollover-time")):
        setting = volgen.lookup_key(key)
        try:
            out[name] = setting.parse(vol.options.get(key, setting.option.default))
        except OptionError:
            out[name] = setting.parse(setting.option.default)
    return out


# --------------------------------------------------------------------------
# workers


@dataclass
class WorkerProcess(BrickProcess):
    """One `glusterpy gsyncd` worker; `volfile` is its configuration file,
    whose path identifies the process when a restarted daemon adopts it."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "glusterpy.cli.main", "gsyncd",
                "--config", str(self.volfile), "--pidfile", str(self.pidfile),
                "--log-file", str(self.logfile)]


def _safe(path: str) -> str:
    return path.strip("/").replace("/", "-") or "root"


class GeorepService(Supervisor):
    """This node's geo-replication workers (module docstring), one process
    per (volume, session key, brick path)."""

    def __init__(self, gd):
        super().__init__(gd)
        self.root = Path(gd.workdir) / "geo-replication"

    def session_dir(self, vol: Volume, s: Session) -> Path:
        return self.root / session_dir_name(vol.name, s)

    def wanted(self) -> dict[tuple[str, str, str], dict]:
        """(volume, session key, brick path) -> the worker's configuration."""
        out = {}
        for name, vol in sorted(self.gd.volumes.items()):
            if vol.status != "Started":
                continue
            per_set = max(vol.replica * vol.stripe, 1)
            for key, s in vol.georep.items():
                if s.status not in ("Started", "Paused"):
                    continue
                for i, b in enumerate(vol.bricks):
                    if b.node != self.gd.uuid:
                        continue
                    first = i - i % per_set
                    replica_set = [{"host": x.host, "port": x.port, "path": x.path}
                                   for x in vol.bricks[first:first + per_set]]
                    sdir = self.session_dir(vol, s)
                    out[(name, key, b.path)] = {
                        "primary": name, "primary_id": vol.id, "brick": b.path,
                        "brick_host": b.host, "node": self.gd.uuid,
                        "volfile_server": self.gd.portmap_address,
                        "session": s.to_json(), "config": effective_config(s),
                        "paused": s.status == "Paused", "replica_set": replica_set,
                        "set_index": i // per_set, "index_in_set": i - first,
                        "arbiter": bool(b.arbiter),
                        # the journal the changelog crawl reads (worker's crawl.py)
                        "changelog": _journal_conf(vol),
                        # push-pem's TLS identity and trust (georep_pem.py)
                        "tls_dir": str(sdir / "ssl") if s.secondary_ca else None,
                        "status_file": str(sdir / f"{_safe(b.path)}.status.json")}
        return out

    def _paths(self, key: tuple[str, str, str]) -> tuple[Path, Path, Path]:
        vol = self.gd.volumes[key[0]]
        s = vol.georep[key[1]]
        sdir = self.session_dir(vol, s)
        logs = Path(self.gd.store.log_dir) / "geo-replication" / sdir.name
        run = Path(self.gd.store.run_dir) / "geo-replication" / sdir.name
        brick = _safe(key[2])
        return sdir / f"{brick}.json", run / f"{brick}.pid", logs / f"{brick}.log"

    async def _reconcile(self) -> None:
        wanted = self.wanted()
        for key, conf in wanted.items():
            config, pidfile, logfile = self._paths(key)
            config.parent.mkdir(parents=True, exist_ok=True)
            if conf["tls_dir"]:
                write_worker_tls(self.gd, config.parent,
                                 self.gd.volumes[key[0]].georep[key[1]].secondary_ca)
            text = json.dumps(conf, indent=1, sort_keys=True) + "\n"
            if not config.exists() or config.read_text() != text:
                write_atomic(config, text, 0o600)
            p = self.keep(key, WorkerProcess, volume=key[0], path=f"gsyncd:{key[1]}:{key[2]}",
                          volfile=config, port=0, pidfile=pidfile, logfile=logfile,
                          portmap=self.gd.portmap_address)
            p.want(True)
        for key in [k for k in self.processes if k not in wanted]:
            p = await self.retire(key)
            if not p.running:
                # a stopped session's rows do not read them; start rewrites them
                for path in (p.volfile, p.volfile.with_name(
                        p.volfile.name.removesuffix(".json") + ".status.json")):
                    path.unlink(missing_ok=True)
                if not any(p.volfile.parent.glob("*.json")):
                    # the session's last worker here: its TLS files go too
                    shutil.rmtree(p.volfile.parent / "ssl", ignore_errors=True)
                with contextlib.suppress(OSError):
                    p.volfile.parent.rmdir()

    def local_status(self, name: str, key: str | None = None) -> list[dict]:
        """This node's rows of `status`: one per local brick of the primary."""
        vol = self.gd.volumes.get(name)
        if vol is None:
            return []
        rows = []
        for skey, s in sorted(vol.georep.items()):
            if key is not None and skey != key:
                continue
            sdir = self.session_dir(vol, s)
            for b in vol.bricks:
                if b.node != self.gd.uuid:
                    continue
                row = {"primary_node": b.host, "primary_volume": name, "primary_brick": b.path,
                       "secondary_user": s.secondary_user, "secondary": f"{s.key}",
                       "secondary_node": "N/A", "status": "Stopped", "crawl_status": "N/A",
                       "last_synced": None, "entry": 0, "data": 0, "meta": 0, "failures": 0,
                       "checkpoint_time": s.checkpoint, "checkpoint_completed": False,
                       "checkpoint_completion_time": None, "faulty_reason": None,
                       "session": s.key, "worker_pid": None}
                if s.status == "Created":
                    row["status"] = "Created"
                p = self.processes.get((name, skey, b.path))
                if s.status in ("Started", "Paused") and vol.status != "Started":
                    row["faulty_reason"] = f"the primary volume {name} is not started"
                elif s.status in ("Started", "Paused"):
                    row["status"] = "Initializing..." if s.status == "Started" else "Paused"
                    try:
                        doc = json.loads((sdir / f"{_safe(b.path)}.status.json").read_text())
                    except (OSError, ValueError):
                        doc = None
                    if doc and p is not None and p.running and doc.get("pid") == p.pid:
                        for k in ("secondary_node", "status", "crawl_status", "last_synced",
                                  "entry", "data", "meta", "failures",
                                  "checkpoint_completed", "checkpoint_completion_time",
                                  "faulty_reason", "bytes_synced", "bytes_synced_total"):
                            if k in doc:
                                row[k] = doc[k]
                    elif p is not None and not p.running and p.last_exit:
                        row["status"] = "Faulty"
                        row["faulty_reason"] = f"the worker exited ({p.last_exit}); " \
                                               "restarting"
                    if p is not None and p.running:
                        row["worker_pid"] = p.pid
                    if s.checkpoint is not None and row["checkpoint_completed"] and \
                            (row.get("checkpoint_completion_time") or 0) < s.checkpoint:
                        row["checkpoint_completed"] = False
                rows.append(row)
        return rows


__all__ = ["GeorepService", "WorkerProcess", "prepare_georep", "parse_secondary",
           "session_key", "CONFIG", "effective_config", "check_config"]
