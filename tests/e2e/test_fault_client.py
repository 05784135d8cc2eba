"""Fault: the `parley` client when things break around it (issue 5, "client side").

- The server is killed (SIGKILL) while the client receives a stream of messages, while a
  request of the client is outstanding, and a fake server dies in the middle of a frame: the
  client prints `Connection to server lost` and exits 1; every message it printed is whole.
- A fake server sends frames with control bytes and escape sequences: nothing of them reaches
  the terminal raw, the client does not crash.
- A P2P peer is killed in the middle of a message (half a frame, then a reset), and a real
  peer client is SIGKILLed while both sides stream private messages: the partial message is
  never shown; the next `private` says `Error. <user> is no longer online` (or the session's
  end was already announced); the client keeps working.
- A P2P peer sends junk (NUL, bad UTF-8, CR, an unknown verb, a TLS hello, an overlong line),
  on the accepting side and on the connecting side: the session is cut with a clear error and
  the client keeps working (a new private session with a real peer works).
"""

import io
import os
import re
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import threading
import time

import pytest

from conftest import PARLEY, client_env, ok
from noise_peer import NoisePeer, record
from test_client_kit import (T, WELCOME, absent, command, expect_line, listening_ports, login,
                             start_login, wait_exit)

SANITIZER = ("AddressSanitizer", "runtime error:", "LeakSanitizer")


def _clean_exit(child, status=1):
    out = child.before or ""
    assert wait_exit(child) == status
    assert not any(m in out for m in SANITIZER), out[-2000:]


def _rst(sk):
    sk.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sk.close()


# ---- the server goes away ----

def test_server_killed_while_receiving_a_stream(server, client_factory):
    hans = login(client_factory, server, "hans")
    vader = server.login("vader")
    hans.expect(r"vader logged in\r\n", timeout=T)
    n = 300
    vader.send_raw("".join(f"m{i} MSG hans stream {i:04d} end\n" for i in range(n)))
    # Kill the server once the client has shown some of the stream (not all of it).
    hans.expect(r"vader: stream 00[0-4]\d end\r\n", timeout=T)
    server.kill9()
    expect_line(hans, "Connection to server lost", timeout=T)
    seen = hans.before + hans.after
    _clean_exit(hans)
    got = [int(x) for x in re.findall(r"vader: stream (\d{4}) end\r\n", seen)]
    # Whatever was shown was whole and in order; no fragment of a line was printed.
    assert got == sorted(got) and len(got) == len(set(got)), got
    frags = re.findall(r"vader: stream \d{0,3}(?:\r|\n)", seen)
    assert not frags, frags


def test_server_killed_with_request_outstanding(server, client_factory):
    hans = login(client_factory, server, "hans")
    os.kill(server.pid, signal.SIGSTOP)
    try:
        hans.sendline("whoelse")
        time.sleep(0.3)
    finally:
        server.kill9()  # SIGKILL works on a stopped process
    expect_line(hans, "Connection to server lost", timeout=T)
    _clean_exit(hans)


# ---- a crash loses an acknowledgement (issue 9, point 5) ----

def test_redelivered_messages_not_shown_twice(server, client_factory, tmp_path):
    """The store delivers at least once: a crash that loses the acknowledgement of messages the
    client showed makes the server deliver them again at the next login. The client remembers
    (in $XDG_STATE_HOME/parley/) the newest message it showed, drops the repeats, still
    acknowledges them, and shows what is new."""
    state = {"XDG_STATE_HOME": str(tmp_path / "state")}
    vader = server.login("vader")
    ok(vader.request("MSG", "hans", "first of two"))
    ok(vader.request("MSG", "hans", "second of two"))
    vader.close()
    # The store as it is while both messages wait for hans's acknowledgement.
    server.listen_port = server.port  # the client remembers per server address
    server.stop()
    data = os.path.join(server.dir, "parley-data")
    shutil.copytree(data, tmp_path / "queued")
    server.start()
    hans = login(client_factory, server, "hans", env=state)
    expect_line(hans, "vader: first of two")
    expect_line(hans, "vader: second of two")
    command(hans, "logout")
    assert wait_exit(hans) == 0
    # The crash: the server dies and its store is back to before the acknowledgement.
    server.kill9()
    shutil.rmtree(data)
    shutil.copytree(tmp_path / "queued", data)
    server.start()
    hans = start_login(client_factory, server.port, "hans", "falcon", env=state)
    hans.logfile_read = shown = io.StringIO()
    expect_line(hans, WELCOME)
    vader = server.login("vader")
    ok(vader.request("MSG", "hans", "third, new"))
    expect_line(hans, "vader: third, new")
    assert "of two" not in shown.getvalue(), shown.getvalue()
    command(hans, "logout")
    assert wait_exit(hans) == 0
    # The repeats were acknowledged: the server has nothing left for hans.
    raw = server.login("hans")
    raw.no_event("MSG", within=0.5)
    # The record is private to the user.
    d = tmp_path / "state" / "parley"
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    seen = [f for f in os.listdir(d) if f.startswith("seen-")]
    assert len(seen) == 1, seen
    assert stat.S_IMODE(os.stat(d / seen[0]).st_mode) == 0o600


# ---- the server stops answering (issue 9, point 16) ----

NOT_ANSWERING = "Error. The server is not answering"


def _pipe_client(port, *args):
    """`parley [args] 127.0.0.1 <port>` with its stdin and stdout on pipes."""
    return subprocess.Popen([PARLEY, *args, "127.0.0.1", str(port)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env())


def _read_until(proc, text, timeout=T):
    """Reads the client's stdout until `text` has appeared; returns what was read."""
    out = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in out:
        left = deadline - time.monotonic()
        r, _, _ = select.select([proc.stdout], [], [], max(0.0, left))
        chunk = os.read(proc.stdout.fileno(), 4096) if r else b""
        if not chunk:
            raise AssertionError(f"no {text!r} within {timeout}s; stdout so far: {out!r}")
        out += chunk
    return out.decode()


def _finish(proc, timeout):
    """Waits up to `timeout` s for the client to exit; returns (status, rest of stdout)."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"the client was still running {timeout}s later") from None
    out = proc.stdout.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    return proc.returncode, out


def test_stalled_server_pipe_client_exits(server):
    """A stopped server left a pipe client waiting for a reply, ignoring the end of its input,
    for ever. With a reply timeout of 1 s it says so and ends like a lost connection."""
    proc = _pipe_client(server.port, "--reply-timeout", "1")
    proc.stdin.write(b"hans\nfalcon\n")
    proc.stdin.flush()
    _read_until(proc, WELCOME)
    os.kill(server.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        proc.stdin.write(b"whoelse\n")
        proc.stdin.close()
        status, out = _finish(proc, timeout=T)
        elapsed = time.monotonic() - t0
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert status == 1
    assert out == f"Connection to server lost\n{NOT_ANSWERING}\n", out
    assert 0.9 <= elapsed < 4, elapsed


def test_stalled_server_during_login(server):
    """The kernel completes the connection of a stopped server, which never answers HELLO: the
    client waited for ever, deaf to the end of its input."""
    os.kill(server.pid, signal.SIGSTOP)
    try:
        proc = _pipe_client(server.port, "--reply-timeout", "1")
        proc.stdin.write(b"hans\nfalcon\nwhoelse\n")
        proc.stdin.close()
        status, out = _finish(proc, timeout=T)
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert status == 1
    assert out == f"Connection to server lost\n{NOT_ANSWERING}\n", out


def test_unanswered_connect_times_out():
    """A listener whose queue is full drops the client's SYN: the connect is bounded by the
    reply timeout too, instead of the system's two minutes."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    fill = []
    for _ in range(3):
        sk = socket.socket()
        sk.setblocking(False)
        try:
            sk.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fill.append(sk)
    try:
        t0 = time.monotonic()
        p = subprocess.run([PARLEY, "--reply-timeout", "1", "127.0.0.1", str(port)],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=T, env=client_env())
        elapsed = time.monotonic() - t0
    finally:
        for sk in fill + [ls]:
            sk.close()
    assert p.returncode == 1 and p.stdout == ""
    assert f"cannot connect to 127.0.0.1 port {port}: Connection timed out" in p.stderr
    assert elapsed < 4, elapsed


def test_server_link_has_keepalive(server, client_factory):
    """A server host that vanishes while the client is idle is found by TCP keep-alive (the
    client's socket to the server has a keep-alive timer, idle time = the reply timeout)."""
    login(client_factory, server, "hans")
    out = subprocess.run(["ss", "-tnoH", "state", "established", "dport", f"= :{server.port}"],
                         capture_output=True, text=True, timeout=T).stdout
    assert out.strip(), "no connection to the server found"
    assert "timer:(keepalive," in out, out


class FakeServer:
    """A listener that logs any client in, then runs `script(conn)`."""

    def __init__(self, script):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.port = self.ls.getsockname()[1]
        self.script = script
        self.error = None
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        try:
            self.ls.settimeout(T)
            conn, _ = self.ls.accept()
            conn.settimeout(T)
            f = conn.makefile("rb")
            while True:
                line = f.readline()
                if not line:
                    return
                tag, verb = line.split(b" ")[:2]
                if verb == b"HELLO":
                    conn.sendall(tag + b" OK 1 fake/0\n")
                else:
                    conn.sendall(tag + b" OK\n")
                if verb == b"PASS":
                    break
            time.sleep(0.3)
            self.script(conn)
        except Exception as e:  # reported by the test
            self.error = e

    def close(self):
        self.t.join(T)
        self.ls.close()


def _fake_login(client_factory, fake):
    c = client_factory(fake.port)
    c.expect_exact("Username: ", timeout=T)
    c.sendline("hans")
    c.expect_exact("Password: ", timeout=T)
    c.sendline("falcon")
    expect_line(c, WELCOME)
    return c


def test_server_dies_mid_frame(client_factory):
    def script(conn):
        conn.sendall(b"* MSG 1 vader 1764081000 a whole message\n* MSG 2 vader 1764081000 half a")
        time.sleep(0.3)
        _rst(conn)
    fake = FakeServer(script)
    c = _fake_login(client_factory, fake)
    expect_line(c, "vader: a whole message")
    expect_line(c, "Connection to server lost")
    out = c.before
    _clean_exit(c)
    fake.close()
    assert "half a" not in out


def test_server_sends_control_bytes(client_factory):
    """Frames a real server never sends: ESC/OSC sequences, BEL, CR, NUL, C1, bad UTF-8."""
    evil = [b"* MSG 1 vader 1764081000 \x1b]0;pwned-title\x07 osc",
            b"* MSG 2 vader 1764081000 \x1b[2J\x1b[31mred-clear",
            b"* BCAST vader cr\rover-write",
            b"* MSG 3 vader 1764081000 nul\x00byte",
            b"* MSG 4 vader 1764081000 c1\xc2\x9bcsi",
            b"* MSG 5 vader 1764081000 bad\xff\xfeutf8",
            b"* LOGIN \x1b[1mbold",
            b"* MSG 6 vader 1764081000 still-alive"]

    def script(conn):
        conn.sendall(b"\n".join(evil) + b"\n")
        time.sleep(1.5)
        conn.close()
    fake = FakeServer(script)
    c = _fake_login(client_factory, fake)
    try:
        c.expect([r"still-alive", r"Connection to server lost"], timeout=T)
    finally:
        pass
    out = c.before + c.after
    try:
        c.expect(r"Connection to server lost\r\n", timeout=T)
        out += c.before
    except Exception:
        pass
    fake.close()
    for bad in ("\x1b]0;", "\x1b[2J", "\x1b[31m", "\x1b[1m", "\x07", "\x00", "\x9b", "\r" +
                "over-write"):
        assert bad not in out, f"{bad!r} reached the terminal: {out!r}"
    c.close(force=True)
    assert c.signalstatus in (None, signal.SIGHUP, signal.SIGTERM, signal.SIGKILL), \
        f"client died of signal {c.signalstatus}"


# ---- P2P peers that die or misbehave ----

def _p2p_port(child):
    ports = listening_ports(child.pid)
    assert len(ports) == 1, ports
    return ports[0]


def _read_until_closed(sk):
    data = b""
    sk.settimeout(T)
    while True:
        try:
            chunk = sk.recv(4096)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    return data


def _raw_session(server, hans):
    """A raw socket plays vader in an open P2P session with the client hans."""
    port = _p2p_port(hans)
    vader = server.login("vader")
    vader.open_listener()
    secret = ok(vader.request("P2P", "hans"))[2]
    peer = NoisePeer.connect(port, "vader", "hans", secret)
    expect_line(hans, "vader started private messaging with you")
    return peer, vader


def _still_works(server, client_factory, hans):
    """hans keeps working: a server command, and a new private session with a real client."""
    command(hans, "whoelse")
    expect_line(hans, "vader")
    luke = login(client_factory, server, "luke")
    expect_line(hans, "luke logged in")
    command(hans, "startprivate luke", "Start private messaging with luke")
    expect_line(luke, "hans started private messaging with you")
    command(hans, "private luke still fine")
    expect_line(luke, "hans(private): still fine")


def test_p2p_peer_killed_mid_message(server, client_factory):
    hans = login(client_factory, server, "hans")
    peer, _ = _raw_session(server, hans)
    peer.send_frame(b"MSG first whole one")
    expect_line(hans, "vader(private): first whole one")
    cut = record(peer.noise.seal(b"MSG this message is cut in the mid"))
    peer.send_raw(cut[:len(cut) // 2])
    time.sleep(0.2)
    _rst(peer.sock)
    time.sleep(0.3)
    hans.sendline("private vader are you there")
    i = hans.expect([r"Error\. vader is no longer online\r\n",
                     r"vader stopped private messaging\r\n"], timeout=T)
    if i == 1:
        command(hans, "private vader are you there",
                "Error. Private messaging to vader not enabled")
    absent(hans, "cut in the mid", within=0.3)
    _still_works(server, client_factory, hans)


def test_p2p_real_peer_killed_while_both_stream(server, client_factory):
    hans = login(client_factory, server, "hans")
    yoda = login(client_factory, server, "yoda")
    expect_line(hans, "yoda logged in")
    command(hans, "startprivate yoda", "Start private messaging with yoda")
    expect_line(yoda, "hans started private messaging with you")
    for i in range(20):
        hans.sendline(f"private yoda from hans {i}")
        yoda.sendline(f"private hans from yoda {i}")
    expect_line(hans, "yoda(private): from yoda 5")
    os.kill(yoda.pid, signal.SIGKILL)
    yoda.wait()
    expect_line(hans, "yoda logged out", timeout=T)
    hans.sendline("private yoda hello?")
    i = hans.expect([r"Error\. yoda is no longer online\r\n",
                     r"Error\. Private messaging to yoda not enabled\r\n"], timeout=T)
    assert i == 0 or "yoda stopped private messaging" in hans.before
    command(hans, "private yoda again", "Error. Private messaging to yoda not enabled")
    command(hans, "whoelse", "No other users")


def _sealed(frame):
    return lambda peer: record(peer.noise.seal(frame))


def _flipped(peer):
    r = bytearray(record(peer.noise.seal(b"MSG pwned by a flipped bit")))
    r[10] ^= 0x04
    return bytes(r)


def _replayed(peer):
    r = record(peer.noise.seal(b"MSG once"))
    return r + r


def _reordered(peer):
    a, b = record(peer.noise.seal(b"MSG pwned first")), record(peer.noise.seal(b"MSG second"))
    return b + a


# What a peer in an open session may send that ends it as invalid data: frames sealed
# properly but not allowed, and records that are not what the channel sealed.
JUNK = {
    "nul": _sealed(b"MSG nul\x00byte"),
    "bad-utf8": _sealed(b"MSG bad \xff\xfe utf8"),
    "cr": _sealed(b"MSG carriage\rreturn"),
    "escape": _sealed(b"MSG \x1b]0;pwned\x07 title"),
    "unknown-verb": _sealed(b"HELLO 2 vader again"),
    "lf-inside": _sealed(b"MSG two\nlines"),
    "empty-msg": _sealed(b"MSG "),
    "overlong": _sealed(b"MSG " + b"x" * 20000),
    "plain-text": lambda peer: b"MSG pwned in plain text\n",
    "tls-hello": lambda peer: (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" +
                               bytes(range(32)) + b"\n"),
    "empty-record": lambda peer: b"\x00\x00",
    "flipped-bit": _flipped,
    "replayed": _replayed,
    "reordered": _reordered,
    "reflected": lambda peer: record(peer.noise.tx.__class__(peer.noise.rx.k).enc(b"", b"MSG pwned")),
}


@pytest.mark.parametrize("kind", sorted(JUNK))
def test_p2p_junk_from_connecting_peer(server, client_factory, kind):
    hans = login(client_factory, server, "hans")
    peer, _ = _raw_session(server, hans)
    try:
        peer.send_raw(JUNK[kind](peer))
    except OSError:
        pass
    expect_line(hans, "Error. vader sent invalid data; private messaging stopped")
    rest = _read_until_closed(peer.sock)
    assert rest == b"", rest
    absent(hans, "pwned", within=0.2)
    command(hans, "private vader more?", "Error. Private messaging to vader not enabled")
    _still_works(server, client_factory, hans)


def test_p2p_junk_from_accepting_peer(server, client_factory):
    """hans starts a session with a raw vader whose listener answers HELLO with junk."""
    hans = login(client_factory, server, "hans")
    vader = server.login("vader")
    port = vader.open_listener()
    hans.sendline("startprivate vader")
    ev = vader.wait_event("P2PREQ")
    assert ev[1] == "hans"
    ok(vader.request("P2PACCEPT", "hans"))
    conn, _ = vader.listener.accept()
    conn.settimeout(T)
    hello = conn.makefile("rb").readline()
    assert hello == b"HELLO 2 hans Noise_XXpsk3_25519_ChaChaPoly_SHA256\n", hello
    conn.sendall(b"\x1b[2J\x00 junk \xff\n")
    expect_line(hans, "Error. Could not connect to vader for private messaging")
    absent(hans, "Start private messaging with vader", within=0.3)
    conn.close()
    command(hans, "private vader hi", "Error. Private messaging to vader not enabled")
    assert port
    _still_works(server, client_factory, hans)
