"""Accounts and credentials under attack (issue 9, docs/RELIABILITY.md section 10.2).

- Names (point 6, 8): a registered `#x` became a comment in credentials.txt at the next load;
  `yoda(private)` passed for yoda's private messages. Such names are refused at registration
  (400) and in the file (the line is reported, the rest loads); every other kind of name is
  registered, survives a restart and logs in.
- Reloads (point 7): SIGHUP with an empty, truncated or garbled file is refused and logged, the
  offline accounts stay and their names cannot be registered; a reload removing one account on
  purpose still applies.
- Hash costs (point 9): a `$argon2id$` line with a 4 GiB memory cost is refused at load with its
  line number; its name stays taken and a login attempt costs no hash.
- Hash jobs (point 10): registrations abandoned right after `PASS` are dropped before they are
  hashed; at most `--max-hash-jobs` hashes wait (508 past it); registrations are limited per
  address (`--register-rate`, 429). The long flood is tests/soak/register_flood.py.
- Lock-out (point 20): a lock made late in a second lasts at least `block_duration`.
"""

import subprocess
import time

import pytest

from conftest import PARLEYD, err, ok, wait_until

CHEAP = ["--hash-ops", "1", "--hash-mem", "8192"]
# About 0.1 s a hash on one thread: a queue of abandoned hashes shows as seconds of delay.
COSTLY = ["--hash-threads", "1", "--hash-ops", "3", "--hash-mem", str(64 << 20)]


def _user_reply(s, name):
    p = s.connect()
    p.hello()
    r = p.request("USER", name)
    p.close()
    return r


def _register(s, name, pw, **kw):
    p = s.connect(**kw)
    p.hello()
    assert p.request("USER", name) == ["OK", "new"], name
    r = p.request("PASS", pw, timeout=30)
    p.close()
    return r


def _wait_log(s, text, timeout=5):
    return wait_until(lambda: text in s.stderr_text(), timeout=timeout, what=f"log line {text!r}")


# ------------------------------------------------------------------------------- names (6, 8)


@pytest.mark.parametrize("name", ["#x", "#", "yoda(private)", "yoda:", "a(b", "b)"])
def test_register_refuses_names_that_break_the_file_or_impersonate(make_server, name):
    s = make_server(args=["--allow-register", *CHEAP])
    p = s.connect()
    p.hello()
    err(p.request("USER", name), 400)
    assert name not in s.credentials_text().split()


def test_every_allowed_kind_of_name_registers_and_survives_restart(make_server):
    """Each printable byte the rule allows, first and inside a name, plus the longest name."""
    s = make_server(users={"hans": "falcon"}, args=["--allow-register", "--register-rate", "0",
                                                    *CHEAP])
    allowed = [chr(c) for c in range(0x21, 0x7f) if chr(c) not in "():"]
    names = {"x" + c + "y" for c in allowed} | {c + "z" for c in allowed if c != "#"}
    names.add("N" * 32)
    for i, n in enumerate(sorted(names)):
        assert _register(s, n, f"pw{i}") == ["OK"], n
    s.restart()
    for i, n in enumerate(sorted(names)):
        s.login(n, f"pw{i}").close()
    assert "cannot be used" not in s.stderr_text()


def test_credentials_line_with_forbidden_name_is_refused_rest_loads(make_server, tmp_path):
    d = tmp_path / "names"
    d.mkdir()
    (d / "credentials.txt").write_text("yoda(private) pw\nhans falcon\nluke: sky\nyoda wise\n")
    s = make_server(dir=d, users={})
    assert "line 1: invalid name" in s.stderr_text()
    s.login("hans", "falcon")
    s.login("yoda", "wise")
    p = s.connect()
    p.hello()
    err(p.request("USER", "yoda(private)"), 400)


# ----------------------------------------------------------------------------- reloads (7)


def _garble(path, how):
    text = open(path).read()
    with open(path, "wb") as f:
        if how == "empty":
            pass
        elif how == "truncated":  # cut in the middle of the second line
            f.write(text[:text.index("\n") + 4].encode())
        elif how == "garbled":
            f.write(b"\x00\xff\xfe garbage \x1b[31m\n" * 6)
        elif how == "one-bad-line":
            f.write(text.replace("vader sithlord", "vader  sithlord").encode())


@pytest.mark.parametrize("how", ["empty", "truncated", "garbled", "one-bad-line"])
def test_reload_that_would_lose_accounts_is_refused(make_server, how):
    s = make_server(args=["--allow-register", *CHEAP])
    a = s.login("hans")
    _garble(s.cred_path, how)
    s.sighup()
    _wait_log(s, "reload refused")
    # The offline accounts are all there: none can be registered, all log in.
    for name in ("yoda", "vader", "luke"):
        assert _user_reply(s, name) == ["OK"], name
        s.login(name).request("LOGOUT")
    ok(a.request("WHO"))
    a.no_event("BYE", within=0)


def test_reload_removing_one_account_on_purpose_applies(make_server):
    s = make_server()
    lines = [l for l in s.credentials_text().splitlines() if not l.startswith("luke ")]
    with open(s.cred_path, "w") as f:
        f.write("\n".join(lines) + "\nleia princess\n")
    s.sighup()
    wait_until(lambda: _user_reply(s, "leia") == ["OK"], what="the reload")
    err(_user_reply(s, "luke"), 404)
    assert "reload refused" not in s.stderr_text()


def test_reload_refused_then_fixed_file_applies(make_server):
    s = make_server(args=["--max-reload-loss", "100"])
    good = s.credentials_text()
    _garble(s.cred_path, "one-bad-line")
    s.sighup()
    _wait_log(s, "line 3: more than one space")
    with open(s.cred_path, "w") as f:
        f.write(good + "leia princess\n")
    s.sighup()
    wait_until(lambda: _user_reply(s, "leia") == ["OK"], what="the fixed reload")
    s.login("vader")


# --------------------------------------------------------------------------- hash costs (9)


def test_hash_cost_over_the_cap_is_refused_at_load(make_server, tmp_path):
    d = tmp_path / "costly"
    d.mkdir()
    (d / "credentials.txt").write_text(
        "hans falcon\n"
        "big $argon2id$v=19$m=4194304,t=3,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n")
    s = make_server(dir=d, users={}, args=["--allow-register", *CHEAP])
    # Checked before any login, so the old code fails here without spending 4 GiB.
    log = s.stderr_text()
    assert "line 2: argon2id cost t=3 m=4194304 KiB is over the cap" in log, log
    assert "big cannot log in" in log
    p = s.connect()
    p.hello()
    assert p.request("USER", "big") == ["OK"]  # the name stays taken: no "OK new"
    t0 = time.monotonic()
    err(p.request("PASS", "anything"), 401)
    assert time.monotonic() - t0 < 1.0
    s.login("hans", "falcon")


def test_max_hash_cost_options(make_server, tmp_path):
    d = tmp_path / "caps"
    d.mkdir()
    (d / "credentials.txt").write_text("hans falcon\n")
    s = make_server(dir=d, users={}, args=["--allow-register", "--hash-ops", "2", "--hash-mem",
                                           str(1 << 20), "--max-hash-ops", "2", "--max-hash-mem",
                                           str(1 << 20)])
    assert _register(s, "newbie", "pw") == ["OK"]
    s.args = [*CHEAP, "--max-hash-mem", str(512 << 10)]  # below the cost of newbie's hash
    s.restart()
    assert "over the cap" in s.stderr_text()
    p = s.connect()
    p.hello()
    assert p.request("USER", "newbie") == ["OK"]
    err(p.request("PASS", "pw"), 401)
    # A cap below the server's own hash cost is a usage error.
    r = subprocess.run([PARLEYD, "--hash-mem", str(1 << 20), "--max-hash-mem", str(512 << 10),
                        "0", "1", "1"], cwd=d, capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--max-hash-mem" in r.stderr, r


# ----------------------------------------------------------------------------- hash jobs (10)


def test_abandoned_registrations_are_not_hashed(make_server):
    """60 connections send `PASS` after `OK new` and close at once. Before the fix each still
    cost a hash (and an account): a hashed login behind them waited for all of them."""
    s = make_server(args=["--allow-register", "--register-rate", "0", *COSTLY])
    assert _register(s, "hashy", "hashpw") == ["OK"]
    for i in range(60):
        q = s.connect()
        q.send_raw(b"1 HELLO 1 e2e\n2 USER gone%02d\n3 PASS pw\n" % i)
        q.close()
    w = s.login("hans")
    ok(w.request("WHO"))  # the loop has seen every frame and every close by now
    t0 = time.monotonic()
    p = s.connect()
    p.hello()
    assert p.request("USER", "hashy") == ["OK"]
    assert p.request("PASS", "hashpw", timeout=30) == ["OK"]
    took = time.monotonic() - t0
    created = [l for l in s.credentials_text().splitlines() if l.startswith("gone")]
    assert took < 3.0, f"a hashed login waited {took:.1f} s behind abandoned registrations"
    assert len(created) <= 2, f"{len(created)} abandoned registrations were hashed"


def test_hash_jobs_are_bounded(make_server):
    s = make_server(args=["--allow-register", "--register-rate", "0", "--max-hash-jobs", "3",
                          *COSTLY])
    conns = []
    for i in range(8):
        p = s.connect()
        p.hello()
        assert p.request("USER", f"new{i}") == ["OK", "new"]
        conns.append(p)
    for p in conns:
        p.send_request("PASS", "pw")
    replies = [p.get_reply(str(p.next_tag - 1), timeout=30) for p in conns]
    assert replies.count(["OK"]) == 3, replies
    assert all(r == ["OK"] or r[:2] == ["ERR", "508"] for r in replies), replies
    # The refused ones may try again once there is room: nothing was spent on them.
    for p, r in zip(conns, replies):
        if r != ["OK"]:
            wait_until(lambda: p.request("PASS", "pw", timeout=30) == ["OK"], timeout=20,
                       interval=0.2, what="a retried registration")
    assert sum(l.startswith("new") for l in s.credentials_text().splitlines()) == 8


def test_registrations_are_limited_per_address(make_server):
    s = make_server(args=["--allow-register", *CHEAP])  # the default: 10 a minute
    for i in range(10):
        assert _register(s, f"r{i:02d}", "pw") == ["OK"]
    p = s.connect()
    p.hello()
    assert p.request("USER", "r10") == ["OK", "new"]
    err(p.request("PASS", "pw"), 429)
    assert "r10 " not in s.credentials_text()
    # Nothing was counted against logins or other addresses.
    s.login("hans")
    assert _register(s, "r10", "pw", source="127.0.0.2") == ["OK"]


# ------------------------------------------------------------------------------ lock-out (20)


def test_lockout_lasts_at_least_block_duration(make_server):
    """The third failure is sent 0.85 s into a wall-clock second; the lock (1 s) must not end
    before a whole second has passed. Before the fix it ended at the next whole second."""
    s = make_server(block_duration=1)
    p = s.connect()
    p.hello()
    assert p.request("USER", "vader") == ["OK"]
    err(p.request("PASS", "x1"), 401)
    err(p.request("PASS", "x2"), 401)
    while not 0.80 <= time.time() % 1 <= 0.90:
        time.sleep(0.005)
    t0 = time.monotonic()
    err(p.request("PASS", "x3"), 424)

    def unlocked():
        # USER answers OK for a locked account too (issue 10): the right password tells.
        q = s.connect()
        q.hello()
        q.request("USER", "vader")
        r = q.request("PASS", "sithlord")
        q.close()
        return r == ["OK"]
    wait_until(unlocked, timeout=5, interval=0.02, what="the lock to expire")
    took = time.monotonic() - t0
    assert took >= 1.0, f"the 1 s lock ended after {took:.2f} s"
    s.login("vader")
