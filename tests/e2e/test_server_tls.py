"""Server: TLS (issue 12). The generated key and certificate, the fingerprint, and the bad
input of the issue: plain text to a TLS port, TLS to a plain port, a stalled handshake, junk
records, a client gone mid-handshake, limits during handshakes, renegotiation, a clean close.
The whole protocol over TLS is the server suite's second run (conftest TLS_SUITE)."""

import hashlib
import os
import select
import socket
import ssl
import stat
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import PARLEYD, Proto, ok, wait_until

T = 5.0


def _client_hello():
    """The first flight of a TLS client (a ClientHello record), made without a socket."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def _spki_fingerprint(der_cert):
    cert = x509.load_der_x509_certificate(der_cert)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def _peer_closes(sk, timeout=T):
    """Reads until the server closes `sk`; returns the bytes it sent. Fails on a timeout."""
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([sk], [], [], deadline - time.monotonic())
        if not r:
            break
        try:
            chunk = sk.recv(4096)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    raise AssertionError("the server did not close the connection")


def _tls_server(make_server, *args):
    return make_server(args=["--tls", *args], tls=False)


def _tls_login(port, user="hans", pw="falcon"):
    p = Proto(port, tls=True)
    p.login(user, pw)
    return p


def test_tls_port_serves_the_protocol_and_generated_files_are_private(make_server):
    s = _tls_server(make_server)
    a = _tls_login(s.port)
    b = _tls_login(s.port, "yoda", "wise")
    ok(a.request("MSG", "yoda", "over tls"))
    assert b.wait_event("MSG")[4] == "over tls"
    assert a.sock.version() in ("TLSv1.2", "TLSv1.3")
    for name in ("tls-key.pem", "tls-cert.pem"):
        mode = stat.S_IMODE(os.stat(os.path.join(s.dir, "parley-data", name)).st_mode)
        assert mode == 0o600, (name, oct(mode))
    assert s.stderr_text() == ""


def test_fingerprint_names_the_key_presented_and_survives_restarts(make_server):
    s = _tls_server(make_server)
    printed = subprocess.run([PARLEYD, "--tls-fingerprint"], cwd=s.dir, capture_output=True,
                             text=True, timeout=T, check=True).stdout.strip()
    p = Proto(s.port, tls=True)
    assert _spki_fingerprint(p.sock.getpeercert(binary_form=True)) == printed
    p.close()
    s.restart()
    p = Proto(s.port, tls=True)
    assert _spki_fingerprint(p.sock.getpeercert(binary_form=True)) == printed


def test_given_certificate_is_used_and_bad_files_refused(make_server, tmp_path):
    s = _tls_server(make_server)
    data = os.path.join(s.dir, "parley-data")
    s.stop()
    t = make_server(args=["--tls-cert", os.path.join(data, "tls-cert.pem"),
                          "--tls-key", os.path.join(data, "tls-key.pem")], tls=False)
    _tls_login(t.port)
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    (tmp_path / "credentials.txt").write_text("hans falcon\n")
    r = subprocess.run([PARLEYD, "--tls-cert", str(bad), "--tls-key", str(bad), "0", "1", "1"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=T)
    assert r.returncode != 0 and "TLS certificate" in r.stderr


def test_tls_port_beside_plain_port(make_server):
    s = make_server(tls=True)
    plain = s.login("hans", tls=False)
    secure = s.login("yoda")
    assert secure.tls and not plain.tls
    ok(plain.request("MSG", "yoda", "across"))
    assert secure.wait_event("MSG")[4] == "across"


def test_plain_text_to_tls_port_closed_quietly(make_server):
    s = _tls_server(make_server)
    sk = socket.create_connection(("127.0.0.1", s.port), timeout=T)
    sk.sendall(b"1 HELLO 1\n2 USER hans\n")
    assert b"OK" not in _peer_closes(sk)
    sk.close()
    _tls_login(s.port)
    assert s.stderr_text() == ""


def test_tls_to_plain_port_fails_the_handshake(server):
    with pytest.raises((ssl.SSLError, ConnectionError)):
        Proto(server.port, tls=True)
    server.login("hans", tls=False)
    assert server.stderr_text() == ""


def test_stalled_handshake_closed_at_the_deadline(make_server):
    s = _tls_server(make_server, "--handshake-timeout", "1")
    silent = socket.create_connection(("127.0.0.1", s.port), timeout=T)
    half = socket.create_connection(("127.0.0.1", s.port), timeout=T)
    half.sendall(_client_hello()[:20])  # a slowloris: part of the first record, then nothing
    started = time.monotonic()
    for sk in (silent, half):
        _peer_closes(sk, timeout=3)
        sk.close()
    assert time.monotonic() - started < 2.5
    _tls_login(s.port)


def test_connection_limit_holds_during_handshakes(make_server):
    s = _tls_server(make_server, "--max-connections", "2", "--handshake-timeout", "30")
    held = [socket.create_connection(("127.0.0.1", s.port), timeout=T) for _ in range(2)]
    third = socket.create_connection(("127.0.0.1", s.port), timeout=T)
    assert _peer_closes(third) == b""
    for sk in held:
        sk.close()
    wait_until(lambda: _try_login(s.port), what="a slot after the held handshakes closed")


def _try_login(port):
    try:
        _tls_login(port).close()
        return True
    except (AssertionError, OSError):
        return False


def test_junk_records_closed(make_server):
    s = _tls_server(make_server)
    hello = _client_hello()
    junk = [b"\x16\x03\x01\x00\x05hello",             # a handshake record that is no ClientHello
            b"\x17\x03\x03\x00\x40" + b"\x00" * 64,   # application data before any handshake
            b"\xff" * 4096,                            # not TLS at all
            hello[:5] + os.urandom(int.from_bytes(hello[3:5], "big"))]  # a random body
    for j in junk:
        sk = socket.create_connection(("127.0.0.1", s.port), timeout=T)
        sk.sendall(j)
        _peer_closes(sk)
        sk.close()
    p = _tls_login(s.port)  # a record that fails to decrypt, inside a TLS session
    inner = socket.socket(fileno=os.dup(p.sock.fileno()))
    inner.sendall(b"\x17\x03\x03\x00\x20" + os.urandom(32))  # a record that fails to decrypt
    assert p.closed(T)
    inner.close()
    _tls_login(s.port)
    assert s.stderr_text() == ""


def test_client_vanishing_mid_handshake(make_server):
    s = _tls_server(make_server)
    for _ in range(20):
        sk = socket.create_connection(("127.0.0.1", s.port), timeout=T)
        sk.sendall(_client_hello())
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sk.close()  # a reset while the server answers
    _tls_login(s.port)
    assert s.running() and s.stderr_text() == ""


def test_renegotiation_refused(make_server):
    s = _tls_server(make_server)
    r = subprocess.run(["openssl", "s_client", "-tls1_2", "-connect", f"127.0.0.1:{s.port}"],
                       input="R\n", capture_output=True, text=True, timeout=T)
    assert "RENEGOTIATING" in r.stdout + r.stderr
    assert "no renegotiation" in (r.stdout + r.stderr).lower()
    _tls_login(s.port)


def test_shutdown_ends_with_close_notify(make_server):
    s = _tls_server(make_server)
    p = _tls_login(s.port)
    s.stop()
    assert p.closed(T)
    assert p.wait_event("BYE")[1] == "shutdown"
    assert not p.reset and not p.unclean_eof
