"""TLS on the I/O path (glusterpy.rpc.tls, protocol/server, protocol/client)
and on the management connection (secure access), with GlusterFS 10.

In process, over loopback TCP, nothing faked: our brick (protocol/server ->
posix) with `transport.socket.ssl-enabled`, our client graph or gfapi with
its own certificate, every certificate made by glusterpy.pki under a test
CA in tmp_path (the files are named by the volfile options, so nothing
under /etc/ssl is touched):

* data written and read back through gfapi over TLS;
* refusals: a client certificate no CA signed, a client without TLS, a
  brick without TLS for a TLS client, a brick certificate the client does
  not trust - each with the brick's or the client's log line, and ENOTCONN
  for fops;
* auth.ssl-allow: one common name in, another refused with EACCES at
  SETVOLUME; an `ssl-name` the client sends itself is ignored;
* ssl-cert-depth: a client certificate under an intermediate CA is refused
  at depth 0 and taken at depth 1;
* the `volume set` keys (client.ssl, server.ssl, auth.ssl-allow,
  ssl.certificate-depth, ssl.cipher-list, ssl.own-cert ...) reach the
  brick and client volfiles volgen writes; bad values are refused;
* secure access: gfapi fetches its volfile over TLS from a volfile server
  that speaks TLS, and cannot from one that does not.

Interop (`-m interop`, root): a GlusterFS 10 client - the glusterfs FUSE
mount and qemu-img/qemu-io over gluster:// - against our TLS brick, and our
gfapi against a GlusterFS 10 volume with server.ssl/client.ssl on (the
session's glusterd; the certificate paths go in with `volume set
ssl.own-cert ...`, so /etc/ssl is not touched either).
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import logging
import os
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from glusterpy import pki
from glusterpy.fops import FopError, Loc
from glusterpy.gfapi import AsyncVolume
from glusterpy.graph import Graph
from glusterpy.options import OptionError
from glusterpy.rpc import tls

from brickclient import brick_volfile


# -- certificates --------------------------------------------------------------------


@dataclass
class Identity:
    cn: str
    cert: Path
    key: Path


class TestPki:
    """A root CA in `base` (ca.pem) and identities it (or an intermediate) signs."""

    __test__ = False

    def __init__(self, base: Path, name: str = "ca"):
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.key = pki.new_key()
        self.cert = pki.self_signed(f"glusterpy test {name}", self.key, ca=True)
        self.ca = base / f"{name}.pem"
        self.ca.write_bytes(pki.cert_pem(self.cert))

    def identity(self, cn: str, *, via_intermediate: bool = False) -> Identity:
        key = pki.new_key()
        chain = b""
        if via_intermediate:
            ikey = pki.new_key()
            inter = pki.issue(self.key, self.cert, f"{cn} intermediate", ikey, ca=True)
            cert = pki.issue(ikey, inter, cn, key)
            chain = pki.cert_pem(inter)
        else:
            cert = pki.issue(self.key, self.cert, cn, key)
        path = self.base / f"{cn}.pem"
        path.write_bytes(pki.cert_pem(cert) + chain)
        key_path = self.base / f"{cn}.key"
        pki.write_private(key_path, pki.key_pem(key))
        return Identity(cn, path, key_path)


def self_signed_identity(base: Path, cn: str) -> Identity:
    key = pki.new_key()
    cert, key_path = base / f"{cn}-self.pem", base / f"{cn}-self.key"
    cert.write_bytes(pki.cert_pem(pki.self_signed(cn, key)))
    pki.write_private(key_path, pki.key_pem(key))
    return Identity(cn, cert, key_path)


def tls_options(who: Identity, ca: Path, **extra) -> dict[str, str]:
    opts = {"transport.socket.ssl-enabled": "on",
            "transport.socket.ssl-own-cert": str(who.cert),
            "transport.socket.ssl-private-key": str(who.key),
            "transport.socket.ssl-ca-list": str(ca)}
    opts.update({f"transport.socket.{k.replace('_', '-')}": str(v) for k, v in extra.items()})
    return opts


@pytest.fixture
def ca(tmp_path):
    return TestPki(tmp_path / "pki")


# -- our brick, our client -------------------------------------------------------------


def client_volfile(port: int, subvolume: str, options: dict[str, str]) -> str:
    text = ("volume c-client\n    type protocol/client\n    option remote-host 127.0.0.1\n"
            f"    option remote-port {port}\n    option remote-subvolume {subvolume}\n"
            "    option ping-timeout 5\n")
    text += "".join(f'    option {k} "{v}"\n' for k, v in options.items())
    return text + "end-volume\n"


@contextlib.asynccontextmanager
async def brick(directory: Path, server_options: dict[str, str]):
    """Our brick on a free loopback port; yields (port, subvolume)."""
    directory.mkdir(exist_ok=True)
    graph = Graph.from_text(brick_volfile(directory, server_options=server_options))
    async with graph.running():
        yield graph.top.port, graph.top.children[0].name


async def assert_refused(port: int, subvolume: str, options: dict[str, str]) -> None:
    """The client never comes up and its fops fail with ENOTCONN."""
    graph = Graph.from_text(client_volfile(port, subvolume, options))
    async with graph.running():
        assert not await graph.wait_child_up(2.5), "a client that should be refused came up"
        with pytest.raises(FopError) as e:
            await graph.top.lookup(Loc.root(), None)
        assert e.value.errno == errno.ENOTCONN


def logged(caplog, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)


async def test_gfapi_writes_and_reads_over_tls(tmp_path, ca):
    server, client = ca.identity("brick1"), ca.identity("client1")
    data = os.urandom(3 << 20)
    async with brick(tmp_path / "b", tls_options(server, ca.ca)) as (port, sub):
        graph = Graph.from_text(client_volfile(port, sub, tls_options(client, ca.ca)))
        async with AsyncVolume(graph, mount_timeout=10) as vol:
            await vol.makedirs("/d/e")
            async with await vol.fopen("/d/e/f", "wb") as f:
                await f.write(data)
            async with await vol.fopen("/d/e/f", "rb") as f:
                assert await f.read() == data
            assert (await vol.stat("/d/e/f")).st_size == len(data)
    # it went to the brick's directory, as any write does
    assert (tmp_path / "b" / "d" / "e" / "f").read_bytes() == data


async def test_untrusted_client_certificate_is_refused(tmp_path, ca, caplog):
    caplog.set_level(logging.INFO)
    server = ca.identity("brick1")
    stranger = self_signed_identity(tmp_path, "stranger")
    other_ca = TestPki(tmp_path / "other", "other-ca")
    async with brick(tmp_path / "b", tls_options(server, ca.ca)) as (port, sub):
        # a self-signed certificate the brick's CA list does not hold
        await assert_refused(port, sub, tls_options(stranger, ca.ca))
        assert logged(caplog, "refused connection from 127.0.0.1")
        # a certificate from another CA
        caplog.clear()
        await assert_refused(port, sub, tls_options(other_ca.identity("eve"), ca.ca))
        assert logged(caplog, "refused connection from 127.0.0.1")
        # the client heard why: the brick's TLS alert
        assert logged(caplog, "TLS connection with 127.0.0.1") or \
            logged(caplog, "refused it")


async def test_a_rewritten_ca_list_admits_at_the_next_connection(tmp_path, ca, caplog):
    """GlusterFS reads the files once; our brick reads them again for a new
    connection when they changed (`tls client`, geo-replication's push-pem),
    and keeps the old ones when the new ones do not load."""
    caplog.set_level(logging.INFO)
    server = ca.identity("brick1")
    newcomer = self_signed_identity(tmp_path, "newcomer")
    ca_list = tmp_path / "brick.ca"
    ca_list.write_bytes(ca.ca.read_bytes())
    client_ca = tmp_path / "client.ca"
    client_ca.write_bytes(ca.ca.read_bytes())
    async with brick(tmp_path / "b", tls_options(server, ca_list)) as (port, sub):
        await assert_refused(port, sub, tls_options(newcomer, client_ca))
        ca_list.write_bytes(ca.ca.read_bytes() + newcomer.cert.read_bytes())
        graph = Graph.from_text(client_volfile(port, sub, tls_options(newcomer, client_ca)))
        async with AsyncVolume(graph, mount_timeout=10) as vol:
            assert await vol.listdir("/") is not None
        assert logged(caplog, "the TLS files changed: new connections use them")
        # a CA list that no longer loads: the brick goes on with the last good one
        caplog.clear()
        ca_list.write_text("not a certificate\n")
        graph = Graph.from_text(client_volfile(port, sub, tls_options(newcomer, client_ca)))
        async with AsyncVolume(graph, mount_timeout=10) as vol:
            assert await vol.listdir("/") is not None
        assert logged(caplog, "the TLS files changed and do not load")


async def test_client_without_certificate_or_tls_is_refused(tmp_path, ca, caplog):
    caplog.set_level(logging.INFO)
    server = ca.identity("brick1")
    async with brick(tmp_path / "b", tls_options(server, ca.ca)) as (port, sub):
        # plain RPC to a TLS brick: the handshake fails on the first bytes
        await assert_refused(port, sub, {})
        assert logged(caplog, "refused connection from 127.0.0.1")
        # TLS without a client certificate (a raw TLS client: ours always has one)
        caplog.clear()
        bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        bare.check_hostname = False
        bare.load_verify_locations(str(ca.ca))
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        tls_stream = trio.SSLStream(stream, bare)
        await tls_stream.do_handshake()       # TLS 1.3: the client finishes first
        with pytest.raises(trio.BrokenResourceError):
            await tls_stream.send_all(b"\x80\x00\x00\x04abcd")
            with trio.fail_after(5):
                assert await tls_stream.receive_some(100) == b""
                raise trio.BrokenResourceError("closed")
        await trio.aclose_forcefully(tls_stream)
        await wait_logged(caplog, "refused connection from 127.0.0.1")
        assert any("certificate" in r.getMessage() for r in caplog.records
                   if "refused connection" in r.getMessage())


async def wait_logged(caplog, text: str, timeout: float = 5) -> None:
    with trio.move_on_after(timeout):
        while not logged(caplog, text):
            await trio.sleep(0.05)
    assert logged(caplog, text), f"no log line with {text!r}"


async def test_tls_client_and_plain_brick_do_not_talk(tmp_path, ca, caplog):
    caplog.set_level(logging.INFO)
    client = ca.identity("client1")
    async with brick(tmp_path / "b", {}) as (port, sub):
        await assert_refused(port, sub, tls_options(client, ca.ca))
    assert logged(caplog, f"TLS handshake with 127.0.0.1:{port} failed")


async def test_client_refuses_an_untrusted_brick(tmp_path, ca, caplog):
    caplog.set_level(logging.INFO)
    impostor = self_signed_identity(tmp_path, "impostor")
    client = ca.identity("client1")
    # the brick trusts the client's CA, the client does not trust the brick
    async with brick(tmp_path / "b", tls_options(impostor, ca.ca)) as (port, sub):
        await assert_refused(port, sub, tls_options(client, ca.ca))
    assert logged(caplog, "its certificate is not trusted")


async def test_ssl_allow_lets_one_name_in(tmp_path, ca, caplog):
    caplog.set_level(logging.INFO)
    server, alice, bob = ca.identity("brick1"), ca.identity("alice"), ca.identity("bob")
    sub_name = "test-posix"
    opts = tls_options(server, ca.ca)
    opts[f"auth.login.{sub_name}.ssl-allow"] = "carol, al*"
    async with brick(tmp_path / "b", opts) as (port, sub):
        assert sub == sub_name
        graph = Graph.from_text(client_volfile(port, sub, tls_options(alice, ca.ca)))
        async with AsyncVolume(graph, mount_timeout=10) as vol:
            async with await vol.fopen("/alice", "wb") as f:
                await f.write(b"in")
        await assert_refused(port, sub, tls_options(bob, ca.ca))
        assert logged(caplog, "TLS client 'bob' is not in")
        assert logged(caplog, "remote-error=Authentication failed")
    assert (tmp_path / "b" / "alice").read_bytes() == b"in"


async def test_ssl_name_in_setvolume_is_ignored(tmp_path, ca):
    """A raw client over TLS sends ssl-name=alice with bob's certificate."""
    from brickclient import RawClient, _serve_quietly
    from glusterpy.rpc import ALL_PROGRAMS, CLIENT_PROGRAMS, RpcConnection
    from glusterpy.rpc.transport import RpcEndpoint
    server, bob = ca.identity("brick1"), ca.identity("bob")
    opts = tls_options(server, ca.ca)
    opts["auth.login.test-posix.ssl-allow"] = "alice"
    async with brick(tmp_path / "b", opts) as (port, sub):
        config = tls.TlsConfig(str(bob.cert), str(bob.key), str(ca.ca))
        stream = await tls.connect("127.0.0.1", port, config)
        ep = RpcEndpoint(stream, RpcConnection(ALL_PROGRAMS, serves=CLIENT_PROGRAMS))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve_quietly, ep)
            reply = await RawClient(ep).setvolume(sub, **{"ssl-name": "alice"})
            assert reply.op_ret == -1 and reply.op_errno == errno.EACCES
            await ep.aclose()
            nursery.cancel_scope.cancel()


async def test_cert_depth(tmp_path, ca, caplog):
    caplog.set_level(logging.INFO)
    server = ca.identity("brick1")
    deep = ca.identity("deep", via_intermediate=True)   # root -> intermediate -> deep
    direct = ca.identity("direct")
    for depth, deep_ok in ((0, False), (1, True)):
        caplog.clear()
        opts = tls_options(server, ca.ca, ssl_cert_depth=depth)
        async with brick(tmp_path / f"b{depth}", opts) as (port, sub):
            graph = Graph.from_text(client_volfile(port, sub, tls_options(direct, ca.ca)))
            async with graph.running():
                assert await graph.wait_child_up(10), f"direct refused at depth {depth}"
            if deep_ok:
                graph = Graph.from_text(client_volfile(port, sub, tls_options(deep, ca.ca)))
                async with graph.running():
                    assert await graph.wait_child_up(10)
            else:
                await assert_refused(port, sub, tls_options(deep, ca.ca))
                assert logged(caplog, "1 CA certificates away from a trusted one; "
                                      "ssl-cert-depth is 0")


async def test_bad_files_fail_the_brick(tmp_path, ca):
    server = ca.identity("brick1")
    opts = tls_options(server, ca.ca)
    opts["transport.socket.ssl-private-key"] = str(tmp_path / "missing.key")
    with pytest.raises(OSError, match="ssl setup failed: could not load our cert"):
        async with brick(tmp_path / "b", opts):
            pass
    opts = tls_options(server, ca.ca)
    opts["transport.socket.ssl-ca-list"] = str(tmp_path / "missing.ca")
    with pytest.raises(OSError, match="could not load CA list"):
        async with brick(tmp_path / "b", opts):
            pass


def test_option_values_are_checked():
    from glusterpy.glusterd import volgen
    with pytest.raises(OptionError, match="selects no cipher"):
        volgen.lookup_key("ssl.cipher-list").parse("NO-SUCH-CIPHER")
    volgen.lookup_key("ssl.cipher-list").parse("HIGH:!aNULL")
    with pytest.raises(OptionError, match="below the minimum"):
        volgen.lookup_key("ssl.certificate-depth").parse("-1")
    with pytest.raises(OptionError, match="not a boolean"):
        volgen.lookup_key("server.ssl").parse("maybe")
    with pytest.raises(OptionError, match="not an elliptic curve"):
        volgen.lookup_key("ssl.ec-curve").parse("curve25519x")
    assert volgen.lookup_key("client.ssl").types == ("protocol/client",)
    assert volgen.lookup_key("server.ssl").types == ("protocol/server",)
    assert set(volgen.lookup_key("ssl.cipher-list").types) == {"protocol/client",
                                                               "protocol/server"}


def test_volume_set_keys_reach_the_volfiles():
    from glusterpy import volfile as vf
    from glusterpy.glusterd import volgen
    from glusterpy.glusterd.model import Volume
    vol = Volume.from_json({
        "name": "v", "id": "5b2a8a3a-0f55-4f5e-9a4c-2f1a3a9b1c00", "replica": 1,
        "stripe": 1, "type": "Distribute",
        "bricks": [{"host": "h1", "path": "/b/one", "port": 49200,
                    "node": "6f1c8a4e-3d1b-4c8e-9a58-0c1f2b3a4d5e"}],
        "options": {"client.ssl": "on", "server.ssl": "on", "auth.ssl-allow": "n1,n2",
                    "ssl.certificate-depth": "2", "ssl.cipher-list": "HIGH",
                    "ssl.own-cert": "/x/own.pem", "ssl.ca-list": "/x/ca"}})
    brick = vf.parses(volgen.brick_volfile(vol, vol.bricks[0]))
    server = next(v for v in brick.volumes if v.type == "protocol/server")
    assert server.options["transport.socket.ssl-enabled"] == "on"
    assert server.options["auth.login./b/one.ssl-allow"] == "n1,n2"
    assert server.options["transport.socket.ssl-cert-depth"] == "2"
    assert server.options["transport.socket.ssl-cipher-list"] == "HIGH"
    assert server.options["transport.socket.ssl-own-cert"] == "/x/own.pem"
    assert server.options["transport.socket.ssl-ca-list"] == "/x/ca"
    client = vf.parses(volgen.client_volfile(vol))
    proto = next(v for v in client.volumes if v.type == "protocol/client")
    assert proto.options["transport.socket.ssl-enabled"] == "on"
    assert proto.options["transport.socket.ssl-cert-depth"] == "2"
    assert not any("ssl-allow" in k for k in proto.options)
    # the brief's short name for the depth is the same option
    vol.options = {"ssl.cert-depth": "3"}
    client = vf.parses(volgen.client_volfile(vol))
    proto = next(v for v in client.volumes if v.type == "protocol/client")
    assert proto.options["transport.socket.ssl-cert-depth"] == "3"


def test_secure_access_file_and_switch(tmp_path, monkeypatch):
    f = tmp_path / "secure-access"
    assert tls.secure_access_cert_depth(str(f)) == 1
    f.write_text("# comment\noption transport.socket.ssl-cert-depth 3\n")
    assert tls.secure_access_cert_depth(str(f)) == 3
    f.write_text("option transport.socket.ssl-cert-depth 0\n")
    assert tls.secure_access_cert_depth(str(f)) == 1
    monkeypatch.setenv(tls.SECURE_ACCESS_ENV, "1")
    assert tls.secure_access()
    monkeypatch.setenv(tls.SECURE_ACCESS_ENV, "off")
    assert not tls.secure_access()


# -- secure access: gfapi's volfile fetch over TLS -------------------------------------


def install_default_files(monkeypatch, directory: Path, who: Identity, ca: Path) -> None:
    """The default files (glusterfs.pem/key/ca) in a directory of our own."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "glusterfs.pem").write_bytes(who.cert.read_bytes())
    pki.write_private(directory / "glusterfs.key", who.key.read_bytes())
    (directory / "glusterfs.ca").write_bytes(ca.read_bytes())
    monkeypatch.setenv(tls.CERT_DIR_ENV, str(directory))


@contextlib.asynccontextmanager
async def volfile_server(vols: Path, context=None):
    """glusterd/volfile_server.py's server on a free port, each connection
    TLS (with `context`) or plain; yields the port."""
    from glusterpy.glusterd.volfile_server import VolfileServer
    server = VolfileServer(str(vols))
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")

    async def handle(stream):
        peer = "%s:%d" % stream.socket.getpeername()[:2]
        if context is not None:
            try:
                stream = await tls.handshake(stream, context, server_side=True,
                                             cert_depth=1, peer=peer)
            except tls.TlsError as e:
                logging.getLogger("test.volfile-server").warning("refused %s: %s", peer, e)
                return
        if "peer" in inspect.signature(server.handle_stream).parameters:
            await server.handle_stream(stream, peer)
        else:  # a volfile_server.py from before TLS streams
            await server.handle_stream(stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def test_gfapi_fetches_its_volfile_over_tls(tmp_path, ca, monkeypatch, caplog):
    from glusterpy.gfapi.mgmt import VolfileFetchError, fetch_volfile, volfile_servers
    caplog.set_level(logging.INFO)
    vols = tmp_path / "vols"
    vols.mkdir()
    (vols / "tv.vol").write_text("volume tv-posix\n    type storage/posix\n"
                                 f"    option directory {tmp_path}\nend-volume\n")
    node = ca.identity("node1")
    install_default_files(monkeypatch, tmp_path / "ssl", ca.identity("client1"), ca.ca)
    monkeypatch.setenv(tls.SECURE_ACCESS_ENV, "1")
    server_ctx = tls.TlsConfig(str(node.cert), str(node.key), str(ca.ca)).context(True)
    async with volfile_server(vols, server_ctx) as port:
        fetched = await fetch_volfile(volfile_servers("127.0.0.1", port), "tv")
        assert "type storage/posix" in fetched.text
        # without secure access the client speaks plain RPC and is refused
        monkeypatch.setenv(tls.SECURE_ACCESS_ENV, "0")
        with pytest.raises(VolfileFetchError):
            await fetch_volfile(volfile_servers("127.0.0.1", port), "tv", timeout=3)
        assert logged(caplog, "refused 127.0.0.1")
    # secure access towards a server without TLS: the handshake fails, clearly
    monkeypatch.setenv(tls.SECURE_ACCESS_ENV, "1")
    async with volfile_server(vols) as port:
        with pytest.raises(VolfileFetchError, match="TLS handshake with 127.0.0.1"):
            await fetch_volfile(volfile_servers("127.0.0.1", port), "tv", timeout=3)


# -- GlusterFS 10 clients against our TLS brick (interop) ------------------------------


def with_tls(volfile: str, anchor: str, options: dict[str, str]) -> str:
    """`volfile` with `options` added after the line `anchor`."""
    assert anchor in volfile
    return volfile.replace(anchor, anchor + "".join(f"    option {k} {v}\n"
                                                    for k, v in options.items()), 1)


@contextlib.contextmanager
def tls_served_volume(base: Path, vol: str, ca: TestPki, client: Identity):
    """test_interop_server's volfile server + brick processes, the brick
    with server.ssl on (and auth.ssl-allow naming the client), the served
    client volfile with client.ssl on and `client`'s certificate."""
    from test_interop_server import ServedVolume
    sv = ServedVolume(base, vol)
    server = ca.identity(f"{vol}-brick")
    brick_vol = base / "brick.vol"
    brick_vol.write_text(with_tls(
        brick_vol.read_text(), "    option transport.socket.bind-address 127.0.0.1\n",
        {**tls_options(server, ca.ca), f"auth.login.{sv.subvolume}.ssl-allow": client.cn}))
    client_vol = sv.vols / f"{vol}.vol"
    client_vol.write_text(with_tls(client_vol.read_text(), "    option ping-timeout 42\n",
                                   tls_options(client, ca.ca)))
    try:
        sv.start()
        yield sv
    finally:
        sv.stop()


def qemu_img_info_works(url: str, log: Path, refusal: str,
                        expect_in_output: str | None = None) -> bool:
    """qemu-img info `url`: whether it succeeded.  A refused libgfapi
    client retries for ever, so once the brick's `log` holds a new
    `refusal` (and qemu-img's output `expect_in_output`) it is stopped and
    counts as refused - rather than after a fixed wait.  A failure must be
    that refusal (the brick logged it); `expect_in_output`: what qemu-img's
    log must say."""
    seen = log.read_text().count(refusal)
    out_file = log.with_name(log.name + ".qemu-img.out")
    with open(out_file, "w") as out:
        proc = subprocess.Popen(["qemu-img", "info", url], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            if log.read_text().count(refusal) > seen and \
                    (expect_in_output is None or expect_in_output in out_file.read_text()):
                break
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    output = out_file.read_text()
    if expect_in_output is not None:
        assert expect_in_output in output, output
    if proc.returncode != 0:
        assert log.read_text().count(refusal) > seen, f"the brick never logged {refusal!r}"
    return proc.returncode == 0


def brick_log(sv) -> str:
    return (sv.base / "brick.log").read_text()


@pytest.mark.interop
@pytest.mark.slow
def test_glusterfs_fuse_and_qemu_reach_our_tls_brick(tmp_path):
    from test_interop_server import _end_pid_file, need, run_all, sha256
    need("glusterfs", "qemu-img", "qemu-io", "umount")
    ca = TestPki(tmp_path / "pki")
    client = ca.identity("gluster-client")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with tls_served_volume(tmp_path / "srv", "tlsvol", ca, client) as sv:
        # qemu-img/qemu-io (libgfapi) over gluster://, TLS to the brick
        run_all([["qemu-img", "create", "-f", "qcow2", sv.url("a.qcow2"), "32M"]])
        io = run_all([["qemu-io", "-f", "qcow2", "-c", "write -P 0x3c 0 1M",
                       "-c", "read -P 0x3c 0 1M", sv.url("a.qcow2")]])[0].stdout
        assert "read 1048576/1048576 bytes at offset 0" in io
        assert "Pattern verification failed" not in io
        assert "TLS connection from 127.0.0.1" in brick_log(sv)
        assert f"certificate CN '{client.cn}'" in brick_log(sv)
        # the glusterfs FUSE client
        pidfile = tmp_path / "glusterfs.pid"
        payload = os.urandom(2 << 20)
        try:
            subprocess.run(["glusterfs", "--volfile-server=127.0.0.1",
                            f"--volfile-server-port={sv.volfile_port}",
                            f"--volfile-id={sv.vol}", f"--log-file={tmp_path / 'fuse.log'}",
                            f"--pid-file={pidfile}", str(mnt)], check=True, timeout=60)
            deadline = time.monotonic() + 30
            while not os.path.ismount(mnt):
                assert time.monotonic() < deadline, f"no mount; see {tmp_path / 'fuse.log'}"
                time.sleep(0.1)
            (mnt / "f").write_bytes(payload)
            assert (mnt / "f").read_bytes() == payload
        finally:
            if os.path.ismount(mnt):
                if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
                    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
            _end_pid_file(pidfile)
        assert (sv.brick / "f").read_bytes() == payload
        fuse_log = (tmp_path / "fuse.log").read_text()
        assert "IO path is ENABLED" in fuse_log
        assert sha256(sv.brick / "a.qcow2")  # the image is on the brick

        # a GlusterFS client whose certificate our brick's CA did not sign
        stranger = self_signed_identity(tmp_path, "stranger")
        (sv.vols / "tlsvol-stranger.vol").write_text(
            (sv.vols / f"{sv.vol}.vol").read_text()
            .replace(str(client.cert), str(stranger.cert))
            .replace(str(client.key), str(stranger.key)))
        url = f"gluster://127.0.0.1:{sv.volfile_port}/tlsvol-stranger/a.qcow2"
        assert not qemu_img_info_works(url, sv.base / "brick.log",
                                       "refused connection from 127.0.0.1")
        # a trusted certificate whose CN auth.ssl-allow does not list
        other = ca.identity("not-listed")
        (sv.vols / "tlsvol-other.vol").write_text(
            (sv.vols / f"{sv.vol}.vol").read_text()
            .replace(str(client.cert), str(other.cert))
            .replace(str(client.key), str(other.key)))
        url = f"gluster://127.0.0.1:{sv.volfile_port}/tlsvol-other/a.qcow2"
        assert not qemu_img_info_works(url, sv.base / "brick.log",
                                       "TLS client 'not-listed' is not in",
                                       "remote-error=Authentication failed")


# -- our client against a GlusterFS 10 volume with TLS (interop) -----------------------


@pytest.mark.interop
@pytest.mark.slow
def test_our_client_reaches_a_glusterfs10_tls_volume(glusterd, tmp_path):
    """gfapi's Volume(host, name): GETSPEC from glusterd (plain), portmap,
    then TLS to GlusterFS 10's brick with the certificate the volfile names
    (glusterd writes ssl.own-cert & co. into the client volfile); the
    brick's auth.ssl-allow takes our CN.  Then our protocol/client with a
    certificate no CA signed, and with a trusted one whose CN the brick
    does not list: GlusterFS's brick refuses both."""
    from glusterpy.gfapi import Volume
    ca = TestPki(tmp_path / "pki")
    node = ca.identity("gf-node")
    brick = tmp_path / "brick"
    brick.mkdir()
    name = glusterd.create_volume(brick)
    try:
        glusterd.cli("volume", "stop", name)
        for key, value in (("ssl.own-cert", node.cert), ("ssl.private-key", node.key),
                           ("ssl.ca-list", ca.ca), ("auth.ssl-allow", "gf-node"),
                           ("server.ssl", "on"), ("client.ssl", "on")):
            glusterd.cli("volume", "set", name, key, str(value))
        glusterd.cli("volume", "start", name)
        payload = os.urandom(1 << 20)
        vol = Volume("127.0.0.1", name)
        vol.mount()
        try:
            with vol.fopen("/tls-file", "wb") as f:
                f.write(payload)
            with vol.fopen("/tls-file", "rb") as f:
                assert f.read() == payload
        finally:
            vol.umount()
        assert (brick / "tls-file").read_bytes() == payload

        async def refused(who: Identity) -> None:
            opts = tls_options(who, ca.ca)
            text = ("volume c-client\n    type protocol/client\n"
                    "    option remote-host 127.0.0.1\n"
                    f"    option remote-subvolume {brick}\n    option ping-timeout 5\n")
            text += "".join(f'    option {k} "{v}"\n' for k, v in opts.items())
            graph = Graph.from_text(text + "end-volume\n")
            async with graph.running():
                assert not await graph.wait_child_up(6), f"{who.cn} was let in"

        trio.run(refused, self_signed_identity(tmp_path, "stranger"))
        trio.run(refused, ca.identity("not-listed"))
        logs = "".join(p.read_text(errors="replace")
                       for p in Path("/var/log/glusterfs/bricks").glob(f"*{brick.name}*.log")
                       if p.stat().st_mtime > time.time() - 600)
        assert "peer CN = gf-node" in logs or "connecting user name: gf-node" in logs
        assert "connecting user name: not-listed" in logs
    finally:
        glusterd.stop_volume(name)
