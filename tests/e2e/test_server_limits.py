"""Server: framing rules, limits and hostile input (PROTOCOL §1, §2, §3, §8; spec §9)."""

import os
import random
import subprocess
import time

import pytest

from conftest import PARLEYD, ParleyServer, Proto, err, ok, wait_until
from test_server_whosince import add_history


def _is_asan():
    try:
        with open(PARLEYD, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# ---------------------------------------------------------------------------- framing


def test_long_frame_413_with_its_tag_and_connection_still_works(server):
    a = server.login("hans")
    b = server.login("yoda")
    a.send_line(b"77 MSG yoda " + b"x" * 10240)
    assert a.get_reply("77")[:2] == ["ERR", "413"]
    assert ok(a.request("WHO")) == ["yoda"]
    b.no_event("MSG", within=0.2)
    ok(a.request("MSG", "yoda", "short"))
    assert b.wait_event("MSG")[4] == "short"


def test_long_frame_arriving_in_pieces(server):
    a = server.login("hans")
    a.send_raw(b"88 BCAST " + b"y" * 6000)
    a.pump(0.1)
    a.send_raw(b"z" * 6000)
    a.pump(0.1)
    a.send_raw(b"\n9 WHO\n")
    assert a.get_reply("88")[:2] == ["ERR", "413"]
    assert a.get_reply("9") == ["OK"]
    assert "-" not in a.replies


def _frame_of(tag, length):
    """`<tag> WHO xxx...` of exactly `length` bytes with its LF: 400 (extra field) when it fits
    the frame limit, 413 when it does not."""
    prefix = f"{tag} WHO ".encode()
    return prefix + b"x" * (length - len(prefix) - 1) + b"\n"


def test_max_line_boundary(make_server):
    s = make_server(args=["--max-line", "256", "--max-message", "100"])
    a = s.login("hans")
    a.send_raw(_frame_of("a", 256))
    assert a.get_reply("a")[:2] == ["ERR", "400"], "a 256-byte frame is within --max-line 256"
    a.send_raw(_frame_of("b", 257))
    assert a.get_reply("b")[:2] == ["ERR", "413"]
    a.send_raw(_frame_of("c", 100000))
    assert a.get_reply("c")[:2] == ["ERR", "413"]
    assert a.request("WHO") == ["OK"]


def test_default_max_line_is_4096(server):
    a = server.login("hans")
    a.send_raw(_frame_of("a", 4096))
    assert a.get_reply("a")[:2] == ["ERR", "400"]
    a.send_raw(_frame_of("b", 4097))
    assert a.get_reply("b")[:2] == ["ERR", "413"]
    assert a.request("WHO") == ["OK"]


def test_max_message_counts_bytes(make_server):
    s = make_server(args=["--max-message", "100"])
    a = s.login("hans")
    b = s.login("yoda")
    ok(a.request("MSG", "yoda", "m" * 100))
    err(a.request("MSG", "yoda", "m" * 101), 413)
    ok(a.request("MSG", "yoda", "\u00e9" * 50))  # 100 bytes
    err(a.request("MSG", "yoda", "\u00e9" * 51), 413)
    err(a.request("BCAST", "m" * 101), 413)
    ok(a.request("BCAST", "m" * 100))
    evs = b.wait_events("MSG", 2)
    assert [len(e[4].encode()) for e in evs] == [100, 100]
    b.no_event("MSG", within=0.2)


def test_default_max_message_is_1000(server):
    a = server.login("hans")
    ok(a.request("MSG", "yoda", "m" * 1000))
    err(a.request("MSG", "yoda", "m" * 1001), 413)


FORBIDDEN = {
    "cr": b"te\rxt",
    "nul": b"te\x00xt",
    "esc": b"\x1b[31mred",
    "tab": b"a\tb",
    "del": b"a\x7fb",
    "c1": "a\u0085b".encode(),
    "csi_c1": "\u009b31m".encode(),
    "bad_utf8": b"\xff\xfe",
    "lone_continuation": b"a\x80b",
    "truncated": b"a\xe2\x82",
    "overlong": b"\xc0\xaf",
    "overlong3": b"\xe0\x80\xaf",
    "surrogate": b"\xed\xa0\x80",
    "above_max": b"\xf4\x90\x80\x80",
}


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_forbidden_bytes_are_400(server, name):
    a = server.login("hans")
    b = server.login("yoda")
    r = a.send_bad(b"MSG yoda " + FORBIDDEN[name])
    assert r[:2] == ["ERR", "400"], r
    b.no_event("MSG", within=0.1)
    assert ok(a.request("WHO")) == ["yoda"]


def test_crlf_line_end_is_400(server):
    a = server.connect()
    a.send_raw(b"1 HELLO 1 e2e\r\n")
    tag, r = a.get_reply_any(("1", "-"))
    assert r[:2] == ["ERR", "400"], r
    a.hello()


def test_valid_utf8_accepted(server):
    a = server.login("hans")
    b = server.login("yoda")
    text = "caf\u00e9 \u20ac \U0001F680 \u00a0nbsp \u00ff"
    ok(a.request("MSG", "yoda", text))
    assert b.wait_event("MSG")[4] == text


def test_empty_frames_are_ignored(server):
    a = server.connect()
    a.send_raw(b"\n\n\n1 HELLO 1 e2e\n\n")
    assert a.get_reply("1")[0] == "OK"
    a.pump(0.2)
    assert a.replies == {} and a.events == [], a.frames


def test_tags(server):
    a = server.connect()
    a.hello()
    a.send_line("A1b2C3d4E5f6G7h8 USER nobody")  # 16 characters
    assert a.get_reply("A1b2C3d4E5f6G7h8")[:2] == ["ERR", "404"]
    for bad in (b"A1b2C3d4E5f6G7h8X USER hans", b"a-b USER hans", b"a_b USER hans",
                b"\xc3\xa9 USER hans", b"  USER hans"):
        a.send_line(bad)
        r = a.get_reply("-")
        assert r[:2] == ["ERR", "400"], (bad, r)
    assert a.request("USER", "hans") == ["OK"]


def test_double_space_is_400(server):
    a = server.login("hans")
    r = a.send_bad(b"MSG  yoda hi")
    assert r[:2] == ["ERR", "400"], r
    r = a.send_bad(b"BLOCK  yoda")
    assert r[:2] == ["ERR", "400"], r


def test_trailing_space_is_400(server):
    """`WHO ` is the fields ['WHO', '']: an empty field, so a wrong field count (PROTOCOL §1-§3)."""
    a = server.login("hans")
    for body in (b"WHO ", b"BLOCK yoda ", b"WHOSINCE 5 "):
        r = a.send_bad(body)
        assert r[:2] == ["ERR", "400"], (body, r)


def test_text_of_spaces_only_is_400(server):
    """Issue 9, point 20: a message text made only of spaces was accepted and shown as an empty
    line. It is a malformed request like an empty text (400); spaces around words are kept."""
    a = server.login("hans")
    y = server.login("yoda")
    a.wait_event("LOGIN yoda")
    for body in (b"MSG yoda  ", b"MSG yoda    ", b"BCAST  ", b"BCAST    "):
        r = a.send_bad(body)
        assert r[:2] == ["ERR", "400"], (body, r)
    y.no_event("MSG", within=0.2)
    y.no_event("BCAST", within=0)
    ok(a.request("MSG", "yoda", "  two  spaces  "))
    assert y.wait_event("MSG")[4] == "  two  spaces  "
    ok(a.request("BCAST", " x"))
    assert y.wait_event("BCAST") == ["BCAST", "hans", " x"]


def test_leading_space_is_400_and_harmless(server):
    """Regression (found by fuzz_server): a frame starting with a space has an empty first
    field; the server once read it uninitialised. Now it is `- ERR 400` and nothing else."""
    a = server.login("hans")
    for raw in (b" 1 WHO\n", b" \n", b"  * ACK 1\n"):
        a.send_raw(raw)
        line = a.recv_line()
        assert line.startswith("- ERR 400"), (raw, line)
    assert ok(a.request("WHO")) == []


def test_pipelined_replies_in_order(server):
    a = server.connect()
    reqs = [b"1 HELLO 1 e2e", b"2 USER nobody", b"3 USER hans", b"4 PASS falcon", b"5 WHO",
            b"6 FOO", b"7 MSG hans self", b"8 WHOSINCE 10", b"9 BLOCK nobody"]
    a.send_raw(b"\n".join(reqs) + b"\n")
    got = []
    while len(got) < len(reqs):
        line = a.recv_line()
        if not line.startswith("* "):
            got.append(line.split(" ")[0])
    assert got == [str(i) for i in range(1, 10)]


def test_unknown_verb_501(server):
    a = server.login("hans")
    err(a.request("FROBNICATE", "x"), 501)
    err(a.request("who"), 501)
    ok(a.request("WHO"))


def test_unknown_and_malformed_notices_are_harmless(server):
    """Notices are never answered; a malformed one may get `- ERR 400` (a malformed frame),
    nothing else, and acknowledges nothing."""
    a = server.login("hans")
    b = server.login("yoda")
    mid = ok(a.request("MSG", "yoda", "keep me"))[0]
    assert b.wait_event("MSG")[1] == mid
    for bad in ("* FOO 1", "* ACK", "* ACK x", "* ACK -1", "*", "* ACK 1 2",
                "* ACK 99999999999999999999", f"* ACK {mid}x"):
        b.send_line(bad)
    tag = b.send_request("WHO")
    b.get_reply(tag)
    others = [f for f in b.frames if not f.startswith(("* ", f"{tag} ")) and f.split(" ")[0] == "-"]
    assert all(f.startswith("- ERR 400") for f in others), others
    b.close()
    a.wait_event("LOGOUT yoda")
    c = server.login("yoda")
    assert c.wait_event("MSG")[1] == mid, "a malformed ACK acknowledged a message"


# ---------------------------------------------------------------------------- hostile input


def test_binary_junk_does_not_hurt_others(server):
    a = server.login("hans")
    b = server.login("yoda")
    rnd = random.Random(1234)
    junkers = [server.connect(), server.connect(), server.login("vader")]
    junkers[1].hello()
    for j in junkers:
        for _ in range(16):
            try:
                j.send_raw(bytes(rnd.getrandbits(8) for _ in range(4096)))
            except OSError:
                break
            j.pump(0)
    for j in junkers:
        j.pump(0.05)
    t = time.monotonic()
    ok(a.request("MSG", "yoda", "still here"))
    assert b.wait_event("MSG")[4] == "still here"
    assert time.monotonic() - t < 2
    server.login("r2d2")
    assert server.running()


def test_max_errors_closes_with_bye_flood(make_server):
    s = make_server(args=["--max-errors", "5"])
    w = s.login("hans")
    a = s.login("yoda")
    w.wait_event("LOGIN yoda")
    # Errors not in a row do not add up.
    for _ in range(2):
        for _ in range(4):
            assert a.send_bad(b"WHO\x00")[:2] == ["ERR", "400"]
        ok(a.request("WHO"))
    # Five in a row: closed (the 6th is there in case the limit is counted inclusively).
    a.send_raw(b"".join(b"x%d WH\x00O\n" % i for i in range(6)))
    assert a.closed(5), "connection not closed after --max-errors malformed frames"
    assert ["BYE", "flood"] in a.all_events, a.frames
    w.wait_event("LOGOUT yoda")
    ok(w.request("WHO"))


def test_max_errors_above_65535_trips(make_server):
    """Issue 9, point 18: the counter of malformed frames was 16 bits wide, so a --max-errors
    above 65535 never closed anything (it wrapped to 0 first)."""
    s = make_server(args=["--max-errors", "65537", "--max-output", str(64 << 20)])
    a = s.login("hans")
    a.send_raw(b"1 NOSUCH\n" * 65536)
    a.pump(0.5)
    assert not a.eof, "closed before --max-errors malformed frames"
    a.send_raw(b"1 NOSUCH\n")
    assert a.closed(20), "connection not closed after 65537 malformed frames"
    assert ["BYE", "flood"] in a.all_events, a.frames[-3:]


@pytest.mark.parametrize("option,lo,hi", [
    ("--max-errors", 1, 1000000), ("--max-per-address", 0, 10000000),
    ("--hello-timeout", 1, 100000000), ("--req-rate", 0, 10000000),
    ("--req-burst", 1, 10000000), ("--max-connections", 1, 10000000)])
def test_option_out_of_range_is_a_usage_error(tmp_path, option, lo, hi):
    """Issue 9, point 18: a value outside an option's range (which fits its variable) is refused
    at start-up with a line that gives the range, exit status 2."""
    for bad in (lo - 1, hi + 1, "x"):
        p = subprocess.run([PARLEYD, option, str(bad), "0", "60", "10"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == 2, (option, bad, p.returncode, p.stderr)
        assert f"{option} must be a number from {lo} to {hi}, not '{bad}'" in p.stderr, p.stderr
    assert not os.path.exists(tmp_path / "parley-data"), "a refused start touched the store"


def test_max_errors_before_login(make_server):
    s = make_server(args=["--max-errors", "3"])
    a = s.connect()
    a.send_raw(b"\xff\n" * 4)
    assert a.closed(5)


@pytest.mark.single_node  # measures the RSS of one parleyd process
def test_slow_reader_is_cut_off_memory_stays_bounded(make_server):
    s = make_server(args=["--max-output", "65536", "--msg-rate", "1000000", "--msg-burst",
                          "1000000", "--max-line", "8192", "--max-message", "4000"])
    sender = s.login("hans")
    other = s.login("c3po")
    assert other.request("BLOCK", "hans") == ["OK"]  # so it does not receive the flood
    slow = s.login("yoda", rcvbuf=4096)  # never reads from now on
    sender.wait_event("LOGIN yoda")
    rss0 = s.rss_kb()
    rss_max = rss0
    rtt_max = 0.0
    text = "f" * 4000
    batch = 100
    for start in range(0, 10000, batch):
        sender.send_raw("".join(f"b{i} BCAST {text}\n" for i in range(start, start + batch))
                        .encode())
        for i in range(start, start + batch):
            r = sender.get_reply(f"b{i}")
            assert r[0] == "OK", r
        if start % 1000 == 0:
            t = time.monotonic()
            ok(other.request("WHO"))
            rtt_max = max(rtt_max, time.monotonic() - t)
            rss_max = max(rss_max, s.rss_kb())
    rss_max = max(rss_max, s.rss_kb())
    sender.wait_event("LOGOUT yoda", timeout=5)
    assert slow.closed(10), "the slow reader was not disconnected"
    assert ok(other.request("WHO")) == ["hans"]
    assert rtt_max < (3.0 if _is_asan() else 1.0), f"round trip {rtt_max:.3f}s during the flood"
    if not _is_asan():
        grew = rss_max - rss0
        assert grew < 16 * 1024, f"server RSS grew by {grew} KB for a 64 KB output limit"
    # Cutting off a client that does not read is normal operation: nothing on stderr (spec §1).
    assert s.stderr_text() == "", s.stderr_text()


def test_message_rate_limit_429(make_server):
    s = make_server(args=["--msg-rate", "5", "--msg-burst", "5"])
    a = s.login("hans")
    b = s.login("yoda")
    a.send_raw("".join(f"r{i} MSG yoda n{i}\n" for i in range(15)).encode())
    replies = [a.get_reply(f"r{i}") for i in range(15)]
    oks = [r for r in replies if r[0] == "OK"]
    limited = [r for r in replies if r[:2] == ["ERR", "429"]]
    assert len(oks) + len(limited) == 15, replies
    assert 5 <= len(oks) <= 7 and limited, replies
    evs = b.wait_events("MSG", len(oks))
    b.no_event("MSG", within=0.3)  # refused messages were not delivered
    assert [e[1] for e in evs] == [r[1] for r in oks]
    # Tokens come back.
    wait_until(lambda: a.request("MSG", "yoda", "later")[0] == "OK", timeout=3, interval=0.25,
               what="the rate limit to let a message through")
    # Broadcasts count too.
    a.send_raw("".join(f"c{i} BCAST n{i}\n" for i in range(15)).encode())
    replies = [a.get_reply(f"c{i}") for i in range(15)]
    assert ["ERR", "429"] == [r for r in replies if r[0] == "ERR"][0][:2], replies
    # Other users have their own budget.
    ok(b.request("MSG", "hans", "mine"))


@pytest.mark.single_node  # a budget kept across logins lives in one process; logins spread
def test_request_budget_429(make_server):
    """Issue 9, point 12: every request, not only messages, draws on a budget per user
    (--req-rate, --req-burst); past it 429. Answers and endings are never refused, messages keep
    their own budget, and logging in again does not refill it."""
    s = make_server(args=["--req-rate", "1", "--req-burst", "5"])
    a = s.login("hans")  # HELLO, USER and PASS came out of the connection's own budget
    b = s.login("yoda")
    a.wait_event("LOGIN yoda")
    a.open_listener()  # one of hans's five
    a.send_raw("".join(f"w{i} WHO\n" for i in range(12)))
    replies = [a.get_reply(f"w{i}") for i in range(12)]
    oks = [r for r in replies if r[0] == "OK"]
    assert 4 <= len(oks) <= 5, replies
    assert all(r[:2] == ["ERR", "429"] for r in replies[len(oks):]), replies
    for verb in (["WHOSINCE", "5"], ["BLOCK", "luke"], ["TOUCH"], ["P2P", "yoda"]):
        err(a.request(*verb), 429)
    # Messages have their own budget.
    ok(a.request("MSG", "yoda", "still fine"))
    # Answers and endings go through on an empty budget.
    tag = b.send_request("P2P", "hans")
    a.pump(0.1)
    assert tag not in b.replies
    a.wait_event("P2PREQ yoda")
    assert a.request("P2PACCEPT", "yoda") == ["OK"]
    ok(b.get_reply(tag))
    assert a.request("P2PEND", "yoda") == ["OK"]
    assert a.request("LOGOUT") == ["OK"]
    # A new login starts with a fresh connection budget, but the user's is still spent.
    a = s.login("hans")
    err(a.request("WHO"), 429)
    # Tokens come back at --req-rate.
    wait_until(lambda: a.request("WHO")[0] == "OK", timeout=3, interval=0.25,
               what="the request budget to let a WHO through")
    # Other users have their own.
    ok(s.login("luke").request("WHO"))


@pytest.mark.single_node  # writes the history straight into one node's parley.db
def test_big_listing_costs_more(make_server):
    """A reply listing n names costs 1 + n/100 tokens: a listing of everybody is as much
    work as that many small requests."""
    names = [f"u{i:04d}" for i in range(2000)]
    s = make_server(users={"hans": "falcon", **{n: "pw" for n in names}},
                    args=["--req-rate", "1", "--req-burst", "200"])
    add_history(s, names, int(time.time()) - 3600)
    a = s.login("hans")
    a.send_raw("".join(f"w{i} WHOSINCE 7200\n" for i in range(20)))
    replies = [a.get_reply(f"w{i}") for i in range(20)]
    assert all(len(r) == 2001 for r in replies[:9]), [len(r) for r in replies]
    # 200 tokens: nine listings of 2,000 names cost 21 each, the tenth leaves a debt.
    answered = [r for r in replies if r[0] == "OK"]
    assert len(answered) == 10, [r[:2] for r in replies]
    assert all(r[:2] == ["ERR", "429"] for r in replies[10:])


@pytest.mark.single_node  # --max-connections is per node; the connections spread over three
def test_max_connections(make_server):
    s = make_server(args=["--max-connections", "5"])
    conns = [s.connect() for _ in range(5)]
    for c in conns:
        c.hello()
    try:
        extra = Proto(s.port)
    except OSError:
        extra = None
    if extra is not None:
        try:
            extra.send_line("1 HELLO 1 e2e")
        except OSError:
            pass
        assert extra.closed(5), "connection over --max-connections was served"
        assert "1" not in extra.replies or extra.replies["1"][0] != "OK"
    conns[0].close()

    def fresh():
        p = Proto(s.port)
        try:
            p.send_line("1 HELLO 1 e2e")
            tag, r = p.get_reply_any(("1",), timeout=1)
            return p if r[0] == "OK" else None
        except (AssertionError, OSError):
            p.close()
            return None
    p = wait_until(fresh, timeout=5, interval=0.1, what="a slot after a connection closed")
    assert p.request("USER", "hans") == ["OK"]


def test_hello_timeout(make_server):
    """Issue 9, point 14: a connection that sends nothing used to hold its descriptor for the
    whole --login-timeout (120 s); it now has --hello-timeout (default 10 s) to say HELLO."""
    s = make_server(args=["--hello-timeout", "1"])
    t0 = time.monotonic()
    silent = s.connect()
    junk = s.connect()
    junk.send_line("1 NOSUCH")  # a frame, but not HELLO
    greeted = s.connect()
    greeted.hello()
    assert silent.closed(5), "silent connection not closed after --hello-timeout"
    took = time.monotonic() - t0
    assert 0.9 <= took <= 3.0, f"closed after {took:.2f}s"
    assert ["BYE", "login-timeout"] in silent.all_events, silent.frames
    assert junk.closed(2)
    greeted.pump(0.5)
    assert not greeted.eof, "a connection that said HELLO was closed by --hello-timeout"
    greeted.login("hans", "falcon")
    ok(greeted.request("WHO"))


@pytest.mark.single_node  # --max-per-address is per node; the connections spread over three
def test_max_per_address(make_server):
    """Issue 9, point 14: connections at once from one address are limited
    (--max-per-address, default 256); others are not affected, and the refusals make one log
    line, not one each."""
    s = make_server(args=["--max-per-address", "3"])
    held = [s.connect() for _ in range(3)]
    for p in held:
        p.hello()
    for _ in range(20):
        extra = Proto(s.port)
        try:
            extra.send_line("1 HELLO 1 e2e")
        except OSError:
            pass
        assert extra.closed(5), "connection over --max-per-address was served"
        assert "1" not in extra.replies
        extra.close()
    other = s.login("yoda", source="127.0.0.2")  # another address has its own
    ok(other.request("WHO"))
    held[0].close()

    def fresh():
        p = Proto(s.port)
        try:
            p.send_line("1 HELLO 1 e2e")
            return p if p.get_reply_any(("1",), timeout=1)[1][0] == "OK" else None
        except (AssertionError, OSError):
            p.close()
            return None
    wait_until(fresh, timeout=5, interval=0.1, what="a slot after a connection closed")
    lines = [line for line in s.stderr_text().splitlines() if "refused" in line]
    assert len(lines) == 1, lines
    assert "127.0.0.1" in lines[0] and "--max-per-address" in lines[0], lines


def test_fd_exhaustion_logs_one_line_a_minute(tmp_path):
    """Issue 9, point 14: out of descriptors, every refused connection wrote an error line,
    --verbose or not (a log flood anyone could cause). Now one line a minute, which then says
    how many were left out. The server runs with 48 descriptors (prlimit)."""
    s = ParleyServer(tmp_path / "server")
    s.command = lambda: ["prlimit", "--nofile=48:48", *ParleyServer.command(s)]
    try:
        s.start()
        conns = []
        for _ in range(150):
            try:
                conns.append(Proto(s.port, timeout=1))
            except OSError:
                break
        wait_until(lambda: "out of file descriptors" in s.stderr_text(), timeout=5,
                   what="the server to run out of descriptors")
        for p in conns:
            p.close()
        p = wait_until(lambda: _hello_or_none(s.port), timeout=10, interval=0.1,
                       what="the server to take connections again")
        p.login("hans", "falcon")
        lines = [line for line in s.stderr_text().splitlines() if "error" in line]
        assert len(lines) == 1, lines[:5] + [f"... {len(lines)} lines"]
    finally:
        problem = s.check_and_cleanup()
    assert problem is None, problem


def _hello_or_none(port):
    try:
        p = Proto(port, timeout=1)
        p.hello()
        return p
    except (AssertionError, OSError):
        return None


def test_login_timeout(make_server):
    s = make_server(args=["--login-timeout", "1"])
    t0 = time.monotonic()
    silent = s.connect()
    halfway = s.connect()
    halfway.hello()
    assert halfway.request("USER", "yoda") == ["OK"]
    done = s.login("hans")
    assert silent.closed(5), "silent connection not closed after --login-timeout"
    took = time.monotonic() - t0
    assert 0.9 <= took <= 3.5, f"closed after {took:.2f}s"
    assert ["BYE", "login-timeout"] in silent.all_events, silent.frames
    assert halfway.closed(3)
    assert ["BYE", "login-timeout"] in halfway.all_events, halfway.frames
    done.no_event("BYE", within=0)
    ok(done.request("WHO"))


@pytest.mark.single_node  # measures the RSS of one parleyd process
def test_memory_freed_by_a_burst_goes_back_once_traffic_pauses(make_server):
    """Waiting messages held in memory, then delivered and acknowledged: the heap's holes go
    back to the system once traffic pauses (a heap trim, run off the event loop)."""
    if _is_asan():
        pytest.skip("ASan's allocator keeps its own heap: malloc_trim does not apply")
    names = [f"r{i}" for i in range(8)]
    users = {n: "pw" for n in names}
    users["hans"] = "pw"
    s = make_server(users=users, args=["--msg-rate", "1000000", "--msg-burst", "1000000",
                                       "--max-line", "8192", "--max-message", "4000"])
    sender = s.login("hans")
    rss0 = s.rss_kb()
    text = "q" * 3000
    per_user = 2000
    for n in names:
        for start in range(0, per_user, 200):
            sender.send_raw("".join(f"{n}{i} MSG {n} {text}\n"
                                    for i in range(start, start + 200)).encode())
            for i in range(start, start + 200):
                assert sender.get_reply(f"{n}{i}")[0] == "OK"
    full = s.rss_kb()
    assert full - rss0 > 30 * 1024, f"the backlog took only {full - rss0} KB"
    for n in names:
        r = s.login(n)
        for _ in range(per_user):  # the backlog comes in pages, each after the last one's ACK
            r.ack(r.wait_event("MSG", timeout=20)[1])
        assert r.request("LOGOUT") == ["OK"]
        assert r.closed(10)
    deadline = time.monotonic() + 15
    while s.rss_kb() - rss0 > (full - rss0) / 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    left = s.rss_kb() - rss0
    assert left <= (full - rss0) / 2, f"{left} KB of {full - rss0} KB still held after the burst"
