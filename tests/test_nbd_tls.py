"""NBD exports over TLS (`volume set VOL nbd.tls on`): QEMU (tls-creds-x509)
and libnbd (nbds://) do STARTTLS with a client certificate and get the
export; without TLS the export is NBD_REP_ERR_TLS_REQD and not listed; a
client certificate the CA did not sign fails the handshake; auth.ssl-allow
picks certificate names.  The certificates are made here (glusterpy.pki)
and given to the volume with the ssl.own-cert/private-key/ca-list keys.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

import nbdclient as N
from nbdclient import Client
from glusterpy import pki
from test_glusterd_support import free_port, running_daemon

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(os.geteuid() != 0,
                                 reason="bricks need trusted.* xattrs (root)")]


def run(*cmd, ok=True):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    if ok:
        assert done.returncode == 0, f"{' '.join(cmd)}: {done.stdout}{done.stderr}"
    return done


def make_certs(d: Path) -> dict[str, Path]:
    d.mkdir()
    ca_key = pki.new_key()
    ca = pki.self_signed("nbd test CA", ca_key, ca=True)
    out = {"ca": d / "ca.pem"}
    out["ca"].write_bytes(pki.cert_pem(ca))
    for name, cn, alt in (("server", "127.0.0.1", ["127.0.0.1", "localhost"]),
                          ("client", "vm-host-1", []), ("other", "vm-host-2", [])):
        key = pki.new_key()
        (d / f"{name}.pem").write_bytes(pki.cert_pem(pki.issue(ca_key, ca, cn, key,
                                                               alt_names=alt)))
        pki.write_private(d / f"{name}.key", pki.key_pem(key))
    # a client whose certificate no trusted CA signed
    key = pki.new_key()
    (d / "rogue.pem").write_bytes(pki.cert_pem(pki.self_signed("vm-host-1", key)))
    pki.write_private(d / "rogue.key", pki.key_pem(key))
    # QEMU's and libnbd's layout: a directory per client identity
    for who in ("client", "other", "rogue"):
        cd = d / who
        cd.mkdir()
        shutil.copy(out["ca"], cd / "ca-cert.pem")
        shutil.copy(d / f"{who}.pem", cd / "client-cert.pem")
        shutil.copy(d / f"{who}.key", cd / "client-key.pem")
    return out


def qemu_info(port: int, export: str, creds: Path | None):
    obj = ["--object", f"tls-creds-x509,id=tls0,dir={creds},endpoint=client"] if creds else []
    tls = ",file.tls-creds=tls0" if creds else ""
    return run("qemu-img", "info", "--output=json", *obj, "--image-opts",
               f"driver=raw,file.driver=nbd,file.server.type=inet,file.server.host=127.0.0.1,"
               f"file.server.port={port},file.export={export}{tls}", ok=False)


def tls_client(port: int, certs: Path, who: str) -> Client:
    c = Client("127.0.0.1", port)
    c.greet()
    c.option(N.OPT_STARTTLS)
    assert c.replies()[-1][0] == N.REP_ACK
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.load_cert_chain(str(certs / f"{who}.pem"), str(certs / f"{who}.key"))
    c.sock = ctx.wrap_socket(c.sock, server_hostname="127.0.0.1")
    return c


def test_nbd_over_tls(tmp_path):
    for tool in ("qemu-img", "nbdinfo"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    certs = make_certs(tmp_path / "certs")
    cd = tmp_path / "certs"
    port = free_port()
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "sec", f"127.0.0.1:{tmp_path / 'b'}", "force")
        d.ok("volume", "start", "sec")
        d.ok("vm", "create-image", "sec", "disk.img", "8M")
        for key, value in (("nbd.port", str(port)), ("ssl.own-cert", cd / "server.pem"),
                           ("ssl.private-key", cd / "server.key"),
                           ("ssl.ca-list", certs["ca"]), ("nbd.tls", "on"),
                           ("nbd.export", "on")):
            d.ok("volume", "set", "sec", key, str(value))

        # QEMU with its client certificate: STARTTLS, then the export
        r = qemu_info(port, "sec/disk.img", cd / "client")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["virtual-size"] == 8 << 20
        run("qemu-io", "--object", f"tls-creds-x509,id=tls0,dir={cd / 'client'},endpoint=client",
            "--image-opts", "-c", "write -P 0x3c 0 64k",
            f"driver=raw,file.driver=nbd,file.server.type=inet,file.server.host=127.0.0.1,"
            f"file.server.port={port},file.export=sec/disk.img,file.tls-creds=tls0")
        assert (tmp_path / "b" / "disk.img").read_bytes()[:65536] == b"\x3c" * 65536
        # libnbd: nbds:// with the same identity
        r = run("nbdinfo", "--json",
                f"nbds://127.0.0.1:{port}/sec/disk.img?tls-certificates={cd / 'client'}")
        assert json.loads(r.stdout)["exports"][0]["export-size"] == 8 << 20

        # without TLS: refused, and not listed
        r = qemu_info(port, "sec/disk.img", None)
        assert r.returncode != 0
        c = Client("127.0.0.1", port)
        c.greet()
        assert "sec/disk.img" not in c.list()
        assert c.go("sec/disk.img")[-1][0] == 2**31 + 5  # NBD_REP_ERR_TLS_REQD
        c.close()
        # a certificate no trusted CA signed: no session
        r = qemu_info(port, "sec/disk.img", cd / "rogue")
        assert r.returncode != 0
        with pytest.raises((ssl.SSLError, OSError, N.Closed)):
            c = tls_client(port, cd, "rogue")
            c.list()
        # auth.ssl-allow picks names: vm-host-1 yes, vm-host-2 no
        d.ok("volume", "set", "sec", "auth.ssl-allow", "vm-host-1")
        assert qemu_info(port, "sec/disk.img", cd / "client").returncode == 0
        c = tls_client(port, cd, "other")
        assert c.go("sec/disk.img")[-1][0] == N.REP_ERR_POLICY
        c.close()
        c = tls_client(port, cd, "client")
        assert "sec/disk.img" in c.list()
        assert c.go("sec/disk.img")[-1][0] == N.REP_ACK
        c.close()
