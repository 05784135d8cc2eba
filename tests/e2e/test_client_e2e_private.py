"""Issue 13: private chat encrypted end to end. A recorder between two real clients sees no
plaintext; a peer with the right one-time secret but another identity key is refused with a
warning naming the user (in both directions); pins survive restarts of the client; a peer that
speaks only the plain-text version 1 is refused with a clear line; `fingerprint` and `forget`.
Raw peers speak the handshake through noise_peer.py."""

import os
import re
import socket
import stat
import threading

import pytest

from conftest import CONFIG_HOME, ok
from noise_peer import NoisePeer, Refused, new_static
from test_client_kit import (T, absent, command, expect_line, listening_ports, login,
                             wait_exit)

WARNING = ("Warning: {0} proved another identity key than the one pinned for them; private "
           "messaging refused. The server may be lying, or {0} changed devices: check with "
           "them, then `forget {0}` to accept the new key")


def _port(child):
    ports = listening_ports(child.pid)
    assert len(ports) == 1, ports
    return ports[0]


def _pipe(src, dst, record=None):
    """Copies `src` to `dst` until either closes, keeping a copy in `record` (a list)."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if record is not None:
                record.append(data)
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _thread(fn, *args):
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


class LinkProxy:
    """Stands between one client and the server, as a server that lies about addresses would:
    it rewrites the client's `LISTEN <port>` to a relay of its own, which forwards every P2P
    connection to the client's real listener and records the bytes both ways."""

    def __init__(self, server_port):
        self.server_port = server_port
        self.ls = socket.create_server(("127.0.0.1", 0))
        self.port = self.ls.getsockname()[1]
        self.recorded = []
        self.relays = 0
        _thread(self._accept)

    def _accept(self):
        try:
            client, _ = self.ls.accept()
        except OSError:
            return
        upstream = socket.create_connection(("127.0.0.1", self.server_port), timeout=T)
        upstream.settimeout(None)
        _thread(_pipe, upstream, client)
        _thread(self._client_lines, client, upstream)

    def _client_lines(self, client, upstream):
        buf = b""
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    upstream.sendall(self._rewrite(line) + b"\n")
        except OSError:
            pass
        upstream.close()

    def _rewrite(self, line):
        m = re.fullmatch(rb"(\S+) LISTEN (\d+)", line)
        if not m:
            return line
        relay = socket.create_server(("127.0.0.1", 0))
        _thread(self._relay, relay, int(m.group(2)))
        return m.group(1) + b" LISTEN %d" % relay.getsockname()[1]

    def _relay(self, relay, real_port):
        while True:
            try:
                conn, _ = relay.accept()
            except OSError:
                return
            self.relays += 1
            peer = socket.create_connection(("127.0.0.1", real_port), timeout=T)
            peer.settimeout(None)
            _thread(_pipe, conn, peer, self.recorded)
            _thread(_pipe, peer, conn, self.recorded)

    def close(self):
        self.ls.close()


def test_recorder_between_two_clients_sees_no_plaintext(server, client_factory, tmp_path):
    proxy = LinkProxy(server.port)
    try:
        hans = login(client_factory, server, "hans")
        yoda = client_factory(proxy.port)
        yoda.expect("Username: ")
        yoda.sendline("yoda")
        yoda.expect("Password: ")
        yoda.sendline(server.users["yoda"])
        expect_line(yoda, "Welcome to the greatest messaging application ever!")
        expect_line(hans, "yoda logged in")
        command(hans, "startprivate yoda", "Start private messaging with yoda")
        expect_line(yoda, "hans started private messaging with you")
        command(hans, "private yoda the eagle lands at midnight")
        expect_line(yoda, "hans(private): the eagle lands at midnight")
        command(yoda, "private hans the owl flies at dawn")
        expect_line(hans, "yoda(private): the owl flies at dawn")
        command(hans, "stopprivate yoda")
        expect_line(yoda, "hans stopped private messaging")
        assert proxy.relays == 1  # the session went through the recorder
        wire = b"".join(proxy.recorded)
        assert b"HELLO 2 hans Noise_XXpsk3_25519_ChaChaPoly_SHA256\n" in wire
        for secret in (b"eagle", b"midnight", b"owl", b"dawn", b"MSG", b"STOP", b"OK yoda"):
            assert secret not in wire, secret
        assert len(wire) > 3 * 96  # the handshake and the records did pass
        for user in ("hans", "yoda"):  # the identity keys' private halves never travel
            priv = bytes.fromhex(open(os.path.join(CONFIG_HOME, "parley", user,
                                                   "identity")).read().strip())
            assert priv not in wire and priv.hex().encode() not in wire
    finally:
        proxy.close()


def _session_from(raw, hans, static):
    """The raw vader gets a fresh secret from the server and runs the handshake with `static`;
    returns the open peer, or raises Refused. The server forgets the pair either way."""
    secret = ok(raw.request("P2P", "hans"))[2]
    try:
        return NoisePeer.connect(_port(hans), "vader", "hans", secret, static=static)
    finally:
        ok(raw.request("P2PEND", "hans"))


def test_incoming_peer_with_another_key_is_refused(server, client_factory, tmp_path):
    hans = login(client_factory, server, "hans", env={"XDG_CONFIG_HOME": str(tmp_path)})
    raw = server.login("vader")
    raw.open_listener()
    genuine, fake = new_static(), new_static()
    peer = _session_from(raw, hans, genuine)
    expect_line(hans, "vader started private messaging with you")
    peer.send_frame(b"STOP")
    expect_line(hans, "vader stopped private messaging")
    # The right secret, another key: the server (or whoever it told) is not vader.
    with pytest.raises(Refused):
        _session_from(raw, hans, fake)
    expect_line(hans, WARNING.format("vader"))
    absent(hans, "vader started private messaging", within=0.3)
    # The genuine key still works; after `forget`, the new key is pinned instead.
    peer = _session_from(raw, hans, genuine)
    expect_line(hans, "vader started private messaging with you")
    peer.send_frame(b"STOP")
    expect_line(hans, "vader stopped private messaging")
    command(hans, "forget vader", "Forgot the key of vader")
    peer = _session_from(raw, hans, fake)
    expect_line(hans, "vader started private messaging with you")
    peer.close()


def _session_to(server, hans, static, answer=None):
    """hans starts a session with a raw vader whose listener answers with `static` (or with
    the bytes `answer`)."""
    vader = server.login("vader")
    vader.open_listener()
    expect_line(hans, "vader logged in")
    hans.sendline("startprivate vader")
    secret = vader.wait_event("P2PREQ")[2]
    ok(vader.request("P2PACCEPT", "hans"))
    conn, _ = vader.listener.accept()
    if answer is not None:
        conn.settimeout(T)
        hello = conn.makefile("rb").readline()
        conn.sendall(answer)
        return hello, vader, conn
    try:
        return NoisePeer.accept(conn, "vader", "hans", secret, static=static), vader, conn
    except Refused:
        return None, vader, conn


def test_outgoing_to_a_peer_with_another_key_is_refused(server, client_factory, tmp_path):
    hans = login(client_factory, server, "hans", env={"XDG_CONFIG_HOME": str(tmp_path)})
    peer, vader, _ = _session_to(server, hans, new_static())
    assert peer is not None
    expect_line(hans, "Start private messaging with vader")
    command(hans, "stopprivate vader")
    vader.close()
    expect_line(hans, "vader logged out")
    peer, vader, conn = _session_to(server, hans, new_static())
    assert peer is None  # hans stopped after message 2, before proving anything
    expect_line(hans, WARNING.format("vader"))
    expect_line(hans, "Error. Could not connect to vader for private messaging")
    absent(hans, "Start private messaging with vader", within=0.3)
    conn.close()


def test_pins_survive_restarts_and_safety_numbers_agree(server, client_factory, tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path)}

    def both():
        hans = login(client_factory, server, "hans", env=env)
        yoda = login(client_factory, server, "yoda", env=env)
        expect_line(hans, "yoda logged in")
        return hans, yoda

    def numbers(hans, yoda):
        hans.sendline("fingerprint yoda")
        hans.expect(r"Safety number with yoda: ((\d{5} ){11}\d{5})\r\n", timeout=T)
        yoda.sendline("fingerprint hans")
        yoda.expect(r"Safety number with hans: ((\d{5} ){11}\d{5})\r\n", timeout=T)
        assert hans.match.group(1) == yoda.match.group(1)
        return hans.match.group(1)

    hans, yoda = both()
    command(hans, "fingerprint yoda",
            "Error. No key known for yoda (start private messaging first)")
    command(hans, "startprivate yoda", "Start private messaging with yoda")
    expect_line(yoda, "hans started private messaging with you")
    first = numbers(hans, yoda)
    hans.sendline("fingerprint")
    hans.expect(r"Your fingerprint: ((\d{5} ){5}\d{5})\r\n", timeout=T)
    assert hans.match.group(1) in first
    for user in ("hans", "yoda"):
        for f in ("identity", "known_peers"):
            mode = os.stat(tmp_path / "parley" / user / f).st_mode
            assert stat.S_IMODE(mode) == 0o600, (user, f, oct(mode))
        assert stat.S_IMODE(os.stat(tmp_path / "parley" / user).st_mode) == 0o700
    yoda.sendline("logout")
    expect_line(hans, "yoda stopped private messaging")
    wait_exit(yoda)
    hans.sendline("logout")
    wait_exit(hans)

    # Restarted: the same keys, the pins hold, the number is the same.
    hans, yoda = both()
    command(hans, "startprivate yoda", "Start private messaging with yoda")
    expect_line(yoda, "hans started private messaging with you")
    assert numbers(hans, yoda) == first
    absent(hans, "Warning", within=0.2)
    yoda.sendline("logout")
    expect_line(hans, "yoda stopped private messaging")
    expect_line(hans, "yoda logged out")
    wait_exit(yoda)

    # yoda's key is lost (a new device): hans refuses, until told to forget the old one.
    os.unlink(tmp_path / "parley" / "yoda" / "identity")
    yoda = login(client_factory, server, "yoda", env=env)
    expect_line(hans, "yoda logged in")
    hans.sendline("startprivate yoda")
    expect_line(hans, WARNING.format("yoda"))
    expect_line(hans, "Error. Could not connect to yoda for private messaging")
    command(hans, "forget yoda", "Forgot the key of yoda")
    command(yoda, "forget hans", "Forgot the key of hans")
    command(hans, "startprivate yoda", "Start private messaging with yoda")
    expect_line(yoda, "hans started private messaging with you")
    assert numbers(hans, yoda) != first


def test_version_1_peers_are_refused_with_a_clear_line(server, client_factory):
    hans = login(client_factory, server, "hans")
    # An old initiator with a live secret: refused, hans is told why.
    raw = server.login("vader")
    raw.open_listener()
    secret = ok(raw.request("P2P", "hans"))[2]
    sk = socket.create_connection(("127.0.0.1", _port(hans)), timeout=T)
    sk.sendall(f"HELLO 1 vader {secret}\n".encode())
    assert sk.makefile("rb").readline() == b"ERR 505 unsupported version\n"
    sk.close()
    expect_line(hans, "Error. vader's client is too old for encrypted private messaging")
    absent(hans, "vader started private messaging", within=0.3)
    raw.close()
    expect_line(hans, "vader logged out")
    # An old responder: it answers version 2 with 505; hans says so and does not fall back.
    hello, vader, conn = _session_to(server, hans, None,
                                     answer=b"ERR 505 unsupported version\n")
    assert hello == b"HELLO 2 hans Noise_XXpsk3_25519_ChaChaPoly_SHA256\n"
    expect_line(hans, "Error. vader's client is too old for encrypted private messaging")
    expect_line(hans, "Error. Could not connect to vader for private messaging")
    conn.settimeout(T)
    rest = b""
    try:
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                break
            rest += chunk
    except OSError:
        pass
    assert b"MSG" not in rest and b"HELLO 1" not in rest
    conn.close()
