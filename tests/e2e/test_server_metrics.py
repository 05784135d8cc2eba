"""Server: --metrics ADDR:PORT (issue 14): /metrics in the Prometheus text format, read with a
real parser (python3-prometheus-client), whose counters follow the traffic; /healthz 200 while
the store accepts writes, 503 once it does not (made read-only with `chattr +i`, as in
test_fault_store.py), 200 again after."""

import os
import socket
import urllib.error
import urllib.request

import pytest

from conftest import ok, wait_until
from test_fault_kit import chattr

parser = pytest.importorskip("prometheus_client.parser")


def _free_port():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def _metrics_server(make_server, *args, **kw):
    port = _free_port()
    s = make_server(args=["--metrics", f"127.0.0.1:{port}", *args], **kw)
    s.metrics_port = port
    return s


def _get(s, path):
    """(status, body) of GET path on the metrics port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{s.metrics_port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _scrape(s):
    """Every sample as {(name, sorted label items): value}, through the real parser."""
    status, text = _get(s, "/metrics")
    assert status == 200
    samples = {}
    for family in parser.text_string_to_metric_families(text):
        for sm in family.samples:
            samples[(sm.name, tuple(sorted(sm.labels.items())))] = sm.value
    return samples


def _v(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_follow_the_traffic(make_server):
    s = _metrics_server(make_server, "--max-failures", "5")
    before = _scrape(s)
    assert _v(before, "parley_build_info", version="0.1.0") == 1
    assert _v(before, "parley_start_time_seconds") > 0
    assert _v(before, "parley_sessions", state="online") == 0
    hans = s.login("hans")
    yoda = s.login("yoda")
    hans.wait_event("LOGIN yoda")
    bad = s.connect()
    bad.hello()
    assert bad.login_reply("luke", "wrong")[:2] == ["ERR", "401"]
    nobody = s.connect()
    nobody.hello()
    assert nobody.request("USER", "nobody")[:2] == ["ERR", "404"]
    for i in range(3):
        ok(hans.request("MSG", "yoda", f"hello {i}"))
    ok(hans.request("MSG", "vader", "for later"))
    for i in range(3):
        yoda.ack(yoda.wait_event("MSG")[1])
    ok(hans.request("BCAST", "to all"))
    yoda.wait_event("BCAST")
    after = _scrape(s)
    assert _v(after, "parley_logins_total", outcome="ok") == 2
    assert _v(after, "parley_logins_total", outcome="wrong_password") == 1
    assert _v(after, "parley_logins_total", outcome="unknown") == 1
    assert _v(after, "parley_messages_accepted_total") == 4
    assert _v(after, "parley_messages_delivered_total") == 3
    assert _v(after, "parley_acknowledgements_total") >= 1
    assert _v(after, "parley_broadcasts_total") == 1
    assert _v(after, "parley_broadcast_deliveries_total") == 1
    assert _v(after, "parley_errors_total", code="401") == 1
    assert _v(after, "parley_errors_total", code="404") == 1
    assert _v(after, "parley_sessions", state="online") == 2
    assert _v(after, "parley_connections") >= 4
    assert _v(after, "parley_connections_accepted_total") >= 4
    assert _v(after, "parley_received_bytes_total") > _v(before, "parley_received_bytes_total")
    assert _v(after, "parley_socket_reads_total") > _v(before, "parley_socket_reads_total")
    assert _v(after, "parley_socket_writes_total") > _v(before, "parley_socket_writes_total")
    commits = _v(after, "parley_store_commit_duration_seconds_count")
    assert commits > _v(before, "parley_store_commit_duration_seconds_count")
    assert _v(after, "parley_store_commit_duration_seconds_bucket", le="+Inf") == commits
    assert _v(after, "parley_loop_iteration_duration_seconds_count") > 0
    assert _v(after, "parley_store_writable") == 1
    assert _v(after, "parley_messages_waiting") == 1  # the one to vader, offline
    assert _v(after, "parley_messages_waiting_bytes") >= len("hans" "for later")
    assert _get(s, "/nothing")[0] == 404


def test_healthz_503_while_store_unwritable(make_server):
    s = _metrics_server(make_server, "--msg-rate", "0")
    assert _get(s, "/healthz") == (200, "ok\n")
    data = os.path.join(s.dir, "parley-data")
    files = [os.path.join(data, f) for f in ("parley.db", "parley.db-wal", "parley.queue")]
    hans = s.login("hans")
    ok(hans.request("MSG", "vader", "before"))
    if not chattr("+i", *files):
        pytest.skip("this filesystem does not support the immutable flag (chattr +i)")
    try:
        wait_until(lambda: hans.request("MSG", "vader", "now")[:2] == ["ERR", "503"], timeout=10,
                   what="a 503 on the read-only store")
        assert _get(s, "/healthz") == (503, "store unwritable\n")
        assert _v(_scrape(s), "parley_store_writable") == 0
    finally:
        chattr("-i", *files)
    wait_until(lambda: hans.request("MSG", "vader", "after")[0] == "OK", timeout=10,
               what="the store writable again")
    assert _get(s, "/healthz") == (200, "ok\n")


def test_metrics_address_refused_is_a_start_failure(make_server, tmp_path):
    """A --metrics address that cannot be served stops the start, as a main port would."""
    from conftest import ParleyServer
    s = ParleyServer(tmp_path / "bad", args=["--metrics", "127.0.0.1"])
    with pytest.raises(Exception):
        s.start()
    s.expected_exit = True
    assert "--metrics 127.0.0.1: expected ADDR:PORT" in s.stderr_text()


def test_output_queued_and_cut_off(make_server):
    """A user who stops reading: the bytes waiting for it show in parley_output_queued_bytes,
    and once past --max-output it is cut off (parley_clients_cut_off_total) and they go."""
    s = _metrics_server(make_server, "--max-output", "200000", "--msg-rate", "0")
    hans = s.login("hans")
    deaf = s.login("yoda", rcvbuf=4096)  # never reads from here on
    hans.wait_event("LOGIN yoda")
    assert _v(_scrape(s), "parley_output_queued_bytes") == 0
    text = "w" * 900
    sent = [0]

    def broadcast_then(name):
        """Sends 20 broadcasts, then returns the value of `name`."""
        for _ in range(20):
            ok(hans.request("BCAST", f"{text} {sent[0]}"))
            sent[0] += 1
        return _v(_scrape(s), name)

    wait_until(lambda: broadcast_then("parley_output_queued_bytes") > 0, timeout=10,
               what="output queued for the deaf user")
    wait_until(lambda: broadcast_then("parley_clients_cut_off_total") == 1, timeout=20,
               what="the deaf user cut off")
    assert deaf.closed(5)
    wait_until(lambda: _v(_scrape(s), "parley_output_queued_bytes") == 0, timeout=5,
               what="its output gone")


def test_p2p_sessions_brokered_counted(make_server):
    s = _metrics_server(make_server)
    pa = s.login("hans")
    pb = s.login("yoda")
    pa.wait_event("LOGIN yoda")
    pa.open_listener()
    pb.open_listener()
    assert _v(_scrape(s), "parley_p2p_sessions_brokered_total") == 0
    tag = pa.send_request("P2P", "yoda")
    pb.wait_event("P2PREQ")
    ok(pb.request("P2PACCEPT", "hans"))
    ok(pa.get_reply(tag))
    assert _v(_scrape(s), "parley_p2p_sessions_brokered_total") == 1
    tag = pa.send_request("P2P", "luke")  # offline: refused, not brokered
    assert pa.get_reply(tag)[0] == "ERR"
    assert _v(_scrape(s), "parley_p2p_sessions_brokered_total") == 1


def _burst_of_logins(s, names):
    """Connects `names`, says HELLO and USER on each, then sends every PASS back to back (one
    loop iteration reads most of them); returns the connections once each PASS is OK."""
    conns = []
    for n in names:
        c = s.connect()
        c.hello()
        assert c.request("USER", n) == ["OK"]
        conns.append(c)
    tags = [c.send_request("PASS", s.users[n]) for c, n in zip(conns, names)]
    for c, n, t in zip(conns, names, tags):
        assert c.get_reply(t, timeout=20) == ["OK"], n
        c.user = n
    return conns


def _watchers_online(s, names):
    """Logs `names` in on `s` and returns their connections, the notices of their own logins
    read and forgotten."""
    conns = [s.login(n) for n in names]
    for c in conns:
        c.pump(0.1)
        c.events.clear()
    return conns


def _each_sees_logins_once(conns, names):
    """Every connection gets `* LOGIN <name>` for each of `names`, once (in any order)."""
    want = sorted(("LOGIN", n) for n in names)
    for c in conns:
        evs = c.wait_events(lambda e: e[0] == "LOGIN", len(want), timeout=20)
        assert sorted(map(tuple, evs)) == want, c.user
        c.no_event("LOGIN", within=0.05)


def test_logins_wait_while_presence_notices_are_behind(make_server):
    """--fanout-backlog 1: while any notice waits (or a password check runs), a PASS waits
    before its check starts instead of adding to the notices (issue 11's 50,000-session run
    stalled on them). Every login still succeeds, and every watcher gets each notice once."""
    watchers = [f"w{i:02d}" for i in range(40)]
    newcomers = [f"n{i:02d}" for i in range(12)]
    users = {n: "pw" for n in watchers + newcomers}
    s = _metrics_server(make_server, "--fanout-backlog", "1", "--fanout-slice", "1", users=users)
    conns = _watchers_online(s, watchers)
    held = _v(_scrape(s), "parley_logins_held_total")
    _burst_of_logins(s, newcomers)
    assert _v(_scrape(s), "parley_logins_held_total") > held
    _each_sees_logins_once(conns, newcomers)
