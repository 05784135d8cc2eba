"""Client: a person at the keyboard (issue 10). Locked and online accounts are told only after
a password, typed-ahead input never reaches the shell, a refused login ends a piped run, pastes
of several lines run line by line, typed text is never lost, and each ending says what it was.

Some of these run with readline's defaults (bracketed paste on), as a user's terminal has them."""

import os
import shlex
import signal
import socket
import subprocess

import pexpect
import pytest

from conftest import (BUILD, PARLEY, PARLEYD, ROOT, ParleyServer, Proto, client_env, ok,
                      wait_until)
from test_client_kit import (T, WELCOME, answer_login, command, expect_line, login, prompt,
                             wait_exit)

LOCKED = "Your account is blocked due to multiple login failures. Please try again later"

# After the client exits, the wrapper shell prints how many typed bytes wait in the terminal.
PENDING = ("/usr/bin/python3 -c 'import array, fcntl, termios; a = array.array(\"i\", [0]); "
           "fcntl.ioctl(0, termios.FIONREAD, a); print(\"pending\", a[0])'")


def login_defaults(client_factory, server, user, **kw):
    """A client logged in with readline's defaults (bracketed paste on), at its `> ` prompt."""
    return login(client_factory, server, user, bracketed_paste=True, **kw)


def lock(server, user):
    p = server.connect()
    p.login_reply(user, "bad1")
    p.request("PASS", "bad2")
    r = p.request("PASS", "bad3")
    assert r[:2] == ["ERR", "424"], r


def spawn_in_shell(port, **kw):
    """`parley` run by a shell which, once it exits, reports the bytes left in the terminal."""
    cmd = f"{shlex.quote(PARLEY)} 127.0.0.1 {port}; echo status $?; {PENDING}"
    return pexpect.spawn("/bin/sh", ["-c", cmd], encoding="utf-8", timeout=10,
                         env=client_env(**kw), dimensions=(24, 200))


def test_locked_account_asks_password_then_discards_typed_ahead(make_server):
    s = make_server(block_duration=60)
    lock(s, "hans")
    c = spawn_in_shell(s.port)
    c.expect_exact("Username: ", timeout=T)
    c.sendline("hans")
    c.expect_exact("Password: ", timeout=T)
    c.send("falcon\nrm -rf typed-ahead\n")
    expect_line(c, LOCKED)
    expect_line(c, "status 1")
    expect_line(c, "pending 0")
    assert "falcon" not in c.before
    wait_exit(c)


def test_online_user_told_after_right_password_only(server, client_factory):
    server.login("hans")
    c = client_factory(server.port, bracketed_paste=True)
    c.expect_exact("Username: ", timeout=T)
    c.sendline("hans")
    c.expect_exact("Password: ", timeout=T)
    c.sendline("wrong")
    expect_line(c, "Invalid Password. Please try again")
    c.expect_exact("Password: ", timeout=T)
    c.sendline("falcon")
    expect_line(c, "This user is already logged in")
    answer_login(c, "yoda", "wise")
    expect_line(c, WELCOME)
    prompt(c)
    command(c, "whoelse", "hans")


PASTE_BEGIN, PASTE_END = "\x1b[200~", "\x1b[201~"


def test_multi_line_paste_runs_each_line(server, client_factory):
    """With readline's defaults (bracketed paste on) a pasted block of lines is run line by line,
    in order, once Enter is pressed."""
    yoda = server.login("yoda")
    c = login_defaults(client_factory, server, "hans")
    c.send(PASTE_BEGIN + "message yoda one\nmessage yoda two\r\nwhoelse\n" + PASTE_END)
    c.send("\r")
    expect_line(c, "yoda")
    assert [yoda.wait_event("MSG")[4] for _ in range(2)] == ["one", "two"]
    # Each line is in the history on its own.
    c.send("\x1b[A\x1b[A\r")
    assert yoda.wait_event("MSG")[4] == "two"


def test_consent_question_keeps_the_typed_line(make_server, client_factory):
    """The half-typed line is kept aside while the question is asked, not taken as the answer,
    and comes back afterwards; the one who asked is told it waits for the answer."""
    s = make_server(args=("--p2p-consent",))
    hans = login_defaults(client_factory, s, "hans")
    yoda = login_defaults(client_factory, s, "yoda")
    expect_line(hans, "yoda logged in")
    yoda.send("message hans half")
    yoda.expect_exact("half", timeout=T)
    hans.sendline("startprivate yoda")
    expect_line(hans, "Waiting for yoda to accept or decline private messaging")
    yoda.expect_exact("hans would like to private message, enter y or n: ", timeout=T)
    yoda.sendline("y")
    expect_line(hans, "yoda accepts private messaging")
    expect_line(hans, "Start private messaging with yoda")
    expect_line(yoda, "hans started private messaging with you")
    yoda.expect_exact("> message hans half", timeout=T)
    yoda.send(" typed\r")
    expect_line(hans, "yoda: half typed")


def test_ctrl_c_shows_the_unsent_line(server, client_factory):
    c = login_defaults(client_factory, server, "hans")
    c.send("message yoda not sent yet")
    c.expect_exact("not sent yet", timeout=T)
    c.sendcontrol("c")
    expect_line(c, "Unsent: message yoda not sent yet")
    assert wait_exit(c) == 0


def test_idle_logout_shows_the_unsent_line(make_server, client_factory):
    s = make_server(timeout=2)
    c = login_defaults(client_factory, s, "hans")
    c.send("message yoda slow typist")
    expect_line(c, "You have been logged out due to inactivity", timeout=10)
    expect_line(c, "Unsent: message yoda slow typist")
    assert wait_exit(c) == 0


def test_server_lost_shows_the_unsent_line(server, client_factory):
    c = login_defaults(client_factory, server, "hans")
    c.send("broadcast almost")
    c.expect_exact("almost", timeout=T)
    server.kill9()
    expect_line(c, "Connection to server lost")
    expect_line(c, "Unsent: broadcast almost")
    assert wait_exit(c) == 1


# A cluster stops node by node: the users of the first node to stop do log out for the others.
@pytest.mark.single_node
def test_shutdown_says_so_and_nobody_logs_out_one_by_one(server, client_factory):
    """`* BYE shutdown`: the spec's line, then why; nobody is seen logging out first."""
    clients = [login_defaults(client_factory, server, u) for u in ("hans", "yoda", "vader")]
    expect_line(clients[0], "vader logged in")
    expect_line(clients[1], "vader logged in")
    server.stop()
    for c in clients:
        expect_line(c, "Connection to server lost")
        assert "logged out" not in c.before
        expect_line(c, "The server is shutting down")
        assert wait_exit(c) == 1


def test_crash_and_login_deadline_say_which(make_server, client_factory):
    s = make_server(args=("--login-timeout", "1"))
    waiting = client_factory(s.port)
    waiting.expect_exact("Username: ", timeout=T)
    expect_line(waiting, "Connection to server lost", timeout=10)
    expect_line(waiting, "The server ended the login: it was not finished in time")
    assert wait_exit(waiting) == 1
    c = login_defaults(client_factory, s, "hans")
    s.kill9()
    expect_line(c, "Connection to server lost")
    c.expect(r"[\r\n]The (server closed the connection without notice \(it may have crashed\)|"
             r"connection to the server failed: .*)\r\n", timeout=T)
    assert wait_exit(c) == 1


def test_server_lost_with_private_chat_says_what_works_and_why_it_exits(server, client_factory):
    hans = login_defaults(client_factory, server, "hans")
    yoda = login_defaults(client_factory, server, "yoda")
    expect_line(hans, "yoda logged in")
    command(hans, "startprivate yoda", "Start private messaging with yoda")
    expect_line(yoda, "hans started private messaging with you")
    server.kill9()
    for c in (hans, yoda):
        expect_line(c, "Connection to server lost")
        expect_line(c, "Only private messaging still works (private, stopprivate); "
                       "type logout to quit")
        c.expect_exact("(private only) > ", timeout=T)
    command(hans, "private yoda still here")
    expect_line(yoda, "hans(private): still here")
    command(hans, "whoelse", "Error. You are logged out")
    yoda.sendline("stopprivate hans")
    expect_line(hans, "yoda stopped private messaging")
    for c in (hans, yoda):
        expect_line(c, "No private messaging session is left; exiting")
        assert wait_exit(c) == 1


def test_ctrl_z_then_fg_keeps_line_editing(server):
    """Suspended from a job-control shell and brought back with `fg`: the terminal is readline's
    again, so an arrow key recalls the history (no raw `^[[A`, no double echo)."""
    sh = pexpect.spawn("/bin/bash", ["--norc", "--noprofile", "-i"], encoding="utf-8",
                       timeout=10, dimensions=(24, 200),
                       env=client_env({"PS1": "shell$ "}, bracketed_paste=True))
    try:
        sh.expect_exact("shell$ ", timeout=T)
        port = server.port  # one node's, once: `fg` echoes the same command line
        sh.sendline(f"{shlex.quote(PARLEY)} 127.0.0.1 {port}")
        sh.expect_exact("Username: ", timeout=T)
        sh.sendline("hans")
        sh.expect_exact("Password: ", timeout=T)
        sh.sendline("falcon")
        expect_line(sh, WELCOME)
        prompt(sh)
        command(sh, "whoelse", "No other users")
        prompt(sh)
        sh.sendcontrol("z")
        sh.expect_exact("Stopped", timeout=T)
        sh.expect_exact("shell$ ", timeout=T)
        sh.sendline("fg")
        sh.expect_exact(f"127.0.0.1 {port}\r\n", timeout=T)
        prompt(sh)
        sh.send("\x1b[A")
        sh.expect_exact("whoelse", timeout=T)
        sh.send("\r")
        expect_line(sh, "No other users")
        assert "^[[A" not in sh.before
        sh.sendline("logout")
        sh.expect_exact("shell$ ", timeout=T)
        sh.sendline("exit")
        sh.expect(pexpect.EOF, timeout=T)
    finally:
        sh.close(force=True)


def test_completion_offers_only_names_the_server_took_and_not_ones_own(server, client_factory):
    yoda = server.login("yoda")
    c = login_defaults(client_factory, server, "hans")
    command(c, "message yodaa hi", "Error. Invalid user")
    command(c, "message yoda first")
    assert yoda.wait_event("MSG")[4] == "first"
    # `yod` + Tab: only yoda is known, so it completes with a space and the text follows.
    c.send("message yod\t")
    c.expect_exact("message yoda ", timeout=T)
    c.send("second\r")
    assert yoda.wait_event("MSG")[4] == "second"
    # One's own name is not offered: `ha` + Tab stays `ha`.
    c.send("block ha\t")
    c.send("x\r")
    expect_line(c, "Error. Invalid user")


def test_bad_port_gives_the_reason():
    out = subprocess.run([PARLEY, "127.0.0.1", "notaport"], capture_output=True, text=True,
                         timeout=T, stdin=subprocess.DEVNULL)
    assert out.returncode == 2
    assert out.stderr.startswith("parley: notaport is not a port number (1 to 65535)\n")
    assert "usage" in out.stderr


def test_make_run_binds_loopback_and_says_listening_once_it_listens(tmp_path):
    """`make run` listens on 127.0.0.1 only (the sample passwords are public), plain and TLS
    (issue 12), and says how to connect to each."""
    if os.path.realpath(BUILD) != os.path.realpath(os.path.join(ROOT, "build")):
        pytest.skip("make run builds and runs the default build")
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    port, tls_port = ports
    p = subprocess.Popen(["make", "--no-print-directory", "-s", "run", f"RUN_PORT={port}",
                          f"RUN_TLS_PORT={tls_port}"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("parleyd listening on 127.0.0.1 "), line
        assert p.stdout.readline().strip().endswith(f"parley 127.0.0.1 {port}")
        tls = p.stdout.readline().strip()
        assert f"TLS on port {tls_port}" in tls and "--pin sha256:" in tls, tls
        assert tls.endswith(f"127.0.0.1 {tls_port}"), tls
        assert "RUN_BIND=0.0.0.0" in p.stdout.readline()
        local = {tuple(map(str, sk)) for sk in listening_addresses()}
        for n in ports:
            assert ("127.0.0.1", str(n)) in local and ("0.0.0.0", str(n)) not in local, local
        with socket.create_connection(("127.0.0.1", port), timeout=T):
            pass
        Proto(tls_port, tls=True).close()
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(T)


def listening_addresses():
    """(address, port) of every IPv4 TCP listener on this machine."""
    out = []
    with open("/proc/net/tcp") as f:
        next(f)
        for row in f:
            cols = row.split()
            if cols[3] == "0A":
                addr, port = cols[1].split(":")
                ip = ".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0))
                out.append((ip, int(port, 16)))
    return out


# ---- comforts ----

def test_irc_style_aliases_and_the_help_hint(server, client_factory):
    yoda = server.login("yoda")
    c = login_defaults(client_factory, server, "hans")
    command(c, "/msg yoda hi")
    assert yoda.wait_event("MSG")[4] == "hi"
    command(c, "/who", "yoda")
    command(c, "bogus", "Error. Invalid command", "Type help for the list of commands")
    command(c, "/help", "Commands:", "  /quit                      the same as logout")
    c.sendline("/quit")
    assert wait_exit(c) == 0
    yoda.wait_event("LOGOUT hans")


def test_history_kept_between_runs_private_and_not_from_a_pipe(server, client_factory, tmp_path):
    state = tmp_path / "state"
    env = {"XDG_STATE_HOME": str(state)}
    c = login_defaults(client_factory, server, "hans", env=env)
    command(c, "whoelse", "No other users")
    command(c, "private yoda secret words", "Error. Private messaging to yoda not enabled")
    c.sendline("logout")
    assert wait_exit(c) == 0
    path = state / "parley" / "history"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    saved = path.read_text()
    assert "whoelse" in saved and "falcon" not in saved and "hans" not in saved, saved
    assert "secret words" not in saved, saved  # private texts are end to end, never on disk
    # The next run recalls it with the arrow keys.
    d = login_defaults(client_factory, server, "hans", env=env)
    d.send("\x1b[A\x1b[A")
    d.expect_exact("whoelse", timeout=T)
    d.send("\r")
    expect_line(d, "No other users")
    d.sendline("logout")
    assert wait_exit(d) == 0
    # Pipe mode keeps none.
    piped = tmp_path / "piped"
    out = subprocess.run([PARLEY, "127.0.0.1", str(server.port)],
                         input=b"hans\nfalcon\nwhoelse\nlogout\n", capture_output=True,
                         timeout=T, env=client_env({"XDG_STATE_HOME": str(piped)}))
    assert out.returncode == 0
    assert not piped.exists()


def test_timestamps_and_waited_messages(server, client_factory):
    import time
    yoda = server.login("yoda")
    assert yoda.request("MSG", "hans", "stored for later")[0] == "OK"
    sent = time.time()
    wait_until(lambda: time.time() > sent + 2.2, timeout=5, what="the message to be 2 s old")
    c = client_factory(server.port, args=["--timestamps", "127.0.0.1", str(server.port)])
    answer_login(c, "hans", "falcon")
    expect_line(c, WELCOME)
    c.expect(r"[\r\n]\[\d{4}-\d\d-\d\d \d\d:\d\d, waited\] yoda: stored for later\r\n", timeout=T)
    assert yoda.request("MSG", "hans", "live one")[0] == "OK"
    c.expect(r"[\r\n]\[\d\d:\d\d\] yoda: live one\r\n", timeout=T)
    assert yoda.request("BCAST", "to all")[0] == "OK"
    c.expect(r"[\r\n]\[\d\d:\d\d\] yoda: to all\r\n", timeout=T)


def test_config_file_marks_broadcasts_and_names_the_prompt(server, client_factory, tmp_path):
    conf = tmp_path / "config" / "parley"
    conf.mkdir(parents=True)
    (conf / "parley.conf").write_text("# comforts\nmark-broadcasts = on\nname-in-prompt = yes\n")
    yoda = server.login("yoda")
    c = client_factory(server.port, env={"XDG_CONFIG_HOME": str(tmp_path / "config")})
    answer_login(c, "hans", "falcon")
    expect_line(c, WELCOME)
    c.expect_exact("hans> ", timeout=T)
    assert yoda.request("BCAST", "hello all")[0] == "OK"
    expect_line(c, "[all] yoda: hello all")
    assert yoda.request("MSG", "hans", "direct")[0] == "OK"
    expect_line(c, "yoda: direct")
    # A wrong line is refused with its place.
    (conf / "parley.conf").write_text("colour = on\n")
    out = subprocess.run([PARLEY, "127.0.0.1", str(server.port)], capture_output=True,
                         text=True, timeout=T, stdin=subprocess.DEVNULL,
                         env=client_env({"XDG_CONFIG_HOME": str(tmp_path / "config")}))
    assert out.returncode == 2 and "parley.conf line 1" in out.stderr, out


def test_bell_and_colours_at_a_terminal_only(server, client_factory):
    yoda = login_defaults(client_factory, server, "yoda")
    args = ["--bell", "--color", "127.0.0.1", str(server.port)]
    c = client_factory(server.port, args=args)
    answer_login(c, "hans", "falcon")
    expect_line(c, WELCOME)
    prompt(c)
    command(yoda, "message hans ding")
    c.expect_exact("\x1b[1myoda: ding\x1b[0m\r\n", timeout=T)
    c.expect_exact("\a", timeout=T)
    c.sendline("message nobody x")
    c.expect_exact("\x1b[31mError. Invalid user\x1b[0m\r\n", timeout=T)
    command(yoda, "startprivate hans", "Start private messaging with hans")
    command(yoda, "private hans psst")
    c.expect_exact("\x1b[35myoda(private): psst\x1b[0m\r\n", timeout=T)
    c.expect_exact("\a", timeout=T)
    # NO_COLOR wins; from a pipe neither colours nor bells.
    d = client_factory(server.port, args=args, env={"NO_COLOR": "1"})
    d.expect_exact("Username: ", timeout=T)
    d.sendline("nobody")
    expect_line(d, "Invalid Username. Please try again")
    d.sendline("luke")
    d.expect_exact("Password: ", timeout=T)
    d.sendline("skywalker")
    expect_line(d, WELCOME)
    d.sendline("message nobody x")
    expect_line(d, "Error. Invalid user")
    out = subprocess.run([PARLEY, *args], input=b"vader\nsithlord\nmessage nobody x\nlogout\n",
                         capture_output=True, timeout=T, env=client_env())
    assert out.returncode == 0
    assert b"\x1b" not in out.stdout and b"\a" not in out.stdout
    assert out.stdout.endswith(b"Error. Invalid user\n")


def test_blocked_command_lists_whom_one_blocks(server, client_factory):
    c = login_defaults(client_factory, server, "hans")
    command(c, "blocked", "Nobody is blocked")
    command(c, "block vader", "vader is blocked")
    command(c, "blocked", "vader")


def test_message_to_offline_user_says_it_was_kept(server, client_factory):
    yoda = server.login("yoda")
    c = login_defaults(client_factory, server, "hans")
    command(c, "message vader for later",
            "vader is offline: the message will be delivered at their next login")
    command(c, "message yoda now")
    assert yoda.wait_event("MSG")[4] == "now"
    command(c, "whoelse", "yoda")
    assert "yoda is offline" not in c.before


class FixedPortServer(ParleyServer):
    """A parleyd that comes back on the same port when restarted (the client reconnects)."""

    def __init__(self, dir, port, **kw):
        super().__init__(dir, **kw)
        self.fixed_port = port

    def command(self):
        return [PARLEYD, "--port-file", self.port_file, *self.args,
                str(self.fixed_port), str(self.block_duration), str(self.timeout)]


def test_reconnect_logs_in_again_by_itself(tmp_path, client_factory):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = FixedPortServer(tmp_path / "server", port)
    s.start()
    try:
        c = client_factory(port, args=["--reconnect", "127.0.0.1", str(port)])
        c.expect_exact("Username: ", timeout=T)
        c.sendline("hans")
        c.expect_exact("Password: ", timeout=T)
        c.sendline("falcon")
        expect_line(c, WELCOME)
        prompt(c)
        s.stop()
        expect_line(c, "Connection to server lost")
        expect_line(c, "The server is shutting down")
        expect_line(c, "Reconnecting in 1 s (type logout to quit)")
        c.expect_exact("(reconnecting) > ", timeout=T)
        s.start()
        expect_line(c, "Reconnected: logged in again as hans", timeout=45)
        yoda = s.login("yoda")
        assert sorted(ok(yoda.request("WHO"))) == ["hans"]
        assert yoda.request("MSG", "hans", "welcome back")[0] == "OK"
        expect_line(c, "yoda: welcome back")
        command(c, "whoelse", "yoda")
        # The P2P listener was announced again: a private session can be asked for.
        assert ok(yoda.request("P2P", "hans"))[0] == "127.0.0.1"
        c.sendline("logout")
        assert wait_exit(c) == 0
        yoda.wait_event("LOGOUT hans")
    finally:
        msg = s.check_and_cleanup()
        assert msg is None, msg
