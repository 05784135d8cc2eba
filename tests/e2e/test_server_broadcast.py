"""Server: broadcasts (spec §4 `broadcast`; PROTOCOL §5 BCAST, §6 BCAST)."""

import pytest

from conftest import err, ok


def test_broadcast_reaches_every_other_online_user(server):
    a = server.login("hans")
    others = [server.login(n) for n in ("yoda", "vader", "r2d2")]
    assert ok(a.request("BCAST", "Hello  everyone \u00e9")) == ["0"]
    for o in others:
        ev = o.wait_event("BCAST")
        assert ev == ["BCAST", "hans", "Hello  everyone \u00e9"], ev
    a.no_event("BCAST", within=0.2)


def test_broadcast_skips_users_not_logged_in(server):
    a = server.login("hans")
    pending = server.connect()
    pending.hello()
    assert pending.request("USER", "yoda") == ["OK"]
    assert ok(a.request("BCAST", "hi all")) == ["0"]
    pending.no_event("BCAST", within=0.3)
    assert pending.request("PASS", "wise") == ["OK"]
    pending.no_event("BCAST", within=0.2)


def test_broadcast_alone_is_ok_zero(server):
    a = server.login("hans")
    assert ok(a.request("BCAST", "anyone?")) == ["0"]


def test_broadcast_malformed_400(server):
    a = server.login("hans")
    err(a.request("BCAST"), 400)


def test_broadcast_order_kept(server):
    a = server.login("hans")
    b = server.login("yoda")
    a.send_raw("".join(f"b{i} BCAST n{i}\n" for i in range(50)).encode())
    for i in range(50):
        assert a.get_reply(f"b{i}") == ["OK", "0"]
    evs = b.wait_events("BCAST", 50)
    assert [e[2] for e in evs] == [f"n{i}" for i in range(50)]


def test_broadcast_to_many(make_server):
    users = {f"u{i:02d}": "pw" for i in range(30)}
    s = make_server(users=users)
    conns = [s.login(n) for n in users]
    assert ok(conns[0].request("BCAST", "fan out")) == ["0"]
    for c in conns[1:]:
        assert c.wait_event("BCAST") == ["BCAST", "u00", "fan out"]


@pytest.mark.parametrize("batch", ["0", "2", "256"])
def test_send_batch_off_delivers_the_same(make_server, batch):
    """--send-batch: an iteration's output goes out in io_uring submissions of up to N
    connections (2: several submissions in one flush), or with one send() each (0); every
    recipient gets every broadcast, whole and in order, either way."""
    users = {f"u{i:02d}": "pw" for i in range(12)}
    s = make_server(users=users, args=("--send-batch", batch))
    conns = [s.login(n) for n in users]
    big = "x" * 900
    conns[0].send_raw("".join(f"b{i} BCAST {i} {big}\n" for i in range(40)).encode())
    for i in range(40):
        assert conns[0].get_reply(f"b{i}") == ["OK", "0"]
    for c in conns[1:]:
        evs = c.wait_events("BCAST", 40)
        assert [e[2] for e in evs] == [f"{i} {big}" for i in range(40)], c
