"""`mount -t glusterpy` through /sbin/mount.glusterpy, and plain umount(8).

mount(8) runs the helper as `mount.glusterpy SPEC DIR [-sfnv] [-N NS]
[-o OPTS] [-t TYPE]` (util-linux's convention); these tests go through
mount(8) itself wherever they can, so the argument convention is checked
against the real caller, and call the helper directly only for what
mount(8) would not pass (a wrong -t, a bad namespace).  The link
/sbin/mount.glusterpy is made by `make` (root only).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HELPER = Path("/sbin/mount.glusterpy")

pytestmark = [
    pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                       reason="needs /dev/fuse and fusermount3 (fuse3)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="mount(8) of a FUSE type needs root"),
    pytest.mark.skipif(not HELPER.exists(),
                       reason="/sbin/mount.glusterpy is missing: `make venv` links it (as root)"),
]

VOLFILE = """
volume h-posix
    type storage/posix
    option directory {brick}
end-volume
"""


def mount_processes(mountpoint: Path) -> list[int]:
    """Pids of glusterpy mount processes serving `mountpoint` (zombies,
    which have exited, left out)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            args = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z" and any(a.endswith(b"mount.glusterpy") for a in args[:2]) and \
                    str(mountpoint).encode() in args:
                pids.append(int(proc.name))
    return pids


def wait_until(predicate, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Local:
    """A local volfile (the helper takes a readable volfile as its spec,
    as mount.glusterfs does), its brick, a mount point, and clean-up."""

    def __init__(self, base: Path):
        self.brick, self.mnt = base / "brick", base / "mnt"
        self.brick.mkdir(parents=True)
        self.mnt.mkdir()
        self.volfile = base / "h.vol"
        self.volfile.write_text(VOLFILE.format(brick=self.brick))
        self.log = base / "mount.log"

    def mount(self, *args: str, options: str = "", env=None) -> subprocess.CompletedProcess:
        opts = f"log-file={self.log}" + (f",{options}" if options else "")
        return subprocess.run(["mount", "-t", "glusterpy", *args, "-o", opts,
                               str(self.volfile), str(self.mnt)],
                              capture_output=True, text=True, timeout=60, env=env)

    def cleanup(self) -> None:
        if proc_mounts_line(self.mnt):  # stale ones too, which ismount misses
            subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)
        for pid in mount_processes(self.mnt):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def local(tmp_path):
    lo = Local(tmp_path)
    yield lo
    lo.cleanup()


def proc_mounts_line(mnt: Path) -> list[str]:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[1] == str(mnt):
            return fields
    return []


def test_mount_t_glusterpy_and_plain_umount(local):
    done = local.mount(options="nosuid,nodev,noexec,noatime,_netdev,defaults")
    assert done.returncode == 0, done.stderr + (local.log.read_text() if local.log.exists()
                                                else "")
    source, _, fstype, flags = proc_mounts_line(local.mnt)[:4]
    assert (source, fstype) == (f"glusterpy:{local.volfile}", "fuse.glusterpy")
    assert {"rw", "nosuid", "nodev", "noexec", "noatime"} <= set(flags.split(","))
    (local.mnt / "script").write_text("#!/bin/sh\necho ran\n")
    os.chmod(local.mnt / "script", 0o755)
    assert (local.brick / "script").read_text().startswith("#!/bin/sh")
    with pytest.raises(PermissionError):  # noexec reached the kernel
        subprocess.run([str(local.mnt / "script")], capture_output=True)
    pids = mount_processes(local.mnt)
    assert len(pids) == 1, pids
    # plain umount(8): the kernel ends the FUSE session, the process exits
    done = subprocess.run(["umount", str(local.mnt)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not os.path.ismount(local.mnt)
    wait_until(lambda: not mount_processes(local.mnt), what="the mount process to exit")
    assert "unmounted" in local.log.read_text()


def test_foreground_mount_ends_with_plain_umount(local):
    """glusterpy mount -N serves in the foreground; umount(8) ends it with
    status 0."""
    proc = subprocess.Popen([sys.executable, "-m", "glusterpy.cli.main", "mount", "-N",
                             "--volfile", str(local.volfile), "-o", f"log-file={local.log}",
                             str(local.mnt)], stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: os.path.ismount(local.mnt) or proc.poll() is not None,
                   what="the foreground mount")
        assert os.path.ismount(local.mnt), local.log.read_text()
        (local.mnt / "fg").write_text("x")
        assert subprocess.run(["umount", str(local.mnt)]).returncode == 0
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_fstab_line_mount_and_umount_by_directory(local, tmp_path):
    """An fstab-style line, mounted by its directory alone (LIBMOUNT_FSTAB
    points mount(8) at a private fstab)."""
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{local.volfile} {local.mnt} glusterpy "
                     f"defaults,_netdev,noauto,log-file={local.log},attribute-timeout=0 0 0\n")
    env = dict(os.environ, LIBMOUNT_FSTAB=str(fstab))
    done = subprocess.run(["mount", str(local.mnt)], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert proc_mounts_line(local.mnt)[2] == "fuse.glusterpy"
    (local.mnt / "f").write_bytes(b"via fstab")
    assert (local.brick / "f").read_bytes() == b"via fstab"
    assert subprocess.run(["umount", str(local.mnt)]).returncode == 0
    wait_until(lambda: not mount_processes(local.mnt), what="the mount process to exit")


def test_helper_flags_sloppy_fake_verbose(local):
    # an unknown option fails (mount(8)'s usage status 1) and mounts nothing ...
    bad = local.mount(options="frobnicate=1")
    assert bad.returncode == 1 and "unknown mount option 'frobnicate=1'" in bad.stderr
    assert not os.path.ismount(local.mnt)
    # ... -s (sloppy) ignores it
    sloppy = local.mount("-s", "-v", options="frobnicate=1,ro")
    assert sloppy.returncode == 0, sloppy.stderr
    assert f"mounting {local.volfile} on {local.mnt}" in sloppy.stderr
    assert "frobnicate=1" in local.log.read_text()  # logged as without effect
    assert "ro" in proc_mounts_line(local.mnt)[3].split(",")
    assert subprocess.run(["umount", str(local.mnt)]).returncode == 0
    wait_until(lambda: not mount_processes(local.mnt), what="the mount process to exit")
    # -f (fake): checks, mounts nothing, starts no process
    fake = local.mount("-f", "-v")
    assert fake.returncode == 0, fake.stderr
    assert "fake" in fake.stderr and not os.path.ismount(local.mnt)
    assert not mount_processes(local.mnt)


def test_helper_refuses_wrong_calls(local, tmp_path):
    helper = [str(HELPER)]
    run = lambda *a: subprocess.run([*helper, *a], capture_output=True, text=True,  # noqa: E731
                                    timeout=60)
    r = run(str(local.volfile), str(local.mnt), "-t", "nfs")
    assert r.returncode == 1 and "mounts glusterpy only" in r.stderr
    r = run(str(local.volfile))
    assert r.returncode == 1 and "give the volume and the mount point" in r.stderr
    r = run("not-a-spec", str(local.mnt))
    assert r.returncode == 1 and "is not HOST[:PORT]:/VOLUME" in r.stderr
    r = run(str(local.volfile), str(tmp_path / "no-such-dir"))
    assert r.returncode == 32 and "does not exist" in r.stderr
    r = run(str(local.volfile), str(local.mnt), "-N", "/nonexistent/ns")
    assert r.returncode == 32 and "cannot enter the mount namespace" in r.stderr
    r = run("127.0.0.1:/v", str(local.mnt), "-o", "transport=rdma")
    assert r.returncode == 1 and "transport='rdma'" in r.stderr
    assert run("-V").stdout.startswith("mount.glusterpy (glusterpy)")
    assert not os.path.ismount(local.mnt)


def test_mount_inside_another_mount_namespace(local):
    """mount -N PID: mount(8) hands the helper /proc/PID/fd/N; the mount
    appears in that namespace only."""
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                               "sleep", "120"])
    try:
        ns = f"/proc/{holder.pid}/ns/mnt"
        wait_until(lambda: os.readlink(ns) != os.readlink("/proc/self/ns/mnt"),
                   what="the new mount namespace")
        done = local.mount("-N", str(holder.pid))
        assert done.returncode == 0, done.stderr
        assert not os.path.ismount(local.mnt)  # not here ...
        inside = subprocess.run(["nsenter", f"--mount={ns}", "findmnt", "-n", "-o",
                                 "FSTYPE", str(local.mnt)], capture_output=True, text=True)
        assert inside.stdout.strip() == "fuse.glusterpy"  # ... there
        subprocess.run(["nsenter", f"--mount={ns}", "sh", "-c",
                        f"echo inside > {local.mnt}/from-ns"], check=True)
        assert (local.brick / "from-ns").read_text() == "inside\n"
        done = subprocess.run(["nsenter", f"--mount={ns}", "umount", str(local.mnt)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        wait_until(lambda: not mount_processes(local.mnt), what="the mount process to exit")
    finally:
        holder.kill()
        holder.wait()


def test_network_mount_failures_are_clear_and_leave_nothing(local):
    """An unreachable volfile server and an unknown volume: mount(8) fails
    with the helper's message and status 32, no mount is left behind."""
    from test_interop_server import free_port, served_volume
    port = free_port()
    r = subprocess.run(["mount", "-t", "glusterpy", f"127.0.0.1:{port}:/vol", str(local.mnt)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 32, r
    assert "no volfile server answered" in r.stderr and f"127.0.0.1:{port}" in r.stderr
    assert not os.path.ismount(local.mnt) and not mount_processes(local.mnt)
    # backup-volfile-servers are tried after the first one
    with served_volume(local.brick.parent / "srv", "helpervol") as sv:
        r = subprocess.run(["mount", "-t", "glusterpy", "-o",
                            f"server-port={sv.volfile_port},log-file={local.log}",
                            "127.0.0.1:/nosuchvol", str(local.mnt)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 32 and "volume 'nosuchvol' does not exist" in r.stderr, r
        assert not os.path.ismount(local.mnt)
        r = subprocess.run(["mount", "-t", "glusterpy", "-o",
                            f"backup-volfile-servers=localhost,log-file={local.log}",
                            f"127.0.0.2:{sv.volfile_port}:/{sv.vol}", str(local.mnt)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        try:
            (local.mnt / "through-backup").write_text("ok")
            assert (sv.brick / "through-backup").read_text() == "ok"
        finally:
            assert subprocess.run(["umount", str(local.mnt)]).returncode == 0
            wait_until(lambda: not mount_processes(local.mnt), what="the mount process to exit")


def test_glusterpy_mount_options_reach_the_helper_parser():
    """The option table both entry points share (no mount needed)."""
    from glusterpy.fuse.mount import MountError, MountOptions
    o = MountOptions.parse("ro,direct-io-mode=enable,attribute-timeout=0.5,entry-timeout=0,gid-timeout=2,"
                           "backup-volfile-servers=h2:h3,server-port=24017,transport=socket,"
                           "lru-limit=5000,nosuid,auto_unmount,x-systemd.automount,_netdev,"
                           "relatime")
    assert o.lru_limit == 5000 and MountOptions.parse("rw").lru_limit == 65536
    assert (o.read_only, o.direct_io_mode, o.attribute_timeout, o.entry_timeout,
            o.gid_timeout) == (True, True, 0.5, 0.0, 2.0)
    assert (o.backup_volfile_servers, o.server_port, o.transport) == (["h2", "h3"], 24017,
                                                                     "socket")
    assert {"nosuid", "auto_unmount", "ro"} <= o.fuse_options()
    assert o.ignored == ["x-systemd.automount", "_netdev", "relatime"]
    for bad, why in [("attribute-timeout=-1", "0 or more"), ("server-port=0", "port number"),
                     ("direct-io-mode=maybe", "enable or disable"), ("log-file=", "path"),
                     ("backup-volfile-servers=", "host names"), ("lru-limit=-1", "inodes"),
                     ("lru-limit=lots", "inodes")]:
        with pytest.raises(MountError, match=why):
            MountOptions.parse(bad)
    assert MountOptions.parse("whatever=1", sloppy=True).ignored == ["whatever=1"]
    from glusterpy.cli.mount_cmd import parse_spec
    assert parse_spec("h1,h2:/vol") == (["h1", "h2"], None, "vol")
    assert parse_spec("h1:24017:/vol") == (["h1"], 24017, "vol")
    assert parse_spec("[::1]:/vol") == (["::1"], None, "vol")
    assert parse_spec("host:vol") == (["host"], None, "vol")


def test_killed_mount_process_stale_mount_and_auto_unmount(local):
    """kill -9 of the mount process: without auto_unmount the mount point
    is left stale (ENOTCONN or ECONNABORTED), and mounting on it says so; with auto_unmount
    (libfuse's fusermount3 watcher, as GlusterFS offers it) nothing stays."""
    assert local.mount().returncode == 0
    [pid] = mount_processes(local.mnt)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not mount_processes(local.mnt), what="the kill")
    with pytest.raises(OSError) as e:
        os.stat(local.mnt)
    # ECONNABORTED when the kernel was still waiting on a request as it died
    assert e.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    assert proc_mounts_line(local.mnt)  # still in the mount table: stale
    again = local.mount()
    assert again.returncode == 32 and "stale mount whose process is gone" in again.stderr
    assert subprocess.run(["umount", str(local.mnt)]).returncode == 0
    assert local.mount(options="auto_unmount").returncode == 0
    [pid] = mount_processes(local.mnt)
    os.kill(pid, signal.SIGKILL)
    # (os.path.ismount is False for a stale mount too: ask the mount table)
    wait_until(lambda: not proc_mounts_line(local.mnt), what="auto_unmount")
    assert os.listdir(local.mnt) == []
