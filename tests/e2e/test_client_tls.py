"""Client: TLS to the server (issue 12). Pinning on first use in known_servers (asked at a
terminal, refused in a pipe unless --accept-new or --pin), a changed key refused with nothing
sent, --ca with a valid, an expired and a wrong-name certificate, and the wrong transport."""

import datetime
import os
import socket
import ssl
import subprocess
import threading

import pexpect
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import PARLEY, SANITIZER_MARKS, client_env, wait_until
from test_client_kit import answer_login, WELCOME, expect_line, prompt, wait_exit

T = 5
SESSION = "hans\nfalcon\nwhoelse\nlogout\n"


def _run(args, config_home, input_text=SESSION):
    r = subprocess.run([PARLEY, *args], input=input_text, capture_output=True, text=True,
                       timeout=10, env=client_env({"XDG_CONFIG_HOME": str(config_home)}))
    assert not any(m in r.stderr for m in SANITIZER_MARKS), r.stderr
    return r


def _known(config_home):
    path = os.path.join(str(config_home), "parley", "known_servers")
    with open(path) as f:
        return f.read()


def _fingerprint(s):
    return subprocess.run([s.command()[0], "--tls-fingerprint"], cwd=s.dir, capture_output=True,
                          text=True, timeout=T, check=True).stdout.strip()


@pytest.fixture
def tls_server(make_server):
    return make_server(args=["--tls"], tls=False)


def test_pipe_refuses_an_unknown_key(tls_server, tmp_path):
    r = _run(["--tls", "127.0.0.1", str(tls_server.port)], tmp_path)
    assert r.returncode == 1
    assert _fingerprint(tls_server) in r.stderr
    assert "--accept-new" in r.stderr and WELCOME not in r.stdout
    assert not os.path.exists(tmp_path / "parley" / "known_servers")


def test_accept_new_pins_then_the_key_is_known(tls_server, tmp_path):
    r = _run(["--accept-new", "127.0.0.1", str(tls_server.port)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert WELCOME in r.stdout and "No other users" in r.stdout
    fp = _fingerprint(tls_server)
    assert _known(tmp_path) == f"127.0.0.1:{tls_server.port} {fp}\n"
    mode = os.stat(tmp_path / "parley" / "known_servers").st_mode & 0o777
    assert mode == 0o600
    r = _run(["--tls", "127.0.0.1", str(tls_server.port)], tmp_path)  # no question now
    assert r.returncode == 0 and WELCOME in r.stdout and "not a known server" not in r.stderr


def test_pin_right_and_wrong(tls_server, tmp_path):
    fp = _fingerprint(tls_server)
    r = _run(["--pin", fp.upper().replace("SHA256:", "sha256:"), "127.0.0.1",
              str(tls_server.port)], tmp_path)
    assert r.returncode == 0 and WELCOME in r.stdout, r.stderr
    wrong = "sha256:" + "0" * 64
    r = _run(["--pin", wrong, "127.0.0.1", str(tls_server.port)], tmp_path)
    assert r.returncode == 1 and "WARNING" in r.stderr and fp in r.stderr
    r = _run(["--pin", "sha256:xyz", "127.0.0.1", str(tls_server.port)], tmp_path)
    assert r.returncode == 2 or "--pin must be" in r.stderr


def _trust_and_log_in(c):
    """Answers `yes` at the trust prompt, then logs in as hans, up to the `> ` prompt."""
    c.sendline("yes")
    answer_login(c, "hans", "falcon")
    expect_line(c, WELCOME)
    prompt(c)


def test_terminal_asks_on_first_use(tls_server, tmp_path, client_factory):
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    c = client_factory(tls_server.port, env=env, args=["--tls", "127.0.0.1",
                                                       str(tls_server.port)])
    c.expect_exact(_fingerprint(tls_server), timeout=T)
    c.expect_exact("Trust this key and connect (yes/no)? ", timeout=T)
    c.sendline("no")
    assert wait_exit(c) == 1
    assert not os.path.exists(tmp_path / "parley" / "known_servers")
    c = client_factory(tls_server.port, env=env, args=["--tls", "127.0.0.1",
                                                       str(tls_server.port)])
    c.expect_exact("Trust this key and connect (yes/no)? ", timeout=T)
    _trust_and_log_in(c)
    assert _fingerprint(tls_server) in _known(tmp_path)


def test_slow_answer_at_the_trust_prompt(make_server, tmp_path, client_factory):
    """A person who takes longer than the server's --hello-timeout to compare the fingerprint
    still gets in: after `yes` the client connects again and the accepted key is trusted."""
    s = make_server(args=["--tls", "--hello-timeout", "1"], tls=False)
    base = s.fd_count()
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    c = client_factory(s.port, env=env, args=["--tls", "127.0.0.1", str(s.port)])
    c.expect_exact("Trust this key and connect (yes/no)? ", timeout=T)
    wait_until(lambda: s.fd_count() > base, what="the connection to be up")
    wait_until(lambda: s.fd_count() == base, what="the server to drop the silent connection")
    _trust_and_log_in(c)
    assert _fingerprint(s) in _known(tmp_path)


def _self_signed(tmp_path, name, cn="impostor", days=30, offset_days=0, issuer=None,
                 san_ip="127.0.0.1"):
    """Writes a key and a certificate (self-signed, or signed by `issuer` = (cert, key));
    returns (cert_path, key_path, cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=offset_days)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(issuer[0].subject if issuer else subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1))
         .not_valid_after(now + datetime.timedelta(days=days)))
    if issuer is None:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    if san_ip:
        import ipaddress
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(
            ipaddress.ip_address(san_ip))]), critical=False)
    cert = b.sign(issuer[1] if issuer else key, hashes.SHA256())
    cp, kp = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return str(cp), str(kp), cert, key


class _Impostor:
    """A TLS server on `port` presenting another certificate; records what it receives."""

    def __init__(self, tmp_path, port):
        cp, kp, _, _ = _self_signed(tmp_path, "mitm")
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cp, kp)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(4)
        self.sock.settimeout(T)
        self.received = b""
        self.handshakes = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            raw, _ = self.sock.accept()
            with self.ctx.wrap_socket(raw, server_side=True) as s:
                self.handshakes += 1
                s.settimeout(T)
                while True:
                    data = s.recv(4096)
                    if not data:
                        break
                    self.received += data
        except (OSError, ssl.SSLError):
            pass

    def close(self):
        self.thread.join(T)
        self.sock.close()


def test_man_in_the_middle_refused_and_nothing_sent(tls_server, tmp_path):
    port = tls_server.port
    assert _run(["--accept-new", "127.0.0.1", str(port)], tmp_path).returncode == 0
    tls_server.stop()
    mitm = _Impostor(tmp_path, port)
    r = _run(["--tls", "127.0.0.1", str(port)], tmp_path)
    mitm.close()
    assert r.returncode == 1
    assert "WARNING: THE SERVER'S KEY IS NOT THE ONE EXPECTED" in r.stderr
    assert _fingerprint(tls_server) in r.stderr and "line 1 of" in r.stderr
    assert mitm.handshakes == 1 and mitm.received == b""  # not even HELLO or the user name


@pytest.fixture
def ca(tmp_path):
    return _self_signed(tmp_path, "ca", cn="Parley test CA", days=365, san_ip=None)


def _ca_server(make_server, tmp_path, ca, name, **kw):
    cp, kp, _, _ = _self_signed(tmp_path, name, cn=name, issuer=(ca[2], ca[3]), **kw)
    return make_server(args=["--tls-cert", cp, "--tls-key", kp], tls=False)


def test_ca_valid_certificate(make_server, tmp_path, ca):
    s = _ca_server(make_server, tmp_path, ca, "good")
    r = _run(["--ca", ca[0], "127.0.0.1", str(s.port)], tmp_path)
    assert r.returncode == 0 and WELCOME in r.stdout, r.stderr
    assert not os.path.exists(tmp_path / "parley" / "known_servers")  # nothing pinned


def test_ca_and_pin_both_hold(make_server, tmp_path, ca):
    """With --ca and --pin the chain must check out and the key must be the pinned one."""
    cp, kp, _, _ = _self_signed(tmp_path, "good", cn="good", issuer=(ca[2], ca[3]))
    s = make_server(args=["--tls-cert", cp, "--tls-key", kp], tls=False)
    fp = subprocess.run([s.command()[0], "--tls-cert", cp, "--tls-key", kp, "--tls-fingerprint"],
                        cwd=s.dir, capture_output=True, text=True, timeout=T,
                        check=True).stdout.strip()
    r = _run(["--ca", ca[0], "--pin", "sha256:" + "0" * 64, "127.0.0.1", str(s.port)], tmp_path)
    assert r.returncode == 1 and "WARNING" in r.stderr and WELCOME not in r.stdout, r.stderr
    r = _run(["--ca", ca[0], "--pin", fp, "127.0.0.1", str(s.port)], tmp_path)
    assert r.returncode == 0 and WELCOME in r.stdout, r.stderr


def test_ca_expired_certificate_refused(make_server, tmp_path, ca):
    s = _ca_server(make_server, tmp_path, ca, "old", days=1, offset_days=-10)
    r = _run(["--ca", ca[0], "127.0.0.1", str(s.port)], tmp_path)
    assert r.returncode == 1 and "certificate has expired" in r.stderr, r.stderr
    assert WELCOME not in r.stdout


def test_ca_wrong_name_refused(make_server, tmp_path, ca):
    s = _ca_server(make_server, tmp_path, ca, "elsewhere", san_ip="10.9.8.7")
    r = _run(["--ca", ca[0], "127.0.0.1", str(s.port)], tmp_path)
    assert r.returncode == 1 and "mismatch" in r.stderr, r.stderr


def test_ca_other_authority_refused(make_server, tmp_path, ca):
    s = make_server(args=["--tls"], tls=False)  # its own self-signed certificate
    r = _run(["--ca", ca[0], "127.0.0.1", str(s.port)], tmp_path)
    assert r.returncode == 1 and "TLS:" in r.stderr and WELCOME not in r.stdout


def test_tls_client_to_plain_port(server, tmp_path):
    r = _run(["--accept-new", "127.0.0.1", str(server.port)], tmp_path)
    assert r.returncode == 1 and "cannot connect" in r.stderr and "TLS:" in r.stderr, r.stderr
    assert server.stderr_text() == ""


def test_plain_client_to_tls_port(tls_server, tmp_path):
    r = _run(["127.0.0.1", str(tls_server.port)], tmp_path)
    assert r.returncode == 1
    assert "Connection to server lost" in r.stdout
    assert "if it speaks TLS, connect with --tls" in r.stdout
    assert tls_server.stderr_text() == ""
