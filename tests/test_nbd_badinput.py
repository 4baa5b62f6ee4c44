"""The NBD server given wrong or hostile input (tests/nbdclient.py speaks it
byte by byte): every case gets a clean NBD error reply or a disconnect, the
server keeps serving other clients, and images nobody wrote to are
unchanged on the brick.  Then a hypothesis fuzzer of both phases -
handshake options and transmission requests with arbitrary numbers - with
the same three properties after every example.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import nbdclient as N
from nbdclient import Client, Closed
from test_glusterd_support import free_port, running_daemon

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(os.geteuid() != 0,
                                 reason="bricks need trusted.* xattrs (root)")]

MiB = 1 << 20
SIZE = 4 * MiB


class Env:
    def __init__(self, d, port, brick):
        self.d, self.port, self.brick = d, port, brick
        self.sentinel = brick / "sentinel.img"
        self.digest = hashlib.sha256(self.sentinel.read_bytes()).hexdigest()

    def pid(self) -> int:
        return int((self.d.workdir / "run" / f"nbd-{self.port}.pid").read_text())

    def healthy(self) -> None:
        """Another client is served, and the sentinel image is intact."""
        c = Client.connect("127.0.0.1", self.port, "vms/sentinel.img")
        try:
            assert c.size == SIZE
            assert c.read(0, 4096) == (0, b"\x42" * 4096)
        finally:
            c.disconnect()
        assert hashlib.sha256(self.sentinel.read_bytes()).hexdigest() == self.digest


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nbdbad")
    with running_daemon(tmp / "wd") as d:
        port, brick = free_port(), tmp / "b"
        d.ok("volume", "create", "vms", f"127.0.0.1:{brick}", "force")
        d.ok("volume", "start", "vms")
        d.ok("volume", "set", "vms", "nbd.port", str(port))
        for name in ("sentinel.img", "fuzz.img"):
            d.ok("vm", "create-image", "vms", name, "4M")
        (brick / "sentinel.img").write_bytes(b"\x42" * SIZE)
        d.ok("volume", "set", "vms", "nbd.export", "on")
        e = Env(d, port, brick)
        e.start_pid = e.pid()
        yield e
        # nothing above made the server restart
        assert e.pid() == e.start_pid


def greeted(env) -> Client:
    c = Client("127.0.0.1", env.port)
    c.greet()
    return c


def test_unknown_and_malformed_exports_are_option_errors(env):
    c = greeted(env)
    try:
        for name in ("vms/nosuch.img", "nosuch/disk.img", "", "vms", "vms/", "vms/../x",
                     "vms/.", "\xff\x00"):
            assert c.go(name)[-1][0] == N.REP_ERR_UNKNOWN, name
        assert c.go("vms/sentinel.img", opt=N.OPT_INFO)[-1][0] == N.REP_ACK
        # a GO whose counts do not fit its length
        c.option(N.OPT_GO, struct.pack(">I", 100) + b"vms/sentinel.img")
        assert c.replies()[-1][0] == N.REP_ERR_INVALID
        name = b"vms/sentinel.img"
        c.option(N.OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">H", 3) + b"\0\0")
        assert c.replies()[-1][0] == N.REP_ERR_INVALID
        c.option(N.OPT_LIST, b"junk")
        assert c.replies()[-1][0] == N.REP_ERR_INVALID
        c.option(N.OPT_STRUCTURED_REPLY, b"x")
        assert c.replies()[-1][0] == N.REP_ERR_INVALID
        c.option(N.OPT_SET_META_CONTEXT, b"\0\0\0\x05vms/s")  # before structured replies
        assert c.replies()[-1][0] == N.REP_ERR_INVALID
        c.option(N.OPT_STARTTLS)  # not built: refused, and the session goes on
        assert c.replies()[-1][0] == N.REP_ERR_UNSUP
        c.option(4242, b"what")
        assert c.replies()[-1][0] == N.REP_ERR_UNSUP
        c.structured_reply()
        c.option(N.OPT_SET_META_CONTEXT, b"\0\0\0\x10vms/sentinel.img\0\0\0\x05")
        assert c.replies()[-1][0] == N.REP_ERR_INVALID  # a query longer than the option
        # after all that, the same connection still gets its export
        assert c.go("vms/sentinel.img")[-1][0] == N.REP_ACK
        assert c.read(0, 512) == (0, b"\x42" * 512)
        c.disconnect()
    finally:
        c.close()
    env.healthy()


@pytest.mark.parametrize("what", ["client flags", "option magic", "huge option",
                                  "export name", "abort", "half a header"])
def test_broken_handshakes_are_disconnected(env, what):
    c = Client("127.0.0.1", env.port)
    try:
        if what == "client flags":
            c.recv(18)
            c.send(struct.pack(">I", 0x80))
        else:
            c.greet()
            if what == "option magic":
                c.send(struct.pack(">QII", 0x1234, N.OPT_LIST, 0))
            elif what == "huge option":
                c.send(struct.pack(">QII", N.IHAVEOPT, N.OPT_GO, 1 << 30))
            elif what == "export name":  # no error channel there: a disconnect
                c.option(N.OPT_EXPORT_NAME, b"vms/nosuch.img")
            elif what == "abort":
                c.option(N.OPT_ABORT)
                assert c.reply()[1] == N.REP_ACK
            else:
                c.send(b"IHAVE")
                c.sock.shutdown(socket.SHUT_WR)
        assert c.closed(timeout=10), what
    finally:
        c.close()
    env.healthy()


def test_bad_requests_get_errors_and_the_connection_goes_on(env):
    c = Client.connect("127.0.0.1", env.port, "vms/fuzz.img")
    try:
        assert c.read(SIZE - 512, 1024)[0] == N.EINVAL          # past the end
        assert c.read(1 << 63, 512)[0] == N.EINVAL
        assert c.write(SIZE - 100, b"y" * 200) == N.EINVAL       # payload still consumed
        assert c.command(N.CMD_TRIM, SIZE, 1) == N.EINVAL
        assert c.command(N.CMD_WRITE_ZEROES, 0, SIZE + 4096) == N.EINVAL
        assert c.read(0, 64 * MiB)[0] == N.EINVAL               # larger than the maximum
        assert c.command(99, 0, 0) == N.EINVAL                   # unknown command
        assert c.command(N.CMD_FLUSH, 0, 0, flags=0x4000) == N.EINVAL  # unknown flag
        assert c.block_status(0, 4096)[0] == N.EINVAL           # no meta context chosen
        assert c.write(0, b"ok" * 256) == 0
        assert c.read(0, 512) == (0, b"ok" * 256)
        assert c.read(0, 0) == (0, b"")
        # zeros come back as a hole chunk (type 2), which reads as zeros
        c.request(N.CMD_READ, 2 * MiB, 65536)
        _, error, chunks = c.response()
        assert error == 0 and [t for t, _ in chunks] == [2]
        assert struct.unpack(">QI", chunks[0][1]) == (2 * MiB, 65536)
        assert c.read(2 * MiB, 65536) == (0, bytes(65536))
    finally:
        c.disconnect()
    # with simple replies too
    c = Client.connect("127.0.0.1", env.port, "vms/fuzz.img", structured=False)
    try:
        assert c.read(SIZE, 512)[0] == N.EINVAL
        assert c.read(0, 512) == (0, b"ok" * 256)
    finally:
        c.disconnect()
    env.healthy()


@pytest.mark.parametrize("what", ["request magic", "oversized write"])
def test_broken_framing_in_transmission_is_disconnected(env, what):
    c = Client.connect("127.0.0.1", env.port, "vms/fuzz.img")
    try:
        if what == "request magic":
            c.send(struct.pack(">IHHQQI", 0xDEADBEEF, 0, 0, 1, 0, 512))
        else:
            c.request(N.CMD_WRITE, 0, 64 * MiB)  # a header promising 64 MiB
            cookie, error, _ = c.response()
            assert error == N.EINVAL
        assert c.closed(timeout=10)
    finally:
        c.close()
    env.healthy()


def test_a_client_that_never_reads_holds_only_itself(env):
    c = Client.connect("127.0.0.1", env.port, "vms/sentinel.img")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        # 64 reads of 4 MiB asked, none of the 256 MiB of answers taken
        for i in range(64):
            c.request(N.CMD_READ, 0, SIZE)
        time.sleep(1)
        for _ in range(3):
            env.healthy()
    finally:
        c.close()
    env.healthy()


def test_silent_and_half_open_connections_do_not_block_others(env):
    quiet = [socket.create_connection(("127.0.0.1", env.port)) for _ in range(20)]
    try:
        env.healthy()
    finally:
        for s in quiet:
            s.close()
    env.healthy()


# -- the fuzzer ------------------------------------------------------------------

EXPORTS = ["vms/fuzz.img", "vms/sentinel.img", "vms/nosuch", "", "vms/../fuzz.img", "nosuch/x"]

names = st.one_of(st.sampled_from(EXPORTS), st.text(max_size=20))
options = st.one_of(
    st.tuples(st.sampled_from([1, 2, 3, 5, 6, 7, 8, 9, 10, 11]) | st.integers(0, 2**32 - 1),
              st.binary(max_size=64)),
    st.builds(lambda n, infos, opt: (opt, struct.pack(">I", len(n.encode())) + n.encode()
                                     + struct.pack(">H", len(infos))
                                     + b"".join(struct.pack(">H", i) for i in infos)),
              names, st.lists(st.integers(0, 2**16 - 1), max_size=4), st.sampled_from([6, 7])),
    st.builds(lambda n, qs, opt: (opt, struct.pack(">I", len(n.encode())) + n.encode()
                                  + struct.pack(">I", len(qs)) + b"".join(
                                      struct.pack(">I", len(q.encode())) + q.encode()
                                      for q in qs)),
              names, st.lists(st.sampled_from(["base:allocation", "base:", "qemu:dirty-bitmap:x",
                                               ""]) | st.text(max_size=10), max_size=3),
              st.sampled_from([9, 10])),
)
numbers = st.one_of(st.sampled_from([0, 1, 511, 512, 4096, SIZE - 1, SIZE, SIZE + 1,
                                     2**31, 2**32 - 1, 2**63, 2**64 - 1]),
                    st.integers(0, 2**64 - 1))
requests = st.tuples(st.sampled_from([0, 1, 3, 4, 5, 6, 7]) | st.integers(0, 2**16 - 1),
                     st.sampled_from([0, 1, 2, 4, 8]) | st.integers(0, 2**16 - 1),
                     numbers, st.one_of(st.integers(0, 8192), numbers.map(lambda n: n % 2**32)))


def _drain(c: Client, timeout: float = 10.0) -> None:
    """Read until the server closes or stays quiet; what arrives must be
    framed as NBD (a reply magic where one is due) - checked by parsing."""
    c.sock.settimeout(timeout)
    try:
        while True:
            chunk = c.sock.recv(65536)
            if not chunk:
                return
    except socket.timeout:
        return
    except (ConnectionResetError, BrokenPipeError):
        return


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(flags=st.sampled_from([1, 3]) | st.integers(0, 2**32 - 1),
       opts=st.lists(options, max_size=5), go=st.booleans(),
       structured=st.booleans(), reqs=st.lists(requests, max_size=6))
def test_fuzz_handshake_and_transmission(env, flags, opts, go, structured, reqs):
    c = Client("127.0.0.1", env.port, timeout=10)
    try:
        c.greet(flags)
        entered = False
        try:
            for opt, data in opts:
                if opt in (N.OPT_EXPORT_NAME, N.OPT_ABORT):
                    continue  # they end the negotiation; covered above
                c.option(opt, data)
                last = c.replies()[-1]
                assert last[0] == N.REP_ACK or last[0] >= 2**31, last
                if opt == N.OPT_GO and last[0] == N.REP_ACK:
                    entered = True
                    break
            if not entered and go:
                if structured:
                    c.structured_reply()
                c.set_meta_context("vms/fuzz.img") if structured else None
                entered = c.go("vms/fuzz.img")[-1][0] == N.REP_ACK
                assert entered
            if entered:
                for cmd, fl, offset, length in reqs:
                    if cmd == N.CMD_DISC:
                        continue
                    payload = b""
                    if cmd == N.CMD_WRITE:
                        length = min(length, 8192)
                        payload = os.urandom(length)
                    c.request(cmd, offset % 2**64, length, payload, fl)
                    if cmd == N.CMD_READ and not c.structured:
                        cookie, error, _ = c.response()
                        if not error:
                            c.recv(length)
                    else:
                        cookie, error, chunks = c.response()
                    assert cookie == c.cookie
        except (Closed, ConnectionResetError, BrokenPipeError):
            pass  # a disconnect is a clean answer too
        except AssertionError:
            raise
        _drain(c, timeout=0.2)
    finally:
        c.close()
    env.healthy()


# -- the time limits, on a server run in this process with short ones ---------------

async def test_silent_handshakes_and_readers_that_stop_are_cut(env, monkeypatch):
    """A client silent in the handshake and one that stops reading its replies
    are disconnected after HANDSHAKE_TIMEOUT / SEND_TIMEOUT (shortened here;
    the server is glusterpy's, in this process, on the same volume)."""
    import trio
    from glusterpy.nbd import server as S
    monkeypatch.setattr(S, "HANDSHAKE_TIMEOUT", 1.0)
    monkeypatch.setattr(S, "SEND_TIMEOUT", 1.0)
    srv = S.NbdServer.from_servers({"vms": S.VolumePolicy("vms")}, ["127.0.0.1"], env.d.port)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(srv.serve, 0, "127.0.0.1")

        def silent() -> bool:
            c = Client("127.0.0.1", port)
            try:
                c.recv(18)   # the greeting, then nothing from us
                return c.closed(timeout=10)
            finally:
                c.close()

        def stuck_reader() -> bool:
            c = Client.connect("127.0.0.1", port, "vms/sentinel.img")
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            try:
                for _ in range(32):
                    c.request(N.CMD_READ, 0, SIZE)
                time.sleep(4)  # past SEND_TIMEOUT with the replies stuck
                return c.closed(timeout=10)
            finally:
                c.close()

        assert await trio.to_thread.run_sync(silent), "a silent client was kept"
        assert await trio.to_thread.run_sync(stuck_reader), "a client that never reads was kept"
        # the server goes on
        good = await trio.to_thread.run_sync(
            lambda: Client.connect("127.0.0.1", port, "vms/sentinel.img").read(0, 512))
        assert good == (0, b"\x42" * 512)
        nursery.cancel_scope.cancel()
