"""Security (issue 5): lock-out races and restarts, the credentials rewrite, P2P secrets,
protocol smuggling, and no secrets in the server's log.

- Lock-out race: 10 connections wait at the USER stage for one account, all send a wrong
  `PASS` at once, then an 11th sends the right one (once 3 of the 10 are answered: the order
  in which a server reads different connections is not promised). At most 3 wrong passwords are counted
  (2 x 401, then one 424, the rest 423) and the right one is refused (423). Also with the right
  password as the 4th or 6th of 10 parallel guesses: it must not get in. Done for plain
  accounts and for argon2id accounts created with `--allow-register`, after a restart (their
  checks run on worker threads, so results can come back out of order; 24 rounds).
- Lock-out across restarts: failures and the lock survive SIGTERM and SIGKILL restarts, even a
  SIGKILL straight after the `424` reply.
- `--hash-credentials FILE` (cheap cost) rewrites plain lines to `$argon2id$` lines that still
  log in, keeps comments, blank lines and the mode, and leaves hashed lines alone; SIGKILL in
  the middle of hashing a large file at the default cost leaves the old file byte for byte and
  no temporary file.
- P2P: the client's listener refuses wrong and replayed secrets, a secret for another user,
  a secret after its session ended, and a burst of guesses; the genuine secret still works
  afterwards. (Expiry after 60 s is checked by tests/soak/p2p_expiry.py, too slow here.)
- Smuggling: CR, LF, NUL, ESC, DEL, C1 controls and bad UTF-8 in user names, passwords,
  message texts and other arguments are answered 400 (before and after login), and nothing of
  them is delivered.
- Log hygiene: a `--verbose` server that saw every feature (register, logins, wrong
  passwords, lock-out, direct and offline messages, broadcasts, blocks, P2P with real secrets,
  SIGHUP, idle timeout, logout) has none of the passwords, message bodies or secrets in stderr.
"""

import os
import socket
import sqlite3
import subprocess
import time

import pytest

from conftest import PARLEYD, err, ok, wait_until
from noise_peer import NoisePeer, Refused
from test_client_kit import expect_line, listening_ports, login
from test_fault_kit import figures

CHEAP = ["--hash-ops", "1", "--hash-mem", "8192"]


def _at_pass_stage(s, user, n):
    conns = []
    for _ in range(n):
        p = s.connect()
        p.hello()
        assert p.request("USER", user) == ["OK"]
        conns.append(p)
    return conns


def _lock_row(s, user):
    db = os.path.join(s.dir, "parley-data", "parley.db")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT failures, locked_until > strftime('%s','now') FROM lockouts "
                           "WHERE name = ?", (user,)).fetchone()
    finally:
        con.close()


def _race(s, user, right, label, right_among=None):
    """10 wrong PASS at once, then the right one on an 11th connection while the last of them
    may still be in flight (or, with `right_among`, the right password as guess number
    `right_among` of the 10). The 11th is sent once 3 of the 10 are answered: the server
    reads different connections in no promised order, so one sent just after the others
    could be read before them, and with 3 wrong ones answered the lock is certain."""
    conns = _at_pass_stage(s, user, 11)
    guesses = [f"wrong{i}" for i in range(10)]
    if right_among is not None:
        guesses[right_among] = right
    payload = [(p, f"7 PASS {g}\n") for p, g in zip(conns[:10], guesses)]
    for p, line in payload:
        p.send_raw(line)
    last = conns[10]
    codes = []
    for i, p in enumerate(conns[:10]):
        if i == 3 and right_among is None:
            last.send_raw(f"7 PASS {right}\n")
        r = p.get_reply("7", timeout=30)
        codes.append("OK" if r == ["OK"] else r[1])
    final = None
    if right_among is None:
        r = last.get_reply("7", timeout=30)
        final = "OK" if r == ["OK"] else r[1]
    n401, n424, n423 = codes.count("401"), codes.count("424"), codes.count("423")
    figures(f"lockout_race_{label}", replies=codes, right_password_reply=final,
            counted_wrong=n401 + n424, stored=_lock_row(s, user))
    assert "OK" not in codes and final != "OK", \
        f"the right password got in during the race: {codes} / {final}"
    assert n424 == 1 and n401 == 2 and n423 == 7, f"replies to 10 parallel PASS: {codes}"
    if right_among is None:
        assert final in ("423", "424"), final
    assert _lock_row(s, user) == (3, 1)
    # Locked from anywhere, with the right password too.
    q = s.connect()
    q.hello()
    err(q.login_reply(user, right), 423)
    assert q.closed(5)
    for p, code in zip(conns, codes + [final]):
        if code in ("423", "424"):
            assert p.closed(5), "a connection refused with 423/424 was left open"


def test_lockout_race_plain(make_server):
    s = make_server(block_duration=60)
    _race(s, "vader", "sithlord", "plain")
    _race(s, "luke", "skywalker", "plain_right_among", right_among=5)


def _register(s, name, pw):
    p = s.connect()
    p.hello()
    assert p.request("USER", name) == ["OK", "new"]
    assert p.request("PASS", pw) == ["OK"]
    ok(p.request("LOGOUT"))
    assert p.closed(5)


def _guess_round(s, user, right, pos):
    """10 parallel guesses for `user`, the right password as guess number `pos` (0-based);
    returns the reply codes in guess order."""
    conns = _at_pass_stage(s, user, 10)
    for i, p in enumerate(conns):
        p.send_raw(f"7 PASS {right if i == pos else f'wrong{i}'}\n")
    codes = []
    for p in conns:
        r = p.get_reply("7", timeout=30)
        codes.append("OK" if r == ["OK"] else r[1])
    s.close_protos()
    return codes


ROUNDS = int(os.environ.get("PARLEY_RACE_ROUNDS", "48"))
THREADS = os.environ.get("PARLEY_RACE_THREADS", "8")


def test_lockout_race_argon2id(make_server):
    """argon2id accounts: checks run on `--hash-threads 8` worker threads and take tens of
    milliseconds each (cost 2 ops / 32 MiB), so their results can come back out of order.
    Round A: 10 wrong guesses at once, then the right one. Rounds B (24 accounts): the right
    password is the 4th of 10 parallel guesses, after 3 wrong ones: in the order the guesses
    were made the account is locked before the 4th is looked at, so it must never log in."""
    s = make_server(block_duration=60, args=["--allow-register", "--register-rate", "0",
                                             "--hash-threads", THREADS,
                                             "--hash-ops", "2", "--hash-mem", str(32 << 20)])
    accounts = {f"jedi{i:02d}": f"force-{i:02d}" for i in range(ROUNDS + 1)}
    for name, pw in accounts.items():
        _register(s, name, pw)
    s.restart()
    creds = s.credentials_text()
    assert all(f"{n} $argon2id$" in creds for n in accounts), creds
    s.users.update(accounts)
    ok(s.login("jedi00").request("LOGOUT"))
    s.close_protos()
    _race(s, "jedi00", accounts["jedi00"], "argon2id")
    rounds = {}
    for n in list(accounts)[1:]:
        rounds[n] = _guess_round(s, n, accounts[n], 3)
        if "OK" in rounds[n] and not os.environ.get("PARLEY_RACE_ALL"):
            break  # one is enough to fail
    got_in = {n: c for n, c in rounds.items() if "OK" in c}
    figures("lockout_race_argon2id_4th_guess", rounds=len(rounds), logged_in=len(got_in),
            example=next(iter(got_in.values()), None))
    assert not got_in, (f"the right password sent as the 4th of 10 parallel guesses (after 3 "
                        f"wrong ones) logged in, in round {len(rounds)} (of at most {ROUNDS}); replies "
                        f"in guess order: {list(got_in.values())[:3]}")
    for n, c in rounds.items():
        assert c.count("401") + c.count("424") <= 3 and c.count("424") == 1, (n, c)


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_lockout_survives_restart(make_server, how):
    s = make_server(block_duration=60, args=["--allow-register", *CHEAP])
    p = s.connect()
    p.hello()
    assert p.request("USER", "padme") == ["OK", "new"]
    assert p.request("PASS", "queen") == ["OK"]
    ok(p.request("LOGOUT"))

    def bounce():
        if how == "kill9":
            s.kill9()
            s.start()
        else:
            s.restart()
    for user, right in (("vader", "sithlord"), ("padme", "queen")):
        # One failure, restart, one failure, restart, the third locks.
        for expect in (401, 401, 424):
            q = s.connect()
            q.hello()
            assert q.request("USER", user) == ["OK"]
            err(q.request("PASS", "nope"), expect)
            bounce()
        for _ in range(2):
            q = s.connect()
            q.hello()
            err(q.login_reply(user, right), 423)
            bounce()
        q = s.connect()
        q.hello()
        err(q.login_reply(user, right), 423)


def test_lock_stored_before_the_reply(make_server):
    """SIGKILL straight after reading the 424: the lock is already durable."""
    s = make_server(block_duration=60)
    conns = _at_pass_stage(s, "r2d2", 1)
    p = conns[0]
    err(p.request("PASS", "a"), 401)
    err(p.request("PASS", "b"), 401)
    err(p.request("PASS", "c"), 424)
    s.kill9()
    s.start()
    q = s.connect()
    q.hello()
    err(q.login_reply("r2d2", "beepboop"), 423)


# ---- parleyd --hash-credentials ----

PLAIN = """# Parley accounts
# name password

hans falcon
yoda wise
# a comment between accounts
vader sith#lord!
c3po gold
"""


def _hash(path, *extra, timeout=60):
    return subprocess.run([PARLEYD, "--hash-credentials", str(path), *extra],
                          capture_output=True, text=True, timeout=timeout)


def test_hash_credentials_rewrites_and_logs_in(make_server, tmp_path):
    d = tmp_path / "srv"
    d.mkdir()
    cred = d / "credentials.txt"
    cred.write_text(PLAIN)
    os.chmod(cred, 0o640)
    r = _hash(cred, *CHEAP)
    assert r.returncode == 0, r.stderr
    text = cred.read_text()
    lines = text.split("\n")
    want = PLAIN.split("\n")
    assert len(lines) == len(want), text
    for got, orig in zip(lines, want):
        if orig.startswith("#") or orig == "":
            assert got == orig
        else:
            name = orig.split(" ")[0]
            assert got.startswith(f"{name} $argon2id$"), got
            assert orig.split(" ")[1] not in got
    assert oct(os.stat(cred).st_mode & 0o777) == oct(0o640)
    assert not [f for f in os.listdir(d) if ".tmp." in f]
    # Idempotent: hashed lines are left alone.
    r = _hash(cred, *CHEAP)
    assert r.returncode == 0, r.stderr
    assert cred.read_text() == text
    users = {"hans": "falcon", "yoda": "wise", "vader": "sith#lord!", "c3po": "gold"}
    s = make_server(dir=d, users=users)
    for name in ("hans", "yoda", "vader"):
        s.login(name)
    q = s.connect()
    q.hello()
    assert q.request("USER", "c3po") == ["OK"]
    err(q.request("PASS", "falcon"), 401)
    assert q.request("PASS", "gold") == ["OK"]


def test_hash_credentials_killed_midway_leaves_old_file(tmp_path):
    cred = tmp_path / "big.txt"
    orig = "# many accounts\n" + "".join(f"user{i:04d} password-{i:04d}\n" for i in range(400))
    cred.write_text(orig)
    kills = []
    for delay in (0.3, 1.0, 2.0):
        p = subprocess.Popen([PARLEYD, "--hash-credentials", str(cred)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(delay)
        finished = p.poll() is not None
        p.kill()
        p.wait(10)
        kills.append(dict(delay=delay, finished_before_kill=finished))
        assert not finished, "hashing 400 passwords at the default cost ended too soon to test"
        assert cred.read_text() == orig, "the credentials file changed after a kill mid-way"
        left = [f for f in os.listdir(tmp_path) if f != "big.txt"]
        assert not left, f"files left behind by a killed --hash-credentials: {left}"
    figures("hash_credentials_kill", accounts=400, kills=kills)
    # And a full run at a cheap cost still works on the same file.
    r = _hash(cred, *CHEAP, timeout=120)
    assert r.returncode == 0, r.stderr
    assert cred.read_text().count("$argon2id$") == 400


# ---- P2P secrets at the client's listener ----

def _p2p_port(child):
    ports = listening_ports(child.pid)
    assert len(ports) == 1, ports
    return ports[0]


def test_p2p_secrets_refused(server, client_factory):
    hans = login(client_factory, server, "hans")
    port = _p2p_port(hans)
    vader = server.login("vader")
    vader.open_listener()
    yoda = server.login("yoda")
    yoda.open_listener()
    secret = ok(vader.request("P2P", "hans"))[2]
    assert len(secret) == 32 and all(c in "0123456789abcdef" for c in secret.lower())
    refused = 0
    # Guesses: random-looking secrets, the real secret with another name, a changed digit.
    # Each gets as far as handshake message 3, whose PSK does not fit (or an ERR before).
    tries = [("vader", os.urandom(16).hex()) for _ in range(30)]
    tries += [("yoda", secret), ("vader", secret[:-1]), ("vader", secret + "0"),
              ("vader", secret.upper() if secret.upper() != secret else secret[::-1])]
    for name, guess in tries:
        with pytest.raises(Refused):
            NoisePeer.connect(port, name, "hans", guess)
        refused += 1
    # The genuine one still works, once.
    peer = NoisePeer.connect(port, "vader", "hans", secret)
    expect_line(hans, "vader started private messaging with you")
    peer.send_frame(b"STOP")
    expect_line(hans, "vader stopped private messaging")
    peer.close()
    # Replayed after its session ended: refused.
    with pytest.raises(Refused):
        NoisePeer.connect(port, "vader", "hans", secret)
    refused += 1
    # A secret the server gave yoda cannot be used by vader, nor twice by yoda.
    s2 = ok(yoda.request("P2P", "hans"))[2]
    with pytest.raises(Refused):
        NoisePeer.connect(port, "vader", "hans", s2)
    first = NoisePeer.connect(port, "yoda", "hans", s2)
    with pytest.raises(Refused):
        NoisePeer.connect(port, "yoda", "hans", s2)
    first.close()
    figures("p2p_secrets", refused=refused + 2, accepted=2)


# ---- smuggling ----

BAD = {
    "CR": b"a\rb", "NUL": b"a\x00b", "ESC": b"a\x1b[2Jb", "DEL": b"a\x7fb", "BEL": b"a\x07b",
    "C1": "a\u009bb".encode(), "TAB": b"a\tb", "bad-utf8": b"a\xff\xfeb",
    "overlong-utf8": b"a\xc0\xafb", "surrogate": b"a\xed\xa0\x80b",
}


def test_smuggling_rejected_400(server):
    pre = server.connect()
    pre.hello()
    hans = server.login("hans")
    yoda = server.login("yoda")
    hans.wait_event("LOGIN yoda")
    tried = 0
    for kind, bad in sorted(BAD.items()):
        for p, body in ((pre, b"USER " + bad),
                        (pre, b"USER hans" + bad),
                        (hans, b"MSG yoda " + bad),
                        (hans, b"MSG y" + bad + b" text"),
                        (hans, b"BCAST " + bad),
                        (hans, b"BLOCK " + bad),
                        (hans, b"P2P " + bad),
                        (hans, b"WHOSINCE 1" + bad)):
            r = p.send_bad(body)
            assert r[:2] == ["ERR", "400"], f"{kind}: {body!r} -> {r}"
            tried += 1
        # PASS with a bad byte, at the password stage.
        q = server.connect()
        q.hello()
        assert q.request("USER", "vader") == ["OK"]
        r = q.send_bad(b"PASS sith" + bad + b"lord")
        assert r[:2] == ["ERR", "400"], f"{kind}: PASS -> {r}"
        tried += 1
        q.close()
    # LF cannot hide a second request inside a text: it ends the frame, and what follows is
    # a frame of its own with no valid tag.
    r = hans.send_bad(b"MSG yoda first\n* LOGOUT")
    yoda.wait_event("MSG")
    ok(hans.request("WHO"))
    yoda.no_event("MSG", within=0.3)
    assert not [e for e in yoda.all_events if e[0] in ("MSG", "BCAST") and
                any(ch in e[-1] for ch in "\r\x00\x1b\x7f\x07\t\u009b")]
    # None of the wrong passwords counted as a failure.
    assert server.login("vader")
    figures("smuggling", frames_tried=tried)


def test_client_refuses_control_characters(server):
    """The terminal client (from a pipe) does not send what the server would refuse: a user
    name with ESC is an invalid user name, a password with NUL a wrong one (each ends a piped
    run), and texts with ESC, BEL, CR or NUL are refused locally; nothing of them reaches the
    recipient."""
    from test_client_kit import run_pipe
    yoda = server.login("yoda")
    for login_lines, said in (("h\x1b[2Jans\nhans\n", "Invalid Username"),
                              ("hans\nfalc\x00on\nfalcon\n", "Invalid Password")):
        rc, out, errout = run_pipe(server.port, login_lines)
        assert rc == 1 and said in out and "\x1b" not in out, (out, errout)
    text = ("hans\nfalcon\n"
            "message yoda a\x1b[31mred\nmessage yoda b\x07bell\nmessage yoda c\rcr\n"
            "message yoda d\x00nul\nbroadcast e\x1b]0;title\x07x\nmessage yoda clean\nlogout\n")
    rc, out, errout = run_pipe(server.port, text)
    assert rc == 0, (out, errout)
    assert "\x1b" not in out and "\x07" not in out, repr(out)
    assert out.count("Error. ") >= 5, out
    yoda.wait_event("LOGOUT hans")
    texts = [e[-1] for e in yoda.all_events if e[0] in ("MSG", "BCAST")]
    assert texts == ["clean"], texts


# ---- no secrets in the log ----

def test_no_secret_in_verbose_log(make_server, client_factory):
    users = {"hans": "Pw-hans-5f2c9e", "yoda": "Pw-yoda-81ab3d", "vader": "Pw-vader-c04e17",
             "luke": "Pw-luke-9d6a20"}
    s = make_server(users=users, timeout=3, block_duration=60,
                    args=["--verbose", "--allow-register", *CHEAP])
    secrets = list(users.values())
    bodies = []

    def body(tag):
        b = f"Body-{tag}-{os.urandom(4).hex()}"
        bodies.append(b)
        return b
    # register a new account
    p = s.connect()
    p.hello()
    assert p.request("USER", "padme") == ["OK", "new"]
    assert p.request("PASS", "Pw-padme-3e7f55") == ["OK"]
    secrets.append("Pw-padme-3e7f55")
    ok(p.request("LOGOUT"))
    # wrong passwords up to a lock-out
    q = s.connect()
    q.hello()
    assert q.request("USER", "luke") == ["OK"]
    for w in ("Wrong-a-11aa", "Wrong-b-22bb", "Wrong-c-33cc"):
        secrets.append(w)
        q.request("PASS", w)
    # terminal clients: direct, offline, broadcast, block, private
    hans = login(client_factory, s, "hans")
    yoda = login(client_factory, s, "yoda")
    expect_line(hans, "yoda logged in")
    b = body("direct")
    hans.sendline(f"message yoda {b}")
    expect_line(yoda, f"hans: {b}")
    b = body("offline")
    hans.sendline(f"message vader {b}")
    b = body("bcast")
    yoda.sendline(f"broadcast {b}")
    expect_line(hans, f"yoda: {b}")
    hans.sendline("block yoda")
    expect_line(hans, "yoda is blocked")
    hans.sendline("unblock yoda")
    expect_line(hans, "yoda is unblocked")
    hans.sendline("whoelsesince 60")
    hans.sendline("startprivate yoda")
    expect_line(hans, "Start private messaging with yoda")
    b = body("private")
    hans.sendline(f"private yoda {b}")
    expect_line(yoda, f"hans(private): {b}")
    # raw P2P requests, to learn the secrets the server hands out
    vader = s.login("vader")
    vader.open_listener()
    for ev in vader.msgs():
        vader.ack(ev[1])
    padme = s.login("padme", pw="Pw-padme-3e7f55")
    padme.open_listener()
    tag = vader.send_request("P2P", "padme")
    ev = padme.wait_event("P2PREQ")
    secrets.append(ev[2])
    ok(padme.request("P2PACCEPT", "vader"))
    r = ok(vader.get_reply(tag))
    assert r[2] == ev[2]
    s.sighup()
    time.sleep(0.3)
    hans.sendline("stopprivate yoda")
    expect_line(yoda, "hans stopped private messaging")
    hans.sendline("logout")
    # let vader and padme idle out (timeout 3 s)
    wait_until(lambda: vader.closed(0.2), timeout=10, what="vader to time out")
    s.stop()
    log = s.stderr_text()
    assert "info:" in log, "the server logged nothing at --verbose"
    leaked = [x for x in secrets + bodies if x in log]
    figures("log_hygiene", log_lines=len(log.splitlines()), secrets_checked=len(secrets),
            bodies_checked=len(bodies), leaked=len(leaked))
    assert not leaked, f"found in the --verbose log: {leaked}\n{log}"
