"""Server: the idle timeout (spec §7; PROTOCOL §5 "Activity", §6 BYE).

The server runs with timeout=2. Users act on a schedule for a few seconds; the ones whose actions
are activity must stay, the others must be logged out about 2 s after their last activity."""

import time

import pytest

from conftest import ProtoClosed, ok

TIMEOUT = 2
LOW, HIGH = TIMEOUT - 0.1, TIMEOUT + 1.6  # accepted idle time before the BYE


def _bye_time(p):
    for ev in p.all_events:
        if ev[0] == "BYE":
            return ev
    return None


def run_schedule(duration, actors):
    """actors: dict name -> (proto, period or None, action(proto) or None). Runs actions every
    period while reading everything; returns {name: monotonic time the BYE event was read}."""
    start = time.monotonic()
    due = {n: start + (a[1] or 0) for n, a in actors.items()}
    bye_at = {}
    while time.monotonic() < start + duration:
        for name, (p, period, action) in actors.items():
            if name in bye_at or p.eof:
                continue
            now = time.monotonic()
            if action is not None and now >= due[name]:
                due[name] = now + period
                try:
                    action(p)
                except (ProtoClosed, OSError) as e:
                    p.pump(0.5)
                    if not any(ev[0] == "BYE" for ev in p.all_events):
                        raise AssertionError(f"{name}: connection lost while acting ({e}); "
                                             f"frames: {p.frames[-5:]}")
            p.pump(0)
            if name not in bye_at and any(ev[0] == "BYE" for ev in p.all_events):
                bye_at[name] = time.monotonic()
        time.sleep(0.02)
    return bye_at


def test_idle_user_logged_out_others_told(make_server):
    s = make_server(timeout=TIMEOUT)
    watcher = s.login("yoda")
    blocker = s.login("vader")
    assert blocker.request("BLOCK", "hans") == ["OK"]
    idle = s.login("hans")
    t_login = time.monotonic()
    watcher.wait_event("LOGIN hans")
    actors = {
        "watcher": (watcher, 0.5, lambda p: ok(p.request("WHO"))),
        "blocker": (blocker, 0.5, lambda p: ok(p.request("WHO"))),
        "idle": (idle, None, None),
    }
    bye_at = run_schedule(TIMEOUT + 2.0, actors)
    assert "idle" in bye_at, f"no BYE within {TIMEOUT + 2}s; frames {idle.frames}"
    idle_for = bye_at["idle"] - t_login
    assert LOW <= idle_for <= HIGH, f"BYE after {idle_for:.2f}s idle, timeout is {TIMEOUT}s"
    assert idle.wait_event("BYE") == ["BYE", "idle"]
    assert idle.closed(2)
    watcher.wait_event("LOGOUT hans")
    blocker.no_event("LOGOUT hans", within=0)
    assert "watcher" not in bye_at and "blocker" not in bye_at
    assert ok(watcher.request("WHO")) == ["vader"]
    # The user can log in again at once.
    s.login("hans")


def _p2pend(p):
    r = p.request("P2PEND", "luke")
    assert r[0] in ("OK", "ERR"), r


def _fail_msg(p):
    r = p.request("MSG", "nobody", "hello?")
    assert r[:2] == ["ERR", "404"], r


def test_valid_requests_reset_idle_timer(make_server):
    users = {n: "pw" for n in ("who", "msg", "touch", "p2pend", "failmsg", "whosince", "block",
                               "p2p", "luke", "sink")}
    s = make_server(users=users, timeout=TIMEOUT)
    conns = {n: s.login(n) for n in users}
    actions = {
        "who": lambda p: ok(p.request("WHO")),
        "msg": lambda p: ok(p.request("MSG", "luke", "keepalive")),
        "touch": lambda p: ok(p.request("TOUCH")),
        "p2pend": _p2pend,
        "failmsg": _fail_msg,
        "whosince": lambda p: ok(p.request("WHOSINCE", "5")),
        "block": lambda p: p.request("UNBLOCK", "sink"),  # 453 each time: still activity
        "p2p": lambda p: p.request("P2P", "nobody"),  # 404 each time: still activity
        # luke receives messages and acknowledges them: not activity.
        "luke": lambda p: [p.ack(ev[1]) for ev in p.msgs()],
    }
    actors = {n: (conns[n], 0.6, actions.get(n)) for n in users}
    t0 = time.monotonic()
    bye_at = run_schedule(2 * TIMEOUT + 1.0, actors)
    cut = {n: round(bye_at[n] - t0, 2) for n in ("who", "msg", "touch", "p2pend", "failmsg",
                                                 "whosince", "block", "p2p")
           if n in bye_at}
    assert not cut, f"logged out (after s) although they kept sending valid requests: {cut}"
    for n in ("luke", "sink"):
        assert n in bye_at, f"{n} was idle but not logged out"
        assert conns[n].wait_event("BYE") == ["BYE", "idle"]


def test_listen_is_activity(make_server):
    """PROTOCOL §5: every request after login the server understands is activity except
    P2PACCEPT, P2PDECLINE and `* ACK`; LISTEN is not among the exceptions."""
    s = make_server(timeout=TIMEOUT)
    p = s.login("hans")
    t0 = time.monotonic()
    bye_at = run_schedule(2 * TIMEOUT + 0.5,
                          {"listen": (p, 0.6, lambda p: ok(p.request("LISTEN", "40000")))})
    assert "listen" not in bye_at, (f"logged out after {bye_at['listen'] - t0:.2f}s although it "
                                    f"sent LISTEN every 0.6 s")


def test_invalid_frames_acks_and_received_messages_are_not_activity(make_server):
    users = {n: "pw" for n in ("sender", "bad400", "unknown501", "ack", "p2paccept", "receiver")}
    s = make_server(users=users, timeout=TIMEOUT, args=["--max-errors", "1000"])
    conns = {}
    login_at = {}
    for n in users:
        conns[n] = s.login(n)
        login_at[n] = time.monotonic()

    def bad400(p):
        r = p.send_bad(b"WHO\x00")
        assert r[:2] == ["ERR", "400"], r

    def unknown501(p):
        r = p.request("FROBNICATE")
        assert r[:2] == ["ERR", "501"], r

    actions = {
        "sender": lambda p: ok(p.request("MSG", "receiver", "you are not active")),
        "bad400": bad400,
        "unknown501": unknown501,
        "ack": lambda p: p.ack(1),
        "p2paccept": lambda p: p.request("P2PACCEPT", "sender"),
        "receiver": lambda p: [p.ack(ev[1]) for ev in p.msgs()],
    }
    actors = {n: (conns[n], 0.4, actions[n]) for n in users}
    bye_at = run_schedule(TIMEOUT + 2.0, actors)
    assert "sender" not in bye_at
    for n in ("bad400", "unknown501", "ack", "p2paccept", "receiver"):
        assert n in bye_at, f"{n} kept its session: its frames were counted as activity"
        idle_for = bye_at[n] - login_at[n]
        assert LOW <= idle_for <= HIGH, f"{n}: BYE after {idle_for:.2f}s (timeout {TIMEOUT}s)"
        assert conns[n].wait_event("BYE") == ["BYE", "idle"]
        conns["sender"].wait_event(f"LOGOUT {n}")


def test_accepted_connections_have_tcp_keepalive(server):
    """A peer that vanishes without closing (power cut, cable pulled) is found by TCP
    keep-alive: the server's side of every connection has a keep-alive timer of about 60 s
    (the options are set on the listening socket and inherited by each accepted one)."""
    import re
    import shutil
    import subprocess
    if not shutil.which("ss"):
        pytest.skip("ss (iproute2) is not installed")
    p = server.connect()
    p.hello()
    out = subprocess.run(["ss", "-tnoH", "state", "established", f"( sport = :{p.port} )"],
                         capture_output=True, text=True, check=True).stdout
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines, f"ss shows no connection on port {p.port}"
    for line in lines:
        assert "timer:(keepalive," in line, f"no keep-alive timer on the server side: {line}"
        left = line.split("timer:(keepalive,")[1].split(",")[0]  # "59sec", "1min", "1min2sec"
        secs = 0.0
        for amount, unit in re.findall(r"([0-9.]+)(min|sec|ms)", left):
            secs += float(amount) * {"min": 60, "sec": 1, "ms": 0.001}[unit]
        assert 50 <= secs <= 60, line
