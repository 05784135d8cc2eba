"""Server: signals, the command line, registration, hashed passwords and what it prints
(spec §1, §2, §3.9; PROTOCOL §4)."""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import PARLEYD, ParleyServer, Proto, err, ok, wait_until

CHEAP_HASH = ["--hash-ops", "1", "--hash-mem", "8192"]


def _run(args, cwd, timeout=10):
    if not os.access(PARLEYD, os.X_OK):
        pytest.skip("parleyd not built")
    return subprocess.run([PARLEYD, *args], cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout)


# ---------------------------------------------------------------------------- signals


def test_sigterm_clean_exit_and_clients_told(server):
    a = server.login("hans")
    b = server.login("yoda")
    pending = server.connect()
    pending.hello()
    assert server.stop() == 0
    for p in (a, b):
        assert p.closed(5)
        assert ["BYE", "shutdown"] in p.all_events, p.frames
        # Nobody appears to log out one by one before the goodbye (issue 10, defect 6).
        assert not [e for e in p.all_events if e[0] == "LOGOUT"], p.frames
        assert not p.reset, "connection reset instead of closed"
    assert pending.closed(5)
    assert server.stderr_text() == ""


def test_sigterm_with_many_connections_in_every_state(make_server):
    """Shutdown frees every connection exactly once, whatever state it is in, also while the
    clients are disconnecting (5 rounds)."""
    users = {f"u{i:02d}": "pw" for i in range(40)}
    s = make_server(users=users)
    for round_ in range(5):
        conns = []
        for i, name in enumerate(users):
            c = s.connect()
            kind = i % 4
            if kind == 0:
                c.login(name, "pw")
            elif kind == 1:
                c.send_raw(b"1 HELLO 1 e2e\n2 USER " + name.encode() + b"\n3 PA")
            elif kind == 2:
                c.login(name, "pw")
                c.send_raw(b"".join(b"b%d BCAST flood %d\n" % (j, j) for j in range(50)))
            conns.append(c)
        for c in conns:
            c.pump(0)
        if round_ >= 1:
            # Clients leaving at the very moment the server shuts down.
            for c in conns:
                c.close()
        assert s.stop() == 0, f"round {round_}"
        for c in conns:
            assert c.sock.fileno() == -1 or c.closed(5)
        s.start()


def test_sigint_clean_exit(server):
    server.login("hans")
    assert server.stop(sig=signal.SIGINT) == 0


def test_sigterm_while_busy_loses_no_accepted_message(server):
    a = server.login("hans")
    b = server.login("yoda")
    a.send_raw("".join(f"m{i} MSG yoda busy {i}\n" for i in range(200)).encode())
    a.pump(0.05)
    assert server.stop() == 0
    assert a.closed(5) and b.closed(5)
    accepted = sorted(int(r[1]) for r in a.replies.values() if r and r[0] == "OK")
    server.start()
    # yoda never acknowledged anything: every accepted message comes (again) at the next login.
    c = server.login("yoda")
    evs = c.wait_events("MSG", len(accepted)) if accepted else []
    assert [int(e[1]) for e in evs] == accepted
    c.no_event("MSG", within=0.3)


def test_sighup_adds_user_without_dropping_anyone(server):
    a = server.login("hans")
    b = server.login("yoda")
    p = server.connect()
    p.hello()
    err(p.request("USER", "leia"), 404)
    server.add_user("leia", "princess")
    server.sighup()

    def leia_known():
        return p.request("USER", "leia") == ["OK"]
    wait_until(leia_known, timeout=5, interval=0.1, what="SIGHUP to load leia")
    assert p.request("PASS", "princess") == ["OK"]
    a.wait_event("LOGIN leia")
    assert sorted(ok(a.request("WHO"))) == ["leia", "yoda"]
    ok(b.request("MSG", "hans", "still connected"))
    assert a.wait_event("MSG")[4] == "still connected"
    for c in (a, b):
        c.no_event("BYE", within=0)
    assert server.running()


def test_sighup_removed_user_stays_connected_password_change_applies(server):
    a = server.login("hans")
    y = server.login("yoda")
    with open(server.cred_path) as f:
        lines = f.read().splitlines()
    lines = [l for l in lines if not l.startswith("hans ")]
    lines = [("vader darkside" if l.startswith("vader ") else l) for l in lines]
    with open(server.cred_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    server.sighup()

    def vader_changed():
        p = Proto(server.port)
        try:
            p.hello()
            assert p.request("USER", "vader") == ["OK"]
            if p.request("PASS", "darkside") != ["OK"]:
                return False
            assert p.request("LOGOUT") == ["OK"]
            return True
        finally:
            p.close()
    wait_until(vader_changed, timeout=5, interval=0.2, what="SIGHUP to change vader's password")
    a.wait_event("LOGIN vader")
    a.wait_event("LOGOUT vader")
    # hans, removed from the file, was not dropped.
    assert ok(a.request("WHO")) == ["yoda"]
    a.no_event("BYE", within=0)
    p = server.connect()
    p.hello()
    err(p.request("USER", "hans"), 404)


# ---------------------------------------------------------------------------- registration, hashes


def test_register_new_user_stores_argon2id(make_server):
    s = make_server(args=["--allow-register", *CHEAP_HASH])
    w = s.login("hans")
    p = s.connect()
    p.hello()
    assert p.request("USER", "newbie") == ["OK", "new"]
    assert p.request("PASS", "n3wPass!") == ["OK"]
    w.wait_event("LOGIN newbie")
    text = s.credentials_text()
    line = [l for l in text.splitlines() if l.startswith("newbie ")]
    assert len(line) == 1, text
    assert line[0].startswith("newbie $argon2id$"), line
    assert "n3wPass!" not in text
    assert "hans falcon" in text  # the rest of the file is intact
    # Existing users are still "OK", not "OK new".
    q = s.connect()
    q.hello()
    assert q.request("USER", "yoda") == ["OK"]
    # The new account works at once and after a restart (hash verified from the file).
    p.request("LOGOUT")
    s.login("newbie", "n3wPass!")
    s.stop()
    s.args = list(CHEAP_HASH)  # registration off now
    s.start()
    s.login("newbie", "n3wPass!")


def test_argon2id_line_verifies_and_counts_failures(make_server):
    s = make_server(args=["--allow-register", *CHEAP_HASH])
    p = s.connect()
    p.hello()
    assert p.request("USER", "hashed") == ["OK", "new"]
    assert p.request("PASS", "rightone") == ["OK"]
    s.stop()
    s.args = []
    s.start()
    p = s.connect()
    p.hello()
    assert p.request("USER", "hashed") == ["OK"]
    err(p.request("PASS", "wrongone"), 401)
    err(p.request("PASS", "rightone!"), 401)
    assert p.request("PASS", "rightone") == ["OK"]
    # A hashed account is verified without stalling the others.
    ok(s.login("hans").request("WHO"))


def test_registration_off_by_default(server):
    p = server.connect()
    p.hello()
    err(p.request("USER", "newbie"), 404)


def test_register_rejects_unusable_password(make_server):
    s = make_server(args=["--allow-register", *CHEAP_HASH])
    p = s.connect()
    p.hello()
    assert p.request("USER", "newbie2") == ["OK", "new"]
    err(p.request("PASS", "x" * 129), 400)
    assert "newbie2" not in s.credentials_text()


# ---------------------------------------------------------------------------- output


def test_nothing_printed_in_normal_operation(make_server):
    s = make_server(timeout=2, args=["--login-timeout", "1", "--max-errors", "3"])
    a = s.login("hans")
    b = s.login("yoda")
    ok(a.request("MSG", "yoda", "hi"))
    ok(a.request("MSG", "vader", "offline"))
    ok(a.request("BCAST", "all"))
    a.request("BLOCK", "r2d2")
    err(a.request("MSG", "nobody", "x"), 404)
    err(a.request("FOO"), 501)
    a.send_bad(b"\xff")
    p = s.connect()
    p.hello()
    p.request("USER", "luke")
    for pw in ("a", "b", "c"):
        p.request("PASS", pw)
    j = s.connect()
    j.send_raw(b"\x00\x01\x02\n" * 5)
    assert j.closed(5)
    silent = s.connect()
    assert silent.closed(5)   # login timeout
    assert b.closed(5)         # idle timeout
    s.restart()
    s.login("vader").wait_event("MSG")
    s.stop()
    assert s.stderr_text() == "", s.stderr_text()
    assert s.stdout_text() == "", s.stdout_text()


def test_verbose_never_logs_passwords_or_bodies(make_server):
    users = {"hans": "Pw-Hans-4711", "yoda": "Pw-Yoda-0815", "luke": "Pw-Luke-2222"}
    s = make_server(users=users, args=["--verbose", "--allow-register", *CHEAP_HASH])
    a = s.login("hans")
    b = s.login("yoda")
    ok(a.request("MSG", "yoda", "Body-Marker-Direct-77"))
    ok(a.request("MSG", "luke", "Body-Marker-Offline-88"))
    ok(a.request("BCAST", "Body-Marker-Bcast-99"))
    p = s.connect()
    p.hello()
    p.request("USER", "luke")
    err(p.request("PASS", "Wrong-Guess-1234"), 401)
    assert p.request("PASS", "Pw-Luke-2222") == ["OK"]
    r = s.connect()
    r.hello()
    assert r.request("USER", "registered") == ["OK", "new"]
    assert r.request("PASS", "Reg-Secret-5150") == ["OK"]
    a.send_bad(b"MSG yoda Body-Marker-Bad-\x01")
    s.stop()
    log = s.stderr_text()
    for secret in ("Pw-Hans-4711", "Pw-Yoda-0815", "Pw-Luke-2222", "Wrong-Guess-1234",
                   "Reg-Secret-5150", "Body-Marker"):
        assert secret not in log, f"--verbose output contains {secret!r}:\n{log}"
    assert s.stdout_text() == ""


# ---------------------------------------------------------------------------- command line


def test_help_and_version(tmp_path):
    r = _run(["--help"], tmp_path)
    assert r.returncode == 0
    out = (r.stdout + r.stderr).decode()
    assert re.search(r"usage", out, re.I), out
    assert "timeout" in out, out
    r = _run(["--version"], tmp_path)
    assert r.returncode == 0
    assert re.search(r"\d+\.\d+\.\d+", (r.stdout + r.stderr).decode())


@pytest.mark.parametrize("args", [[], ["5000"], ["5000", "10"], ["0", "abc", "60"],
                                  ["0", "10", "-5"], ["notaport", "10", "60"],
                                  ["0", "10", "60", "extra"], ["--no-such-option", "0", "1", "1"]])
def test_bad_arguments_fail_with_message(tmp_path, args):
    (tmp_path / "credentials.txt").write_text("hans falcon\n")
    r = _run(args, tmp_path)
    assert r.returncode != 0, f"parleyd {args} exited 0"
    assert r.stderr.strip(), f"parleyd {args} printed no error"


def test_store_chosen_by_name(tmp_path, make_server):
    (tmp_path / "credentials.txt").write_text("hans falcon\n")
    r = _run(["--store", "nosuch", "0", "10", "60"], tmp_path)
    assert r.returncode == 2, r
    assert "unknown store 'nosuch' (known: local, redis)" in r.stderr.decode()
    assert not (tmp_path / "parley-data").exists()  # refused before the store is touched
    s = make_server(args=["--store", "local"])
    ok(s.login("hans").request("WHO"))
    assert os.path.exists(os.path.join(s.dir, "parley-data", "parley.db"))


def test_classic_positional_interface(tmp_path):
    if not os.access(PARLEYD, os.X_OK):
        pytest.skip("parleyd not built")
    (tmp_path / "credentials.txt").write_text("hans falcon\nyoda wise\n")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = subprocess.Popen([PARLEYD, str(port), "2", "60"], cwd=tmp_path,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        def up():
            try:
                return Proto(port)
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                return None
        p = wait_until(up, timeout=10, interval=0.05, what="parleyd to listen on its port")
        p.login("hans", "falcon")
        assert (tmp_path / "parley-data").is_dir()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, errs = proc.communicate(timeout=10)
    assert proc.returncode == 0, errs
    assert out == b"" and errs == b"", (out, errs)


def test_port_in_use_is_a_fatal_error(server, tmp_path):
    d = tmp_path / "second"
    d.mkdir()
    (d / "credentials.txt").write_text("hans falcon\n")
    r = _run([str(server.port), "2", "60"], d)
    assert r.returncode != 0
    assert r.stderr.strip()
    ok(server.login("hans").request("WHO"))


def test_long_options_replace_positionals(make_server):
    s = make_server()
    s.stop()
    # Same directory, the three values given as long options instead.
    s.command = lambda: [PARLEYD, "--port-file", s.port_file, "--port", "0",
                         "--block-duration", "2", "--timeout", "60"]
    s.start()
    s.login("hans")


def test_bind_address(make_server):
    s = make_server(args=["--bind", "127.0.0.2"])
    with pytest.raises(OSError):
        Proto(s.port, host="127.0.0.1")
    p = s.connect(host="127.0.0.2")
    p.login("hans", "falcon")


def test_hash_credentials_rewrites_file_and_hashes_verify(make_server, tmp_path):
    d = tmp_path / "hashed"
    d.mkdir()
    cred = d / "credentials.txt"
    cred.write_text("hans falcon\nyoda wise\n")
    r = _run(["--hash-credentials", str(cred), *CHEAP_HASH], d)
    assert r.returncode == 0, r.stderr
    lines = cred.read_text().splitlines()
    assert [l.split(" ")[0] for l in lines] == ["hans", "yoda"], lines
    assert all(l.split(" ", 1)[1].startswith("$argon2id$") for l in lines), lines
    assert "falcon" not in cred.read_text()
    s = make_server(dir=d)
    s.login("hans", "falcon")
    p = s.connect()
    p.hello()
    p.request("USER", "yoda")
    err(p.request("PASS", "falcon"), 401)
    assert p.request("PASS", "wise") == ["OK"]


def test_credentials_file_forms(make_server, tmp_path):
    """CRLF line ends, a missing final newline and passwords with any printable ASCII."""
    d = tmp_path / "forms"
    d.mkdir()
    weird = "p@$$w0rd!#%^&*()_+{}|:\"<>?~`'[]\\;,./="
    long_name, long_pw = "N" * 32, "P" * 128  # the longest name and password allowed
    (d / "credentials.txt").write_bytes(
        b"hans falcon\r\nyoda wise\r\n" + f"sym-b0l_user.x {weird}\n".encode()
        + f"{long_name} {long_pw}\n".encode() + b"last word")
    s = make_server(dir=d, users={})
    for user, pw in (("hans", "falcon"), ("yoda", "wise"), ("sym-b0l_user.x", weird),
                     (long_name, long_pw), ("last", "word")):
        s.login(user, pw)


def test_max_failures_option(make_server):
    s = make_server(args=["--max-failures", "5"])
    p = s.connect()
    p.hello()
    p.request("USER", "hans")
    for i in range(4):
        err(p.request("PASS", f"x{i}"), 401)
    err(p.request("PASS", "x"), 424)


def test_disconnect_while_password_hash_is_checked(make_server):
    """Clients that vanish while their argon2id check runs on a worker thread."""
    s = make_server(args=["--allow-register", *CHEAP_HASH])
    p = s.connect()
    p.hello()
    assert p.request("USER", "hashy") == ["OK", "new"]
    assert p.request("PASS", "hashpw") == ["OK"]
    p.request("LOGOUT")
    w = s.login("hans")
    for i in range(30):
        q = s.connect()
        q.send_raw(b"1 HELLO 1 e2e\n2 USER hashy\n3 PASS hashpw\n")
        q.close()
    for i in range(10):
        q = s.connect()
        q.send_raw(b"1 HELLO 1 e2e\n2 USER brandnew%d\n3 PASS pw\n" % i)
        q.close()
    ok(w.request("WHO"))
    # The hashed account is neither online nor locked: the abandoned checks left nothing behind.
    s.login("hashy", "hashpw")


def test_register_same_name_twice_at_once(make_server):
    s = make_server(args=["--allow-register", *CHEAP_HASH])
    c1 = s.connect()
    c2 = s.connect()
    for c in (c1, c2):
        c.hello()
        assert c.request("USER", "neo") == ["OK", "new"]
    assert c1.request("PASS", "first") == ["OK"]
    r = c2.request("PASS", "second")
    assert r[0] == "ERR", f"a second registration of the same name was accepted: {r}"
    lines = [l for l in s.credentials_text().splitlines() if l.startswith("neo ")]
    assert len(lines) == 1, lines
    c1.request("LOGOUT")
    s.login("neo", "first")


def test_user_switch_after_ok_new_creates_nothing(make_server):
    s = make_server(args=["--allow-register", *CHEAP_HASH])
    c = s.connect()
    c.hello()
    assert c.request("USER", "ghost") == ["OK", "new"]
    assert c.request("USER", "hans") == ["OK"]
    assert c.request("PASS", "falcon") == ["OK"]
    assert "ghost" not in s.credentials_text()
