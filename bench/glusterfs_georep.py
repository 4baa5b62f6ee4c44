"""GlusterFS 10's own geo-replication on this machine, for suite_georep's
other column.

Done as GlusterFS's regression tests do it (tests/geo-rep.rc, tests/00-geo-rep):
one glusterd serves both the primary and the secondary volume, and gsyncd
reaches the "remote" side over ssh to this host.  So the set-up is:

* an sshd of our own on 127.0.0.1 (its config, host key, pid file and log in
  a temporary directory, on a free port), which accepts root's keys from
  /root/.ssh/authorized_keys (where `create push-pem` puts gsyncd's key) and
  from our temporary authorized_keys (root's own key, which gverify.sh needs
  before the push);
* Debian's glusterd on its own working directory /var/lib/glusterd: gsyncd,
  its config template and the gsync-create hook all name that path, so it is
  copied aside first and put back as it was at the end;
* `gluster system:: execute gsec_create`, then `volume geo-replication PV
  HOST::SV create ssh-port N push-pem`, as GlusterFS's documentation says;
* `config sync_method tarssh` before `start`: gsyncd's default, rsync,
  delivers no data with this machine's rsync (SYNC_METHOD_WHY says why).

Everything it starts (glusterd, bricks, gsyncd, its auxiliary mounts, our
FUSE mount, sshd) is ended by pid in `close`, /root/.ssh and /var/lib/glusterd
are restored, and the caller holds /tmp/realgluster.lock and the 24007 lock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

from .servers import free_port, port_24007

GLUSTERD = shutil.which("glusterd") or "/usr/sbin/glusterd"
GLUSTER = shutil.which("gluster") or "/usr/sbin/gluster"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
WORKDIR = Path("/var/lib/glusterd")
ROOT_SSH = Path("/root/.ssh")
GSYNCD_LOGS = Path("/var/log/glusterfs/geo-replication")
GSYNCD_SECONDARY_LOGS = Path("/var/log/glusterfs/geo-replication-secondaries")


#: gsyncd's data sync method here, and why not its default (rsync)
SYNC_METHOD = "tarssh"
SYNC_METHOD_WHY = (
    "gsyncd's rsync (`rsync -aR0 --inplace --existing ... . HOST:/proc/PID/cwd`, PID the "
    "secondary's gsyncd, whose cwd is its aux-gfid mount, lazily unmounted) writes nothing "
    "with Debian 12's rsync 3.5.0 (bookworm-security) as the receiver: that rsync resolves "
    "the destination path itself, one component at a time (openat O_NOFOLLOW|O_PATH, "
    "readlinkat on a symlink), and /proc/PID/cwd of a detached mount reads as \"/\" - so it "
    "looks for .gfid/GFID under the machine's root, finds none, and with --existing creates "
    "nothing, \"not creating new file\" (-vv), exit 0 (strace of the receiver: "
    "readlinkat(3, \"cwd\") = \"/\", then openat(AT_FDCWD, \"/\") and fchdir). gsyncd counts no "
    "failure, stime moves on, checkpoints complete and the files stay at the 0 bytes its "
    "entry ops created. The same transfer with Debian's rsync 3.2.7 as the receiver "
    "(chdir through the magic link) delivers the data; gsyncd's rsync_command and "
    "--rsync-path cannot choose the receiver's rsync, because the secondary's forced "
    "command (/usr/lib/x86_64-linux-gnu/glusterfs/gsyncd, from push-pem) execs `rsync` "
    "from PATH - why an earlier try with 3.2.7 seemed to fail too. So the session is "
    "configured `sync_method tarssh` (tar -cf - | ssh HOST tar -xf - -C /proc/PID/cwd: "
    "tar's chdir follows the magic link into the mount), as GlusterFS's users can.")

#: how long a checkpoint may take after the session was restarted
RESTART_TIMEOUT = 180.0
#: how long the big file may take to arrive after its checkpoint completed
BIG_GRACE = 120.0


class SetupError(RuntimeError):
    """GlusterFS's geo-replication could not be set up or run here; the
    message says at which step and what GlusterFS said."""


def _run(args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


class GlusterGeorep:
    """One glusterd with a primary and a secondary one-brick volume and a
    geo-replication session between them over our sshd."""

    def __init__(self, base: Path, tag: str):
        self.base = base
        self.host = socket.gethostname()
        self.pv, self.sv = f"{tag}pv", f"{tag}sv"
        self.secondary = f"{self.host}::{self.sv}"
        self.mnt = base / "mnt"
        self.mounted = False
        self.sshd: subprocess.Popen | None = None
        self.glusterd: subprocess.Popen | None = None
        self.ssh_port = free_port()
        self.backup = base / "var-lib-glusterd"
        self.root_ssh_backup = base / "root-ssh"
        self.root_ssh_existed = ROOT_SSH.exists()
        self.run_sshd_made = False
        self.volumes: list[str] = []

    # -- set-up ---------------------------------------------------------

    def start(self) -> None:
        for tool in (GLUSTERD, GLUSTER, SSHD):
            if not os.path.exists(tool):
                raise SetupError(f"{tool} is not installed (make bench installs "
                                 "glusterfs-server and openssh-server)")
        if os.geteuid() != 0:
            raise SetupError("glusterd, gsyncd and FUSE mounts need root")
        self.base.mkdir(parents=True, exist_ok=True)
        # what we change outside our directory, kept to be put back
        shutil.copytree(WORKDIR, self.backup, symlinks=True)
        if self.root_ssh_existed:
            shutil.copytree(ROOT_SSH, self.root_ssh_backup, symlinks=True)
        self._start_sshd()
        self._start_glusterd()
        self.bricks = {v: self.base / f"{v}-brick" for v in (self.pv, self.sv)}
        for vol, brick in self.bricks.items():
            self.cli("volume", "create", vol, f"{self.host}:{brick}", "force")
            self.volumes.append(vol)
            self.cli("volume", "start", vol)

    def _start_sshd(self) -> None:
        d = self.base / "sshd"
        d.mkdir()
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key")])
        # root's own key: gverify.sh (run by `create`) logs in with ssh's
        # default identity before gsyncd's key is pushed
        ROOT_SSH.mkdir(mode=0o700, exist_ok=True)
        ident = ROOT_SSH / "id_ed25519"
        if not ident.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ident)])
        (d / "authorized_keys").write_text((ROOT_SSH / "id_ed25519.pub").read_text())
        (d / "authorized_keys").chmod(0o600)
        (d / "sshd_config").write_text(
            f"Port {self.ssh_port}\nListenAddress 127.0.0.1\n"
            f"HostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
            f"AuthorizedKeysFile /root/.ssh/authorized_keys {d / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "Subsystem sftp internal-sftp\n")
        if not Path("/run/sshd").exists():  # its privilege-separation directory
            Path("/run/sshd").mkdir(mode=0o755)
            self.run_sshd_made = True
        self.sshd = subprocess.Popen(
            [SSHD, "-D", "-f", str(d / "sshd_config"), "-E", str(d / "sshd.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.ssh_port)) == 0:
                    break
            if self.sshd.poll() is not None or time.monotonic() > deadline:
                raise SetupError(f"sshd did not start: {(d / 'sshd.log').read_text()[-800:]}")
            time.sleep(0.1)
        r = _run(["ssh", "-p", str(self.ssh_port), "-oBatchMode=yes",
                  "-oStrictHostKeyChecking=no", "-oUserKnownHostsFile=/dev/null",
                  f"root@{self.host}", "true"], timeout=30)
        if r.returncode:
            raise SetupError(f"ssh root@{self.host} -p {self.ssh_port} failed: {r.stderr}")

    def _start_glusterd(self) -> None:
        vol = self.base / "glusterd.vol"
        # Debian's glusterd.vol: the default socket and working directory,
        # which gsyncd and the hooks expect
        vol.write_text(
            "volume management\n    type mgmt/glusterd\n"
            f"    option working-directory {WORKDIR}\n"
            "    option transport-type socket\n"
            "    option transport.socket.listen-port 24007\n"
            "    option ping-timeout 0\n    option event-threads 1\nend-volume\n")
        self.glusterd = subprocess.Popen(
            [GLUSTERD, "-N", "-f", str(vol), "-p", str(self.base / "glusterd.pid"),
             "-l", str(self.base / "glusterd.log"), "--log-level", "INFO"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while self.cli("volume", "list", check=False).returncode:
            if self.glusterd.poll() is not None or time.monotonic() > deadline:
                raise SetupError(f"glusterd did not start; see {self.base / 'glusterd.log'}")
            time.sleep(0.2)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = _run([GLUSTER, "--mode=script", f"--log-file={self.base / 'cli.log'}", *args])
        if check and r.returncode:
            raise SetupError(f"gluster {' '.join(args)}: {(r.stdout + r.stderr).strip()}")
        return r

    def geo(self, *words: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.cli("volume", "geo-replication", self.pv, self.secondary, *words,
                        check=check)

    def create_session(self, rollover: int, change_interval: int) -> None:
        self.cli("system::", "execute", "gsec_create")
        self.geo("create", "ssh-port", str(self.ssh_port), "push-pem")
        self.cli("volume", "set", self.pv, "changelog.rollover-time", str(rollover))
        # `create ssh-port` is not carried into the session's config: the
        # monitor still ran `ssh -p 22` without this
        self.geo("config", "ssh_port", str(self.ssh_port))
        self.geo("config", "change_interval", str(change_interval))
        # gsyncd's default, rsync, delivers no data with this machine's rsync
        # (SYNC_METHOD_WHY); tar over ssh is GlusterFS's other sync method.
        # Set before `start`: a config change restarts the worker, and its
        # history crawl then failed here ("[Errno 0] Success", Faulty)
        self.geo("config", "sync_method", SYNC_METHOD)
        self.geo("start")
        self.mnt.mkdir()
        r = _run(["mount", "-t", "glusterfs", "-o",
                  f"log-file={self.base / 'mnt.log'}", f"{self.host}:/{self.pv}",
                  str(self.mnt)], timeout=60)
        if r.returncode:
            raise SetupError(f"mounting {self.pv}: {r.stderr}")
        self.mounted = True

    # -- status ---------------------------------------------------------

    def rows(self) -> list[dict[str, str]]:
        """`status detail --xml`, one dict per brick (GlusterFS's element names)."""
        r = self.geo("status", "detail", "--xml")
        root = ET.fromstring(r.stdout)
        return [{child.tag: (child.text or "") for child in pair}
                for pair in root.iter() if pair.tag == "pair"]

    def wait_active(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(r.get("status") == "Active" for r in self.rows()):
                return
            time.sleep(1)
        raise SetupError(f"no Active worker: {self.rows()}; gsyncd's log: "
                         f"{self.gsyncd_log_tail()}")

    def checkpoint(self, timeout: float) -> float:
        """Set a checkpoint now; the time its completion was recorded
        (GlusterFS prints it to the second).

        gsyncd moves stime only when it replays a changelog with changes in
        it (libgfchangelog does not publish empty ones), and a checkpoint is
        complete once stime passes it: with nothing written after it, a
        checkpoint never completes.  So a marker file is rewritten on the
        primary each second while we wait - its changelog carries stime past
        the checkpoint; this costs up to a rollover more than the data alone.
        """
        time.sleep(1.0)  # a checkpoint is a whole second; keep it after the writes
        self.geo("config", "checkpoint", "now")
        deadline = time.monotonic() + timeout
        marked = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() - marked >= 1.0:
                (self.mnt / ".checkpoint-marker").write_bytes(b"%f" % time.time())
                marked = time.monotonic()
            for r in self.rows():
                if r.get("status") == "Active" and r.get("checkpoint_completed") == "Yes":
                    return _timestamp(r["checkpoint_completion_time"])
            time.sleep(0.3)
        raise SetupError(f"the checkpoint did not complete in {timeout:g} s: {self.rows()}; "
                         f"gsyncd's log: {self.gsyncd_log_tail()}")

    def gsyncd_log_tail(self, lines: int = 12) -> str:
        logs = sorted(GSYNCD_LOGS.glob(f"{self.pv}_*/gsyncd.log"))
        if not logs:
            return "(none)"
        text = logs[-1].read_text(errors="replace").splitlines()
        return " | ".join(line for line in text[-lines:] if line.strip())

    # -- clean-up -------------------------------------------------------

    def close(self) -> None:
        """Undo everything, each step even if an earlier one failed."""
        if self.mounted:
            if _run(["umount", str(self.mnt)]).returncode:
                _run(["umount", "-l", str(self.mnt)])
        if self.glusterd is not None and self.glusterd.poll() is None:
            with contextlib.suppress(Exception):
                self.geo("stop", "force", check=False)
                self.geo("delete", check=False)
            for vol in self.volumes:
                with contextlib.suppress(Exception):
                    self.cli("volume", "stop", vol, "force", check=False)
                    self.cli("volume", "delete", vol, check=False)
        self._end_our_processes()
        for proc in (self.glusterd, self.sshd):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        self._lazy_unmount_aux()
        if self.backup.exists():
            shutil.rmtree(WORKDIR, ignore_errors=True)
            shutil.copytree(self.backup, WORKDIR, symlinks=True)
        shutil.rmtree(ROOT_SSH, ignore_errors=True)
        if self.root_ssh_existed:
            shutil.copytree(self.root_ssh_backup, ROOT_SSH, symlinks=True)
        if self.run_sshd_made:
            shutil.rmtree("/run/sshd", ignore_errors=True)
        for vol in self.volumes:
            shutil.rmtree(f"/var/run/gluster/vols/{vol}", ignore_errors=True)

    def _end_our_processes(self) -> None:
        """gsyncd (monitor, workers, the secondary's side under sshd), the
        bricks and the auxiliary glusterfs mounts of our two volumes,
        recognised by their command lines, by pid."""
        names = (self.pv.encode(), self.sv.encode())
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
                if any(n in arg for arg in cmdline for n in names) and \
                        any(b"gluster" in arg or b"gsyncd" in arg for arg in cmdline):
                    os.kill(int(proc.name), signal.SIGKILL)

    def _lazy_unmount_aux(self) -> None:
        """gsyncd's auxiliary mounts (/tmp/gsyncd-aux-mount-*) of our volumes."""
        with contextlib.suppress(OSError):
            for line in Path("/proc/mounts").read_text().splitlines():
                source, target = line.split()[:2]
                if source.endswith((f":{self.pv}", f":{self.sv}", f":/{self.pv}",
                                    f":/{self.sv}")) or target == str(self.mnt):
                    _run(["umount", "-l", target.replace("\\040", " ")])


def _status_summary(rows: list[dict[str, str]]) -> str:
    keys = ("status", "crawl_status", "entry", "data", "failures", "checkpoint_completed")
    return "; ".join(", ".join(f"{k} {r.get(k, '?')}" for k in keys) for r in rows)


def _timestamp(text: str) -> float:
    """GlusterFS's status times ('2026-12-06 23:40:01', local time)."""
    return datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").timestamp()


def measure(work: Path, files: int, dirs: int, size: int, big_mib: int,
            lag_samples: int, rollover: int, change_interval: int,
            timeout: float) -> dict[str, float | str]:
    """The same three measures as glusterpy's column, written through a FUSE
    mount of the primary (GlusterFS's own client).  What could not be
    measured is missing from the result, and "error" says where it stopped."""
    out: dict[str, float | str] = {}
    with port_24007():
        g = GlusterGeorep(work / "glusterfs", f"gpygeo{os.getpid()}")
        try:
            g.start()
            g.create_session(rollover, change_interval)
            g.wait_active()
            try:
                g.checkpoint(90)  # the first crawl, of an empty volume
            except SetupError:
                # seen here in three of ten runs: the worker registered with the
                # brick's changelog (libgfchangelog's log: "Registering brick"),
                # rolled-over changelogs piled up on the brick, and neither the
                # brick's log nor libgfchangelog's shows them handed over: the
                # live crawl processed none.  A restart's history crawl reads
                # them from the brick's htime index instead (the one time it
                # failed, "[Errno 0] Success", libgfchangelog had logged "wrong
                # result for end": its binary search over an htime index with a
                # timestamp in it twice, rollover-time 1 s then)
                # (CHANGELOG.<ts> holds records; an empty one is changelog.<ts>)
                rolled = sum(1 for _ in (g.bricks[g.pv] / ".glusterfs" / "changelogs")
                             .rglob("CHANGELOG.*"))
                out["restarted"] = (f"{rolled} changelogs with records had rolled over on "
                                    f"the primary's brick; "
                                    f"status detail: {_status_summary(g.rows())}")
                g.geo("stop")
                g.geo("start")
                g.wait_active()
                g.checkpoint(RESTART_TIMEOUT)
            sbrick = g.bricks[g.sv]
            payload = os.urandom(size)
            start = time.time()
            for d in range(dirs):
                (g.mnt / f"small{d:02}").mkdir()
                for f in range(files // dirs):
                    (g.mnt / f"small{d:02}" / f"f{f:04}").write_bytes(payload)
            out["small write"] = time.time() - start
            done = g.checkpoint(timeout)

            def whole() -> int:
                return sum(1 for f in sbrick.glob("small*/f*") if _size(f) == size)
            if whole() != files:
                # as for the big file below: count to their arrival, if they come
                out["small short"] = (f"{sum(1 for _ in sbrick.glob('small*/f*'))} of {files} "
                                      f"present, {whole()} whole")
                deadline = time.monotonic() + BIG_GRACE
                while whole() != files and time.monotonic() < deadline:
                    time.sleep(0.5)
                if whole() == files:
                    done = max(done, time.time())
                else:
                    out["small lost"] = (f"{whole()} of {files} whole on the secondary's brick "
                                         f"{BIG_GRACE:g} s after the checkpoint completed")
            if "small lost" not in out:
                out["small"] = done - start

            block = os.urandom(1 << 20)
            start = time.time()
            with open(g.mnt / "big", "wb") as fh:
                for _ in range(big_mib):
                    fh.write(block)
            out["big write"] = time.time() - start
            done = g.checkpoint(timeout)
            # seen here in every run so far: the checkpoint complete, no
            # failure counted, and the file on the secondary's brick still
            # short (0 bytes: gluster/glusterfs#4632's symptom); wait for it
            # a while, and count to its arrival if it comes
            got = _size(sbrick / "big")
            if got != big_mib << 20:
                out["big short"] = got
                deadline = time.monotonic() + BIG_GRACE
                while _size(sbrick / "big") != big_mib << 20 and \
                        time.monotonic() < deadline:
                    time.sleep(0.05)
                if _size(sbrick / "big") == big_mib << 20:
                    done = max(done, time.time())
                else:
                    out["big lost"] = (
                        f"{_size(sbrick / 'big')} of {big_mib << 20} bytes on the secondary's "
                        f"brick {BIG_GRACE:g} s after the checkpoint completed; status detail: "
                        f"{_status_summary(g.rows())}")
            if "big lost" not in out:
                out["big"] = done - start

            lags = []
            for i in range(lag_samples):
                t0 = time.monotonic()
                (g.mnt / f"lag{i}").write_bytes(b"x" * 100)
                deadline = t0 + 120
                while _size(sbrick / f"lag{i}") != 100:
                    if time.monotonic() > deadline:
                        raise SetupError(f"lag{i} did not arrive within 120 s")
                    time.sleep(0.01)
                lags.append(time.monotonic() - t0)
                time.sleep(1)
            out["lag median"] = statistics.median(lags)
            out["lag max"] = max(lags)
            out["crawl"] = ", ".join(sorted({r.get("crawl_status", "?") for r in g.rows()
                                             if r.get("status") == "Active"}))
        except Exception as e:  # the column then says where it stopped, and why
            out["error"] = f"{type(e).__name__}: {e}"
        finally:
            g.close()
    return out


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def main(argv: list[str] | None = None) -> int:
    """GlusterFS's side of suite_georep alone, at sizes of one's choice (the
    suite's quick sizes by default), its result as JSON; for finding out why
    a run of the suite went wrong without the glusterpy column first.  Run it
    under `flock /tmp/realgluster.lock`; gsyncd's logs stay in
    /var/log/glusterfs/geo-replication*/."""
    import argparse
    import json
    import tempfile

    from . import suite_georep as suite
    parser = argparse.ArgumentParser(prog="python -m bench.glusterfs_georep")
    parser.add_argument("--files", type=int, default=suite.QUICK_SMALL_FILES)
    parser.add_argument("--dirs", type=int, default=suite.SMALL_DIRS)
    parser.add_argument("--big-mib", type=int, default=suite.QUICK_BIG_MIB)
    parser.add_argument("--lag-samples", type=int, default=3)
    parser.add_argument("--rollover", type=int, default=suite.ROLLOVER,
                        help="changelog.rollover-time, seconds")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="how long each checkpoint may take, seconds")
    parser.add_argument("--workdir", help="kept afterwards (default: a temporary "
                                          "directory under /var/tmp, removed)")
    args = parser.parse_args(argv)
    if args.files < args.dirs or args.files % args.dirs:
        parser.error("--files must be a multiple of --dirs")
    if min(args.big_mib, args.lag_samples, args.rollover) < 1:
        parser.error("--big-mib, --lag-samples and --rollover must be at least 1")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="glusterfs-georep-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        out = measure(work, args.files, args.dirs, suite.SMALL_SIZE, args.big_mib,
                      args.lag_samples, args.rollover, 1, args.timeout)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=1))
    return 1 if "error" in out or any(k.endswith("lost") for k in out) else 0


if __name__ == "__main__":
    raise SystemExit(main())
