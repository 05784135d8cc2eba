"""Client: peer-to-peer private messaging (spec §8) between terminal clients, and the client's
P2P listener defending itself against connections the server did not announce."""

import socket
import time

import pytest

from conftest import err, ok, wait_until
from noise_peer import NoisePeer, Refused, record
from test_client_kit import (T, absent, command, expect_line, listening_ports, login, prompt,
                             wait_exit)


def start_private(a, a_name, b, b_name):
    a.sendline(f"startprivate {b_name}")
    expect_line(a, f"Start private messaging with {b_name}")
    expect_line(b, f"{a_name} started private messaging with you")


def test_private_both_directions_and_stop(server, client_factory):
    hans = login(client_factory, server, "hans")
    yoda = login(client_factory, server, "yoda")
    expect_line(hans, "yoda logged in")
    start_private(hans, "hans", yoda, "yoda")
    command(hans, "private yoda Only between us")
    expect_line(yoda, "hans(private): Only between us")
    command(yoda, "private hans Agreed")
    expect_line(hans, "yoda(private): Agreed")
    command(hans, "startprivate yoda", "Error. Private messaging with yoda already enabled")
    command(yoda, "stopprivate hans")
    expect_line(hans, "yoda stopped private messaging")
    command(hans, "private yoda still there?", "Error. Private messaging to yoda not enabled")
    command(yoda, "stopprivate hans", "Error. No private messaging session with hans")
    # A new session can be started again, from the other side this time.
    start_private(yoda, "yoda", hans, "hans")
    command(hans, "private yoda again")
    expect_line(yoda, "hans(private): again")


@pytest.mark.single_node  # freezes the one server process by its pid (SIGSTOP)
def test_private_goes_directly_not_through_server(server, client_factory):
    hans = login(client_factory, server, "hans")
    yoda = login(client_factory, server, "yoda")
    expect_line(hans, "yoda logged in")
    start_private(hans, "hans", yoda, "yoda")
    # Even with the server frozen, private messages flow.
    import os
    import signal
    os.kill(server.pid, signal.SIGSTOP)
    try:
        command(hans, "private yoda server is asleep")
        expect_line(yoda, "hans(private): server is asleep")
        command(yoda, "private hans indeed")
        expect_line(hans, "yoda(private): indeed")
    finally:
        os.kill(server.pid, signal.SIGCONT)


def test_several_sessions_at_once(server, client_factory):
    names = ["hans", "yoda", "vader", "luke"]
    kids = {n: login(client_factory, server, n) for n in names}
    for n in names[1:]:
        expect_line(kids["hans"], f"{n} logged in")
    for n in names[1:]:
        start_private(kids["hans"], "hans", kids[n], n)
    for n in names[1:]:
        command(kids["hans"], f"private {n} hello {n}")
        expect_line(kids[n], f"hans(private): hello {n}")
        command(kids[n], f"private hans reply from {n}")
        expect_line(kids["hans"], f"{n}(private): reply from {n}")
    # Private messages reach only their peer.
    absent(kids["luke"], "hello yoda", within=0.3)
    # Stopping one leaves the others.
    command(kids["hans"], "stopprivate vader")
    expect_line(kids["vader"], "hans stopped private messaging")
    command(kids["luke"], "private hans still on")
    expect_line(kids["hans"], "luke(private): still on")


def test_startprivate_refused_when_blocked(server, client_factory):
    hans = login(client_factory, server, "hans")
    yoda = login(client_factory, server, "yoda")
    expect_line(hans, "yoda logged in")
    command(yoda, "block hans", "hans is blocked")
    command(hans, "startprivate yoda", "Error. Cannot start private messaging with yoda")
    command(yoda, "startprivate hans", "Error. Cannot start private messaging with hans")
    command(yoda, "unblock hans", "hans is unblocked")
    start_private(yoda, "yoda", hans, "hans")
    # A later block does not cut an open session.
    command(yoda, "block hans", "hans is blocked")
    command(hans, "private yoda can you hear me")
    expect_line(yoda, "hans(private): can you hear me")


def test_vanished_peer_reported_on_next_private(server, client_factory):
    hans = login(client_factory, server, "hans")
    yoda = login(client_factory, server, "yoda")
    expect_line(hans, "yoda logged in")
    start_private(hans, "hans", yoda, "yoda")
    yoda.kill(9)
    yoda.wait()
    expect_line(hans, "yoda logged out")
    command(hans, "private yoda are you there", "Error. yoda is no longer online")
    command(hans, "private yoda hello?", "Error. Private messaging to yoda not enabled")


def test_logout_ends_sessions(server, client_factory):
    hans = login(client_factory, server, "hans")
    yoda = login(client_factory, server, "yoda")
    vader = login(client_factory, server, "vader")
    expect_line(hans, "vader logged in")
    start_private(hans, "hans", yoda, "yoda")
    start_private(vader, "vader", hans, "hans")
    hans.sendline("logout")
    assert wait_exit(hans) == 0
    expect_line(yoda, "hans stopped private messaging")
    expect_line(vader, "hans stopped private messaging")
    command(yoda, "private hans gone?", "Error. Private messaging to hans not enabled")


def test_consent_accept_and_decline(make_server, client_factory):
    s = make_server(args=("--p2p-consent",))
    hans = login(client_factory, s, "hans")
    yoda = login(client_factory, s, "yoda")
    expect_line(hans, "yoda logged in")
    hans.sendline("startprivate yoda")
    yoda.expect_exact("hans would like to private message, enter y or n: ", timeout=T)
    yoda.sendline("maybe")
    expect_line(yoda, "Error. Please enter y or n")
    yoda.expect_exact("hans would like to private message, enter y or n: ", timeout=T)
    yoda.sendline("y")
    expect_line(hans, "yoda accepts private messaging")
    expect_line(hans, "Start private messaging with yoda")
    expect_line(yoda, "hans started private messaging with you")
    prompt(yoda)
    command(yoda, "private hans thanks for asking")
    expect_line(hans, "yoda(private): thanks for asking")

    vader = login(client_factory, s, "vader")
    expect_line(hans, "vader logged in")
    vader.sendline("startprivate hans")
    hans.expect_exact("vader would like to private message, enter y or n: ", timeout=T)
    hans.sendline("n")
    expect_line(vader, "hans declines private messaging")
    absent(vader, "Start private messaging", within=0.3)
    command(vader, "private hans please", "Error. Private messaging to hans not enabled")


def test_slow_consent_is_not_a_lost_server(make_server, client_factory):
    """Issue 9, point 16: the reply timeout (here 1 s) does not cut the `P2P` request, whose
    reply waits for the peer's user to answer (up to a minute)."""
    s = make_server(args=("--p2p-consent",))
    hans = client_factory(s.port, args=["--reply-timeout", "1", "127.0.0.1", str(s.port)])
    hans.expect_exact("Username: ", timeout=T)
    hans.sendline("hans")
    hans.expect_exact("Password: ", timeout=T)
    hans.sendline("falcon")
    prompt(hans)
    yoda = login(client_factory, s, "yoda")
    expect_line(hans, "yoda logged in")
    hans.sendline("startprivate yoda")
    yoda.expect_exact("hans would like to private message, enter y or n: ", timeout=T)
    absent(hans, "Connection to server lost", within=2.5)
    yoda.sendline("y")
    expect_line(hans, "yoda accepts private messaging")
    expect_line(hans, "Start private messaging with yoda")
    command(hans, "whoelse", "yoda")


def test_consent_question_in_pipe_mode(make_server, client_factory):
    """A pipe client is asked too; its next input line answers."""
    s = make_server(args=("--p2p-consent",))
    hans = login(client_factory, s, "hans")
    import subprocess
    from conftest import PARLEY, client_env
    p = subprocess.Popen([PARLEY, "127.0.0.1", str(s.port)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, env=client_env())
    try:
        p.stdin.write(b"yoda\nwise\n")
        p.stdin.flush()
        expect_line(hans, "yoda logged in")
        hans.sendline("startprivate yoda")
        line = b""
        deadline = time.monotonic() + T
        while not line.endswith(b"enter y or n: ") and time.monotonic() < deadline:
            line += p.stdout.read1(100)
        assert line.endswith(b"hans would like to private message, enter y or n: "), line
        p.stdin.write(b"y\n")
        p.stdin.flush()
        expect_line(hans, "Start private messaging with yoda")
        p.stdin.write(b"private hans from a pipe\nlogout\n")
        p.stdin.close()
        expect_line(hans, "yoda(private): from a pipe")
        expect_line(hans, "yoda stopped private messaging")
        assert p.wait(T) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


# ---- the listener refuses what the server did not announce ----

def _p2p_port(child):
    ports = listening_ports(child.pid)
    assert len(ports) == 1, ports
    return ports[0]


def _raw_p2p(port, hello):
    sk = socket.create_connection(("127.0.0.1", port), timeout=T)
    sk.sendall(hello.encode() + b"\n")
    return sk


def _read_until_closed(sk):
    data = b""
    sk.settimeout(T)
    while True:
        try:
            chunk = sk.recv(4096)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def test_forged_connection_refused(server, client_factory):
    hans = login(client_factory, server, "hans")
    yoda = login(client_factory, server, "yoda")
    expect_line(hans, "yoda logged in")
    port = _p2p_port(hans)
    # No session announced: any secret is refused, nothing is shown.
    sk = _raw_p2p(port, "HELLO 1 yoda 0123456789abcdef0123456789abcdef")
    reply = _read_until_closed(sk)
    assert reply.startswith(b"ERR "), reply
    sk.close()
    # Junk, and silence, are refused as well.
    sk = _raw_p2p(port, "GET / HTTP/1.0")
    assert _read_until_closed(sk).startswith(b"ERR ")
    sk.close()
    absent(hans, "started private messaging", within=0.5)
    # A real session still works afterwards.
    start_private(yoda, "yoda", hans, "hans")
    command(yoda, "private hans genuine")
    expect_line(hans, "yoda(private): genuine")


NOISE = "Noise_XXpsk3_25519_ChaChaPoly_SHA256"


def test_secret_is_checked_spent_once_and_bound_to_name(server, client_factory):
    """A raw protocol client plays the initiator: it gets the real secret from the server and
    runs the handshake with it (tests/e2e/noise_peer.py)."""
    hans = login(client_factory, server, "hans")
    port = _p2p_port(hans)
    vader = server.login("vader")
    vader.open_listener()
    secret = ok(vader.request("P2P", "hans"))[2]
    wrong = ("0" if secret[0] != "0" else "1") + secret[1:]
    # The wrong secret gets as far as message 3, whose PSK does not fit: closed, no reply.
    with pytest.raises(Refused) as refused:
        NoisePeer.connect(port, "vader", "hans", wrong)
    assert refused.value.data == b""
    for hello in (f"HELLO 2 yoda {NOISE}", f"HELLO 1 vader {secret}"):
        sk = _raw_p2p(port, hello)
        assert _read_until_closed(sk).startswith(b"ERR "), hello
        sk.close()
    absent(hans, "started private messaging", within=0.3)
    # The genuine one works once.
    peer = NoisePeer.connect(port, "vader", "hans", secret)
    expect_line(hans, "vader started private messaging with you")
    peer.send_frame(b"MSG hello from a raw socket")
    expect_line(hans, "vader(private): hello from a raw socket")
    hans.sendline("private vader hi raw")
    assert peer.recv_frame() == b"MSG hi raw"
    peer.send_frame(b"STOP")
    expect_line(hans, "vader stopped private messaging")
    peer.close()
    # Replaying the spent secret is refused.
    sk = _raw_p2p(port, f"HELLO 2 vader {NOISE}")
    assert _read_until_closed(sk) == b"ERR 403 refused\n"
    sk.close()
    absent(hans, "vader started private messaging", within=0.3)


def test_refusal_is_sent_once(server, client_factory):
    """Issue 9, point 20: the listener wrote its ERR twice (flushed before closing, then again
    by the close). A refusal is exactly one frame, then the connection closes."""
    hans = login(client_factory, server, "hans")
    port = _p2p_port(hans)
    cases = {f"HELLO 2 yoda {NOISE}": b"ERR 403 refused\n",
             "GET / HTTP/1.0": b"ERR 403 refused\n",
             "HELLO 1 yoda 0123456789abcdef0123456789abcdef": b"ERR 505 unsupported version\n",
             "HELLO 3 yoda 0123456789abcdef0123456789abcdef": b"ERR 505 unsupported version\n",
             "HELLO 2 yoda Noise_NN_25519_ChaChaPoly_SHA256": b"ERR 505 unsupported version\n"}
    for hello, want in cases.items():
        sk = _raw_p2p(port, hello)
        assert _read_until_closed(sk) == want, hello
        sk.close()
    sk = socket.create_connection(("127.0.0.1", port), timeout=T)
    sk.sendall(b"HELLO\x00 1\n")
    assert _read_until_closed(sk) == b"ERR 400 bad request\n"
    sk.close()


def test_handshake_with_trailing_space_refused(server, client_factory):
    """Issue 9, point 20: `HELLO 1 <name> <secret> ` (a trailing space) opened the session."""
    hans = login(client_factory, server, "hans")
    port = _p2p_port(hans)
    vader = server.login("vader")
    vader.open_listener()
    secret = ok(vader.request("P2P", "hans"))[2]
    for hello in (f"HELLO 2 vader {NOISE} ", f"HELLO 2 vader {NOISE}  ",
                  f"HELLO 2 vader  {NOISE}"):
        sk = _raw_p2p(port, hello)
        assert _read_until_closed(sk) == b"ERR 403 refused\n", repr(hello)
        sk.close()
    absent(hans, "vader started private messaging", within=0.3)
    # The exact frame still works: a refused one does not spend the secret.
    NoisePeer.connect(port, "vader", "hans", secret)
    expect_line(hans, "vader started private messaging with you")


def _idle_connections(port, sources, per_source):
    """Opens `per_source` idle TCP connections to `port` from each address in `sources`."""
    socks = []
    for src in sources:
        for _ in range(per_source):
            sk = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sk.bind((src, 0))
            sk.settimeout(T)
            sk.connect(("127.0.0.1", port))
            socks.append(sk)
    return socks


def _closed_by_peer(sk):
    """True when the other side has closed `sk` (EOF or reset), without waiting."""
    sk.setblocking(False)
    try:
        return sk.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.mark.parametrize("sources", [["127.0.0.1"], ["127.0.0.2", "127.0.0.3", "127.0.0.4",
                                                     "127.0.0.5", "127.0.0.6"]],
                         ids=["one-source", "five-sources"])
def test_idle_connections_do_not_block_sessions(server, client_factory, sources):
    """Issue 9, point 15: sixteen idle connections to a client's P2P listener refused every
    further connection, so nobody could start a private session with it. Now one source holds
    at most 4 handshakes (its oldest is closed for its newest) and a full table closes its
    oldest handshake for a newcomer: a genuine peer, which sends HELLO at once, gets in."""
    hans = login(client_factory, server, "hans")
    yoda = login(client_factory, server, "yoda")
    expect_line(hans, "yoda logged in")
    port = _p2p_port(hans)
    idle = _idle_connections(port, sources, 20 // len(sources))
    try:
        # The listener keeps at most 4 per source and 16 in all: the rest are closed.
        keep = min(16, 4 * len(sources))
        wait_until(lambda: sum(_closed_by_peer(sk) for sk in idle) >= len(idle) - keep,
                   what=f"the listener to close all but {keep} of {len(idle)} idle connections")
        start_private(yoda, "yoda", hans, "hans")
        command(yoda, "private hans got through")
        expect_line(hans, "yoda(private): got through")
        command(hans, "private yoda and back")
        expect_line(yoda, "hans(private): and back")
    finally:
        for sk in idle:
            sk.close()


def _raw_session(server, hans):
    port = _p2p_port(hans)
    vader = server.login("vader")
    vader.open_listener()
    secret = ok(vader.request("P2P", "hans"))[2]
    peer = NoisePeer.connect(port, "vader", "hans", secret)
    expect_line(hans, "vader started private messaging with you")
    return peer


def test_junk_peer_cut_off(server, client_factory):
    hans = login(client_factory, server, "hans")
    peer = _raw_session(server, hans)
    peer.send_frame(b"MSG \x1b[2J\x1b]0;pwned\x07 clear screen")
    expect_line(hans, "Error. vader sent invalid data; private messaging stopped")
    assert _read_until_closed(peer.sock) == b""
    absent(hans, "pwned", within=0.3)
    command(hans, "whoelse", "vader")


def test_flooding_peer_cut_off(server, client_factory):
    hans = login(client_factory, server, "hans")
    peer = _raw_session(server, hans)
    try:
        peer.send_raw(b"".join(record(peer.noise.seal(b"MSG flood")) for _ in range(5000)))
    except OSError:
        pass
    expect_line(hans, "Error. vader sent too much too fast; private messaging stopped", timeout=10)
    command(hans, "whoelse", "vader")


def test_overlong_peer_line_cut_off(server, client_factory):
    """A record over the limit (4096 bytes of frame and its tag) ends the session as junk."""
    hans = login(client_factory, server, "hans")
    peer = _raw_session(server, hans)
    try:
        peer.send_frame(b"MSG " + b"x" * 10000)
    except OSError:
        pass
    expect_line(hans, "Error. vader sent invalid data; private messaging stopped")
    absent(hans, "xxxxxxxx", within=0.3)


def test_pipe_client_starts_private_session(server, client_factory):
    """From a pipe, `startprivate` waits for the session to open before the next line runs."""
    from test_client_kit import WELCOME, run_pipe
    yoda = login(client_factory, server, "yoda")
    rc, out, _ = run_pipe(server.port, "hans\nfalcon\nstartprivate yoda\nprivate yoda via pipe\n"
                                       "logout\n")
    assert rc == 0
    assert out == f"Username: Password: {WELCOME}\nStart private messaging with yoda\n"
    expect_line(yoda, "hans started private messaging with you")
    expect_line(yoda, "hans(private): via pipe")
    expect_line(yoda, "hans stopped private messaging")
