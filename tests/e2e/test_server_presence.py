"""Server: presence events and WHO (spec §4 `whoelse`, §7; PROTOCOL §5 WHO, §6 LOGIN/LOGOUT)."""

from conftest import err, ok


def test_login_event_to_every_other_online_user(server):
    a = server.login("hans")
    b = server.login("yoda")
    a.wait_event("LOGIN yoda")
    c = server.login("vader")
    assert a.wait_event("LOGIN vader") == ["LOGIN", "vader"]
    assert b.wait_event("LOGIN vader") == ["LOGIN", "vader"]
    c.no_event("LOGIN vader", within=0.2)  # not to oneself
    c.no_event("LOGIN", within=0)  # nor about users already online


def test_logout_event_on_logout_and_on_disconnect(server):
    a = server.login("hans")
    b = server.login("yoda")
    c = server.login("vader")
    assert b.request("LOGOUT") == ["OK"]
    assert a.wait_event("LOGOUT yoda") == ["LOGOUT", "yoda"]
    c.wait_event("LOGOUT yoda")
    c.close()  # abrupt
    assert a.wait_event("LOGOUT vader") == ["LOGOUT", "vader"]


def test_who_lists_others_online_now(server):
    a = server.login("hans")
    assert a.request("WHO") == ["OK"]
    b = server.login("yoda")
    server.login("vader")
    pending = server.connect()
    pending.hello()
    pending.request("USER", "r2d2")
    assert sorted(ok(a.request("WHO"))) == ["vader", "yoda"]
    assert sorted(ok(b.request("WHO"))) == ["hans", "vader"]
    b.request("LOGOUT")
    a.wait_event("LOGOUT yoda")
    assert ok(a.request("WHO")) == ["vader"]


def test_who_with_argument_is_400(server):
    a = server.login("hans")
    err(a.request("WHO", "x"), 400)


def test_login_logout_seen_in_order(server):
    a = server.login("hans")
    for _ in range(3):
        b = server.login("yoda")
        b.request("LOGOUT")
        assert b.closed(5)
    evs = [e for e in a.wait_events(lambda e: e[0] in ("LOGIN", "LOGOUT"), 6)]
    assert evs == [["LOGIN", "yoda"], ["LOGOUT", "yoda"]] * 3


def test_logged_out_user_no_longer_gets_events(server):
    a = server.login("hans")
    b = server.login("yoda")
    assert b.request("LOGOUT") == ["OK"]
    assert b.closed(5)
    ok(a.request("BCAST", "after"))
    # The server must not crash or misbehave writing to a gone user; others still fine.
    c = server.login("vader")
    a.wait_event("LOGIN vader")
    ok(c.request("WHO"))


def test_mass_disconnect_with_pending_output(make_server):
    """Many users leave at once while the server is writing to them and telling the others."""
    users = {f"u{i:02d}": "pw" for i in range(40)}
    users["watch"] = "pw"
    s = make_server(users=users)
    w = s.login("watch")
    for round_ in range(3):
        conns = [s.login(n, "pw") for n in users if n != "watch"]
        for i, c in enumerate(conns):
            c.send_raw(b"".join(b"b%d BCAST round %d from %d\n" % (j, round_, i)
                                for j in range(5)))
        for c in conns:
            c.close()
        w.wait_events(lambda e: e[0] == "LOGOUT", len(conns), timeout=10)
        assert ok(w.request("WHO")) == []
        w.events.clear()
    assert s.running()


def test_notices_dealt_in_slices_keep_their_order(make_server):
    """With --fanout-slice 1 a login's notice reaches one session per loop iteration; a session
    that gets anything else first is given the notice before it (issue 14: no fan-out stall,
    and no reordering)."""
    watchers = [f"w{i}" for i in range(8)]
    users = {n: "pw" for n in watchers}
    users["newbie"] = "pw"
    s = make_server(users=users, args=["--fanout-slice", "1"])
    conns = [s.login(n) for n in watchers]
    for c in conns:  # everyone online: the watchers' own notices are out of the way
        c.pump(0.2)
        c.events.clear()
    n = s.connect()
    n.hello()
    assert n.request("USER", "newbie") == ["OK"]
    # PASS and the messages in one write: they run in the same iteration as the login, before
    # the slices reach most watchers.
    n.send_raw(b"p PASS pw\n" + b"".join(b"m%d MSG %s hello %d\n" % (i, w.encode(), i)
                                         for i, w in enumerate(watchers)))
    assert n.get_reply("p") == ["OK"]
    for i in range(len(watchers)):
        assert n.get_reply(f"m{i}")[0] == "OK"
    assert n.request("LOGOUT") == ["OK"]
    for c in conns:
        evs = c.wait_events(lambda e: e[0] in ("LOGIN", "MSG", "LOGOUT"), 3)
        kinds = [e[0] for e in evs]
        assert kinds == ["LOGIN", "MSG", "LOGOUT"], f"{c.user}: {evs}"
        assert evs[0] == ["LOGIN", "newbie"] and evs[2] == ["LOGOUT", "newbie"]
        c.no_event("LOGIN", within=0.1)  # once each


def test_notices_to_many_in_slices_reach_everyone_once(make_server):
    """Logins and logouts faster than the slices deal them: every watcher sees each notice
    once, in the order made."""
    watchers = [f"w{i:02d}" for i in range(30)]
    users = {n: "pw" for n in watchers}
    users.update({f"x{i}": "pw" for i in range(5)})
    s = make_server(users=users, args=["--fanout-slice", "2"])
    conns = [s.login(n) for n in watchers]
    for c in conns:
        c.pump(0.2)
        c.events.clear()
    for i in range(5):
        x = s.login(f"x{i}")
        assert x.request("LOGOUT") == ["OK"]
    want = [[ev, f"x{i}"] for i in range(5) for ev in ("LOGIN", "LOGOUT")]
    for c in conns:
        evs = c.wait_events(lambda e: e[0] in ("LOGIN", "LOGOUT"), len(want))
        assert evs == want, f"{c.user}: {evs}"
        c.no_event(lambda e: e[0] in ("LOGIN", "LOGOUT"), within=0.1)
