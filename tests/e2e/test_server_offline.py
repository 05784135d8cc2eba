"""Server: offline messages (spec §6; PROTOCOL §5 MSG, §6 MSG/ACK)."""

import time

import pytest

from conftest import err, ok, wait_until


def _login_collect(server, user, count):
    """Logs in (raw, to check frame order) and returns the MSG events that follow the PASS OK."""
    p = server.connect()
    p.hello()
    assert p.request("USER", user) == ["OK"]
    tag = p.send_request("PASS", server.users[user])
    assert p.get_reply(tag) == ["OK"]
    evs = p.wait_events("MSG", count) if count else []
    # Every MSG frame came after the PASS reply frame.
    pass_idx = p.frames.index(p.raw_replies[tag])
    msg_idx = [i for i, f in enumerate(p.frames) if f.startswith("* MSG ")]
    assert all(i > pass_idx for i in msg_idx), p.frames
    p.user = user
    return p, evs


def test_offline_messages_delivered_all_in_order_after_login_ok(server):
    a = server.login("hans")
    texts = [f"while you were away {i}" for i in range(20)]
    before = int(time.time())
    ids = [ok(a.request("MSG", "yoda", t))[0] for t in texts]
    b, evs = _login_collect(server, "yoda", 20)
    assert [e[1] for e in evs] == ids
    assert [e[2] for e in evs] == ["hans"] * 20
    assert [e[4] for e in evs] == texts
    for e in evs:
        assert before - 5 <= int(e[3]) <= time.time() + 5
    b.no_event("MSG", within=0.2)


def test_offline_message_time_is_send_time(server):
    a = server.login("hans")
    t_send = time.time()
    ok(a.request("MSG", "yoda", "timestamped"))
    time.sleep(1.2)  # so that delivery time and send time differ by a second
    b, evs = _login_collect(server, "yoda", 1)
    assert abs(int(evs[0][3]) - t_send) <= 1.01, (evs, t_send)


def test_offline_messages_from_several_senders(server):
    ids = []
    for s in ("hans", "vader", "r2d2"):
        p = server.login(s)
        ids.append((ok(p.request("MSG", "yoda", f"from {s}"))[0], s))
        p.request("LOGOUT")
    b, evs = _login_collect(server, "yoda", 3)
    assert [(e[1], e[2]) for e in evs] == ids
    assert [e[4] for e in evs] == [f"from {s}" for _, s in ids]


def test_ack_removes_offline_messages(server):
    a = server.login("hans")
    ids = [ok(a.request("MSG", "yoda", f"m{i}"))[0] for i in range(3)]
    b, evs = _login_collect(server, "yoda", 3)
    b.ack(ids[-1])  # acknowledges every message up to that id
    assert b.request("LOGOUT") == ["OK"]
    b, _ = _login_collect(server, "yoda", 0)
    b.no_event("MSG", within=0.4)


def test_partial_ack_redelivers_the_rest_once(server):
    a = server.login("hans")
    ids = [ok(a.request("MSG", "yoda", f"m{i}"))[0] for i in range(4)]
    b, evs = _login_collect(server, "yoda", 4)
    b.ack(ids[1])
    ok(b.request("WHO"))
    b.close()
    a.wait_event("LOGOUT yoda")
    b, evs = _login_collect(server, "yoda", 2)
    assert [e[1] for e in evs] == ids[2:]
    b.no_event("MSG", within=0.3)  # once, not twice
    b.ack(ids[3])
    b.request("LOGOUT")
    b, _ = _login_collect(server, "yoda", 0)
    b.no_event("MSG", within=0.3)


def test_unacked_offline_messages_redelivered_once_at_next_login(server):
    a = server.login("hans")
    ids = [ok(a.request("MSG", "yoda", f"m{i}"))[0] for i in range(3)]
    b, evs = _login_collect(server, "yoda", 3)
    assert b.request("LOGOUT") == ["OK"]
    b, evs = _login_collect(server, "yoda", 3)
    assert [e[1] for e in evs] == ids
    b.no_event("MSG", within=0.3)


def test_new_messages_after_login_follow_queued_ones(server):
    a = server.login("hans")
    queued = [ok(a.request("MSG", "yoda", f"q{i}"))[0] for i in range(3)]
    b, evs = _login_collect(server, "yoda", 3)
    live = ok(a.request("MSG", "yoda", "live"))[0]
    ev = b.wait_event("MSG")
    assert ev[1] == live and ev[4] == "live"
    assert int(live) > int(queued[-1])


def test_offline_messages_survive_sigterm_restart(server):
    a = server.login("hans")
    ids = [ok(a.request("MSG", "yoda", f"durable {i}"))[0] for i in range(5)]
    server.restart()
    b, evs = _login_collect(server, "yoda", 5)
    assert [e[1] for e in evs] == ids
    assert [e[4] for e in evs] == [f"durable {i}" for i in range(5)]


def test_offline_messages_survive_kill9_once_accepted(server):
    a = server.login("hans")
    ids = [ok(a.request("MSG", "yoda", f"crash-safe {i}"))[0] for i in range(5)]
    server.kill9()  # right after the last OK
    server.start()
    b, evs = _login_collect(server, "yoda", 5)
    assert [e[1] for e in evs] == ids
    assert [e[4] for e in evs] == [f"crash-safe {i}" for i in range(5)]


def test_acked_messages_stay_gone_after_restart(server):
    a = server.login("hans")
    ids = [ok(a.request("MSG", "yoda", f"m{i}"))[0] for i in range(2)]
    b, evs = _login_collect(server, "yoda", 2)
    b.ack(ids[-1])
    assert b.request("LOGOUT") == ["OK"]
    server.kill9()
    server.start()
    b, _ = _login_collect(server, "yoda", 0)
    b.no_event("MSG", within=0.3)


def test_message_ids_keep_increasing_across_restart(server):
    a = server.login("hans")
    first = int(ok(a.request("MSG", "yoda", "before"))[0])
    server.restart()
    a = server.login("hans")
    second = int(ok(a.request("MSG", "yoda", "after"))[0])
    assert second > first
    b, evs = _login_collect(server, "yoda", 2)
    assert [e[4] for e in evs] == ["before", "after"]


def test_broadcasts_are_never_stored(server):
    a = server.login("hans")
    assert ok(a.request("BCAST", "nobody offline gets this")) == ["0"]
    b, _ = _login_collect(server, "yoda", 0)
    b.no_event("BCAST", within=0.3)


def test_two_servers_in_two_directories_share_nothing(make_server):
    s1 = make_server()
    s2 = make_server()
    a = s1.login("hans")
    ok(a.request("MSG", "yoda", "only on server 1"))
    b, _ = _login_collect(s2, "yoda", 0)
    b.no_event("MSG", within=0.3)
    b, evs = _login_collect(s1, "yoda", 1)
    assert evs[0][4] == "only on server 1"


def test_offline_queue_is_bounded_by_max_queued(make_server):
    """--max-queued: past N waiting messages the sender gets 507; the queue drains on login."""
    s = make_server(args=("--max-queued", "3"))
    a = s.login("hans")
    for i in range(3):
        ok(a.request("MSG", "yoda", f"waiting {i}"))
    full = a.request("MSG", "yoda", "one too many")
    assert full[:2] == ["ERR", "507"], full
    ok(a.request("MSG", "vader", "others are not affected"))
    b, evs = _login_collect(s, "yoda", 3)
    assert [e[4] for e in evs] == [f"waiting {i}" for i in range(3)]
    b.ack(evs[-1][1])
    b.request("LOGOUT")
    assert b.closed(5)
    ok(a.request("MSG", "yoda", "room again"))


def test_backlog_larger_than_output_limit_arrives_in_acknowledged_pages(make_server):
    """A backlog of ~60 KB against --max-output 8192: sent page by page as the client ACKs,
    in order, and the connection is never cut off for overflow."""
    s = make_server(args=("--max-output", "8192", "--msg-rate", "0", "--max-queued", "100000"))
    a = s.login("hans")
    texts = [f"{i:04d} " + "x" * 90 for i in range(600)]
    for t in texts:
        ok(a.request("MSG", "yoda", t))
    b = s.connect()
    b.login("yoda", s.users["yoda"])
    got = []
    while len(got) < len(texts):
        evs = b.wait_events("MSG", 1)
        more = [e for e in b.events if e[0] == "MSG"]
        b.events = [e for e in b.events if e[0] != "MSG"]
        batch = evs + more
        got += [e[4] for e in batch]
        b.ack(batch[-1][1])
    assert got == texts
    assert not b.closed(0.2)


def test_next_backlog_page_goes_when_half_of_the_page_is_acknowledged(make_server):
    """Backlog pages are 2048 messages; the next page is sent once the client has acknowledged
    the first half of the current one (so it never waits between pages), and not before."""
    s = make_server(args=("--msg-rate", "0", "--max-queued", "100000"))
    a = s.login("hans")
    tags = [a.send_request("MSG", "yoda", f"m{i}") for i in range(3000)]
    ids = [int(ok(a.get_reply(t))[0]) for t in tags]
    b = s.connect()
    b.login("yoda", s.users["yoda"])
    first = b.wait_events("MSG", 2048, timeout=20)
    assert [int(e[1]) for e in first] == ids[:2048]
    b.no_event("MSG", within=0.3)
    b.ack(ids[1022])  # 1023 messages: less than half of the page
    b.no_event("MSG", within=0.3)
    b.ack(ids[1023])  # half of the page: the next one comes
    rest = b.wait_events("MSG", 3000 - 2048, timeout=20)
    assert [int(e[1]) for e in rest] == ids[2048:]


@pytest.mark.single_node  # --fsync is about the local store's files (a usage error with --redis)
def test_fsync_server_keeps_messages_and_blocks_across_kill9(make_server):
    """`parleyd --fsync` (every accepted message flushed to the disk before its OK) behaves
    like the default: what was accepted, and a block, survive kill -9; acknowledged messages
    stay gone."""
    s = make_server(args=("--fsync",))
    a = s.login("hans")
    ids = [ok(a.request("MSG", "yoda", f"flushed {i}"))[0] for i in range(5)]
    b, evs = _login_collect(s, "yoda", 5)
    b.ack(ids[1])
    ok(b.request("BLOCK", "luke"))  # its reply also means the ACK before it was written
    s.kill9()
    s.start()
    b, evs = _login_collect(s, "yoda", 3)
    assert [e[1] for e in evs] == ids[2:]
    assert [e[4] for e in evs] == [f"flushed {i}" for i in range(2, 5)]
    luke = s.login("luke")
    assert luke.request("MSG", "yoda", "hi")[:2] == ["ERR", "451"]


def test_max_queued_counts_unacknowledged_messages_of_an_online_recipient(make_server):
    """Issue 9 point 13: a recipient who is online but never acknowledges keeps every message
    in the store; --max-queued bounds them too (507), and each ACK makes room again."""
    s = make_server(args=("--max-queued", "5", "--msg-rate", "0"))
    a = s.login("hans")
    b = s.login("yoda")
    a.wait_event("LOGIN yoda")
    ids = [ok(a.request("MSG", "yoda", f"unacknowledged {i}"))[0] for i in range(5)]
    assert [e[1] for e in b.wait_events("MSG", 5)] == ids  # shown, never acknowledged
    full = a.request("MSG", "yoda", "one too many")
    assert full[:2] == ["ERR", "507"], full
    b.no_event("MSG", within=0.2)
    b.ack(ids[1])  # two acknowledged: room for two more
    wait_until(lambda: a.request("MSG", "yoda", "room again")[0] == "OK", timeout=5,
               what="an ACK to make room")
    ok(a.request("MSG", "yoda", "and one more"))
    assert a.request("MSG", "yoda", "full again")[:2] == ["ERR", "507"]


def _stored_long_message(s, size):
    """hans stores one long message and one short one for yoda (offline); returns their ids."""
    a = s.login("hans")
    long_id = ok(a.request("MSG", "yoda", "L" * size))[0]
    short_id = ok(a.request("MSG", "yoda", "short after it"))[0]
    a.close()
    return long_id, short_id


def test_stored_message_longer_than_the_new_limits_is_delivered(make_server):
    """Issue 9 point 4: a message accepted under --max-message 20000 and stored, then a restart
    with the default --max-message 1000 (--max-line 4096) and a --max-output smaller than the
    message: it is delivered whole at the next login (the frame limit of a stored message is
    the one it was accepted under), then the one behind it, then live ones; nothing stays stuck."""
    s = make_server(args=("--max-message", "20000"))
    long_id, short_id = _stored_long_message(s, 15000)
    s.stop()
    s.args = ["--max-output", "8192"]
    s.start()
    b = s.login("yoda")
    first = b.wait_event("MSG")
    assert (first[1], len(first[4])) == (long_id, 15000) and first[4] == "L" * 15000
    b.ack(first[1])  # as a client does: the next page goes once this one is read
    second = b.wait_event("MSG")
    assert (second[1], second[4]) == (short_id, "short after it")
    b.ack(second[1])
    a = s.login("hans")
    live = ok(a.request("MSG", "yoda", "live"))[0]
    assert b.wait_event("MSG")[1:2] == [live]
    err(a.request("MSG", "yoda", "L" * 1001), 413)  # new messages obey the new limit
