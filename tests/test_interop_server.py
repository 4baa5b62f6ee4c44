"""Real GlusterFS 10 clients against glusterpy's brick and volfile server.

`glusterpy volfile-server` and `glusterpy brick` run as processes on ports
the test picks (never 24007 on this host); the brick signs in to the
volfile server, which hands clients the volume's volfile with the brick's
`remote-port` filled in.  The volfile is what glusterd generates for a
one-brick volume (distribute, utime, write-behind, open-behind,
quick-read, md-cache, io-threads, io-stats over protocol/client), so the
clients run their usual graph; the brick is protocol/server over
features/locks over storage/posix.

* QEMU's gluster driver: qemu-img create, qemu-io write/read with a
  pattern, qemu-img info, qemu-img convert to and from local files.
* The glusterfs FUSE client: a tree copied with cp -a, diff -r clean.
* fio's gfapi engine: it has no port option - it calls
  glfs_set_volfile_server(fs, "tcp", brick, 0), i.e. port 24007 - so the
  volfile server, the brick and fio run inside a private network
  namespace whose loopback 24007 is ours alone (the host's 24007, where a
  real glusterd may run, is untouched).

libgfapi's glfs_fini takes about ten seconds (GlusterFS's own capture in
../shared/glusterfs10-samples shows the same pause), so independent qemu
sessions run concurrently.  Every process is ended by pid and every mount
and namespace removed, also when a test fails; the logs are named in the
failure message.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

GLUSTERPY = [sys.executable, "-m", "glusterpy.cli.main"]


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (make test installs it)")
    if os.geteuid() != 0:
        pytest.skip("FUSE mounts and network namespaces need root")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_volfile(vol: str, subvolume: str) -> str:
    """What glusterd 10 writes as VOL.tcp-fuse.vol for a one-brick volume
    (../shared/glusterfs10-samples/volfiles/test.tcp-fuse.vol), pointing at
    127.0.0.1 and without remote-port: the volfile server adds it."""
    layers = [("dht", "cluster/distribute", ["option lock-migration off",
                                             "option force-migration off"]),
              ("utime", "features/utime", ["option noatime on"]),
              ("write-behind", "performance/write-behind", []),
              ("open-behind", "performance/open-behind", []),
              ("quick-read", "performance/quick-read", []),
              ("md-cache", "performance/md-cache", []),
              ("io-threads", "performance/io-threads", [])]
    text = (f"volume {vol}-client-0\n    type protocol/client\n    option send-gids true\n"
            "    option transport.address-family inet\n    option transport-type tcp\n"
            f"    option remote-subvolume {subvolume}\n    option remote-host 127.0.0.1\n"
            "    option ping-timeout 42\nend-volume\n\n")
    below = f"{vol}-client-0"
    for suffix, kind, options in layers:
        text += f"volume {vol}-{suffix}\n    type {kind}\n"
        text += "".join(f"    {o}\n" for o in options)
        text += f"    subvolumes {below}\nend-volume\n\n"
        below = f"{vol}-{suffix}"
    text += (f"volume {vol}\n    type debug/io-stats\n    option log-level INFO\n"
             f"    subvolumes {below}\nend-volume\n")
    return text


def brick_volfile(vol: str, directory: Path) -> str:
    return (f"volume {vol}-posix\n    type storage/posix\n    option directory {directory}\n"
            f"end-volume\n\nvolume {vol}-locks\n    type features/locks\n"
            f"    subvolumes {vol}-posix\nend-volume\n\n"
            f"volume {vol}-server\n    type protocol/server\n"
            "    option transport.socket.bind-address 127.0.0.1\n"
            f"    option auth.addr.{vol}-locks.allow 127.0.0.1\n"
            f"    subvolumes {vol}-locks\nend-volume\n")


class ServedVolume:
    """A volfile server and a brick serving volume `vol`, as processes
    (inside network namespace `netns` when given)."""

    def __init__(self, base: Path, vol: str, *, netns: str | None = None,
                 volfile_port: int | None = None):
        self.base, self.vol, self.netns = base, vol, netns
        self.brick = base / "brick"
        self.vols = base / "vols"
        self.brick.mkdir(parents=True)
        self.vols.mkdir()
        self.subvolume = f"{vol}-locks"
        self.volfile_port = volfile_port or free_port()
        self.brick_port = free_port() if netns is None else 24100
        self.procs: list[subprocess.Popen] = []
        (self.vols / f"{vol}.vol").write_text(client_volfile(vol, self.subvolume))
        (base / "brick.vol").write_text(brick_volfile(vol, self.brick))

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def spawn(self, *args: str, log: str) -> subprocess.Popen:
        out = open(self.base / log, "w")
        proc = subprocess.Popen([*self.prefix(), *args], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        out.close()
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        self.spawn(*GLUSTERPY, "volfile-server", "--dir", str(self.vols), "--port",
                   str(self.volfile_port), "--address", "127.0.0.1", "--log-file",
                   str(self.base / "volfile-server.log"), log="volfile-server.out")
        self.spawn(*GLUSTERPY, "brick", "--volfile", str(self.base / "brick.vol"), "--port",
                   str(self.brick_port), "--log-file", str(self.base / "brick.log"),
                   "--pidfile", str(self.base / "brick.pid"), "--volfile-server",
                   f"127.0.0.1:{self.volfile_port}", log="brick.out")
        deadline = time.monotonic() + 30
        signed = f"signed in {self.subvolume} on port {self.brick_port}"
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise AssertionError(f"{p.args} exited {p.returncode}; {self.logs()}")
            log = self.base / "brick.log"
            if log.exists() and signed in log.read_text():
                return
            time.sleep(0.1)
        raise AssertionError(f"the brick did not sign in within 30 s; {self.logs()}")

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    def logs(self) -> str:
        return f"logs in {self.base}"

    def url(self, name: str) -> str:
        return f"gluster://127.0.0.1:{self.volfile_port}/{self.vol}/{name}"


@contextlib.contextmanager
def served_volume(base: Path, vol: str, **kwargs):
    sv = ServedVolume(base, vol, **kwargs)
    try:
        sv.start()
        yield sv
    finally:
        sv.stop()
    # a brick that shut down cleanly removed its pid file
    assert not (base / "brick.pid").exists(), f"the brick did not stop cleanly; {sv.logs()}"


def run_all(commands: list[list[str]], timeout: float = 120,
            cwd: Path | None = None) -> list[subprocess.CompletedProcess]:
    """Run commands concurrently (in `cwd`); all must succeed."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              stdin=subprocess.DEVNULL, cwd=cwd) for c in commands]
    results = []
    try:
        for cmd, p in zip(commands, procs):
            out, _ = p.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(cmd, p.returncode, out, ""))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for r in results:
        assert r.returncode == 0, f"{' '.join(r.args)} failed ({r.returncode}):\n{r.stdout}"
    return results


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- QEMU ------------------------------------------------------------------------


def test_qemu_creates_writes_reads_and_converts(tmp_path):
    need("qemu-img", "qemu-io")
    local = tmp_path / "local"
    local.mkdir()
    random_image = local / "c.raw"
    random_image.write_bytes(os.urandom(4 << 20))
    with served_volume(tmp_path / "srv", "vmvol") as sv:
        # create one image while another is converted from a local file
        run_all([["qemu-img", "create", "-f", "qcow2", sv.url("a.qcow2"), "64M"],
                 ["qemu-img", "convert", "-f", "raw", "-O", "raw", str(random_image),
                  sv.url("c.raw")]])
        assert sha256(sv.brick / "c.raw") == sha256(random_image)
        io = run_all([["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M",
                       "-c", "read -P 0x5a 0 1M", sv.url("a.qcow2")]])[0].stdout
        assert "wrote 1048576/1048576 bytes at offset 0" in io
        assert "read 1048576/1048576 bytes at offset 0" in io
        assert "Pattern verification failed" not in io
        info, _, back = run_all([
            ["qemu-img", "info", "--output=json", sv.url("a.qcow2")],
            ["qemu-img", "convert", "-O", "raw", sv.url("a.qcow2"), str(local / "a.raw")],
            ["qemu-img", "convert", "-f", "raw", "-O", "raw", sv.url("c.raw"),
             str(local / "c.back")]])
        meta = json.loads(info.stdout[info.stdout.index("{"):])
        assert meta["format"] == "qcow2" and meta["virtual-size"] == 64 << 20
        expected = hashlib.sha256(b"\x5a" * (1 << 20) + bytes((64 << 20) - (1 << 20)))
        assert sha256(local / "a.raw") == expected.hexdigest()
        assert sha256(local / "c.back") == sha256(random_image)
        assert not list((sv.brick / ".glusterfs" / "unlink").iterdir())


# -- the FUSE client ---------------------------------------------------------------


def make_tree(root: Path) -> None:
    (root / "d1" / "d2" / "d3").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "d1" / "small").write_text("hello, gluster\n")
    (root / "d1" / "d2" / "big").write_bytes(os.urandom(3 << 20))
    (root / "d1" / "d2" / "d3" / "odd").write_bytes(os.urandom(12345))
    (root / "empty").write_bytes(b"")
    for i in range(40):
        (root / "d1" / f"many-{i:02d}").write_bytes(os.urandom(i * 97))
    (root / "d1" / "link").symlink_to("small")
    (root / "dangling").symlink_to("nowhere/at/all")
    os.link(root / "d1" / "small", root / "hard")
    (root / "d1" / "small").chmod(0o640)
    (root / "d1" / "d2").chmod(0o750)
    os.utime(root / "d1" / "d2" / "big", (1_000_000_000, 1_000_000_000))
    os.setxattr(root / "d1" / "small", "user.note", b"kept")
    os.chown(root / "d1" / "d2" / "d3" / "odd", 1234, 5678)


def test_fuse_client_copies_a_tree(tmp_path):
    need("glusterfs", "cp", "diff", "umount")
    src = tmp_path / "src"
    make_tree(src)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with served_volume(tmp_path / "srv", "fusevol") as sv:
        pidfile = tmp_path / "glusterfs.pid"
        mounted = False
        try:
            subprocess.run(["glusterfs", "--volfile-server=127.0.0.1",
                            f"--volfile-server-port={sv.volfile_port}",
                            f"--volfile-id={sv.vol}", f"--log-file={tmp_path / 'fuse.log'}",
                            f"--pid-file={pidfile}", str(mnt)], check=True, timeout=60)
            deadline = time.monotonic() + 30
            while not os.path.ismount(mnt):
                assert time.monotonic() < deadline, f"no mount; see {tmp_path / 'fuse.log'}"
                time.sleep(0.1)
            mounted = True
            subprocess.run(["cp", "-a", str(src), str(mnt / "copy")], check=True, timeout=120)
            diff = subprocess.run(["diff", "-r", "--no-dereference", str(src), str(mnt / "copy")],
                                  capture_output=True, text=True, timeout=120)
            assert diff.returncode == 0, diff.stdout + diff.stderr
            for rel in ("d1/small", "d1/d2", "d1/d2/big", "d1/d2/d3/odd", "dangling", "hard"):
                a, b = os.lstat(src / rel), os.lstat(mnt / "copy" / rel)
                assert (a.st_mode, a.st_uid, a.st_gid, a.st_size) == \
                       (b.st_mode, b.st_uid, b.st_gid, b.st_size), rel
            assert os.lstat(mnt / "copy" / "d1" / "d2" / "big").st_mtime == 1_000_000_000
            assert os.lstat(mnt / "copy" / "hard").st_ino == \
                os.lstat(mnt / "copy" / "d1" / "small").st_ino
            assert os.getxattr(mnt / "copy" / "d1" / "small", "user.note") == b"kept"
            # what the client wrote is on the brick, in GlusterFS's layout
            assert sha256(sv.brick / "copy" / "d1" / "d2" / "big") == \
                sha256(src / "d1" / "d2" / "big")
            assert len(os.getxattr(sv.brick / "copy" / "d1" / "small", "trusted.gfid")) == 16
        finally:
            if mounted or os.path.ismount(mnt):
                if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
                    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
            _end_pid_file(pidfile)
        assert not os.path.ismount(mnt)


def test_fuse_client_sees_device_numbers(tmp_path):
    """An iatt's rdev is GlusterFS's ia_makedev (major << 32 | minor): the
    glusterfs FUSE client decodes what our brick sends back to the device
    created (before, it showed 1,3 as 0,259)."""
    need("glusterfs", "umount")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with served_volume(tmp_path / "srv", "devvol") as sv:
        pidfile = tmp_path / "glusterfs.pid"
        try:
            subprocess.run(["glusterfs", "--volfile-server=127.0.0.1",
                            f"--volfile-server-port={sv.volfile_port}",
                            f"--volfile-id={sv.vol}", f"--log-file={tmp_path / 'fuse.log'}",
                            f"--pid-file={pidfile}", str(mnt)], check=True, timeout=60)
            deadline = time.monotonic() + 30
            while not os.path.ismount(mnt):
                assert time.monotonic() < deadline, f"no mount; see {tmp_path / 'fuse.log'}"
                time.sleep(0.1)
            os.mknod(mnt / "null", 0o644 | 0o020000, os.makedev(1, 3))
            os.mknod(mnt / "big", 0o644 | 0o060000, os.makedev(259, 70000))
            for name, dev in (("null", (1, 3)), ("big", (259, 70000))):
                seen, kept = os.stat(mnt / name).st_rdev, os.stat(sv.brick / name).st_rdev
                assert (os.major(seen), os.minor(seen)) == dev, name
                assert (os.major(kept), os.minor(kept)) == dev, name
        finally:
            if os.path.ismount(mnt):
                if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
                    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
            _end_pid_file(pidfile)


def _end_pid_file(pidfile: Path) -> None:
    """Wait for (then kill) the process whose pid the file holds."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# -- fio's gfapi engine ----------------------------------------------------------


@contextlib.contextmanager
def private_netns():
    """A network namespace of our own, loopback up, deleted afterwards."""
    name = f"gpy{os.getpid()}x{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace: {made.stderr.strip()}")
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True, timeout=30)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_fio_gfapi_writes_and_verifies(tmp_path):
    need("fio", "ip")
    with private_netns() as ns, served_volume(tmp_path / "srv", "fiovol", netns=ns,
                                              volfile_port=24007) as sv:
        fio = run_all([["ip", "netns", "exec", ns, "fio", "--name=gpy-verify",
                        "--ioengine=gfapi", f"--volume={sv.vol}", "--brick=127.0.0.1",
                        "--rw=write", "--bs=128k", "--size=32M", "--verify=crc32c",
                        "--do_verify=1", "--verify_state_save=0", "--filename=fio.dat",
                        "--output-format=json"]],
                      timeout=180, cwd=tmp_path)[0].stdout
        report = json.loads(fio[fio.index("{"):])
        job = report["jobs"][0]
        assert job["error"] == 0, fio
        assert job["write"]["io_bytes"] == 32 << 20
        assert job["read"]["io_bytes"] == 32 << 20  # the verify pass read it all back
        assert (sv.brick / "fio.dat").stat().st_size == 32 << 20
