"""NBD exports of a volume's images (glusterpy/nbd, glusterd/nbd.py), checked
with real clients only: qemu-img (info, map, convert, bench) and qemu-io
over nbd://, libnbd's nbdinfo (--list, --map) and nbdcopy, against a
glusterpyd that runs the NBD server because `volume set VOL nbd.export on`.

What is checked:

* the data a client writes is on the brick, byte for byte, and what the
  brick holds is what a client reads (nbdcopy, qemu-img convert both ways);
* block status (qemu-img map, nbdinfo --map) equals the brick file's
  allocation (SEEK_DATA/SEEK_HOLE on the brick itself);
* write-zeroes with unmap and trim punch holes on the brick (st_blocks
  drops); write-zeroes without unmap (NBD_CMD_FLAG_NO_HOLE) does not;
* `nbd.read-only` exports refuse writes with EPERM and the brick is left
  as it was; nbdinfo shows is_read_only;
* `auth.allow`/`auth.reject`: a refused client gets NBD_REP_ERR_POLICY (and
  is not shown the volume's images by --list), a connection the new policy
  no longer admits is cut, the change applies without a restart;
* glusterpyd supervises the server: kill -9 and it is back (adopted by a
  restarted glusterpyd, too); `nbd.export off` or `volume stop` stops it
  and frees the port; a client that wrote with FUA before the server was
  killed mid-stream finds every acknowledged write after reconnecting;
* `vm disk-xml --protocol nbd` passes libvirt's virt-xml-validate and
  boots nothing but says the right source.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from nbdclient import FLAG_FUA, Client, Closed, REP_ERR_POLICY, REP_ACK
from test_glusterd_support import free_port, running_daemon, wait_for
from test_vm_cli import virt_xml_validate

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(os.geteuid() != 0,
                                 reason="bricks need trusted.* xattrs (root)")]

TIMEOUT = 60
MiB = 1 << 20


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (make test installs it)")


def run(*cmd: str, ok: bool = True, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if ok:
        assert done.returncode == 0, f"{' '.join(cmd)}: {done.returncode}\n" \
                                     f"{done.stdout}\n{done.stderr}"
    return done


def allocation(path: Path) -> list[tuple[int, int]]:
    """The (start, end) data ranges of a file, as its filesystem says."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            out.append((data, min(hole, size)))
            pos = hole
    finally:
        os.close(fd)
    return out


def merged(ranges) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in ranges:
        if out and out[-1][1] == start:
            out[-1] = (out[-1][0], end)
        elif end > start:
            out.append((start, end))
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Setup:
    def __init__(self, tmp: Path, d):
        self.tmp, self.d = tmp, d
        self.port = free_port()
        self.brick = tmp / "b-vms"
        self.ro_brick = tmp / "b-ro"

    def url(self, export: str) -> str:
        return f"nbd://127.0.0.1:{self.port}/{export}"

    def image(self, name: str, size: str = "16M") -> Path:
        self.d.ok("vm", "create-image", "vms", name, size)
        return self.brick / name

    def nbd_pid(self) -> int | None:
        try:
            return int((self.d.workdir / "run" / f"nbd-{self.port}.pid").read_text())
        except (OSError, ValueError):
            return None

    def listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    need("qemu-img", "qemu-io", "nbdinfo", "nbdcopy")
    tmp = tmp_path_factory.mktemp("nbd")
    with running_daemon(tmp / "wd") as d:
        s = Setup(tmp, d)
        for vol, brick in (("vms", s.brick), ("ro", s.ro_brick)):
            d.ok("volume", "create", vol, f"127.0.0.1:{brick}", "force")
            d.ok("volume", "start", vol)
            d.ok("volume", "set", vol, "nbd.port", str(s.port))
        d.ok("vm", "create-image", "ro", "base.img", "4M")
        (s.ro_brick / "base.img").write_bytes(b"\x5a" * (4 * MiB))  # before anyone opens it
        d.ok("volume", "set", "ro", "nbd.read-only", "on")
        d.ok("volume", "set", "vms", "nbd.export", "on")
        d.ok("volume", "set", "ro", "nbd.export", "on")
        assert s.listening(), "volume set nbd.export on returned before the server listened"
        yield s


def test_info_and_list(setup):
    s = setup
    s.image("info.img", "24M")
    r = run("qemu-img", "info", "--output=json", s.url("vms/info.img"))
    assert json.loads(r.stdout)["virtual-size"] == 24 * MiB
    r = run("nbdinfo", "--json", s.url("vms/info.img"))
    info = json.loads(r.stdout)["exports"][0]
    assert info["export-size"] == 24 * MiB
    assert info["can_multi_conn"] and info["can_flush"] and info["can_fua"]
    assert info["can_trim"] and info["can_zero"] and not info["is_read_only"]
    assert "base:allocation" in info["contexts"]
    listed = run("nbdinfo", "--list", "--json", f"nbd://127.0.0.1:{s.port}").stdout
    names = {e["export-name"] for e in json.loads(listed)["exports"]}
    assert {"vms/info.img", "ro/base.img"} <= names
    # an unknown export is a clean refusal, naming it
    r = run("qemu-img", "info", s.url("vms/nosuch.img"), ok=False)
    assert r.returncode != 0 and "nosuch" in r.stderr


def test_writes_reach_the_brick_and_reads_come_from_it(setup):
    s = setup
    brick = s.image("rw.img")
    # the brick's own bytes, written behind the server's back before any open
    with open(brick, "r+b") as f:
        f.seek(8 * MiB)
        f.write(b"\xc3" * 65536)
    run("qemu-io", "-f", "raw", "-c", "write -P 0xab 1M 2M", "-c", "write -f -P 0x11 4M 64k",
        "-c", "flush", "-c", "read -P 0xc3 8M 64k", s.url("vms/rw.img"))
    data = brick.read_bytes()
    assert data[MiB:3 * MiB] == b"\xab" * (2 * MiB)
    assert data[4 * MiB:4 * MiB + 65536] == b"\x11" * 65536
    assert data[:MiB] == bytes(MiB) and data[3 * MiB:4 * MiB] == bytes(MiB)
    # a wrong pattern check fails: the read test can fail
    r = run("qemu-io", "-f", "raw", "-c", "read -P 0xab 4M 64k", s.url("vms/rw.img"), ok=False)
    assert "Pattern verification failed" in r.stdout + r.stderr


def test_block_status_is_the_bricks_allocation(setup):
    s = setup
    brick = s.image("map.img", "16M")
    run("qemu-io", "-f", "raw", "-c", "write -P 1 0 256k", "-c", "write -P 2 3M 1M",
        "-c", "write -P 3 15M 1M", s.url("vms/map.img"))
    want = merged(allocation(brick))
    assert want and want != [(0, 16 * MiB)]  # the image is sparse, as the test needs
    r = run("qemu-img", "map", "--output=json", "-f", "raw", s.url("vms/map.img"))
    got = merged((e["start"], e["start"] + e["length"]) for e in json.loads(r.stdout)
                 if e["data"])
    assert got == want
    r = run("nbdinfo", "--map", "--json", s.url("vms/map.img"))
    extents = json.loads(r.stdout)
    assert sum(e["length"] for e in extents) == 16 * MiB
    got = merged((e["offset"], e["offset"] + e["length"]) for e in extents
                 if not e["type"] & 1)
    assert got == want
    holes = [e for e in extents if e["type"] & 1]
    assert holes and all(e["type"] == 3 for e in holes)  # a hole reads as zeros


def test_trim_and_write_zeroes_punch_holes_on_the_brick(setup):
    s = setup
    brick = s.image("zero.img", "8M")
    run("qemu-io", "-f", "raw", "-c", "write -P 7 0 8M", "-c", "flush", s.url("vms/zero.img"))
    full = os.stat(brick).st_blocks
    assert full * 512 >= 8 * MiB
    run("qemu-io", "-f", "raw", "-c", "discard 0 2M", "-c", "write -z -u 2M 2M", "-c", "flush",
        s.url("vms/zero.img"))
    st = os.stat(brick)
    assert st.st_size == 8 * MiB
    assert st.st_blocks * 512 <= full * 512 - 4 * MiB  # 4 MiB fewer allocated on the brick
    assert allocation(brick)[0][0] >= 4 * MiB
    data = brick.read_bytes()
    assert data[:4 * MiB] == bytes(4 * MiB) and data[4 * MiB:] == b"\x07" * (4 * MiB)
    # write-zeroes that may not unmap (NBD_CMD_FLAG_NO_HOLE) keeps the space
    before = os.stat(brick).st_blocks
    run("qemu-io", "-f", "raw", "-c", "write -z 4M 2M", s.url("vms/zero.img"))
    assert os.stat(brick).st_blocks >= before
    assert brick.read_bytes()[4 * MiB:6 * MiB] == bytes(2 * MiB)


def test_convert_and_nbdcopy_round_trip(setup):
    s = setup
    src = s.tmp / "src.raw"
    rnd = random.Random(22)
    with open(src, "wb") as f:
        f.truncate(12 * MiB)
        for off in (0, 5 * MiB, 11 * MiB):
            f.seek(off)
            f.write(rnd.randbytes(512 * 1024))
    s.image("conv.img", "12M")
    run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(src), s.url("vms/conv.img"))
    assert sha(s.brick / "conv.img") == sha(src)
    back = s.tmp / "back.raw"
    log = s.d.workdir / "logs" / f"nbd-{s.port}.log"
    before = log.read_text().count("serving vms:/conv.img")
    run("nbdcopy", s.url("vms/conv.img"), str(back))
    assert sha(back) == sha(src)
    # CAN_MULTI_CONN: nbdcopy opened several connections to the one image
    assert log.read_text().count("serving vms:/conv.img") - before >= 2
    # nbdcopy as the writer, qemu-img convert (to qcow2, via block status) as the reader
    s.image("copy.img", "12M")
    run("nbdcopy", str(src), s.url("vms/copy.img"))
    assert sha(s.brick / "copy.img") == sha(src)
    q = s.tmp / "back.qcow2"
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", s.url("vms/copy.img"), str(q))
    run("qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(src), str(q))


def test_qemu_img_bench(setup):
    s = setup
    s.image("bench.img", "16M")
    for extra in ((), ("-w",)):
        r = run("qemu-img", "bench", *extra, "-f", "raw", "-t", "none", "-c", "2000", "-d", "8",
                "-s", "4k", s.url("vms/bench.img"))
        assert "Run completed" in r.stdout


def test_read_only_export(setup):
    s = setup
    before = sha(s.ro_brick / "base.img")
    info = json.loads(run("nbdinfo", "--json", s.url("ro/base.img")).stdout)["exports"][0]
    assert info["is_read_only"] and not info["can_trim"]
    run("qemu-io", "-r", "-f", "raw", "-c", "read -P 0x5a 0 4M", s.url("ro/base.img"))
    r = run("qemu-io", "-f", "raw", "-c", "write -P 1 0 64k", s.url("ro/base.img"), ok=False)
    assert r.returncode != 0 or "failed" in r.stdout + r.stderr
    c = Client.connect("127.0.0.1", s.port, "ro/base.img")
    try:
        assert c.write(0, b"x" * 512) == 1  # NBD_EPERM
        assert c.command(4, 0, 4096) == 1   # TRIM
        assert c.command(6, 0, 4096) == 1   # WRITE_ZEROES
        assert c.read(0, 512) == (0, b"\x5a" * 512)
    finally:
        c.disconnect()
    assert sha(s.ro_brick / "base.img") == before


def other_client_go(s, export: str = "vms/auth.img"):
    """GO from 127.0.0.2 (a loopback address of its own, bound explicitly:
    Linux would pick 127.0.0.1): the final reply's type."""
    c = Client("127.0.0.1", s.port, source="127.0.0.2")
    try:
        c.greet()
        listed = c.list()
        return c.go(export)[-1][0], listed
    finally:
        c.close()


def test_auth_allow_and_reject(setup):
    """The refused client comes from 127.0.0.2: the policy can refuse it
    while admitting 127.0.0.1 - qemu-img here, and the NBD server itself,
    which is a client of the volume's bricks under the same rules."""
    s = setup
    s.image("auth.img", "4M")
    d = s.d
    assert other_client_go(s)[0] == REP_ACK
    c = Client.connect("127.0.0.1", s.port, "vms/auth.img", source="127.0.0.2")
    try:
        d.ok("volume", "set", "vms", "auth.allow", "127.0.0.1")
        # the open connection is cut as soon as the new policy is applied
        assert c.closed(timeout=15), "a connection the new auth.allow refuses stayed open"
        reply, listed = other_client_go(s)
        assert reply == REP_ERR_POLICY
        assert not [n for n in listed if n.startswith("vms/")] and "ro/base.img" in listed
        log = (d.workdir / "logs" / f"nbd-{s.port}.log").read_text()
        assert "127.0.0.2" in log and "export vms/auth.img refused" in log
        run("qemu-img", "info", s.url("vms/auth.img"))  # 127.0.0.1 is admitted
        d.ok("volume", "set", "vms", "auth.allow", "127.0.0.*")
        assert other_client_go(s)[0] == REP_ACK
        d.ok("volume", "set", "vms", "auth.reject", "127.0.0.2")
        assert other_client_go(s)[0] == REP_ERR_POLICY
        run("qemu-img", "info", s.url("vms/auth.img"))
    finally:
        c.close()
        d.ok("volume", "reset", "vms", "auth.allow")
        d.ok("volume", "reset", "vms", "auth.reject")
    assert other_client_go(s)[0] == REP_ACK


def test_acknowledged_writes_survive_a_killed_server(setup):
    """FUA writes acknowledged before a kill -9 are all there once glusterpyd
    has restarted the server and the client reconnected."""
    s = setup
    brick = s.image("crash.img", "8M")
    c = Client.connect("127.0.0.1", s.port, "vms/crash.img")
    acked: dict[int, bytes] = {}
    killed = False
    pid = s.nbd_pid()
    for i in range(64):
        block = bytes([i + 1]) * 65536
        if i == 20:
            os.kill(pid, signal.SIGKILL)  # mid-stream: later writes get no answer
            killed = True
        try:
            if c.write(i * 65536, block, FLAG_FUA) == 0:
                acked[i] = block
        except (Closed, OSError):
            break
    c.close()
    assert killed and 20 <= len(acked) < 64
    wait_for(lambda: s.nbd_pid() not in (None, pid) and s.listening(), timeout=30,
             what="glusterpyd restarting the NBD server")
    c = Client.connect("127.0.0.1", s.port, "vms/crash.img")
    try:
        for i, block in acked.items():
            assert c.read(i * 65536, 65536) == (0, block), f"acknowledged write {i} lost"
        assert c.write(63 * 65536, b"\xee" * 65536, FLAG_FUA) == 0  # and it goes on
    finally:
        c.disconnect()
    assert brick.read_bytes()[63 * 65536:64 * 65536] == b"\xee" * 65536


def test_daemon_restart_adopts_and_export_off_stops(setup, tmp_path):
    s = setup
    pid = s.nbd_pid()
    assert pid and s.listening()
    s.d.kill9()
    assert s.listening()  # the server outlives glusterpyd, as bricks do
    s.d.start()
    wait_for(lambda: s.d.cli("volume", "list").rc == 0, what="glusterpyd back")
    assert s.nbd_pid() == pid  # adopted, not started twice
    s.image("after.img", "4M")
    run("qemu-img", "info", s.url("vms/after.img"))
    # a volume stopped leaves the other volume's export on the shared port
    s.d.ok("--mode=script", "volume", "stop", "ro")
    run("qemu-img", "info", s.url("vms/after.img"))
    assert run("qemu-img", "info", s.url("ro/base.img"), ok=False).returncode != 0
    s.d.ok("volume", "start", "ro")
    wait_for(lambda: run("qemu-img", "info", s.url("ro/base.img"), ok=False).returncode == 0,
             what="ro exported again", timeout=15)
    s.d.ok("volume", "set", "ro", "nbd.export", "off")
    s.d.ok("volume", "set", "vms", "nbd.export", "off")
    wait_for(lambda: not s.listening(), what="the NBD server stopped", timeout=20)
    assert s.nbd_pid() is None or not Path(f"/proc/{pid}").exists()
    s.d.ok("volume", "set", "vms", "nbd.export", "on")
    s.d.ok("volume", "set", "ro", "nbd.export", "on")
    assert s.listening()


def test_disk_xml_for_nbd_validates(setup, tmp_path):
    need("virt-xml-validate", "xmllint")
    s = setup
    s.image("vm.img", "4M")
    xml = s.d.ok("vm", "disk-xml", "vms", "vm.img", "--protocol", "nbd").out
    assert "protocol=\"nbd\" name=\"vms/vm.img\"" in xml
    assert f"<host name=\"127.0.0.1\" port=\"{s.port}\"" in xml
    done = virt_xml_validate(tmp_path, xml)
    assert done.returncode == 0, done.stderr
    # what the XML says is reachable by QEMU
    run("qemu-img", "info", s.url("vms/vm.img"))
    # several nodes: one <host> (libvirt's schema takes one for nbd), the rest named
    from glusterpy import vm
    volume = {"name": "v", "options": {"nbd.export": "on", "nbd.port": "10810"},
              "bricks": [{"host": h} for h in ("n1", "n2", "n1", "n3")]}
    servers = vm.nbd_servers(volume)
    assert servers == [("n1", 10810), ("n2", 10810), ("n3", 10810)]
    xml = vm.nbd_disk_xml("v", "d.img", servers)
    assert xml.count("<host ") == 1 and "n2:10810, n3:10810" in xml
    done = virt_xml_validate(tmp_path, xml)
    assert done.returncode == 0, done.stderr
    r = s.d.cli("vm", "disk-xml", "ro", "base.img", "--protocol", "nbd", "--host", "10.0.0.1")
    assert r.rc == 1 and "holds no brick" in r.err
    volume["options"] = {}
    with pytest.raises(vm.VmError, match="nbd.export on"):
        vm.nbd_servers(volume)


def test_qemu_reconnects_after_the_server_is_killed(setup):
    """qemu-img bench writing with reconnect-delay: the server is killed
    mid-run, glusterpyd starts it again, QEMU reconnects, resends what was
    in flight, and the run completes with every block on the brick."""
    s = setup
    brick = s.image("recon.img", "32M")
    opts = (f"driver=raw,file.driver=nbd,file.server.type=inet,file.server.host=127.0.0.1,"
            f"file.server.port={s.port},file.export=vms/recon.img,file.reconnect-delay=30")
    pid = s.nbd_pid()
    bench = subprocess.Popen(["qemu-img", "bench", "-w", "--pattern=0x77", "-c", "8192", "-s",
                              "4k", "-d", "8", "-t", "none", "--image-opts", opts],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL)
    def started() -> bool:
        with open(brick, "rb") as f:
            return f.read(4096) == b"\x77" * 4096 or bench.poll() is not None
    wait_for(started, timeout=20, interval=0.02, what="the first writes on the brick")
    assert bench.poll() is None, "the run ended before the server could be killed"
    os.kill(pid, signal.SIGKILL)
    out, err = bench.communicate(timeout=90)
    assert bench.returncode == 0, out + err
    assert s.nbd_pid() != pid
    data = brick.read_bytes()
    assert data == b"\x77" * (32 * MiB), "a write QEMU was told succeeded is missing"


def test_replica_3_block_status_and_holes(setup):
    """On replica 3 the extents come from one brick's SEEK_DATA through
    cluster/replicate, and a trim punches the hole on all three."""
    s = setup
    bricks = [s.tmp / f"r{i}" for i in range(3)]
    s.d.ok("volume", "create", "rep", "replica", "3", *(f"127.0.0.1:{b}" for b in bricks),
           "force")
    s.d.ok("volume", "start", "rep")
    s.d.ok("volume", "set", "rep", "nbd.port", str(s.port))
    s.d.ok("volume", "set", "rep", "nbd.export", "on")
    s.d.ok("vm", "create-image", "rep", "r.img", "8M")
    url = s.url("rep/r.img")
    run("qemu-io", "-f", "raw", "-c", "write -P 9 1M 1M", "-c", "write -P 9 6M 512k",
        "-c", "discard 1M 512k", "-c", "flush", url)
    want = merged(allocation(bricks[0] / "r.img"))
    assert want == [(1536 * 1024, 2 * MiB), (6 * MiB, 6 * MiB + 512 * 1024)]
    for b in bricks:
        assert merged(allocation(b / "r.img")) == want, b
    r = run("qemu-img", "map", "--output=json", "-f", "raw", url)
    got = merged((e["start"], e["start"] + e["length"]) for e in json.loads(r.stdout)
                 if e["data"])
    assert got == want
