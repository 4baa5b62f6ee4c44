"""TLS on the I/O path, on and off: glusterpy vs GlusterFS 10 (issue 14).

One-brick volumes over loopback, each measured with TLS off and on
(server.ssl + client.ssl, certificates from a CA made by glusterpy.pki in
the work directory), in one run:

  glusterpy brick  <- fio --ioengine=gfapi (GlusterFS's libgfapi client)
  glusterpy brick  <- glusterpy gfapi (sequential rows only)
  GlusterFS 10     <- fio --ioengine=gfapi (the reference)

Rows: sequential write and read in 128 KiB requests (2 jobs, one file
each; writes end with fsync, the page cache is dropped before reads) and
4 KiB random read and write IOPS (2 jobs, time based).  fio's gfapi engine
fetches its volfile from port 24007, so our volfile server and GlusterFS's
glusterd take 24007 one after the other (bench.servers.port_24007); the
volfile's protocol/client carries the TLS options, the management
connection stays plain.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from glusterpy import pki

from .report import Section
from .servers import GLUSTERFS_PORT, glusterfs_volume, glusterpy_volume, port_24007, \
    unique_volume_name
from .suite_protocol import drop_caches, ours

NAME = "tls"
TITLE = "TLS on the I/O path, on vs off: glusterpy vs GlusterFS 10"
SEQ_BS = 128 * 1024
RAND_BS = 4096
JOBS = 2


def make_certificates(base: Path) -> dict[str, str]:
    """A CA and one identity it signs; the TLS options naming them."""
    base.mkdir(parents=True, exist_ok=True)
    ca_key = pki.new_key()
    ca = pki.self_signed("bench CA", ca_key, ca=True)
    key = pki.new_key()
    cert = pki.issue(ca_key, ca, "bench-node", key)
    (base / "ca.pem").write_bytes(pki.cert_pem(ca))
    (base / "node.pem").write_bytes(pki.cert_pem(cert))
    pki.write_private(base / "node.key", pki.key_pem(key))
    return {"transport.socket.ssl-own-cert": str(base / "node.pem"),
            "transport.socket.ssl-private-key": str(base / "node.key"),
            "transport.socket.ssl-ca-list": str(base / "ca.pem")}


def fio(vol: str, name: str, rw: str, bs: int, size: int, runtime: int | None) -> dict:
    cmd = ["fio", f"--name={name}", "--ioengine=gfapi", f"--volume={vol}",
           "--brick=127.0.0.1", f"--rw={rw}", f"--bs={bs}", f"--size={size}",
           f"--numjobs={JOBS}", "--group_reporting", "--output-format=json"]
    if rw in ("write", "randwrite"):
        cmd.append("--end_fsync=1")
    else:
        cmd.append("--invalidate=1")
    if runtime:
        cmd += ["--time_based", f"--runtime={runtime}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise RuntimeError(f"fio failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    job = json.loads(done.stdout[done.stdout.index("{"):])["jobs"][0]
    return job["write" if "write" in rw else "read"]


def fio_rows(vol: str, size: int, runtime: int) -> dict[str, float]:
    out = {"seq write MiB/s": fio(vol, "seq", "write", SEQ_BS, size, None)["bw_bytes"] / 2**20}
    drop_caches()
    out["seq read MiB/s"] = fio(vol, "seq", "read", SEQ_BS, size, None)["bw_bytes"] / 2**20
    # lay the random files out once (a short write), then read and write them
    out["4k randwrite IOPS"] = fio(vol, "rand", "randwrite", RAND_BS, size // 4, runtime)["iops"]
    drop_caches()
    out["4k randread IOPS"] = fio(vol, "rand", "randread", RAND_BS, size // 4, runtime)["iops"]
    return out


COLUMNS = ["seq write MiB/s", "seq read MiB/s", "4k randwrite IOPS", "4k randread IOPS"]


def run(work: Path, quick: bool = False) -> Section:
    size, runtime = (32 << 20, 3) if quick else (256 << 20, 10)
    if shutil.which("fio") is None:
        raise RuntimeError("fio is not installed (make bench installs it)")
    tls = make_certificates(work / "pki")
    tls_on = {"transport.socket.ssl-enabled": "on", **tls}
    gf_tls = {"ssl.own-cert": tls["transport.socket.ssl-own-cert"],
              "ssl.private-key": tls["transport.socket.ssl-private-key"],
              "ssl.ca-list": tls["transport.socket.ssl-ca-list"],
              "server.ssl": "on", "client.ssl": "on"}
    results: dict[str, dict[str, float]] = {}
    with port_24007():
        for mode, opts in (("off", None), ("on", tls_on)):
            vol = unique_volume_name(f"benchtls{mode}")
            with glusterpy_volume(work / f"glusterpy-{mode}", vol, volfile_port=GLUSTERFS_PORT,
                                  client_options=opts, server_options=opts):
                results[f"fio gfapi -> glusterpy brick, TLS {mode}"] = fio_rows(vol, size,
                                                                                 runtime)
                ours_rows = ours(vol, GLUSTERFS_PORT, JOBS, size)
                results[f"glusterpy gfapi -> glusterpy brick, TLS {mode}"] = ours_rows
        for mode, opts in (("off", None), ("on", gf_tls)):
            gvol = unique_volume_name(f"benchgftls{mode}")
            with glusterfs_volume(work / f"glusterfs-{mode}", gvol, opts):
                results[f"fio gfapi -> GlusterFS 10 brick, TLS {mode}"] = fio_rows(gvol, size,
                                                                                    runtime)
    section = Section(f"{TITLE} ({JOBS} x {size >> 20} MiB sequential in {SEQ_BS >> 10} KiB "
                      f"requests; 4 KiB random, {runtime} s per row)",
                      ["contender", *COLUMNS])
    for label, r in results.items():
        section.add(label, *(f"{r[c]:,.0f}" if c in r else "-" for c in COLUMNS))
    notes = []
    for who in ("fio gfapi -> glusterpy brick", "glusterpy gfapi -> glusterpy brick",
                "fio gfapi -> GlusterFS 10 brick"):
        off, on = results[f"{who}, TLS off"], results[f"{who}, TLS on"]
        notes.append(f"TLS on / off, {who}: " + ", ".join(
            f"{c} {on[c] / off[c]:.2f}x" for c in COLUMNS if c in on and off.get(c)))
    for mode in ("off", "on"):
        ours_ = results[f"fio gfapi -> glusterpy brick, TLS {mode}"]
        ref = results[f"fio gfapi -> GlusterFS 10 brick, TLS {mode}"]
        notes.append(f"glusterpy brick / GlusterFS 10 brick (fio), TLS {mode}: " + ", ".join(
            f"{c} {ours_[c] / ref[c]:.2f}x" for c in COLUMNS if ref.get(c)))
    notes += [
        "TLS: RSA 2048 certificates from one CA, GlusterFS's default cipher list; OpenSSL "
        "negotiates TLS 1.3 (AES-256-GCM) on both.",
        "Over TLS our transport joins a call's buffers and encrypts them in trio.SSLStream; "
        "without TLS it still sends them vectored (sendmsg), unchanged.",
        "One machine: client and brick share its 2 cores and one disk.",
    ]
    section.notes += notes
    return section
