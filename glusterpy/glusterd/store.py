"""glusterpyd's state on disk: node identity, peers, volumes, volfiles, audit.

Everything glusterpyd knows lives under its working directory (glusterd's
/var/lib/glusterd; ours defaults to /var/lib/glusterpy):

    WORKDIR/glusterd.info             this node: {"uuid": ..., "op-version": ...}
    WORKDIR/peers/<uuid>.json         one file per peer: uuid, hostnames, port
    WORKDIR/vols/<NAME>/info.json     the volume: id, type counts, bricks, options,
                                      status, version, tasks (glusterd/model.py's
                                      Volume.to_json)
    WORKDIR/vols/<NAME>/*.vol         its volfiles (names in glusterd/volgen.py;
                                      0600 those with credentials)
    WORKDIR/run/<NAME>/<brick>.pid    brick processes' pid files
    WORKDIR/logs/bricks/<brick>.log   brick processes' logs
    WORKDIR/bd/<NAME>/<VG>/           storage/bd's metadata directories (device lv)
    WORKDIR/audit.log                 one JSON object per line, per operation

Every file is replaced atomically - written to a temporary file in the same
directory, fsync'd, renamed over the old one, then the directory fsync'd -
so a crash (kill -9, power loss) leaves either the old or the new content,
never a torn one, which is what glusterd's store (gf_store_handle, its
`.tmp` + rename) aims at too.  A volume directory is removed by renaming it
aside first (`.deleted-NAME-...`), then deleting: a restart that finds such
a directory finishes the removal, so a deleted volume never comes back half.

The audit log is append-only JSON lines, each line written with one
write() on an O_APPEND descriptor and fsync'd: a crash can cut the last
line only, and `read_audit` skips a cut line.  Departure: glusterd keeps
key=value files (`info`, `bricks/HOST:-PATH`); ours are JSON, one document
per volume, since the management daemon and its REST API speak JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from .. import volfile as vf
from .model import Volume

#: the operating version we write (GlusterFS 10's GD_OP_VERSION_MAX)
OP_VERSION = 100000


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | str, mode: int = 0o600) -> None:
    """Replace `path` with `data`: temp file + fsync + rename + dir fsync."""
    if isinstance(data, str):
        data = data.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def write_json(path: Path, doc: Any) -> None:
    write_atomic(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _volfile_mode(text: str, name: str) -> int:
    """0600 for a volfile with the internal user's password - it is for this
    node's own processes (root) only - and for one that does not parse (it
    cannot be said to hold none); 0644 for the others."""
    try:
        return 0o600 if vf.parses(text, name).carries_credentials else 0o644
    except vf.VolfileError:
        return 0o600


class Store:
    """The working directory of one glusterpyd."""

    def __init__(self, workdir: str | os.PathLike):
        self.root = Path(workdir).resolve()
        self.vols = self.root / "vols"
        self.peers_dir = self.root / "peers"
        self.run_dir = self.root / "run"
        self.log_dir = self.root / "logs"
        self.audit_path = self.root / "audit.log"

    def open(self) -> dict:
        """Create the layout if needed, finish interrupted deletions, and
        return the node identity (made, with a fresh uuid, on first use)."""
        for d in (self.root, self.vols, self.peers_dir, self.run_dir, self.log_dir / "bricks"):
            d.mkdir(parents=True, exist_ok=True)
        for leftover in self.vols.glob(".deleted-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in list(self.root.rglob(".*.tmp")):
            # a temp file a crash left before its rename: never the live copy
            try:
                leftover.unlink()
            except OSError:
                pass
        info = self.root / "glusterd.info"
        if info.exists():
            return read_json(info)
        node = {"uuid": str(uuid.uuid4()), "op-version": OP_VERSION}
        write_json(info, node)
        return node

    # -- peers ------------------------------------------------------------

    def peers(self) -> dict[str, dict]:
        out = {}
        for path in sorted(self.peers_dir.glob("*.json")):
            doc = read_json(path)
            out[doc["uuid"]] = doc
        return out

    def save_peer(self, doc: dict) -> None:
        write_json(self.peers_dir / f"{doc['uuid']}.json", doc)

    def delete_peer(self, peer_uuid: str) -> None:
        path = self.peers_dir / f"{peer_uuid}.json"
        if path.exists():
            path.unlink()
            fsync_dir(self.peers_dir)

    # -- volumes ----------------------------------------------------------

    def volume_dir(self, name: str) -> Path:
        return self.vols / name

    def volumes(self) -> dict[str, Volume]:
        out = {}
        for info in sorted(self.vols.glob("*/info.json")):
            vol = Volume.from_json(read_json(info))
            out[vol.name] = vol
        return out

    def save_volume(self, vol: Volume, volfiles: dict[str, str]) -> None:
        """Write the volume's definition and its volfiles; volfiles it had
        before and no longer has are removed.  The definition is written
        last: it is what a restart trusts, and volfiles are regenerated
        from it then."""
        vdir = self.volume_dir(vol.name)
        vdir.mkdir(parents=True, exist_ok=True)
        for name, text in volfiles.items():
            path = vdir / name
            mode = _volfile_mode(text, name)
            if not path.exists() or path.read_text() != text:
                write_atomic(path, text, mode)
            elif path.stat().st_mode & 0o777 != mode:
                os.chmod(path, mode)
        for old in vdir.glob("*.vol"):
            if old.name not in volfiles:
                old.unlink()
        write_json(vdir / "info.json", vol.to_json())

    def delete_volume(self, name: str) -> None:
        vdir = self.volume_dir(name)
        if not vdir.exists():
            return
        aside = self.vols / f".deleted-{name}-{uuid.uuid4().hex[:8]}"
        os.rename(vdir, aside)
        fsync_dir(self.vols)
        shutil.rmtree(aside, ignore_errors=True)
        shutil.rmtree(self.run_dir / name, ignore_errors=True)

    # -- audit ------------------------------------------------------------

    def audit(self, entry: dict) -> None:
        entry = {"time": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()) +
                 f".{int(time.time() * 1e6) % 1_000_000:06d} +0000", **entry}
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        fd = os.open(self.audit_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read_audit(self) -> Iterator[dict]:
        try:
            lines = self.audit_path.read_bytes().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                yield json.loads(line)
            except ValueError:
                continue  # a line a crash cut short


__all__ = ["Store", "write_atomic", "write_json", "read_json", "fsync_dir", "OP_VERSION"]
