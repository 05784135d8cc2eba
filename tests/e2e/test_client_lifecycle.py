"""Client: the inactivity timeout with and without P2P sessions (spec §7), and the server going
away (spec §9): `Connection to server lost`, keeping P2P sessions alive as §7 says."""

import signal

import pytest

from test_client_kit import T, absent, command, expect_line, login, wait_exit

TIMEOUT = 2  # server idle timeout for these tests (seconds)
IDLE_WAIT = TIMEOUT + 4  # the logout must come within this


def start_private(a, a_name, b, b_name):
    a.sendline(f"startprivate {b_name}")
    expect_line(a, f"Start private messaging with {b_name}")
    expect_line(b, f"{a_name} started private messaging with you")


def test_timeout_without_p2p_exits(make_server, client_factory):
    s = make_server(timeout=TIMEOUT)
    hans = login(client_factory, s, "hans")
    expect_line(hans, "You have been logged out due to inactivity", timeout=IDLE_WAIT)
    assert wait_exit(hans) == 0


def test_receiving_is_not_activity(make_server, client_factory):
    s = make_server(timeout=TIMEOUT)
    hans = login(client_factory, s, "hans")
    yoda = s.login("yoda")
    for i in range(3):
        yoda.request("MSG", "hans", f"ping {i}")
        expect_line(hans, f"yoda: ping {i}")
    expect_line(hans, "You have been logged out due to inactivity", timeout=IDLE_WAIT)
    assert wait_exit(hans) == 0


def test_timeout_with_p2p_keeps_running(make_server, client_factory):
    s = make_server(timeout=TIMEOUT)
    hans = login(client_factory, s, "hans")
    yoda = login(client_factory, s, "yoda")
    start_private(hans, "hans", yoda, "yoda")
    expect_line(hans, "You have been logged out due to inactivity", timeout=IDLE_WAIT)
    expect_line(yoda, "You have been logged out due to inactivity", timeout=IDLE_WAIT)
    # Both stay: the P2P session still works, server commands say so.
    command(hans, "whoelse", "Error. You are logged out")
    command(hans, "message yoda hi", "Error. You are logged out")
    command(hans, "startprivate vader", "Error. You are logged out")
    command(hans, "private yoda still here")
    expect_line(yoda, "hans(private): still here")
    command(yoda, "private hans me too")
    expect_line(hans, "yoda(private): me too")
    assert hans.isalive() and yoda.isalive()
    # The last session ending ends both clients.
    command(yoda, "stopprivate hans")
    assert wait_exit(yoda) == 0
    expect_line(hans, "yoda stopped private messaging")
    assert wait_exit(hans) == 0


def test_logout_after_timeout_with_p2p(make_server, client_factory):
    s = make_server(timeout=TIMEOUT)
    hans = login(client_factory, s, "hans")
    yoda = login(client_factory, s, "yoda")
    start_private(hans, "hans", yoda, "yoda")
    expect_line(hans, "You have been logged out due to inactivity", timeout=IDLE_WAIT)
    hans.sendline("logout")
    assert wait_exit(hans) == 0
    expect_line(yoda, "hans stopped private messaging")


def test_private_counts_as_activity(make_server, client_factory):
    s = make_server(timeout=TIMEOUT)
    hans = login(client_factory, s, "hans")
    yoda = login(client_factory, s, "yoda")
    start_private(hans, "hans", yoda, "yoda")
    # hans keeps sending private messages for longer than the timeout; yoda only receives.
    import time
    end = time.monotonic() + TIMEOUT + 2
    i = 0
    yoda_saw = ""
    while time.monotonic() < end:
        command(hans, f"private yoda tick {i}")
        expect_line(yoda, f"hans(private): tick {i}")
        yoda_saw += yoda.before
        i += 1
        absent(hans, "logged out due to inactivity", within=0.5)
    if "You have been logged out due to inactivity" not in yoda_saw:
        expect_line(yoda, "You have been logged out due to inactivity", timeout=IDLE_WAIT)
    command(hans, "whoelse", "No other users")


def test_server_killed_connection_lost(server, client_factory):
    hans = login(client_factory, server, "hans")
    server.kill9()
    expect_line(hans, "Connection to server lost")
    assert wait_exit(hans) == 1


def test_server_shutdown_connection_lost(server, client_factory):
    hans = login(client_factory, server, "hans")
    server.stop()
    expect_line(hans, "Connection to server lost")
    assert wait_exit(hans) == 1


def test_server_lost_during_login(server, client_factory):
    c = client_factory(server.port)
    c.expect_exact("Username: ", timeout=T)
    server.kill9()
    expect_line(c, "Connection to server lost")
    assert wait_exit(c) == 1


def test_server_lost_keeps_p2p(server, client_factory):
    hans = login(client_factory, server, "hans")
    yoda = login(client_factory, server, "yoda")
    start_private(hans, "hans", yoda, "yoda")
    server.kill9()
    expect_line(hans, "Connection to server lost")
    expect_line(yoda, "Connection to server lost")
    command(hans, "whoelse", "Error. You are logged out")
    command(hans, "private yoda the server is gone")
    expect_line(yoda, "hans(private): the server is gone")
    hans.sendline("stopprivate yoda")
    expect_line(yoda, "hans stopped private messaging")
    assert wait_exit(hans) == 1
    assert wait_exit(yoda) == 1


def test_sigterm_logs_out(server, client_factory):
    watcher = server.login("yoda")
    hans = login(client_factory, server, "hans")
    watcher.wait_event("LOGIN hans")
    hans.kill(signal.SIGTERM)
    assert wait_exit(hans) == 0
    watcher.wait_event("LOGOUT hans")
