"""TLS the way a user turns it on (issue 14): `glusterpy tls setup
--management on`, `volume set client.ssl|server.ssl on` - then GlusterFS
10's own clients (the glusterfs FUSE client, qemu-img and qemu-io through
libgfapi) fetch the volfile over TLS from glusterpyd and reach the bricks
over TLS; plain-text REST is refused.

GlusterFS's clients read fixed paths: glusterfs.{pem,key,ca} in OpenSSL's
directory (/usr/lib/ssl on Debian) and
/var/lib/glusterd/secure-access.  The test saves whatever is there, and
puts it back (or removes what it made) at the end, pass or fail.

Also here, without GlusterFS: a node whose /etc/ssl holds a GlusterFS-style
certificate of its own (not the one `tls setup` makes) shows that one to
TLS clients - which verify it against their glusterfs.ca - and its node
certificate to its own CLI and peers, which ask for it by name (SNI).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import trio

from glusterpy import pki
from test_glusterd_support import Daemon, raw_http

from glusterpy.rpc import tls

#: where GlusterFS's clients on this machine look (OpenSSL's directory)
SSL_FILES = [Path(tls.DEFAULT_CERT_DIR) / n
             for n in ("glusterfs.pem", "glusterfs.key", "glusterfs.ca")]
SECURE_ACCESS = Path("/var/lib/glusterd/secure-access")


@contextlib.contextmanager
def saved(paths: list[Path], backup: Path):
    """Whatever `paths` hold now comes back at the end; what was not there is removed."""
    backup.mkdir(parents=True, exist_ok=True)
    kept = {}
    for p in paths:
        if p.exists():
            kept[p] = backup / p.name
            shutil.copy2(p, kept[p])
    try:
        yield
    finally:
        for p in paths:
            if p in kept:
                shutil.copy2(kept[p], p)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()


def mount_glusterfs(port: int, vol: str, mnt: Path, log: Path, pidfile: Path) -> bool:
    done = subprocess.run(["glusterfs", "--volfile-server=127.0.0.1",
                           f"--volfile-server-port={port}", f"--volfile-id={vol}",
                           f"--log-file={log}", f"--pid-file={pidfile}", str(mnt)],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return False
    deadline = time.monotonic() + 30
    while not os.path.ismount(mnt):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def unmount(mnt: Path, pidfile: Path) -> None:
    from test_interop_server import _end_pid_file
    if os.path.ismount(mnt):
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    _end_pid_file(pidfile)


@pytest.mark.interop
@pytest.mark.slow
def test_glusterfs_clients_over_management_and_io_tls(tmp_path):
    from test_interop_server import need
    need("glusterfs", "qemu-img", "qemu-io", "umount")
    (tmp_path / "b1").mkdir()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with saved(SSL_FILES + [SECURE_ACCESS], tmp_path / "saved"):
        for p in SSL_FILES + [SECURE_ACCESS]:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        d = Daemon(tmp_path / "wd")
        try:
            d.start()
            d.ok("tls", "setup", "--management", "on")
            assert SSL_FILES[0].read_text() == (d.workdir / "trust/node.pem").read_text()
            SECURE_ACCESS.parent.mkdir(parents=True, exist_ok=True)
            SECURE_ACCESS.write_text("")          # this machine is a client too
            d.ok("volume", "create", "tv", f"127.0.0.1:{tmp_path / 'b1'}")
            d.ok("volume", "set", "tv", "client.ssl", "on", "server.ssl", "on")
            d.ok("volume", "start", "tv")
            brick_log = next((d.workdir / "logs" / "bricks").glob("*.log"))

            # plain text is refused on the daemon's port - by GETSPEC too
            status, doc = raw_http("GET", "/api/v1/openapi.json", host="127.0.0.1",
                                   port=d.port)
            assert status == 403 and "management TLS is on" in doc["error"]

            # qemu-img and qemu-io (libgfapi): volfile and I/O over TLS
            url = f"gluster://127.0.0.1:{d.port}/tv/disk.qcow2"
            done = subprocess.run(["qemu-img", "create", "-f", "qcow2", url, "32M"],
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr
            done = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M",
                                   "-c", "read -P 0x5a 0 1M", url],
                                  capture_output=True, text=True, timeout=120)
            assert "read 1048576/1048576 bytes" in done.stdout, done.stdout + done.stderr
            assert "Pattern verification failed" not in done.stdout
            assert "TLS connection from" in brick_log.read_text()

            # the glusterfs FUSE client
            pidfile, log = tmp_path / "fuse.pid", tmp_path / "fuse.log"
            payload = os.urandom(1 << 20)
            try:
                assert mount_glusterfs(d.port, "tv", mnt, log, pidfile), log.read_text()
                (mnt / "f").write_bytes(payload)
                assert (mnt / "f").read_bytes() == payload
            finally:
                unmount(mnt, pidfile)
            assert (tmp_path / "b1" / "f").read_bytes() == payload
            assert "0-glusterfs: SSL support for MGMT is ENABLED" in log.read_text()

            # (a client without TLS from another host: tests/test_security_attacks.py;
            # from this node, plain RPC is let through - see glusterd/daemon.py)
        finally:
            d.cleanup()


def test_glusterfs_style_certificate_for_clients_node_certificate_for_ours(tmp_path,
                                                                           monkeypatch):
    """/etc/ssl made by hand, GlusterFS's way: a self-signed glusterfs.pem
    that is not the node's, listed in glusterfs.ca."""
    from glusterpy.gfapi.mgmt import fetch_volfile, volfile_servers
    ssl_dir = tmp_path / "ssl"
    ssl_dir.mkdir()
    key = pki.new_key()
    cert = pki.self_signed("hand-made", key)
    pki.write_private(ssl_dir / "glusterfs.key", pki.key_pem(key))
    (ssl_dir / "glusterfs.pem").write_bytes(pki.cert_pem(cert))
    (ssl_dir / "glusterfs.ca").write_bytes(pki.cert_pem(cert))
    monkeypatch.setenv("GLUSTERPY_SSL_CERT_DIR", str(ssl_dir))
    (tmp_path / "b").mkdir()
    with contextlib.ExitStack() as stack:
        d = Daemon(tmp_path / "wd").start()
        stack.callback(d.cleanup)
        d.ok("volume", "create", "hv", f"127.0.0.1:{tmp_path / 'b'}")
        (d.workdir / "secure-access").write_text("")
        # a GlusterFS-style client: TLS from the first byte, verifying the
        # daemon against glusterfs.ca - so it must be shown glusterfs.pem
        monkeypatch.setenv("GLUSTERPY_SECURE_ACCESS", "1")
        fetched = trio.run(fetch_volfile, volfile_servers("127.0.0.1", d.port), "hv")
        assert "protocol/client" in fetched.text
        # our CLI with a token: it pins the node certificate, and is shown it
        token = d.ok("token", "create", "t").out.splitlines()[1]
        env = {**os.environ, "GLUSTERPY_RUN_DIR": str(tmp_path / "none"),
               "GLUSTERPY_TOKEN": token}
        done = subprocess.run([".venv/bin/python", "-m", "glusterpy.cli.main",
                               "--remote-host", d.remote, "volume", "list"],
                              capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0 and "hv" in done.stdout, done.stderr
        # and a client GlusterFS's CA list does not vouch for is refused
        monkeypatch.setenv("GLUSTERPY_SSL_CERT_DIR", str(tmp_path / "other"))
        other = tmp_path / "other"
        other.mkdir()
        k2 = pki.new_key()
        c2 = pki.self_signed("stranger", k2)
        pki.write_private(other / "glusterfs.key", pki.key_pem(k2))
        (other / "glusterfs.pem").write_bytes(pki.cert_pem(c2))
        (other / "glusterfs.ca").write_bytes(pki.cert_pem(cert))
        with pytest.raises(BaseException):
            trio.run(fetch_volfile, volfile_servers("127.0.0.1", d.port), "hv")
