"""Server: direct messages between online users (spec §4 `message`; PROTOCOL §5, §6)."""

import time

from conftest import err, ok


def test_message_to_online_user(server):
    a = server.login("hans")
    b = server.login("yoda")
    before = int(time.time())
    r = ok(a.request("MSG", "yoda", "Hello there"))
    assert len(r) == 2 and r[0].isdigit() and r[1] == "1", r  # <id> <online>
    ev = b.wait_event("MSG")
    assert ev[0] == "MSG" and ev[1] == r[0] and ev[2] == "hans", ev
    assert before - 5 <= int(ev[3]) <= time.time() + 5, ev
    assert ev[4] == "Hello there"
    b.ack(ev[1])
    a.no_event("MSG", within=0.1)


def test_message_text_is_kept_exactly(server):
    a = server.login("hans")
    b = server.login("yoda")
    texts = ["a", "two  spaces   and more", "unicode \u00e9\u00e8 \u4f60\u597d \U0001F600",
             "looks like * MSG 1 x 2 frame", "tab-free; punctuation !@#$%^&*()_+{}|:\"<>?~`"]
    for t in texts:
        ok(a.request("MSG", "yoda", t))
    got = [b.wait_event("MSG")[4] for _ in texts]
    assert got == texts


def test_message_ids_increase_and_order_kept(server):
    a = server.login("hans")
    b = server.login("yoda")
    # Pipelined: 100 requests in one write.
    a.send_raw("".join(f"m{i} MSG yoda n{i}\n" for i in range(100)).encode())
    ids = [int(ok(a.get_reply(f"m{i}"))[0]) for i in range(100)]
    assert ids == sorted(ids) and len(set(ids)) == 100
    evs = b.wait_events("MSG", 100)
    assert [e[4] for e in evs] == [f"n{i}" for i in range(100)]
    assert [int(e[1]) for e in evs] == ids


def test_message_both_directions(server):
    a = server.login("hans")
    b = server.login("yoda")
    ok(a.request("MSG", "yoda", "ping"))
    ev = b.wait_event("MSG")
    assert ev[2] == "hans" and ev[4] == "ping"
    ok(b.request("MSG", "hans", "pong"))
    ev = a.wait_event("MSG")
    assert ev[2] == "yoda" and ev[4] == "pong"


def test_message_unknown_user_404(server):
    a = server.login("hans")
    err(a.request("MSG", "nobody", "hi"), 404)
    err(a.request("MSG", "Yoda", "hi"), 404)


def test_message_self_422(server):
    a = server.login("hans")
    err(a.request("MSG", "hans", "hi me"), 422)
    a.no_event("MSG", within=0.2)


def test_message_malformed_400(server):
    a = server.login("hans")
    err(a.request("MSG"), 400)
    err(a.request("MSG", "yoda"), 400)
    ok(a.request("WHO"))


def test_unacked_online_message_is_redelivered_at_next_login(server):
    a = server.login("hans")
    b = server.login("yoda")
    mid = ok(a.request("MSG", "yoda", "did you get this?"))[0]
    ev = b.wait_event("MSG")
    assert ev[1] == mid
    b.close()  # no ACK
    a.wait_event("LOGOUT yoda")
    b = server.login("yoda")
    ev = b.wait_event("MSG")
    assert ev[1] == mid and ev[2] == "hans" and ev[4] == "did you get this?"
    b.ack(mid)
    assert b.request("LOGOUT") == ["OK"]
    b = server.login("yoda")
    b.no_event("MSG", within=0.3)


def test_acked_online_message_not_redelivered(server):
    a = server.login("hans")
    b = server.login("yoda")
    mid = ok(a.request("MSG", "yoda", "once"))[0]
    assert b.wait_event("MSG")[1] == mid
    b.ack(mid)
    ok(b.request("WHO"))  # the ACK was read before this reply
    b.close()
    a.wait_event("LOGOUT yoda")
    b = server.login("yoda")
    b.no_event("MSG", within=0.3)


def test_ack_of_other_users_ids_does_not_drop_their_messages(server):
    a = server.login("hans")
    ids = [ok(a.request("MSG", "vader", f"for vader {i}"))[0] for i in range(3)]
    # yoda acknowledges ids that are not his.
    b = server.login("yoda")
    b.ack(ids[-1])
    b.ack(999999999)
    ok(b.request("WHO"))
    v = server.login("vader")
    evs = v.wait_events("MSG", 3)
    assert [e[1] for e in evs] == ids


def test_ack_is_never_answered(server):
    a = server.login("hans")
    a.ack(12345)
    a.send_line("* ACK 1")
    r = a.request("WHO")
    ok(r)
    assert "-" not in a.replies, a.frames


def test_messages_from_several_senders_arrive_in_id_order(server):
    r = server.login("r2d2")
    senders = [server.login(n) for n in ("hans", "yoda", "vader")]
    ids = []
    for i in range(5):
        for s in senders:
            ids.append(int(ok(s.request("MSG", "r2d2", f"{s.user}-{i}"))[0]))
    evs = r.wait_events("MSG", len(ids))
    got = [int(e[1]) for e in evs]
    assert got == sorted(got)
    assert sorted(got) == sorted(ids)


def test_msg_reply_says_whether_the_recipient_was_online(server):
    a = server.login("hans")
    server.login("yoda")
    r = ok(a.request("MSG", "yoda", "online now"))
    assert len(r) == 2 and r[1] == "1", r
    r = ok(a.request("MSG", "vader", "kept"))
    assert len(r) == 2 and r[1] == "0", r
