"""TLS for GlusterFS's RPC connections, as rpc-transport/socket does it.

The one place glusterpy builds SSL contexts and runs TLS handshakes; the
brick's protocol/server, protocol/client, gfapi's volfile fetch and the
portmap sign-in all come here.  It follows GlusterFS 10's socket.c
(ssl_setup_connection_params, ssl_complete_connection) and glusterd's
secure-access rules:

* The whole TCP stream is TLS from its first byte (no STARTTLS), both ends
  present a certificate and both verify the other's against the CA list.
  Host names are not checked (GlusterFS never does): identity is the
  certificate chain, and the server reads the client's common name (CN)
  for `auth.ssl-allow`.  A peer without a certificate is refused.
* Files and settings are the transport's options, with GlusterFS's
  defaults: `transport.socket.ssl-own-cert` (/etc/ssl/glusterfs.pem, a
  PEM chain), `ssl-private-key` (/etc/ssl/glusterfs.key), `ssl-ca-list`
  (/etc/ssl/glusterfs.ca, the trusted certificates - self-signed node
  certificates concatenated, or real CAs), `ssl-cert-depth` (1: at most one
  intermediate CA between a peer's certificate and a trusted root; 0: the
  peer's certificate must be in the CA list or signed by one of it),
  `ssl-cipher-list` (GlusterFS's AES128:EECDH:EDH:HIGH:!3DES:!RC4:!DES:!MD5:
  !aNULL:!eNULL; like OpenSSL's SSL_CTX_set_cipher_list it governs TLS 1.2
  and below, TLS 1.3 suites are OpenSSL's), `ssl-crl-path` (a directory of
  hashed CRLs, c_rehash style; the server then checks its clients' whole
  chain against them, the client does not check CRLs), `ssl-dh-param` (DH
  parameters file, read only when given) and `ssl-ec-curve` (prime256v1).
  The directory is GlusterFS's compile-time SSL_CERT_PATH, which its
  configure takes from OpenSSL's OPENSSLDIR - /usr/lib/ssl on Debian (whose
  GlusterFS 10 reads /usr/lib/ssl/glusterfs.pem), /etc/pki/tls on Fedora,
  /etc/ssl in GlusterFS's documentation - so here it is this machine's
  OpenSSL directory too, where the installed GlusterFS looks;
  `$GLUSTERPY_SSL_CERT_DIR` may move it (tests, unprivileged setups).
* Management TLS ("secure access"): when /var/lib/glusterd/secure-access
  exists, a client process speaks TLS to glusterd's port 24007 (GETSPEC,
  portmap) and a brick to its glusterd, with the default files above and
  the depth of the file's `option transport.socket.ssl-cert-depth N` line
  (1 when absent or 0), as glusterfs_read_secure_access_file() reads it.
  `$GLUSTERPY_SECURE_ACCESS=1` (or `0`) forces it on (off) whatever the
  file says.  protocol/client uses it for its portmap connection to port
  24007 and `transport.socket.ssl-enabled` for the brick connection, as
  socket_fix_ssl_opts() decides by the port.

Departures, from Python's ssl module: it cannot set OpenSSL's verify depth
nor X509_PURPOSE_ANY.  The depth is checked right after the handshake on the
verified chain (same limit - the number of CA certificates between the
peer's and the trust anchor - but the peer sees its connection closed
rather than a handshake alert); certificates whose extendedKeyUsage lacks
clientAuth (on a client) or serverAuth (on a server) are refused where
GlusterFS would take them.  TLS 1.2 is the oldest version spoken.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, cast

import trio

from glusterpy.options import Option, OptionError, OptionType, OptionValues

log = logging.getLogger("glusterpy.rpc.tls")

SECURE_ACCESS_FILE = "/var/lib/glusterd/secure-access"
SECURE_ACCESS_ENV = "GLUSTERPY_SECURE_ACCESS"
CERT_DIR_ENV = "GLUSTERPY_SSL_CERT_DIR"
#: OpenSSL's OPENSSLDIR, as GlusterFS's configure finds it (see the docstring)
DEFAULT_CERT_DIR = os.path.dirname(ssl.get_default_verify_paths().openssl_capath or "") \
    or "/etc/ssl"
DEFAULT_CERT_DEPTH = 1
DEFAULT_CIPHER_LIST = "AES128:EECDH:EDH:HIGH:!3DES:!RC4:!DES:!MD5:!aNULL:!eNULL"
DEFAULT_EC_CURVE = "prime256v1"
#: seconds a peer has to complete the handshake
HANDSHAKE_TIMEOUT = 20.0

_PREFIX = "transport.socket."


def cert_dir() -> str:
    return os.environ.get(CERT_DIR_ENV) or DEFAULT_CERT_DIR


def default_own_cert() -> str:
    return os.path.join(cert_dir(), "glusterfs.pem")


def default_private_key() -> str:
    return os.path.join(cert_dir(), "glusterfs.key")


def default_ca_list() -> str:
    return os.path.join(cert_dir(), "glusterfs.ca")


class TlsError(OSError):
    """TLS could not be set up (a file, a cipher list) or a handshake
    failed; `errno` is EACCES when a certificate was refused (by us or by
    the peer), ENOTCONN when the connection broke or timed out, EINVAL for
    a bad setting."""


# --------------------------------------------------------------------------
# Option declarations, shared by protocol/server and protocol/client


@dataclass(frozen=True)
class _CheckedOption(Option):
    """An option whose value must also pass `check` (given the parsed
    value; raises ValueError), so that `volume set` refuses what the
    transport would."""

    check: Callable[[Any], None] | None = None

    def parse(self, text: str) -> Any:
        value = super().parse(text)
        if self.check is not None and value is not None:
            try:
                self.check(value)
            except ValueError as e:
                raise OptionError(self.key, f"option '{self.key}': {e}") from None
        return value


def check_cipher_list(value: str) -> None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).set_ciphers(value)
    except ssl.SSLError:
        raise ValueError(f"{value!r} selects no cipher OpenSSL knows "
                         f"(e.g. {DEFAULT_CIPHER_LIST})") from None


def check_ec_curve(value: str) -> None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ecdh_curve(value)
    except (ValueError, ssl.SSLError):
        raise ValueError(f"{value!r} is not an elliptic curve OpenSSL knows "
                         f"(e.g. prime256v1, secp384r1)") from None


def ssl_enabled_option(set_key: str) -> Option:
    side = "server" if set_key.startswith("server") else "client"
    return Option(_PREFIX + "ssl-enabled", OptionType.BOOL, "off",
                  f"TLS on the I/O connections ({side} side); both the clients "
                  f"(client.ssl) and the bricks (server.ssl) must have it.",
                  set_keys=(set_key,), reconfigurable=False)


def transport_options() -> tuple[Option, ...]:
    """The socket transport's TLS options (GlusterFS's names and
    defaults), with glusterd's `volume set` keys."""
    return (
        Option(_PREFIX + "ssl-own-cert", OptionType.PATH, None,
               f"This end's certificate chain, PEM (default {DEFAULT_CERT_DIR}/"
               "glusterfs.pem: OpenSSL's directory, as GlusterFS's build takes it).",
               set_keys=("ssl.own-cert",), reconfigurable=False),
        Option(_PREFIX + "ssl-private-key", OptionType.PATH, None,
               f"The private key of ssl-own-cert, PEM (default {DEFAULT_CERT_DIR}/"
               "glusterfs.key).",
               set_keys=("ssl.private-key",), reconfigurable=False),
        Option(_PREFIX + "ssl-ca-list", OptionType.PATH, None,
               f"Certificates trusted to sign the peer's (default {DEFAULT_CERT_DIR}/"
               "glusterfs.ca).",
               set_keys=("ssl.ca-list",), reconfigurable=False),
        Option(_PREFIX + "ssl-crl-path", OptionType.PATH, None,
               "Directory of hashed certificate revocation lists the server checks "
               "clients against (NULL: none).", set_keys=("ssl.crl-path",),
               reconfigurable=False),
        Option(_PREFIX + "ssl-cert-depth", OptionType.INT, str(DEFAULT_CERT_DEPTH),
               "Most CA certificates allowed between the peer's certificate and a "
               "trusted one (0: signed by one in ssl-ca-list).", min=0, max=100,
               set_keys=("ssl.certificate-depth", "ssl.cert-depth"),
               reconfigurable=False),
        _CheckedOption(_PREFIX + "ssl-cipher-list", OptionType.STR, DEFAULT_CIPHER_LIST,
                       "OpenSSL cipher list for TLS 1.2 and below.",
                       set_keys=("ssl.cipher-list",), reconfigurable=False,
                       check=check_cipher_list),
        Option(_PREFIX + "ssl-dh-param", OptionType.PATH, None,
               "DH parameters file for the DHE ciphers (default: none).",
               set_keys=("ssl.dh-param",), reconfigurable=False),
        _CheckedOption(_PREFIX + "ssl-ec-curve", OptionType.STR, DEFAULT_EC_CURVE,
                       "Elliptic curve for ECDHE.", set_keys=("ssl.ec-curve",),
                       reconfigurable=False, check=check_ec_curve),
    )


# --------------------------------------------------------------------------
# Settings and contexts


@dataclass(frozen=True)
class TlsConfig:
    """What one end's SSL context is built from."""

    own_cert: str
    private_key: str
    ca_list: str
    cert_depth: int = DEFAULT_CERT_DEPTH
    cipher_list: str = DEFAULT_CIPHER_LIST
    crl_path: str | None = None
    dh_param: str | None = None
    ec_curve: str | None = DEFAULT_EC_CURVE

    @classmethod
    def defaults(cls, cert_depth: int = DEFAULT_CERT_DEPTH) -> "TlsConfig":
        return cls(default_own_cert(), default_private_key(), default_ca_list(), cert_depth)

    @classmethod
    def from_options(cls, opts: OptionValues | Mapping[str, Any]) -> "TlsConfig":
        """From a translator's parsed options (`opts[key]`)."""
        crl = opts[_PREFIX + "ssl-crl-path"]
        return cls(own_cert=opts[_PREFIX + "ssl-own-cert"] or default_own_cert(),
                   private_key=opts[_PREFIX + "ssl-private-key"] or default_private_key(),
                   ca_list=opts[_PREFIX + "ssl-ca-list"] or default_ca_list(),
                   cert_depth=opts[_PREFIX + "ssl-cert-depth"],
                   cipher_list=opts[_PREFIX + "ssl-cipher-list"],
                   crl_path=None if crl is None or crl.upper() == "NULL" else crl,
                   dh_param=opts[_PREFIX + "ssl-dh-param"],
                   ec_curve=opts[_PREFIX + "ssl-ec-curve"])

    @classmethod
    def for_mgmt(cls) -> "TlsConfig":
        """Management connections: the default files, secure-access's depth."""
        return cls.defaults(secure_access_cert_depth())

    def context(self, server_side: bool) -> ssl.SSLContext:
        """The SSL context of one end (TlsError naming the file or setting
        that does not load)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False         # GlusterFS verifies the chain, not names
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.options |= ssl.OP_NO_TICKET | ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
        try:
            ctx.set_ciphers(self.cipher_list)
        except ssl.SSLError:
            raise _setup_error(f"no valid cipher in ssl-cipher-list {self.cipher_list!r}")
        if self.ec_curve:
            try:
                ctx.set_ecdh_curve(self.ec_curve)
            except (ValueError, ssl.SSLError) as e:
                log.error("failed to load EC curve %s: %s; ECDH ciphers are disabled",
                          self.ec_curve, e)
        if self.dh_param:
            try:
                ctx.load_dh_params(self.dh_param)
            except (OSError, ssl.SSLError) as e:
                # GlusterFS goes on without DHE as well
                log.error("failed to read DH param from %s: %s; DH ciphers are disabled",
                          self.dh_param, _reason(e))
        try:
            ctx.load_cert_chain(self.own_cert, self.private_key)
        except FileNotFoundError as e:
            raise _setup_error(f"could not load our cert at {self.own_cert} or its key at "
                               f"{self.private_key}: {e.filename}: no such file")
        except (OSError, ssl.SSLError) as e:
            raise _setup_error(f"could not load our cert at {self.own_cert} with the private "
                               f"key at {self.private_key}: {_reason(e)}")
        try:
            ctx.load_verify_locations(cafile=self.ca_list, capath=self.crl_path)
        except (OSError, ssl.SSLError) as e:
            raise _setup_error(f"could not load CA list {self.ca_list}: {_reason(e)}")
        if self.crl_path and server_side:
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN
        return ctx


def _setup_error(message: str) -> TlsError:
    return TlsError(errno.EINVAL, message)


def _reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLCertVerificationError) and e.verify_message:
        return e.verify_message
    if isinstance(e, ssl.SSLError) and e.reason:
        return e.reason.lower().replace("_", " ")
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


# --------------------------------------------------------------------------
# Secure access (management TLS)


def secure_access() -> bool:
    """Whether management connections speak TLS: $GLUSTERPY_SECURE_ACCESS
    when set (1/0, on/off, yes/no, true/false), else whether
    /var/lib/glusterd/secure-access exists."""
    forced = os.environ.get(SECURE_ACCESS_ENV, "").strip().lower()
    if forced in ("1", "on", "yes", "true", "enable"):
        return True
    if forced in ("0", "off", "no", "false", "disable"):
        return False
    return os.path.exists(SECURE_ACCESS_FILE)


def secure_access_cert_depth(path: str = SECURE_ACCESS_FILE) -> int:
    """glusterfs_read_secure_access_file(): the number after a line
    starting `option transport.socket.ssl-cert-depth`, 1 if none (or 0)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return DEFAULT_CERT_DEPTH
    for line in text.splitlines():
        if line.startswith("option transport.socket.ssl-cert-depth"):
            m = re.match(r"\s*([+-]?\d+)", line[len("option transport.socket.ssl-cert-depth"):])
            depth = int(m.group(1)) if m else 0
            return depth or DEFAULT_CERT_DEPTH
    return DEFAULT_CERT_DEPTH


# --------------------------------------------------------------------------
# Handshakes


def verified_chain(stream: trio.SSLStream[Any]) -> list[Any]:
    """The peer's chain as OpenSSL verified it, leaf first, trust anchor
    last (SSLObject.get_verified_chain, public from Python 3.13)."""
    # Any: before 3.13 the method is on the SSLObject's private _sslobj,
    # which typeshed does not declare
    obj: Any = stream._ssl_object
    get = getattr(obj, "get_verified_chain", None) or obj._sslobj.get_verified_chain
    return list(get() or ())


def common_name(stream: trio.SSLStream[Any]) -> str | None:
    """The first commonName of the peer certificate's subject, as
    X509_NAME_get_text_by_NID gives it to auth.ssl-allow."""
    cert = stream.getpeercert()
    value: str  # the subject's (key, value) pairs are strings
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


async def handshake(stream: trio.abc.Stream, context: ssl.SSLContext, *, server_side: bool,
                    cert_depth: int, peer: str,
                    timeout: float = HANDSHAKE_TIMEOUT) -> trio.SSLStream[trio.abc.Stream]:
    """Run the TLS handshake over `stream` and check the peer's chain
    depth; return the TLS stream.  TlsError says why it failed (and the
    stream is closed)."""
    tls = trio.SSLStream(stream, context, server_side=server_side)
    try:
        with trio.fail_after(timeout):
            await tls.do_handshake()
    except trio.TooSlowError:
        await trio.aclose_forcefully(stream)
        raise TlsError(errno.ETIMEDOUT, f"TLS handshake with {peer} timed out "
                                        f"after {timeout:g}s") from None
    except trio.BrokenResourceError as e:
        await trio.aclose_forcefully(stream)
        raise handshake_error(e, peer) from None
    chain = verified_chain(tls)
    between = max(len(chain) - 2, 0)
    if between > cert_depth:
        await trio.aclose_forcefully(tls)
        raise TlsError(errno.EACCES, f"TLS: the certificate of {peer} "
                                     f"({common_name(tls) or 'no CN'}) is {between} CA "
                                     f"certificates away from a trusted one; ssl-cert-depth "
                                     f"is {cert_depth}")
    return tls


def handshake_error(e: BaseException, peer: str) -> TlsError:
    """A TlsError for a failed handshake (or a connection the peer broke
    because of our certificate), with OpenSSL's reason."""
    cause = e.__cause__ if isinstance(e, trio.BrokenResourceError) else e
    if isinstance(cause, ssl.SSLCertVerificationError):
        return TlsError(errno.EACCES, f"TLS handshake with {peer} failed: its certificate "
                                      f"is not trusted ({_reason(cause)})")
    if isinstance(cause, ssl.SSLError):
        reason = _reason(cause)
        if "alert" in reason:
            return TlsError(errno.EACCES, f"TLS handshake with {peer} failed: the peer "
                                          f"refused it ({reason})")
        err = errno.EACCES if "certificate" in reason else errno.ENOTCONN
        return TlsError(err, f"TLS handshake with {peer} failed: {reason}")
    if isinstance(cause, OSError):
        return TlsError(errno.ENOTCONN, f"TLS handshake with {peer} failed: "
                                        f"{_reason(cause)}")
    return TlsError(errno.ENOTCONN, f"TLS handshake with {peer} failed: the connection "
                                    f"closed (is TLS on at both ends?)")


def ssl_failure(e: BaseException) -> str | None:
    """OpenSSL's reason when `e` (what a TLS stream raised) came from a
    TLS failure, e.g. the peer's alert refusing our certificate."""
    cause = e.__cause__ if isinstance(e, trio.BrokenResourceError) else e
    return _reason(cause) if isinstance(cause, ssl.SSLError) else None


async def connect(host: str, port: int, config: TlsConfig | None, *,
                  timeout: float = HANDSHAKE_TIMEOUT) -> trio.abc.Stream:
    """TCP to host:port, then TLS with `config` when it is not None."""
    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream(host, port)
    if config is None:
        return stream
    return await handshake(stream, config.context(server_side=False), server_side=False,
                           cert_depth=config.cert_depth, peer=f"{host}:{port}",
                           timeout=timeout)


async def open_mgmt_stream(host: str, port: int, *,
                           timeout: float = HANDSHAKE_TIMEOUT) -> trio.abc.Stream:
    """A connection to glusterd (GETSPEC, portmap, sign-in): TLS when
    secure access is on, plain TCP otherwise."""
    return await connect(host, port, TlsConfig.for_mgmt() if secure_access() else None,
                         timeout=timeout)


def socket_of(stream: trio.abc.Stream | None) -> trio.socket.SocketType | None:
    """The socket under a stream (a TLS one included), or None."""
    while stream is not None:
        sock = getattr(stream, "socket", None)
        if sock is not None:
            # the `socket` of a trio.SocketStream (once per connection)
            return cast("trio.socket.SocketType", sock)
        stream = getattr(stream, "transport_stream", None)
    return None


__all__ = ["TlsConfig", "TlsError", "transport_options", "ssl_enabled_option", "handshake",
           "connect", "open_mgmt_stream", "secure_access", "secure_access_cert_depth",
           "common_name", "verified_chain", "ssl_failure", "handshake_error", "socket_of",
           "SECURE_ACCESS_FILE", "SECURE_ACCESS_ENV", "CERT_DIR_ENV", "default_own_cert",
           "default_private_key", "default_ca_list", "check_cipher_list"]
