"""glusterpy.gfapi on a remote volume: `Volume(hosts, volname)`.

Without a server: GETSPEC's request is byte for byte what libgfapi sent in
the captures; glusterd's client volfiles load once the translators glusterpy
lacks are left out; a volfile naming another unknown translator, an
unreachable server and an unknown transport give LibgfapiException with a
clear message.

Against a real GlusterFS 10 glusterd and brick (`-m interop`): the
libgfapi-python-shaped API end to end (files, directories, links, xattrs,
rename, truncate), several MiB written in 128 KiB requests and read back
with matching checksums - also straight from the brick directory -, an
unknown volume, the log file, and a brick killed under an open file: ENOTCONN
at once, then after `volume start force` the same open file works again.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import signal
import socket
import stat
import time
from pathlib import Path

import pytest
import trio

from glusterpy.gfapi import AsyncVolume, LibgfapiException, Volume
from glusterpy.gfapi.mgmt import (PASS_THROUGH_TYPES, SINGLE_CHILD_PASS_THROUGH,
                                  FetchedVolfile, VolfileServer, client_graph, fetch_volfile,
                                  getspec_request, volfile_servers)
from glusterpy.graph import canonical_type
from glusterpy.rpc import HNDSK_PROGRAM, RpcCall, decode_message
from pcap import capture_path, rpc_records

VOLFILES = Path("/work/shared/glusterfs10-samples/volfiles")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- without a server ------------------------------------------------------------


@pytest.mark.skipif(not capture_path("qemu-img.pcap").exists(), reason="no captures")
def test_getspec_request_is_libgfapis():
    for stream, direction, record in rpc_records(capture_path("qemu-img.pcap")):
        msg = decode_message(memoryview(record)[4:])
        if isinstance(msg, RpcCall) and msg.prog == HNDSK_PROGRAM and msg.proc == 2:
            break
    assert getspec_request("test").encode() == bytes(msg.body)


@pytest.mark.parametrize("name", ["test.tcp-fuse.vol", "trusted-test.tcp-fuse.vol"])
def test_glusterd_client_volfile_loads_without_missing_translators(name):
    text = (VOLFILES / name).read_text()
    graph, elided = client_graph(FetchedVolfile(text, "test", VolfileServer("vm")))
    leaves = [xl for xl in graph.bottom_up() if not xl.children]
    assert [xl.name for xl in leaves] == ["test-client-0"]
    assert leaves[0].type_name == "protocol/client"
    for entry in elided:
        kind = canonical_type(entry.split("(")[1].rstrip(")"))
        assert kind in PASS_THROUGH_TYPES | SINGLE_CHILD_PASS_THROUGH


def test_unknown_translator_fails_with_its_line():
    text = """volume v-client-0
    type protocol/client
    option remote-host h
    option remote-subvolume /b
end-volume
volume v-mystery
    type features/no-such-thing
    subvolumes v-client-0
end-volume
volume v
    type debug/io-stats
    subvolumes v-mystery
end-volume
"""
    with pytest.raises(LibgfapiException, match=r":7: unknown translator type "
                                                r"'features/no-such-thing'"):
        client_graph(FetchedVolfile(text, "v", VolfileServer("h")))


def test_servers_and_transports():
    assert [str(s) for s in volfile_servers("a, b", 24008)] == ["a:24008", "b:24008"]
    assert [s.host for s in volfile_servers(["x", "y"])] == ["x", "y"]
    with pytest.raises(LibgfapiException, match="not supported"):
        Volume("h", "v", proto="rdma")
    assert [str(s) for s in volfile_servers("/run/glusterd.socket", transport="unix")] == \
        ["unix:/run/glusterd.socket"]
    with pytest.raises(LibgfapiException, match="volume name"):
        Volume("h")


def test_unreachable_server_fails_at_once():
    vol = Volume("127.0.0.1", "anything", port=free_port())
    start = time.monotonic()
    with pytest.raises(LibgfapiException, match="no volfile server answered.*refused"):
        vol.mount()
    assert time.monotonic() - start < 5
    assert not vol.mounted


# -- against GlusterFS 10 ------------------------------------------------------------


@pytest.fixture
def gf_volume(glusterd, tmp_path):
    """A started one-brick GlusterFS 10 volume: (name, brick path)."""
    brick = tmp_path / "brick"
    brick.mkdir()
    name = glusterd.create_volume(brick)
    yield name, brick
    glusterd.stop_volume(name)


@pytest.fixture
def mounted(gf_volume):
    name, brick = gf_volume
    vol = Volume("127.0.0.1", name)
    vol.mount()
    try:
        yield vol, brick
    finally:
        vol.umount()


@pytest.mark.interop
def test_libgfapi_python_api_on_glusterfs10(mounted):
    vol, brick = mounted
    assert vol.mounted and vol.host == "127.0.0.1" and vol.port == 24007
    vol.makedirs("/d/e")
    with vol.fopen("/d/e/f.txt", "w") as f:
        assert f.write(b"hello world") == 11
    with vol.fopen("/d/e/f.txt", "r") as f:
        assert f.read() == b"hello world"
        f.lseek(6)
        assert f.read(5) == b"world"
    st = vol.stat("/d/e/f.txt")
    assert stat.S_ISREG(st.st_mode) and st.st_size == 11
    assert (brick / "d/e/f.txt").read_bytes() == b"hello world"

    # readdir, with and without stats
    for i in range(5):
        with vol.fopen(f"/d/n{i}", "w") as f:
            f.write(bytes([i]) * i)
    assert sorted(vol.listdir("/d")) == ["e", "n0", "n1", "n2", "n3", "n4"]
    sizes = dict((n, s.st_size) for n, s in vol.listdir_with_stat("/d"))
    assert sizes == {"e": sizes["e"], **{f"n{i}": i for i in range(5)}}
    assert sorted(e.name for e in vol.scandir("/d") if e.is_file()) == \
        [f"n{i}" for i in range(5)]

    # xattrs
    vol.setxattr("/d/e/f.txt", "user.colour", b"blue")
    assert vol.getxattr("/d/e/f.txt", "user.colour") == b"blue"
    assert "user.colour" in vol.listxattr("/d/e/f.txt")
    assert os.getxattr(brick / "d/e/f.txt", "user.colour") == b"blue"
    vol.removexattr("/d/e/f.txt", "user.colour")
    with pytest.raises(OSError) as e:
        vol.getxattr("/d/e/f.txt", "user.colour")
    assert e.value.errno == errno.ENODATA

    # rename, truncate, links
    vol.rename("/d/e/f.txt", "/d/g.txt")
    assert not vol.exists("/d/e/f.txt") and vol.getsize("/d/g.txt") == 11
    vol.truncate("/d/g.txt", 5)
    assert vol.fopen("/d/g.txt").read() == b"hello"
    vol.truncate("/d/g.txt", 8)
    assert vol.fopen("/d/g.txt").read() == b"hello\0\0\0"
    vol.symlink("g.txt", "/d/sym")
    assert vol.readlink("/d/sym") == "g.txt" and vol.islink("/d/sym")
    assert vol.fopen("/d/sym").read() == b"hello\0\0\0"
    vol.link("/d/g.txt", "/d/hard")
    assert vol.stat("/d/hard").st_nlink == 2 and vol.samefile("/d/g.txt", "/d/hard")
    assert os.readlink(brick / "d/sym") == "g.txt"

    # chmod, errors, unlink, rmdir
    vol.chmod("/d/g.txt", 0o600)
    assert stat.S_IMODE(vol.stat("/d/g.txt").st_mode) == 0o600
    with pytest.raises(FileExistsError):
        vol.mkdir("/d/e")
    with pytest.raises(FileNotFoundError):
        vol.stat("/nowhere")
    with pytest.raises(OSError) as e:
        vol.rmdir("/d")
    assert e.value.errno == errno.ENOTEMPTY
    vol.unlink("/d/hard")
    assert vol.stat("/d/g.txt").st_nlink == 1
    vol.rmtree("/d")
    assert vol.listdir("/") == [] and sorted(os.listdir(brick)) == [".glusterfs"]
    assert vol.statvfs("/").f_bsize > 0


@pytest.mark.interop
def test_large_writes_in_128k_requests(mounted):
    vol, brick = mounted
    chunk = 128 * 1024
    data = os.urandom(6 * 1024 * 1024 + 12345)  # 6 MiB and a tail
    with vol.fopen("/big", "w") as f:
        for off in range(0, len(data), chunk):
            assert f.write(data[off:off + chunk]) == len(data[off:off + chunk])
    assert vol.getsize("/big") == len(data)
    digest = hashlib.sha256()
    with vol.fopen("/big") as f:
        while block := f.read(chunk):
            assert len(block) <= chunk
            digest.update(block)
    want = hashlib.sha256(data).hexdigest()
    assert digest.hexdigest() == want
    assert hashlib.sha256((brick / "big").read_bytes()).hexdigest() == want
    # concurrent positional writes from threads land where they belong
    with vol.fopen("/big", "r+") as f:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: f.pwrite(bytes([i]) * chunk, i * chunk), range(16)))
    with vol.fopen("/big") as f:
        for i in range(16):
            assert f.pread(chunk, i * chunk) == bytes([i]) * chunk


@pytest.mark.interop
def test_unknown_volume(glusterd):
    vol = Volume("127.0.0.1", "no-such-volume-here")
    with pytest.raises(LibgfapiException, match="'no-such-volume-here' does not exist"):
        vol.mount()


@pytest.mark.interop
async def test_fetch_tries_the_next_server(gf_volume):
    name, _ = gf_volume
    fetched = await fetch_volfile([VolfileServer("127.0.0.1", free_port()),
                                   VolfileServer("127.0.0.1", 24007)], name)
    assert fetched.server.port == 24007 and f"volume {name}-client-0" in fetched.text


@pytest.mark.interop
def test_log_file(gf_volume, tmp_path):
    name, _ = gf_volume
    log = tmp_path / "gfapi.log"
    with Volume("127.0.0.1", name, log_file=log, log_level=7) as vol:
        vol.listdir("/")
    text = log.read_text()
    assert "attached to remote volume" in text and f"{name}-client-0" in text


def brick_pid(volume: str) -> int:
    (pidfile,) = glob.glob(f"/var/run/gluster/vols/{volume}/*.pid")
    return int(Path(pidfile).read_text().strip())


@pytest.mark.interop
def test_brick_outage_enotconn_then_back(gf_volume, glusterd):
    name, brick = gf_volume
    with Volume("127.0.0.1", name) as vol:
        f = vol.fopen("/kept-open", "w+")
        f.write(b"one ")
        pid = brick_pid(name)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while True:  # the client sees the connection close within moments
            try:
                vol.stat("/kept-open")
            except OSError as e:
                assert e.errno == errno.ENOTCONN
                break
            assert time.monotonic() < deadline, "still connected to a killed brick"
            time.sleep(0.05)
        start = time.monotonic()
        for call in (lambda: vol.listdir("/"), lambda: f.write(b"x"),
                     lambda: vol.fopen("/other", "w")):
            with pytest.raises(OSError) as e:
                call()
            assert e.value.errno == errno.ENOTCONN
        assert time.monotonic() - start < 1

        while os.path.exists(f"/proc/{pid}"):  # see test_protocol_client.wait_reaped
            assert time.monotonic() < deadline + 15
            time.sleep(0.1)
        glusterd.cli("volume", "start", name, "force")
        deadline = time.monotonic() + 20
        while True:
            try:
                vol.stat("/kept-open")
                break
            except OSError as e:
                assert e.errno == errno.ENOTCONN
                assert time.monotonic() < deadline, "no reconnect after volume start force"
                time.sleep(0.2)
        # the file opened before the outage was re-opened on the new brick
        f.write(b"two")
        f.lseek(0)
        assert f.read() == b"one two"
        f.close()
    assert (brick / "kept-open").read_bytes() == b"one two"


@pytest.mark.interop
async def test_volume_set_reaches_the_mounted_graph(gf_volume, glusterd):
    """`gluster volume set` makes glusterd send FETCHSPEC on the volfile
    connection gfapi keeps; the changed option lands in the running graph."""
    name, _ = gf_volume
    async with AsyncVolume.from_server("127.0.0.1", name) as vol:
        client = vol.graph.by_name[f"{name}-client-0"]
        assert client.opts.ping_timeout == 42
        await trio.to_thread.run_sync(glusterd.cli, "volume", "set", name,
                                      "network.ping-timeout", "7")
        with trio.fail_after(10):
            while client.opts.ping_timeout != 7:
                await trio.sleep(0.1)
        assert await vol.listdir("/") == []


@pytest.mark.interop
def test_refused_client_and_dead_brick_fail_the_mount(gf_volume, glusterd):
    name, _ = gf_volume
    glusterd.cli("volume", "set", name, "auth.reject", "127.0.0.1")
    deadline = time.monotonic() + 10
    while True:  # the brick applies auth.reject a moment after the command
        vol = Volume("127.0.0.1", name)
        try:
            vol.mount()
        except LibgfapiException as e:
            assert "a brick refused this client" in str(e)
            assert f"{name}-client-0: Authentication failed" in str(e)
            break
        vol.umount()
        assert time.monotonic() < deadline, "auth.reject never took effect"
        time.sleep(0.2)
    glusterd.cli("volume", "reset", name, "auth.reject")

    os.kill(brick_pid(name), signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(LibgfapiException, match="bricks are not reachable"):
        Volume("127.0.0.1", name).mount()
    assert time.monotonic() - start < 5
