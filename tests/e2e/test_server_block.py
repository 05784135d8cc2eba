"""Server: blocking (spec §4 `block`/`unblock`, §5; PROTOCOL §5 BLOCK/UNBLOCK).

A = hans blocks B = yoda throughout; vader is a bystander."""

import pytest

from conftest import err, ok


@pytest.fixture
def trio(server):
    a = server.login("hans")
    b = server.login("yoda")
    c = server.login("vader")
    a.wait_events(lambda e: e[0] == "LOGIN", 2)
    b.wait_event("LOGIN vader")
    assert a.request("BLOCK", "yoda") == ["OK"]
    return server, a, b, c


def test_block_replies_ok_and_blocked_user_is_not_told(trio):
    _, a, b, _ = trio
    b.no_event(lambda e: True, within=0.3)


def test_blocked_user_message_refused_451_and_not_stored(trio):
    server, a, b, _ = trio
    err(b.request("MSG", "hans", "let me in"), 451)
    a.no_event("MSG", within=0.3)
    # Not stored either: while hans is offline too.
    a.request("LOGOUT")
    assert a.closed(5)
    err(b.request("MSG", "hans", "offline attempt"), 451)
    a = server.login("hans")
    a.no_event("MSG", within=0.4)


def test_blocker_message_refused_452(trio):
    _, a, b, _ = trio
    err(a.request("MSG", "yoda", "hi"), 452)
    b.no_event("MSG", within=0.3)


def test_broadcast_by_blocked_user_skips_blocker_and_counts(trio):
    _, a, b, c = trio
    assert ok(b.request("BCAST", "from yoda")) == ["1"]
    assert c.wait_event("BCAST") == ["BCAST", "yoda", "from yoda"]
    a.no_event("BCAST", within=0.3)


def test_broadcast_by_blocker_skips_blocked_silently(trio):
    _, a, b, c = trio
    assert ok(a.request("BCAST", "from hans")) == ["0"]
    assert c.wait_event("BCAST") == ["BCAST", "hans", "from hans"]
    b.no_event("BCAST", within=0.3)


def test_skipped_count_only_counts_online_blockers(trio):
    server, a, b, c = trio
    assert c.request("BLOCK", "yoda") == ["OK"]
    assert ok(b.request("BCAST", "two blockers")) == ["2"]
    a.request("LOGOUT")
    assert a.closed(5)
    assert ok(b.request("BCAST", "one online blocker")) == ["1"]


def test_presence_suppressed_both_directions(trio):
    server, a, b, c = trio
    # B logs out and in: A hears nothing, C hears both.
    b.request("LOGOUT")
    assert b.closed(5)
    c.wait_event("LOGOUT yoda")
    b = server.login("yoda")
    c.wait_event("LOGIN yoda")
    # A logs out and in: B hears nothing.
    a.request("LOGOUT")
    assert a.closed(5)
    c.wait_event("LOGOUT hans")
    a2 = server.login("hans")
    c.wait_event("LOGIN hans")
    a.no_event(lambda e: e[0] in ("LOGIN", "LOGOUT") and e[1] == "yoda", within=0)
    a2.no_event(lambda e: e[0] in ("LOGIN", "LOGOUT"), within=0.3)
    b.no_event(lambda e: e[0] in ("LOGIN", "LOGOUT") and e[1] == "hans", within=0.1)


def test_p2p_refused_both_directions(trio):
    _, a, b, _ = trio
    a.open_listener()
    b.open_listener()
    err(b.request("P2P", "hans"), 451)
    err(a.request("P2P", "yoda"), 452)
    a.no_event("P2PREQ", within=0.2)
    b.no_event("P2PREQ", within=0)


def test_who_and_whosince_unaffected(trio):
    _, a, b, _ = trio
    assert "yoda" in ok(a.request("WHO"))
    assert "hans" in ok(b.request("WHO"))
    assert "yoda" in ok(a.request("WHOSINCE", "60"))
    assert "hans" in ok(b.request("WHOSINCE", "60"))


def test_unblock_restores_everything(trio):
    server, a, b, c = trio
    assert a.request("UNBLOCK", "yoda") == ["OK"]
    mid = ok(b.request("MSG", "hans", "again"))[0]
    assert a.wait_event("MSG")[1] == mid
    ok(a.request("MSG", "yoda", "welcome back"))
    assert b.wait_event("MSG")[4] == "welcome back"
    assert ok(b.request("BCAST", "all")) == ["0"]
    a.wait_event("BCAST yoda")
    ok(a.request("BCAST", "all2"))
    b.wait_event("BCAST hans")
    b.request("LOGOUT")
    a.wait_event("LOGOUT yoda")
    b = server.login("yoda")
    a.wait_event("LOGIN yoda")
    a.open_listener()
    b.open_listener()
    tag = b.send_request("P2P", "hans")
    ev = a.wait_event("P2PREQ")
    assert ev[1] == "yoda"


def test_block_idempotent_and_unblock_not_blocked_453(trio):
    _, a, b, _ = trio
    assert a.request("BLOCK", "yoda") == ["OK"]
    assert a.request("UNBLOCK", "yoda") == ["OK"]
    err(a.request("UNBLOCK", "yoda"), 453)
    err(a.request("UNBLOCK", "vader"), 453)
    # Being blocked is not blocking: yoda never blocked hans.
    err(b.request("UNBLOCK", "hans"), 453)


def test_block_self_and_unknown(server):
    a = server.login("hans")
    err(a.request("BLOCK", "hans"), 422)
    err(a.request("UNBLOCK", "hans"), 422)
    err(a.request("BLOCK", "nobody"), 404)
    err(a.request("UNBLOCK", "nobody"), 404)
    err(a.request("BLOCK"), 400)
    err(a.request("UNBLOCK"), 400)


def test_block_offline_user(server):
    a = server.login("hans")
    assert a.request("BLOCK", "luke") == ["OK"]
    c = server.login("vader")
    a.wait_event("LOGIN vader")
    l = server.login("luke")
    c.wait_event("LOGIN luke")
    a.no_event("LOGIN luke", within=0.2)
    err(l.request("MSG", "hans", "hi"), 451)
    err(a.request("MSG", "luke", "hi"), 452)


def test_blocks_persist_across_logout_and_restart(trio):
    server, a, b, c = trio
    assert c.request("BLOCK", "r2d2") == ["OK"]
    a.request("LOGOUT")
    a = server.login("hans")
    err(b.request("MSG", "hans", "x"), 451)
    server.restart()
    a = server.login("hans")
    b = server.login("yoda")
    a.no_event("LOGIN yoda", within=0.3)
    err(b.request("MSG", "hans", "x"), 451)
    err(a.request("MSG", "yoda", "x"), 452)
    assert a.request("UNBLOCK", "yoda") == ["OK"]
    server.kill9()
    server.start()
    a = server.login("hans")
    b = server.login("yoda")
    a.wait_event("LOGIN yoda")
    ok(b.request("MSG", "hans", "free"))
    c = server.login("vader")
    err(c.request("MSG", "r2d2", "x"), 452)


def test_block_does_not_affect_third_parties(trio):
    _, a, b, c = trio
    ok(b.request("MSG", "vader", "hi vader"))
    assert c.wait_event("MSG")[4] == "hi vader"
    ok(a.request("MSG", "vader", "hi vader 2"))
    assert c.wait_event("MSG")[4] == "hi vader 2"


def test_mutual_block_refused_either_way(trio):
    _, a, b, _ = trio
    assert b.request("BLOCK", "hans") == ["OK"]
    r = a.request("MSG", "yoda", "x")
    assert r[0] == "ERR" and r[1] in ("451", "452"), r
    r = b.request("MSG", "hans", "x")
    assert r[0] == "ERR" and r[1] in ("451", "452"), r


def test_later_block_does_not_cut_open_p2p_session(server):
    a = server.login("hans")
    b = server.login("yoda")
    a.open_listener()
    b.open_listener()
    tag = a.send_request("P2P", "yoda")
    b.wait_event("P2PREQ hans")
    assert b.request("P2PACCEPT", "hans") == ["OK"]
    ok(a.get_reply(tag))
    assert a.request("BLOCK", "yoda") == ["OK"]
    # Nobody is told anything; the session ends when the clients say so.
    b.no_event(lambda e: True, within=0.3)
    assert a.request("P2PEND", "yoda") == ["OK"]
    assert b.request("P2PEND", "hans") == ["OK"]
    err(b.request("P2P", "hans"), 451)


def test_blocked_lists_whom_one_blocks(server):
    a = server.login("hans")
    assert ok(a.request("BLOCKED")) == []
    for name in ("vader", "luke"):
        assert a.request("BLOCK", name) == ["OK"]
    assert sorted(ok(a.request("BLOCKED"))) == ["luke", "vader"]
    assert a.request("UNBLOCK", "luke") == ["OK"]
    assert ok(a.request("BLOCKED")) == ["vader"]
    server.restart()
    a = server.login("hans")
    assert ok(a.request("BLOCKED")) == ["vader"]
    b = server.login("vader")
    assert ok(b.request("BLOCKED")) == []  # being blocked is not blocking
