"""Faults of the cluster (issue 11): three parleyd nodes on one Redis of the test's own.

Each test starts its own Redis (conftest RedisServer, appendfsync always, on a Unix socket in
a temporary directory) and three nodes (`make_cluster`), whatever $PARLEY_TOPOLOGIES says, and
injects one fault:

1. kill -9 of a node while 100 senders stream direct messages through all nodes;
2. SIGSTOP of a node past its lease, then SIGCONT (fencing and re-validation);
3. Redis killed and restarted on the same socket while the nodes run, one node cut off from it
   a while longer;
4. a slow Redis (SIGSTOP of redis-server) against --redis-timeout;
5. the lock-out counted across nodes, sequential and parallel guesses;
6. one login per user across nodes: LOGOUT's OK only once Redis recorded it (a login on
   another node straight after it, acknowledgements that waited for company included), and
   a message or a P2P request from a node that has not heard of a block yet;
7. /healthz while Redis is unreachable;
8. a burst of logins on one node while another is behind with its presence notices;
9. a Redis holding queues of an earlier layout.

The lease bound used below: a node renews its lease (parley:node:<id>, PX lease) every
lease/3, and every node runs the reaper at the same period. A node killed at time K renewed
its lease last at or before K, so the key is gone by K + lease; the next reaper run of a
surviving node comes at most lease/3 later and appends the LOGOUT events to the stream, which
the other nodes read at once (XREAD BLOCK). So a dead node's users show as logged out
everywhere by K + lease + lease/3, plus the time to deliver an event (LOGOUT_MARGIN).

A request answered ERR 503 because Redis did not answer within --redis-timeout has no effect
when Redis wakes: each batch carries a deadline in Redis's clock, and a batch Redis starts
later does nothing (test_request_refused_on_timeout_has_no_effect_later).

Figures (time to logout after kill -9, recovery after a Redis restart, event-loop latency while
Redis is stopped) are printed with test_fault_kit.figures (visible with `pytest -s`).
"""

import os
import selectors
import signal
import time

import pytest

from conftest import ProtoClosed, ProtoTimeout, err, ok, wait_until
from test_fault_kit import figures, is_asan, users

LEASE = 3  # --lease seconds for the tests that wait for one to run out
RENEW = LEASE / 3  # how often a node renews its lease and reaps dead nodes
LOGOUT_MARGIN = 1.5 * (3 if is_asan() else 1)  # delivering the LOGOUT events, on a busy machine
LOGOUT_BOUND = LEASE + RENEW + LOGOUT_MARGIN


def _stop(pid):
    os.kill(pid, signal.SIGSTOP)


def _cont(pid):
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def _retry(proto, *fields, deadline, what):
    """Sends the request until it is answered OK (ERR 503 means: not yet); returns the reply
    and the seconds it took. Any other error fails."""
    t0 = time.monotonic()
    while True:
        r = proto.request(*fields, timeout=10)
        if r and r[0] == "OK":
            return r, time.monotonic() - t0
        assert r[:2] == ["ERR", "503"], f"{what}: {r}"
        if time.monotonic() > t0 + deadline:
            raise AssertionError(f"{what}: still {r} after {deadline}s")
        time.sleep(0.1)


def _queue(redis, name):
    """The messages waiting for `name` in Redis: [(id, text)]. parley:q:<name> lists elements
    oldest first, each messages "<time> <sender> <text>" joined by NUL bytes, parley:qc:<name>
    their counts; parley:qpos "<name> head" is the first one's id, and the messages up to
    "<name> acked" were acknowledged."""
    acked = int(redis.command("HGET", "parley:qpos", f"{name} acked") or 0)
    i = int(redis.command("HGET", "parley:qpos", f"{name} head") or 1)
    elems = redis.command("LRANGE", f"parley:q:{name}", "0", "-1")
    counts = redis.command("LRANGE", f"parley:qc:{name}", "0", "-1")
    assert len(elems) == len(counts), (elems, counts)
    out = []
    for e, count in zip(elems, counts):
        msgs = e.split("\0")
        assert len(msgs) == int(count), (e, count)
        out += [(i + j, m.split(" ", 2)[2]) for j, m in enumerate(msgs) if i + j > acked]
        i += len(msgs)
    return out


# --------------------------------------------------------------------------------------------
# 1. kill -9 of a node while 100 senders stream

SENDERS = 100
WINDOW = 4
STREAM_SECONDS = 1.5
RECIPIENTS = [f"rcpt{i:02d}" for i in range(12)]  # rcptNN online on node NN % 3, 9-11 offline
ONLINE = RECIPIENTS[:9]
PAD = "y" * 40


def _text(sender, seq):
    return f"{sender} {seq} {PAD}"


def _parse(text):
    sender, seq, _ = text.split(" ", 2)
    return sender, int(seq)


class _Recipient:
    def __init__(self, name):
        self.name = name
        self.proto = None
        self.sessions = []  # per connection: [(id, sender, seq, text)]

    def attach(self, proto):
        self.proto = proto
        self.sessions.append([])

    def take(self):
        """Records the MSG events read so far and acknowledges them (cumulatively)."""
        top = None
        for ev in self.proto.msgs():
            sender, seq = _parse(ev[4])
            assert ev[2] == sender, ev
            self.sessions[-1].append((int(ev[1]), sender, seq, ev[4]))
            top = int(ev[1])
        if top is not None and not self.proto.eof:
            try:
                self.proto.ack(top)
            except (OSError, AssertionError):
                pass


def test_kill9_of_a_node_while_100_senders_stream(make_cluster):
    accounts = users("s", SENDERS)
    senders = list(accounts)
    for n in RECIPIENTS + ["watch1", "watch3"]:
        accounts[n] = "pw-" + n
    c = make_cluster(users=accounts, args=["--lease", LEASE, "--msg-rate", "0",
                                           "--max-queued", "100000",
                                           "--max-output", str(8 << 20)])
    nodes = c.nodes
    on_node = lambda i: nodes[i % 3]  # noqa: E731  sender i and rcpt i live on node i % 3
    recips = {n: _Recipient(n) for n in RECIPIENTS}
    for i, n in enumerate(ONLINE):
        recips[n].attach(on_node(i).login(n))
    watchers = {1: nodes[0].login("watch1"), 3: nodes[2].login("watch3")}
    sp = {n: on_node(i).login(n) for i, n in enumerate(senders)}
    victims = {n for i, n in enumerate(senders) if i % 3 == 1} | \
        {n for i, n in enumerate(ONLINE) if i % 3 == 1}

    sel = selectors.DefaultSelector()
    for n, p in sp.items():
        sel.register(p.sock, selectors.EVENT_READ, ("s", n))
    for n in ONLINE:
        sel.register(recips[n].proto.sock, selectors.EVENT_READ, ("r", n))
    for k, p in watchers.items():
        sel.register(p.sock, selectors.EVENT_READ, ("w", k))

    nxt = {n: 0 for n in senders}
    outstanding = {n: {} for n in senders}  # tag -> (recipient, seq)
    oked = {}  # (sender, seq) -> (recipient, id)
    refused = []
    dead = set()

    def refill(i, n):
        p = sp[n]
        lines = []
        while len(outstanding[n]) < WINDOW:
            seq = nxt[n]
            nxt[n] += 1
            rcpt = RECIPIENTS[(i + seq) % len(RECIPIENTS)]
            tag = str(p.next_tag)
            p.next_tag += 1
            outstanding[n][tag] = (rcpt, seq)
            lines.append(f"{tag} MSG {rcpt} {_text(n, seq)}\n")
        if lines:
            try:
                p.send_raw("".join(lines))
            except (OSError, AssertionError):
                dead.add(n)

    def collect(n):
        p = sp[n]
        for tag in [t for t in outstanding[n] if t in p.replies]:
            rcpt, seq = outstanding[n].pop(tag)
            r = p.replies.pop(tag)
            if r and r[0] == "OK":
                oked[(n, seq)] = (rcpt, int(r[1]))
            else:
                refused.append((n, seq, r))
        p.events.clear()
        if p.eof:
            dead.add(n)

    # LOGOUT of the victims seen by each watcher: name -> seconds after the kill
    seen_out = {1: {}, 3: {}}
    killed_at = None
    stopped_at = None
    t0 = time.monotonic()
    deadline = t0 + STREAM_SECONDS + LOGOUT_BOUND + 10
    while time.monotonic() < deadline:
        now = time.monotonic()
        if stopped_at is None:
            for i, n in enumerate(senders):
                if n not in dead:
                    refill(i, n)
        if killed_at is None and now - t0 >= STREAM_SECONDS:
            nodes[1].kill9()
            killed_at = time.monotonic()
        for key, _ in sel.select(0.02):
            kind, n = key.data
            if kind == "s":
                sp[n].pump(0)
                collect(n)
                if sp[n].eof:
                    sel.unregister(key.fileobj)
            elif kind == "r":
                recips[n].proto.pump(0)
                recips[n].take()
                if recips[n].proto.eof:
                    sel.unregister(key.fileobj)
            else:
                w = watchers[n]
                w.pump(0)
                for ev in w.events:
                    if ev[0] == "LOGOUT" and ev[1] in victims and killed_at is not None:
                        seen_out[n].setdefault(ev[1], time.monotonic() - killed_at)
                w.events.clear()
        if killed_at is not None and all(len(seen_out[k]) == len(victims) for k in seen_out):
            # The survivors stream on until every LOGOUT came; then the stream stops and
            # every sender still connected gets its last replies.
            if stopped_at is None:
                stopped_at = time.monotonic()
            if all(not outstanding[n] for n in senders if n not in dead):
                break
    sel.close()
    for n in senders:
        if not sp[n].eof:
            sp[n].pump(0)
        collect(n)

    missing = {k: sorted(victims - set(seen_out[k])) for k in seen_out}
    assert not any(missing.values()), f"no LOGOUT within the test's deadline for {missing}"
    worst = max(max(v.values()) for v in seen_out.values())
    first = min(min(v.values()) for v in seen_out.values())
    assert all(not outstanding[n] for n in senders if n not in dead), "replies missing"
    assert {n for n in dead} == {n for n in victims if n.startswith("s")}, sorted(dead)
    assert not refused, refused[:5]

    # WHO on the surviving nodes no longer lists the dead node's users, and lists the others.
    for k, w in watchers.items():
        who = set(ok(w.request("WHO")))
        assert not who & victims, (k, sorted(who & victims))
        assert {n for i, n in enumerate(senders) if i % 3 != 1} <= who, k

    # The dead node's users log in on another node: a sender, and (below) its recipients.
    victim_sender = senders[1]
    relog_t0 = time.monotonic()
    nodes[2].login(victim_sender, accounts[victim_sender])
    relog = time.monotonic() - relog_t0

    # The survivors' recipients read what came, acknowledge it and log out.
    for i, n in enumerate(ONLINE):
        r = recips[n]
        if i % 3 == 1:
            r.proto.pump(0)
            r.take()
            continue
        r.proto.pump(0)
        r.take()
        ok(r.proto.request("LOGOUT"))
        assert r.proto.closed(5)
        r.take()
    c.close_protos()

    # Every recipient logs in on a surviving node and takes its backlog, until Redis holds
    # nothing for any of them (an acknowledgement covers only what was sent: the queue empties
    # only once everything in it was delivered).
    # (The survivors' recipients on their own node: a login elsewhere right after a logout
    # may find the claim not yet released, test 6; the others on node 1 or 3.)
    for i, n in enumerate(RECIPIENTS):
        home = {0: 0, 2: 2}.get(i % 3, 0 if i % 2 else 2) if n in ONLINE else (0 if i % 2 else 2)
        recips[n].attach(nodes[home].login(n, accounts[n]))
    redis = c.redis

    def drained():
        for r in recips.values():
            r.proto.pump(0)
            r.take()
        return all(redis.command("LLEN", f"parley:q:{n}") == 0 for n in RECIPIENTS)

    wait_until(drained, timeout=60 if is_asan() else 25, interval=0.05,
               what="every backlog delivered and acknowledged")

    lost, dup, disorder = [], [], []
    got = {}  # (recipient, id) -> text
    for n, r in recips.items():
        for sess in r.sessions:
            ids = [m[0] for m in sess]
            if ids != sorted(set(ids)):
                disorder.append((n, "ids not increasing in one session"))
        live, final = r.sessions[0] if n in ONLINE else [], r.sessions[-1]
        if n not in ONLINE:
            assert len(r.sessions) == 1
        again = [m for m in final if m[0] in {x[0] for x in live}]
        # Redelivery is allowed for the unacknowledged tail of the first session only.
        if again and [m[0] for m in again] != [m[0] for m in live[-len(again):]]:
            dup.append((n, [m[0] for m in again][:10]))
        merged = live + [m for m in final if m[0] not in {x[0] for x in live}]
        last_seq = {}
        for mid, sender, seq, text in merged:
            got[(n, mid)] = text
            if seq <= last_seq.get(sender, -1):
                disorder.append((n, sender, seq))
            last_seq[sender] = seq
    for (sender, seq), (rcpt, mid) in oked.items():
        if got.get((rcpt, mid)) != _text(sender, seq):
            lost.append((sender, seq, rcpt, mid))
    figures("cluster_kill9_100_senders", acknowledged=len(oked), refused=len(refused),
            delivered=len(got), lost=len(lost), duplicated=len(dup),
            logout_first_s=round(first, 3), logout_last_s=round(worst, 3),
            logout_bound_s=LOGOUT_BOUND, relogin_s=round(relog, 3))
    assert len(oked) > 1000, f"only {len(oked)} messages acknowledged: no stream to speak of"
    assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {lost[:5]}"
    assert not dup, dup[:5]
    assert not disorder, disorder[:5]
    assert worst <= LOGOUT_BOUND, f"LOGOUT came {worst:.2f}s after the kill (bound " \
        f"{LOGOUT_BOUND}s = lease + lease/3 + margin)"


# --------------------------------------------------------------------------------------------
# 2. SIGSTOP of a node past its lease

def test_stalled_node_fences_itself_when_it_wakes(make_cluster):
    c = make_cluster(args=["--lease", LEASE])
    n1, n2, n3 = c.nodes
    watcher = n1.login("hans")
    old_yoda = n2.login("yoda")     # taken by node 1 while node 2 sleeps
    vader = n2.login("vader")       # nobody takes vader: node 2 keeps him
    luke = n3.login("luke")         # receives the messages
    for who in ("yoda", "vader"):
        assert who in ok(watcher.request("WHO"))
    _stop(n2.pid)
    try:
        t0 = time.monotonic()
        watcher.wait_event("LOGOUT yoda", timeout=LOGOUT_BOUND + 2)
        watcher.wait_event("LOGOUT vader", timeout=LOGOUT_BOUND + 2)
        reaped = time.monotonic() - t0
        wait_until(lambda: not {"yoda", "vader"} & set(ok(luke.request("WHO"))),
                   timeout=5, what="node 3 to drop yoda and vader")
        new_yoda = n1.login("yoda")  # the claim of node 2 is gone: node 1 takes yoda
        # The old session speaks first thing after the wake: a message as yoda, queued in
        # node 2's socket while it sleeps.
        tag = old_yoda.send_request("MSG", "luke", "from-the-old-session")
        vtag = vader.send_request("WHO")
    finally:
        _cont(n2.pid)
    woke = time.monotonic()
    try:
        r = old_yoda.get_reply(tag, timeout=10)
    except ProtoClosed:
        r = None  # the session ended before it was answered: nothing was sent either
    assert r is None or r[:2] == ["ERR", "503"], f"the fenced session sent as yoda: {r}"
    # Its session ends: * BYE taken (or session-taken, when the message found the fence).
    assert old_yoda.closed(10), "the old session of yoda is still open"
    byes = [ev for ev in old_yoda.all_events if ev[0] == "BYE"]
    assert byes and byes[0][1] in ("taken", "session-taken"), old_yoda.frames[-5:]
    # Nothing reached luke: a marker sent after it arrives, and the old message is not before.
    ok(new_yoda.request("MSG", "luke", "marker"))
    luke.wait_event(lambda ev: ev[0] == "MSG" and ev[4] == "marker", timeout=10)
    assert not [ev for ev in luke.all_events
                if ev[0] == "MSG" and ev[4] == "from-the-old-session"]
    assert "from-the-old-session" not in [t for _, t in _queue(c.redis, "luke")]
    assert c.redis.command("HGET", "parley:online", "yoda") == "node1"

    # vader, whom nobody took, is re-validated: node 2 claims him again and he keeps working.
    ok(vader.get_reply(vtag, timeout=10))
    r, took = _retry(vader, "MSG", "luke", "vader-after-the-wake", deadline=10,
                     what="vader's message after the wake")
    luke.wait_event(lambda ev: ev[0] == "MSG" and ev[4] == "vader-after-the-wake", timeout=10)
    watcher.wait_event("LOGIN vader", timeout=10)  # the others see him back
    assert c.redis.command("HGET", "parley:online", "vader") == "node2"
    assert "vader" in ok(watcher.request("WHO"))
    assert not vader.eof
    figures("cluster_sigstop_node", lease_s=LEASE, reaped_after_stop_s=round(reaped, 3),
            vader_ok_after_wake_s=round(time.monotonic() - woke, 3), retry_s=round(took, 3))


# --------------------------------------------------------------------------------------------
# 3. Redis killed and restarted while the nodes run

def test_redis_restart_nodes_resume_by_themselves(make_cluster):
    c = make_cluster()
    redis = c.redis
    n1, n2, n3 = c.nodes
    # Node 3 reaches Redis through a link of its own, so that it can be cut off alone.
    link = os.path.join(redis.dir, "n3.sock")
    os.symlink(redis.path, link)
    n3.stop()
    n3.args = [f"unix:{link}" if a == redis.addr else a for a in n3.args]
    n3.start()
    hans, yoda, vader = n1.login("hans"), n2.login("yoda"), n3.login("vader")
    luke_here = n1.login("luke")  # beside hans: would see a broadcast fanned out by node 1
    before = ok(hans.request("MSG", "c3po", "before-the-outage"))[0]  # c3po is offline

    redis.kill9()
    # What needs Redis is refused, on every node; the connections stay.
    err(hans.request("MSG", "yoda", "during-the-outage"), 503)
    err(hans.request("BCAST", "bcast-during-the-outage"), 503)
    err(hans.request("BLOCK", "vader"), 503)
    err(yoda.request("MSG", "hans", "during-from-yoda"), 503)
    err(vader.request("BCAST", "bcast-from-vader"), 503)
    for p in (hans, yoda, vader, luke_here):
        ok(p.request("TOUCH"))
        assert not p.eof
    assert "yoda" in ok(hans.request("WHO"))

    # Redis comes back on the same socket with its data; node 3 cannot reach it yet.
    os.unlink(link)
    redis.start()
    out_t0 = time.monotonic()
    _, back1 = _retry(hans, "MSG", "yoda", "after-the-restart", deadline=15,
                      what="node 1 resuming")
    _retry(yoda, "MSG", "hans", "yoda-after-the-restart", deadline=15, what="node 2 resuming")
    back2 = time.monotonic() - out_t0
    yoda.wait_event(lambda ev: ev[0] == "MSG" and ev[4] == "after-the-restart", timeout=10)
    hans.wait_event(lambda ev: ev[0] == "MSG" and ev[4] == "yoda-after-the-restart", timeout=10)
    # A message to vader, on node 3, while node 3 is still cut off: stored, told to it later.
    err(vader.request("MSG", "hans", "node3-still-cut-off"), 503)
    ok(hans.request("MSG", "vader", "while-node3-was-cut-off"))
    os.symlink(redis.path, link)
    t3 = time.monotonic()
    vader.wait_event(lambda ev: ev[0] == "MSG" and ev[4] == "while-node3-was-cut-off",
                     timeout=15)
    back3 = time.monotonic() - t3
    _retry(vader, "MSG", "hans", "vader-after-the-reconnect", deadline=15,
           what="node 3 resuming")

    # Nothing refused during the outage happened after all.
    ok(hans.request("MSG", "yoda", "marker"))
    yoda.wait_event(lambda ev: ev[0] == "MSG" and ev[4] == "marker", timeout=10)
    ok(vader.request("MSG", "luke", "vader-to-luke"))  # hans's BLOCK of vader did not happen
    assert ok(hans.request("BLOCKED")) == []
    luke_here.wait_event(lambda ev: ev[0] == "MSG" and ev[4] == "vader-to-luke", timeout=10)
    refused = {"during-the-outage", "during-from-yoda", "bcast-during-the-outage",
               "bcast-from-vader", "node3-still-cut-off"}
    for p in (hans, yoda, vader, luke_here):
        texts = {ev[-1] for ev in p.all_events if ev[0] in ("MSG", "BCAST")}
        assert not texts & refused, (p.user, texts & refused)
    for name in ("hans", "yoda", "vader", "luke"):
        assert not {t for _, t in _queue(redis, name)} & refused, name
    # What was accepted before the outage is delivered.
    c3po = n2.login("c3po")
    m = c3po.wait_event("MSG", timeout=10)
    assert (m[1], m[2], m[4]) == (before, "hans", "before-the-outage"), m
    for n in c.nodes:
        assert n.running()
    figures("cluster_redis_restart", node1_back_s=round(back1, 3),
            node2_back_s=round(back2, 3), node3_after_relink_s=round(back3, 3))


def _aof_bytes(redis):
    """Every append-only file of `redis` (Redis 7 keeps them in a directory), concatenated."""
    data = b""
    for root, _, files in os.walk(redis.dir):
        for f in files:
            if ".aof" in f:
                with open(os.path.join(root, f), "rb") as fh:
                    data += fh.read()
    return data


def test_message_published_unread_when_redis_dies_is_delivered(make_cluster):
    """A message is on the disk once (its queue; the stream's copy is not in the append-only
    file), and one whose stream entry its recipient's node had not read when Redis was killed
    still arrives, exactly once, after the restart: the node's links dropped, so it reads its
    sessions' queues again."""
    c = make_cluster()
    n1, n2, _ = c.nodes
    hans, yoda = n1.login("hans"), n2.login("yoda")
    ok(hans.request("MSG", "yoda", "warm-up"))
    yoda.wait_event(lambda ev: ev[0] == "MSG" and ev[4] == "warm-up", timeout=10)
    _stop(n2.pid)  # node 2 reads nothing from here on
    try:
        mid = ok(hans.request("MSG", "yoda", "unread-when-redis-died"))[0]
        assert _aof_bytes(c.redis).count(b"unread-when-redis-died") == 1
        c.redis.kill9()
        c.redis.start()
    finally:
        _cont(n2.pid)
    m = yoda.wait_event(lambda ev: ev[0] == "MSG" and ev[4] == "unread-when-redis-died",
                        timeout=20)
    assert (m[1], m[2]) == (mid, "hans"), m
    _retry(hans, "MSG", "yoda", "after-the-restart", deadline=15, what="node 1 resuming")
    yoda.wait_event(lambda ev: ev[0] == "MSG" and ev[4] == "after-the-restart", timeout=15)
    texts = [ev[4] for ev in yoda.all_events if ev[0] == "MSG"]
    assert texts.count("unread-when-redis-died") == 1, texts
    assert n2.running()


def test_a_node_trims_what_it_read_of_its_stream(make_cluster):
    """A node is the only reader of its stream, so it drops what it has read (after 64 entries,
    or at its next lease renewal, every lease/3 = 3.3 s here): the stream does not keep
    delivered messages (it did, up to --redis-stream-max entries, megabytes of them), and what
    it has not read yet stays for it."""
    c = make_cluster()
    n1, n2, _ = c.nodes
    hans, yoda = n1.login("hans"), n2.login("yoda")
    for i in range(40):
        ok(hans.request("MSG", "yoda", f"m{i}"))  # each answered before the next: a batch each
    yoda.wait_event(lambda ev: ev[0] == "MSG" and ev[4] == "m39", timeout=10)
    assert wait_until(lambda: c.redis.command("XLEN", "parley:events:node2") <= 2, 10), \
        c.redis.command("XLEN", "parley:events:node2")
    _stop(n2.pid)  # what node 2 has not read stays
    try:
        for i in range(10):
            ok(hans.request("MSG", "yoda", f"unread{i}"))
        assert c.redis.command("XLEN", "parley:events:node2") >= 10
    finally:
        _cont(n2.pid)
    yoda.wait_event(lambda ev: ev[0] == "MSG" and ev[4] == "unread9", timeout=10)
    texts = [ev[4] for ev in yoda.all_events if ev[0] == "MSG"]
    assert texts == [f"m{i}" for i in range(40)] + [f"unread{i}" for i in range(10)], texts


# --------------------------------------------------------------------------------------------
# 4. A slow Redis never stalls a node's event loop

def _slow_cluster(make_cluster):
    c = make_cluster(args=["--redis-timeout", "500", "--req-rate", "0"])
    n1, n2, n3 = c.nodes
    # hans and c3po share node 1: a broadcast hans had refused must not reach c3po either.
    names = [("hans", n1), ("c3po", n1), ("yoda", n2), ("r2d2", n2), ("vader", n3),
             ("luke", n3)]
    return c, {name: n.login(name) for name, n in names}


def test_slow_redis_does_not_stall_the_loop(make_cluster):
    c, p = _slow_cluster(make_cluster)
    # The probes are sessions of their own (a session waiting for Redis holds its next
    # requests until the answer): c3po, r2d2 and luke, one per node.
    probes = [p["c3po"], p["r2d2"], p["luke"]]
    _stop(c.redis.pid)
    try:
        stopped = time.monotonic()
        mtag = p["yoda"].send_request("MSG", "vader", "msg-while-redis-sleeps")
        btag = p["hans"].send_request("BCAST", "bcast-while-redis-sleeps")
        worst = 0.0
        rounds = 0
        while time.monotonic() - stopped < 2.0:
            for q in probes:
                t = time.monotonic()
                ok(q.request("TOUCH", timeout=2))
                worst = max(worst, time.monotonic() - t)
                # WHO asks Redis while the node believes it can: it waits at most
                # --redis-timeout, then answers from the node's own view.
                ok(q.request("WHO", timeout=2))
            rounds += 1
        # What needs Redis is refused once --redis-timeout passed, while Redis still sleeps.
        r_msg = p["yoda"].get_reply(mtag, timeout=1)
        r_bcast = p["hans"].get_reply(btag, timeout=1)
        assert r_msg[:2] == ["ERR", "503"], r_msg
        assert r_bcast[:2] == ["ERR", "503"], r_bcast
        p["c3po"].pump(0)
        assert not [ev for ev in p["c3po"].all_events if ev[0] == "BCAST"], \
            "a broadcast refused with 503 reached the sender's node"
    finally:
        _cont(c.redis.pid)
    bound = 0.5 if is_asan() else 0.25
    figures("cluster_slow_redis", requests=rounds * 3, worst_s=round(worst, 4))
    assert worst < bound, f"a request that needs no Redis took {worst:.3f}s"
    # Things work again after SIGCONT, on every node.
    _retry(p["yoda"], "MSG", "vader", "msg-after-the-wake", deadline=15,
           what="node 2 after SIGCONT")
    _retry(p["vader"], "MSG", "hans", "msg-to-hans-after-the-wake", deadline=15,
           what="node 3 after SIGCONT")
    _retry(p["hans"], "BCAST", "bcast-after-the-wake", deadline=15, what="node 1 after SIGCONT")
    p["vader"].wait_event(lambda ev: ev[0] == "MSG" and ev[4] == "msg-after-the-wake",
                          timeout=10)
    p["hans"].wait_event(lambda ev: ev[0] == "MSG" and ev[4] == "msg-to-hans-after-the-wake",
                         timeout=10)
    for name in ("c3po", "yoda", "r2d2", "vader", "luke"):
        p[name].wait_event(lambda ev: ev[0] == "BCAST" and ev[2] == "bcast-after-the-wake",
                           timeout=10)


def test_request_refused_on_timeout_has_no_effect_later(make_cluster):
    c, p = _slow_cluster(make_cluster)
    _stop(c.redis.pid)
    try:
        r_msg = p["yoda"].request("MSG", "vader", "msg-while-redis-sleeps", timeout=5)
        r_bcast = p["hans"].request("BCAST", "bcast-while-redis-sleeps", timeout=5)
    finally:
        _cont(c.redis.pid)
    assert r_msg[:2] == ["ERR", "503"], r_msg
    assert r_bcast[:2] == ["ERR", "503"], r_bcast
    # After the wake: a marker from each sender arrives, and nothing refused before it.
    _retry(p["yoda"], "MSG", "vader", "marker", deadline=15, what="node 2 after SIGCONT")
    _retry(p["hans"], "BCAST", "marker", deadline=15, what="node 1 after SIGCONT")
    p["vader"].wait_event(lambda ev: ev[0] == "MSG" and ev[4] == "marker", timeout=10)
    for name in ("c3po", "yoda", "r2d2", "vader", "luke"):
        p[name].wait_event(lambda ev: ev[0] == "BCAST" and ev[2] == "marker", timeout=10)
    seen = [(name, ev) for name, q in p.items() for ev in q.all_events
            if ev[0] in ("MSG", "BCAST") and ev[-1].endswith("while-redis-sleeps")]
    assert not seen, f"refused with 503, yet delivered: {seen}"
    assert "msg-while-redis-sleeps" not in [t for _, t in _queue(c.redis, "vader")]


# --------------------------------------------------------------------------------------------
# 5. The lock-out, across nodes

def test_lockout_counted_across_nodes(make_cluster):
    c = make_cluster(block_duration=60)
    redis = c.redis
    n1, n2, n3 = c.nodes
    # Three wrong passwords, one on each node: the third locks the account.
    err(n1.connect().login_reply("vader", "wrong1"), 401)
    err(n2.connect().login_reply("vader", "wrong2"), 401)
    p = n3.connect()
    err(p.login_reply("vader", "wrong3"), 424)
    assert p.closed(5)
    failures, until = redis.command("HGET", "parley:locks", "vader").split()
    assert int(failures) == 3 and int(until) >= time.time() + 50
    for n in c.nodes:  # the right password is refused everywhere
        p = n.connect()
        err(p.login_reply("vader", c.users["vader"]), 423)
        assert p.closed(5)

    # Six wrong guesses at once, two on each node: exactly three are counted.
    conns = []
    for n in c.nodes:
        for _ in range(2):
            q = n.connect()
            q.hello()
            assert q.request("USER", "yoda") == ["OK"]
            conns.append(q)
    tags = [q.send_request("PASS", f"guess{i}") for i, q in enumerate(conns)]
    codes = sorted(q.get_reply(t, timeout=10)[1] for q, t in zip(conns, tags))
    assert codes == ["401", "401", "423", "423", "423", "424"], codes
    failures, until = redis.command("HGET", "parley:locks", "yoda").split()
    assert int(failures) == 3, failures
    for n in c.nodes:
        p = n.connect()
        err(p.login_reply("yoda", c.users["yoda"]), 423)
    # An account nobody guessed at is not affected.
    ok(n2.login("luke").request("WHO"))


# --------------------------------------------------------------------------------------------
# 6. One login per user across nodes

def test_one_login_per_user_across_nodes(make_cluster):
    c = make_cluster()
    n1, n2, n3 = c.nodes
    hans = n1.login("hans")
    for n in (n2, n3):
        p = n.connect()
        r = p.login_reply("hans", c.users["hans"])
        err(r, 409)
        assert "already logged in" in r[2], r
    # The refused attempts did not disturb the session on node 1.
    yoda = n2.login("yoda")
    ok(yoda.request("MSG", "hans", "still-here"))
    hans.wait_event(lambda ev: ev[0] == "MSG" and ev[4] == "still-here")
    ok(hans.request("LOGOUT"))
    assert hans.closed(5)
    yoda.wait_event("LOGOUT hans")
    again = n3.login("hans")
    assert c.redis.command("HGET", "parley:online", "hans") == "node3"
    ok(yoda.request("MSG", "hans", "on-node-3"))
    again.wait_event(lambda ev: ev[0] == "MSG" and ev[4] == "on-node-3")
    p = n1.connect()
    err(p.login_reply("hans", c.users["hans"]), 409)


def test_logout_ok_frees_the_user_on_every_node(make_cluster):
    """LOGOUT's OK promises the logout is in Redis, where every node looks: a login on another
    node straight after it, with no wait for the LOGOUT event, is not refused 409."""
    c = make_cluster()
    hans = c.nodes[0].login("hans")
    _stop(c.redis.pid)
    try:
        tag = hans.send_request("LOGOUT")
        with pytest.raises(ProtoTimeout):  # well within --redis-timeout (2 s)
            hans.get_reply(tag, timeout=0.3)
    finally:
        _cont(c.redis.pid)
    ok(hans.get_reply(tag))
    assert c.redis.command("HGET", "parley:online", "hans") is None
    assert hans.closed(5)
    for i in range(30):
        a = c.nodes[i % 3].login("hans")
        ok(a.request("LOGOUT"))
        b = c.nodes[(i + 1) % 3].connect()
        r = b.login_reply("hans", c.users["hans"])
        assert r[0] == "OK", (i, r)
        ok(b.request("LOGOUT"))


def test_acknowledgements_reach_redis_alone_and_before_a_logout(make_cluster):
    """A batch of acknowledgements only waits a little for other operations to share Redis's
    fsync with (CLUSTER_ACK_DELAY_MS, 10 ms), then goes by itself; one sent just before LOGOUT
    is in Redis by LOGOUT's OK, so a login on another node is not sent those messages again."""
    c = make_cluster()
    n1, n2, n3 = c.nodes
    hans, yoda = n1.login("hans"), n2.login("yoda")
    ids = [ok(yoda.request("MSG", "hans", f"m{i}"))[0] for i in range(3)]
    hans.wait_events("MSG", 3)
    acked = lambda: c.redis.command("HGET", "parley:qpos", "hans acked")  # noqa: E731
    hans.ack(ids[1])
    wait_until(lambda: acked() == ids[1], what="the acknowledgement in Redis")
    hans.ack(ids[2])
    ok(hans.request("LOGOUT"))
    assert acked() == ids[2]
    again = n3.login("hans")
    again.no_event("MSG", within=0.3)


def test_message_refused_by_a_block_its_node_has_not_heard_of(make_cluster):
    """Redis checks the blocks when it queues a message: a node that has not read a block's
    event yet (here no node has: the block is written straight into Redis) still gets its
    messages refused, 451 and 452, and nothing is queued or shown."""
    c = make_cluster()
    n1, n2, _ = c.nodes
    hans, yoda = n1.login("hans"), n2.login("yoda")
    c.redis.command("SADD", "parley:blocks", "hans yoda")
    c.redis.command("SADD", "parley:blockedby:yoda", "hans")
    err(yoda.request("MSG", "hans", "let me in"), 451)
    err(hans.request("MSG", "yoda", "go away"), 452)
    ok(yoda.request("MSG", "vader", "unbarred"))  # the other pairs are not touched
    hans.no_event("MSG", within=0.2)
    yoda.no_event("MSG", within=0)
    assert c.redis.command("HGET", "parley:qpos", "hans") is None


def test_message_let_through_by_an_unblock_its_node_has_not_heard_of(make_cluster):
    """The other way round: node 2 has read hans's block of yoda (vader, on node 2, saw the
    broadcast hans made after it), then the block goes from Redis with no event (as an UNBLOCK
    whose event node 2 has not read yet): yoda's message is judged by Redis, and delivered."""
    c = make_cluster()
    n1, n2, _ = c.nodes
    hans, yoda, vader = n1.login("hans"), n2.login("yoda"), n2.login("vader")
    ok(hans.request("BLOCK", "yoda"))
    ok(hans.request("BCAST", "after-the-block"))
    vader.wait_event(lambda ev: ev[0] == "BCAST" and ev[2] == "after-the-block")
    err(yoda.request("MSG", "hans", "still barred"), 451)
    c.redis.command("SREM", "parley:blocks", "hans yoda")
    c.redis.command("SREM", "parley:blockedby:yoda", "hans")
    ok(yoda.request("MSG", "hans", "the block is gone"))
    hans.wait_event(lambda ev: ev[0] == "MSG" and ev[4] == "the block is gone")


def test_p2p_request_relayed_to_a_blocker_is_refused_451(make_cluster):
    """A P2P request that another node relays before it has heard of the block (the block's
    event still on its way there) is refused by the target's node: 451 goes back, and the
    target is not asked. The other node is a stand-in whose lease and stream the test writes."""
    c = make_cluster()
    r = c.redis
    r.command("SET", "parley:node:ghost", "stand-in", "PX", "60000")
    r.command("SADD", "parley:nodes", "ghost")
    a = c.nodes[0].login("hans")
    a.open_listener()
    ok(a.request("BLOCK", "yoda"))
    r.command("XADD", "parley:events:node1", "*", "e", "P ghost yoda hans Q " + "ab" * 16)

    def refused():
        return "P node1 yoda hans D 451" in str(r.command("XRANGE", "parley:events:ghost", "-", "+"))

    wait_until(refused, what="node 1's refusal in the stand-in's stream")
    a.no_event("P2PREQ", within=0.2)


# 7. /healthz of a node follows its Redis (issue 14: Redis in the health check)

def test_healthz_503_while_redis_is_unreachable(make_cluster):
    import urllib.error
    import urllib.request
    from test_server_metrics import _free_port
    port = _free_port()
    c = make_cluster(nodes=1, args=["--metrics", f"127.0.0.1:{port}"])

    def healthz():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    hans = c.node(0).login("hans")
    assert healthz() == (200, "ok\n")
    c.redis.kill9()  # no request is made: the health check itself must notice
    wait_until(lambda: healthz()[0] == 503, timeout=10, what="/healthz 503 without Redis")
    assert healthz() == (503, "store unwritable\n")
    c.redis.start()
    _retry(hans, "MSG", "yoda", "after-the-restart", deadline=15, what="the node resuming")
    wait_until(lambda: healthz() == (200, "ok\n"), timeout=10, what="/healthz 200 again")


# 8. A node behind with its presence notices stops reading the stream, and loses nothing

def test_node_behind_with_notices_pauses_its_stream(make_cluster):
    """Node 1 deals each notice to one session per loop iteration (--fanout-slice 1) to 40
    watchers and takes more events only while fewer than 4 notices wait (--fanout-backlog 1,
    FANOUT_STREAM_FACTOR 4). A burst of 16 logins on node 2 reaches it through the stream
    faster than that: node 1 leaves the stream unread meanwhile (counted in its /metrics) and
    reads on from where it stopped, so every watcher still gets every notice once."""
    from test_server_metrics import (_burst_of_logins, _each_sees_logins_once, _free_port,
                                     _scrape, _v, _watchers_online)
    watchers = [f"w{i:02d}" for i in range(40)]
    newcomers = [f"n{i:02d}" for i in range(16)]
    c = make_cluster(nodes=2, users={n: "pw" for n in watchers + newcomers})
    behind, busy = c.nodes
    port = _free_port()
    behind.stop()
    behind.args = behind.args + ["--metrics", f"127.0.0.1:{port}", "--fanout-backlog", "1",
                                 "--fanout-slice", "1"]
    behind.start()
    behind.metrics_port = port
    conns = _watchers_online(behind, watchers)
    paused = _v(_scrape(behind), "parley_event_reads_paused_total")
    _burst_of_logins(busy, newcomers)
    _each_sees_logins_once(conns, newcomers)
    assert _v(_scrape(behind), "parley_event_reads_paused_total") > paused


# 9. A Redis that holds queues of the earlier layout is refused at start, with a clear line

@pytest.mark.parametrize("layout", ["sorted-sets", "a-message-an-element", "a-header-an-element"])
def test_redis_with_queues_of_the_earlier_layout_is_refused(make_cluster, tmp_path, layout):
    """Queues were sorted sets with one global id (parley:nextid) before ids counted per
    recipient, then lists of one message an element (ids in parley:qnext) before an element held
    an operation's messages; a node of this version would misread them, so it does not start on
    such a Redis, and says what to do. Emptied of those keys, the Redis is taken."""
    from conftest import ParleyServer
    c = make_cluster(nodes=1)
    c.stop()
    if layout == "sorted-sets":
        c.redis.command("SET", "parley:nextid", "41")
        c.redis.command("ZADD", "parley:q:yoda", "41", "41 1700000000 hans old")
    elif layout == "a-message-an-element":
        c.redis.command("HSET", "parley:qnext", "yoda", "1")
        c.redis.command("RPUSH", "parley:q:yoda", "1700000000 hans old")
    else:
        c.redis.command("HSET", "parley:qids", "yoda", "1")
        c.redis.command("RPUSH", "parley:q:yoda", "1 1\x001700000000 hans old")
    n = ParleyServer(tmp_path / "late", users=dict(c.users),
                     args=["--redis", c.redis.addr, "--node-id", "late"])
    with pytest.raises(Exception):
        n.start()
    n.expected_exit = True
    assert "holds message queues of an earlier parleyd" in n.stderr_text()
    c.redis.command("DEL", "parley:nextid", "parley:qnext", "parley:qids", "parley:q:yoda")
    c.start()
    hans = c.node(0).login("hans")
    ok(hans.request("MSG", "yoda", "new-layout"))
    assert _queue(c.redis, "yoda") == [(1, "new-layout")]
