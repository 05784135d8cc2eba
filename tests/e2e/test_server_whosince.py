"""Server: WHOSINCE (spec §4 `whoelsesince`; PROTOCOL §5 WHOSINCE)."""

import os
import sqlite3
import time

import pytest

from conftest import err, ok, wait_until
from test_fault_kit import is_asan


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


# ---------------------------------------------------------------- a big history (issue 9, 12)

def add_history(server, names, logged_out_at):
    """Stops the server, records `names` as logged out at unix time `logged_out_at` straight in
    parley.db (as years of logins would leave it), and starts it again."""
    server.stop()
    db = sqlite3.connect(os.path.join(server.dir, "parley-data", "parley.db"))
    with db:
        db.executemany("INSERT OR REPLACE INTO presence (name, logged_in, last_login, last_logout)"
                       " VALUES (?, 0, ?, ?)",
                       [(n, logged_out_at - 60, logged_out_at) for n in names])
    db.close()
    server.start()


def history_count(server, names):
    db = sqlite3.connect(os.path.join(server.dir, "parley-data", "parley.db"))
    try:
        marks = ",".join("?" * len(names))
        return db.execute(f"SELECT count(*) FROM presence WHERE name IN ({marks})",
                          list(names)).fetchone()[0]
    finally:
        db.close()


@pytest.mark.single_node  # writes the history straight into one node's parley.db
def test_whosince_reads_only_recent_history(make_server):
    """A short window costs what it lists, not the whole history: with 100,000 logouts of a
    month ago, 200 `WHOSINCE 60` took 2.4 s (each scanned every row); now milliseconds."""
    s = make_server(args=["--req-rate", "0"])
    add_history(s, [f"gone{i:06d}" for i in range(100000)], int(time.time()) - 30 * 86400)
    a = s.login("hans")
    y = s.login("yoda")
    _logout(s, y, a)
    t = time.monotonic()
    a.send_raw("".join(f"w{i} WHOSINCE 60\n" for i in range(200)))
    for i in range(200):
        assert ok(a.get_reply(f"w{i}", timeout=60)) == ["yoda"]
    took = time.monotonic() - t
    assert took < (1.5 if is_asan() else 0.5), f"200 WHOSINCE took {took:.2f} s"


@pytest.mark.single_node  # reads and writes one node's parley.db
def test_whosince_forgets_departed_accounts(make_server):
    """What no window can list any more, the history of accounts that are gone, is pruned
    once a WHOSINCE meets it; the accounts that exist keep theirs."""
    s = make_server()
    gone = [f"gone{i}" for i in range(50)]
    add_history(s, gone + ["vader"], int(time.time()) - 86400)
    a = s.login("hans")
    assert ok(a.request("WHOSINCE", "999999999")) == ["vader"]
    assert history_count(s, gone) == 0
    assert history_count(s, ["vader"]) == 1
    # An account removed from the credentials file (SIGHUP) is pruned the same way.
    with open(s.cred_path) as f:
        kept = [line for line in f if not line.startswith("vader ")]
    with open(s.cred_path, "w") as f:
        f.writelines(kept)
    s.sighup()
    wait_until(lambda: ok(a.request("WHOSINCE", "999999999")) == [], timeout=5,
               what="vader to be gone after SIGHUP")
    assert history_count(s, ["vader"]) == 0


@pytest.mark.single_node  # writes the history straight into one node's parley.db
def test_whosince_flood_does_not_stall_others(make_server):
    """One user pipelining `WHOSINCE 60` against a big history stalled everyone (100 s in the
    report; here 1,000 requests against 100,000 old logouts took 12 s). Now each is cheap and
    past the request budget (--req-rate 50, --req-burst 200) the rest get 429; another user's
    WHO is answered at once meanwhile. The big version is in tests/soak/limits.py."""
    s = make_server()
    add_history(s, [f"gone{i:06d}" for i in range(100000)], int(time.time()) - 30 * 86400)
    attacker = s.login("vader")
    probe = s.login("hans")
    n = 1000
    attacker.send_raw("".join(f"w{i} WHOSINCE 60\n" for i in range(n)))
    t = time.monotonic()
    ok(probe.request("WHO", timeout=60))
    rtt = time.monotonic() - t
    replies = [attacker.get_reply(f"w{i}", timeout=60) for i in range(n)]
    answered = [r for r in replies if r[0] == "OK"]
    limited = [r for r in replies if r[:2] == ["ERR", "429"]]
    assert len(answered) + len(limited) == n, replies[:5]
    assert 200 <= len(answered) <= 260, len(answered)
    assert rtt < (0.5 if is_asan() else 0.2), f"WHO took {rtt:.3f} s during the flood"
