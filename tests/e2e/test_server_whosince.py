"""Server: WHOSINCE (spec §4 `whoelsesince`; PROTOCOL §5 WHOSINCE)."""

import time

from conftest import err, ok


def _logout(server, p, watcher):
    assert p.request("LOGOUT") == ["OK"]
    assert p.closed(5)
    watcher.wait_event(f"LOGOUT {p.user}")
    return time.time()


def test_whosince_against_known_history(server):
    a = server.login("hans")
    online = server.login("r2d2")
    a.wait_event("LOGIN r2d2")
    v = server.login("vader")
    y = server.login("yoda")
    t_vader = _logout(server, v, a)
    # 3 s between the two logouts; whole-second rounding cannot blur the windows below.
    time.sleep(max(0.0, t_vader + 3.0 - time.time()))
    t_yoda = _logout(server, y, a)
    time.sleep(max(0.0, t_yoda + 1.2 - time.time()))
    # Now: yoda left ~1.2 s ago, vader ~4.2 s ago; c3po and luke never logged in.
    assert sorted(ok(a.request("WHOSINCE", "0"))) == ["r2d2"]
    assert sorted(ok(a.request("WHOSINCE", "3"))) == ["r2d2", "yoda"]
    assert sorted(ok(a.request("WHOSINCE", "10"))) == ["r2d2", "vader", "yoda"]
    assert sorted(ok(a.request("WHOSINCE", "999999999999999999"))) == ["r2d2", "vader", "yoda"]
    # Self is never listed; the online user sees hans, and the history.
    assert sorted(ok(online.request("WHOSINCE", "10"))) == ["hans", "vader", "yoda"]


def test_whosince_self_excluded_even_after_earlier_session(server):
    a = server.login("hans")
    a.request("LOGOUT")
    a = server.login("hans")
    assert ok(a.request("WHOSINCE", "60")) == []


def test_whosince_user_logged_in_again_listed_once(server):
    a = server.login("hans")
    y = server.login("yoda")
    y.request("LOGOUT")
    a.wait_event("LOGOUT yoda")
    server.login("yoda")
    assert ok(a.request("WHOSINCE", "60")) == ["yoda"]


def test_whosince_malformed_400(server):
    a = server.login("hans")
    for bad in (["WHOSINCE"], ["WHOSINCE", "abc"], ["WHOSINCE", "-5"], ["WHOSINCE", "+5"],
                ["WHOSINCE", "1.5"], ["WHOSINCE", "1" * 19], ["WHOSINCE", "5", "6"]):
        err(a.request(*bad), 400)
    ok(a.request("WHOSINCE", "5"))


def test_whosince_history_survives_restart_and_crash(server):
    a = server.login("hans")
    y = server.login("yoda")
    _logout(server, y, a)
    server.restart()
    a = server.login("hans")
    assert ok(a.request("WHOSINCE", "60")) == ["yoda"]
    # Users online when the server stopped are in the history too (SIGTERM).
    v = server.login("vader")
    a.wait_event("LOGIN vader")
    server.restart()
    a = server.login("hans")
    assert sorted(ok(a.request("WHOSINCE", "60"))) == ["vader", "yoda"]
    assert ok(a.request("WHO")) == []
    # ...and when it crashed (kill -9): r2d2 was online.
    server.login("r2d2")
    a.wait_event("LOGIN r2d2")
    server.kill9()
    server.start()
    a = server.login("hans")
    assert sorted(ok(a.request("WHOSINCE", "60"))) == ["r2d2", "vader", "yoda"]
    assert ok(a.request("WHO")) == []
