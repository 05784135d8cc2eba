"""Server: session start, login, lock-out (spec §2, §3; PROTOCOL §4)."""

import time

from conftest import Proto, err, ok, wait_until


def test_hello_reply_names_version(server):
    p = server.connect()
    r = p.request("HELLO", "1", "e2e/0.1")
    assert r[0] == "OK" and r[1] == "1", r
    assert len(r) >= 3 and r[2].startswith("parleyd/"), r


def test_hello_without_client_name(server):
    p = server.connect()
    assert ok(p.request("HELLO", "1"))[0] == "1"


def test_hello_twice_is_403(server):
    p = server.connect()
    p.hello()
    err(p.request("HELLO", "1"), 403)
    assert p.request("USER", "hans") == ["OK"]


def test_request_before_hello_is_403(server):
    p = server.connect()
    err(p.request("USER", "hans"), 403)
    err(p.request("WHO"), 403)
    # The connection is still usable: HELLO then works.
    p.hello()
    assert p.request("USER", "hans") == ["OK"]


def test_bad_hello_version_is_505_and_closes(server):
    p = server.connect()
    err(p.request("HELLO", "2", "e2e"), 505)
    assert p.closed(5), "server must close after 505"


def test_login_success(server):
    p = server.connect()
    p.hello()
    assert p.request("USER", "hans") == ["OK"]
    assert p.request("PASS", "falcon") == ["OK"]
    assert ok(p.request("WHO")) == []


def test_names_are_case_sensitive(server):
    p = server.connect()
    p.hello()
    err(p.request("USER", "Hans"), 404)
    assert p.request("USER", "hans") == ["OK"]
    r = p.request("PASS", "Falcon")
    err(r, 401)
    assert p.request("PASS", "falcon") == ["OK"]


def test_wrong_password_asks_again(server):
    p = server.connect()
    p.hello()
    assert p.request("USER", "yoda") == ["OK"]
    err(p.request("PASS", "nope"), 401)
    # Only the password is asked again: PASS without a new USER works.
    assert p.request("PASS", "wise") == ["OK"]


def test_unknown_user_404_not_counted_and_connection_stays(server):
    p = server.connect()
    p.hello()
    for _ in range(5):
        err(p.request("USER", "nobody"), 404)
    # Unknown names never lock anything; the same connection can go on.
    assert p.request("USER", "hans") == ["OK"]
    err(p.request("PASS", "x1"), 401)
    err(p.request("PASS", "x2"), 401)
    assert p.request("PASS", "falcon") == ["OK"]


def test_pass_after_failed_user_is_403(server):
    p = server.connect()
    p.hello()
    err(p.request("USER", "nobody"), 404)
    err(p.request("PASS", "falcon"), 403)


def test_pass_before_user_is_403(server):
    p = server.connect()
    p.hello()
    err(p.request("PASS", "falcon"), 403)


def test_requests_before_login_are_403(server):
    p = server.connect()
    p.hello()
    err(p.request("MSG", "yoda", "hi"), 403)
    err(p.request("WHO"), 403)
    assert p.request("USER", "hans") == ["OK"]
    err(p.request("MSG", "yoda", "hi"), 403)


def test_user_again_after_ok_changes_name(server):
    p = server.connect()
    p.hello()
    assert p.request("USER", "hans") == ["OK"]
    assert p.request("USER", "yoda") == ["OK"]
    err(p.request("PASS", "falcon"), 401)
    assert p.request("PASS", "wise") == ["OK"]
    q = server.login("hans")
    assert ok(q.request("WHO")) == ["yoda"]


def test_user_after_login_is_403(server):
    p = server.login("hans")
    err(p.request("USER", "yoda"), 403)
    err(p.request("PASS", "falcon"), 403)
    ok(p.request("WHO"))


def test_bad_user_and_pass_fields_are_400(server):
    p = server.connect()
    p.hello()
    err(p.request("USER"), 400)
    err(p.request("USER", "a", "b"), 400)
    err(p.request("USER", "x" * 33), 400)
    err(p.request("USER", "h\u00e9"), 400)
    assert p.request("USER", "hans") == ["OK"]
    err(p.request("PASS"), 400)
    err(p.request("PASS", "p" * 129), 400)
    assert p.request("PASS", "falcon") == ["OK"]


def test_already_online_409_and_existing_session_not_kicked(server):
    a = server.login("hans")
    b = server.connect()
    b.hello()
    # Online is told only after the right password (spec §3.8); a wrong one is just wrong.
    assert b.request("USER", "hans") == ["OK"]
    err(b.request("PASS", "wrong"), 401)
    err(b.request("PASS", "falcon"), 409)
    # Ask again with another name on the same connection.
    assert b.request("USER", "yoda") == ["OK"]
    assert b.request("PASS", "wise") == ["OK"]
    # The first session is untouched.
    a.wait_event("LOGIN yoda")
    assert ok(a.request("WHO")) == ["yoda"]
    a.no_event("BYE", within=0.2)
    assert not a.eof


def test_409_then_pass_for_online_user(server):
    """USER ok for hans, then hans logs in elsewhere; PASS here must not create a second session."""
    b = server.connect()
    b.hello()
    assert b.request("USER", "hans") == ["OK"]
    a = server.login("hans")
    r = b.request("PASS", "falcon")
    assert r[0] == "ERR" and r[1] in ("409", "403"), r
    assert ok(a.request("WHO")) == []


def test_three_wrong_passwords_lock_424_and_close(server):
    p = server.connect()
    p.hello()
    assert p.request("USER", "vader") == ["OK"]
    err(p.request("PASS", "bad1"), 401)
    err(p.request("PASS", "bad2"), 401)
    err(p.request("PASS", "bad3"), 424)
    assert p.closed(5), "server must close after 424"


def test_locked_user_gets_423_from_other_connection_even_with_right_password(server):
    p = server.connect()
    p.hello()
    assert p.request("USER", "vader") == ["OK"]
    for i in range(2):
        err(p.request("PASS", f"bad{i}"), 401)
    err(p.request("PASS", "bad"), 424)
    q = server.connect()
    q.hello()
    err(q.login_reply("vader", "sithlord"), 423)
    assert q.closed(5), "server must close after 423"
    # From every address.
    r = server.connect(source="127.0.0.3")
    r.hello()
    err(r.login_reply("vader", "sithlord"), 423)
    # Other users are not affected.
    server.login("yoda")


def test_locked_pass_is_not_checked_nor_counted(make_server):
    """A PASS to a locked account is 423 whatever the password, and is no failure: once the
    lock expires, two wrong passwords are still 401."""
    s = make_server(block_duration=2)
    p = s.connect()
    err(p.login_reply("r2d2", "bad"), 401)
    err(p.request("PASS", "bad"), 401)
    err(p.request("PASS", "bad"), 424)
    for pw in ("wrong", "beepboop", "wrong"):
        q = s.connect()
        err(q.login_reply("r2d2", pw), 423)
        assert q.closed(5)
    p = _wait_unlocked(s, "r2d2", "bad", timeout=6)
    err(p.request("PASS", "bad"), 401)
    assert p.request("PASS", "beepboop") == ["OK"]


def test_locked_meanwhile_pass_gets_423(server):
    waiting = server.connect()
    waiting.hello()
    assert waiting.request("USER", "vader") == ["OK"]
    p = server.connect()
    p.hello()
    assert p.request("USER", "vader") == ["OK"]
    for i in range(2):
        err(p.request("PASS", f"bad{i}"), 401)
    err(p.request("PASS", "bad"), 424)
    err(waiting.request("PASS", "sithlord"), 423)
    assert waiting.closed(5)


def test_failures_counted_per_user_across_connections(server):
    for i in range(2):
        p = server.connect()
        p.hello()
        assert p.request("USER", "r2d2") == ["OK"]
        err(p.request("PASS", f"bad{i}"), 401)
        p.close()
    p = server.connect()
    p.hello()
    assert p.request("USER", "r2d2") == ["OK"]
    err(p.request("PASS", "bad"), 424)


def test_failures_for_one_user_do_not_count_for_another(server):
    p = server.connect()
    p.hello()
    assert p.request("USER", "hans") == ["OK"]
    err(p.request("PASS", "x"), 401)
    err(p.request("PASS", "x"), 401)
    assert p.request("USER", "yoda") == ["OK"]
    err(p.request("PASS", "x"), 401)
    assert p.request("PASS", "wise") == ["OK"]


def test_counter_resets_on_success(server):
    for _ in range(2):
        p = server.connect()
        p.hello()
        assert p.request("USER", "c3po") == ["OK"]
        err(p.request("PASS", "no1"), 401)
        err(p.request("PASS", "no2"), 401)
        assert p.request("PASS", "gold") == ["OK"]
        assert p.request("LOGOUT") == ["OK"]
        assert p.closed(5)


def _wait_unlocked(server, user, wrong, timeout):
    """Polls new connections with a wrong password until it is answered 401 (the lock expired:
    that is the first failure of a fresh count) instead of 423; returns the connection."""
    def attempt():
        p = server.connect()
        r = p.login_reply(user, wrong)
        if r[:2] == ["ERR", "401"]:
            return p
        err(r, 423)
        p.close()
        return None
    return wait_until(attempt, timeout=timeout, interval=0.2, what=f"{user}'s lock to expire")


def test_lock_expires_then_right_password_works_and_counter_reset(make_server):
    s = make_server(block_duration=2)
    t0 = time.monotonic()
    p = s.connect()
    p.hello()
    assert p.request("USER", "luke") == ["OK"]
    err(p.request("PASS", "a"), 401)
    err(p.request("PASS", "b"), 401)
    err(p.request("PASS", "c"), 424)
    # Still locked right away.
    q = s.connect()
    q.hello()
    err(q.login_reply("luke", "skywalker"), 423)
    p = _wait_unlocked(s, "luke", "a", timeout=6)
    elapsed = time.monotonic() - t0
    assert elapsed >= 1.0, f"lock of 2 s lifted after {elapsed:.2f}s"
    # The counter reset when the lock expired: two wrong ones are 401, not 424.
    err(p.request("PASS", "b"), 401)
    assert p.request("PASS", "skywalker") == ["OK"]


def test_lock_survives_sigterm_restart_and_kill9(make_server):
    s = make_server(block_duration=60)
    p = s.connect()
    p.hello()
    assert p.request("USER", "vader") == ["OK"]
    for pw in ("a", "b"):
        err(p.request("PASS", pw), 401)
    err(p.request("PASS", "c"), 424)
    s.restart()
    q = s.connect()
    q.hello()
    err(q.login_reply("vader", "sithlord"), 423)
    assert q.closed(5)
    s.kill9()
    s.start()
    q = s.connect()
    q.hello()
    err(q.login_reply("vader", "sithlord"), 423)


def test_failure_count_survives_restart(make_server):
    s = make_server(block_duration=60)
    p = s.connect()
    p.hello()
    assert p.request("USER", "r2d2") == ["OK"]
    err(p.request("PASS", "a"), 401)
    err(p.request("PASS", "b"), 401)
    s.restart()
    q = s.connect()
    q.hello()
    assert q.request("USER", "r2d2") == ["OK"]
    err(q.request("PASS", "c"), 424)


def test_login_prompt_blocks_nobody(make_server):
    """50 clients log in at once while one connection idles at the username stage and another
    has sent half a line."""
    users = {f"u{i:02d}": f"pw{i}" for i in range(50)}
    users["hans"] = "falcon"
    s = make_server(users=users)
    idle = s.connect()
    idle.hello()
    half = s.connect()
    half.send_raw(b"1 HELLO 1 e2e\n2 USE")
    silent = s.connect()  # never says anything
    t0 = time.monotonic()
    conns = []
    for name, pw in users.items():
        if name == "hans":
            continue
        c = s.connect()
        c.send_raw(f"1 HELLO 1 e2e\n2 USER {name}\n3 PASS {pw}\n".encode())
        conns.append(c)
    for c in conns:
        ok(c.get_reply("1"))
        assert c.get_reply("2") == ["OK"]
        assert c.get_reply("3") == ["OK"]
    elapsed = time.monotonic() - t0
    assert elapsed < 5, f"50 logins took {elapsed:.2f}s"
    names = ok(conns[0].request("WHO"))
    assert sorted(names) == sorted(n for n in users if n not in ("hans", "u00")), names
    # The stalled connections still work afterwards.
    half.send_raw(b"R hans\n")
    assert half.get_reply("1")[0] == "OK"
    assert half.get_reply("2") == ["OK"]
    err(idle.login_reply("u00", "pw0"), 409)
    assert idle.request("USER", "hans") == ["OK"]
    assert idle.request("PASS", "falcon") == ["OK"]
    silent.pump(0)
    assert not silent.eof


def test_login_and_logout_events_not_sent_for_failed_logins(server):
    watcher = server.login("hans")
    p = server.connect()
    p.hello()
    assert p.request("USER", "yoda") == ["OK"]
    err(p.request("PASS", "bad"), 401)
    p.close()
    watcher.no_event("LOGIN", within=0.3)
    watcher.no_event("LOGOUT", within=0)


def test_logout_replies_ok_and_closes(server):
    a = server.login("hans")
    b = server.login("yoda")
    a.wait_event("LOGIN yoda")
    assert b.request("LOGOUT") == ["OK"]
    assert b.closed(5)
    a.wait_event("LOGOUT yoda")
    # yoda can log in again at once.
    server.login("yoda")
    a.wait_event("LOGIN yoda")


def test_disconnect_at_every_login_stage_disturbs_nobody(server):
    a = server.login("hans")
    stages = [
        b"",
        b"1 HELLO 1 e2e\n",
        b"1 HELLO 1 e2e\n2 USER yoda\n",
        b"1 HELLO 1 e2e\n2 USER yoda\n3 PA",
        b"1 HELLO 1 e2e\n2 USER yoda\n3 PASS wrong\n",
    ]
    for data in stages:
        p = Proto(server.port)
        if data:
            p.send_raw(data)
            p.pump(0.05)
        p.close()
    # Also an abortive close (RST) of a logged-in user.
    import socket
    import struct
    b = server.login("vader")
    a.wait_event("LOGIN vader")
    b.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    b.close()
    a.wait_event("LOGOUT vader")
    assert ok(a.request("WHO")) == []
    server.login("yoda")
    a.wait_event("LOGIN yoda")
    a.no_event("LOGIN vader", within=0)
