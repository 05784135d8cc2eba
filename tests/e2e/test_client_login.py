"""Client: program arguments and the login dialogue of spec §1 and §3, on a terminal."""

import subprocess
import time

import pexpect

from conftest import PARLEY, client_env
from test_client_kit import (T, WELCOME, absent, answer_login, command, expect_line, login,
                             prompt, start_login, wait_exit)


def test_version_and_help():
    out = subprocess.run([PARLEY, "--version"], capture_output=True, text=True, timeout=T)
    assert out.returncode == 0 and out.stdout == "parley 0.1.0\n"
    out = subprocess.run([PARLEY, "--help"], capture_output=True, text=True, timeout=T)
    assert out.returncode == 0 and "parley <server_ip> <server_port>" in out.stdout


def test_bad_arguments_exit_2():
    for argv in ([], ["127.0.0.1"], ["127.0.0.1", "notaport"], ["127.0.0.1", "1", "2"]):
        out = subprocess.run([PARLEY, *argv], capture_output=True, text=True, timeout=T,
                             stdin=subprocess.DEVNULL)
        assert out.returncode == 2, (argv, out)
        assert "usage" in out.stderr


def test_no_server_is_a_clear_error(server):
    port = server.port
    server.stop()
    out = subprocess.run([PARLEY, "127.0.0.1", str(port)], capture_output=True, text=True,
                         timeout=T, stdin=subprocess.DEVNULL, env=client_env())
    assert out.returncode == 1
    assert "cannot connect" in out.stderr and out.stdout == ""


def test_login_success_and_password_not_echoed(server, client_factory):
    c = start_login(client_factory, server.port, "hans", "falcon")
    expect_line(c, WELCOME)
    assert "falcon" not in c.before
    prompt(c)
    command(c, "whoelse", "No other users")
    c.sendline("logout")
    assert wait_exit(c) == 0


def test_wrong_password_asks_password_again(server, client_factory):
    c = start_login(client_factory, server.port, "hans", "wrong")
    expect_line(c, "Invalid Password. Please try again")
    c.expect_exact("Password: ", timeout=T)
    assert "Username" not in c.before
    c.sendline("falcon")
    expect_line(c, WELCOME)


def test_unknown_user_asks_username_again(server, client_factory):
    c = client_factory(server.port)
    c.expect_exact("Username: ", timeout=T)
    c.sendline("nobody")
    expect_line(c, "Invalid Username. Please try again")
    answer_login(c, "yoda", "wise")
    expect_line(c, WELCOME)


def test_user_already_logged_in_asks_username_again(server, client_factory):
    first = login(client_factory, server, "hans")
    c = client_factory(server.port)
    answer_login(c, "hans", "falcon")
    expect_line(c, "This user is already logged in")
    answer_login(c, "yoda", "wise")
    expect_line(c, WELCOME)
    # The first session was never kicked.
    expect_line(first, "yoda logged in")
    command(first, "whoelse", "yoda")


def test_three_wrong_passwords_block_then_expiry(make_server, client_factory):
    s = make_server(block_duration=2)
    c = start_login(client_factory, s.port, "hans", "bad1")
    expect_line(c, "Invalid Password. Please try again")
    c.expect_exact("Password: ", timeout=T)
    c.sendline("bad2")
    expect_line(c, "Invalid Password. Please try again")
    c.expect_exact("Password: ", timeout=T)
    c.sendline("bad3")
    expect_line(c, "Invalid Password. Your account has been blocked. Please try again later")
    assert wait_exit(c) == 1

    # Locked, even with the right password.
    d = client_factory(s.port)
    d.expect_exact("Username: ", timeout=T)
    d.sendline("hans")
    d.expect_exact("Password: ", timeout=T)
    d.sendline("falcon")
    expect_line(d, "Your account is blocked due to multiple login failures. Please try again later")
    assert wait_exit(d) == 1

    # After the lock expires the right password works.
    e = None
    for _ in range(10):
        e = client_factory(s.port)
        e.expect_exact("Username: ", timeout=T)
        e.sendline("hans")
        e.expect_exact("Password: ", timeout=T)
        e.sendline("falcon")
        if e.expect_exact([WELCOME, "Your account is blocked"], timeout=T) == 0:
            break
        wait_exit(e)
        e = None
        time.sleep(0.5)  # bounded retries until the 2 s lock has expired
    assert e is not None, "the lock never expired"


def test_ctrl_c_at_password_prompt_leaves_others_alone(server, client_factory):
    a = login(client_factory, server, "hans")
    b = client_factory(server.port)
    b.expect_exact("Username: ", timeout=T)
    b.sendline("yoda")
    b.expect_exact("Password: ", timeout=T)
    b.sendcontrol("c")
    b.expect(pexpect.EOF, timeout=T)
    b.close()
    assert b.signalstatus is None, "the client was killed by the signal instead of exiting"
    # The other user is undisturbed, and yoda can log in at once (no lock, not "online").
    command(a, "whoelse", "No other users")
    absent(a, "yoda logged in", within=0.3)
    c = login(client_factory, server, "yoda")
    expect_line(a, "yoda logged in")
    command(c, "whoelse", "hans")


def test_ctrl_c_when_logged_in_logs_out(server, client_factory):
    a = login(client_factory, server, "hans")
    b = login(client_factory, server, "yoda")
    expect_line(a, "yoda logged in")
    b.sendcontrol("c")
    assert wait_exit(b) == 0
    expect_line(a, "yoda logged out")


def test_ctrl_d_at_prompt_logs_out(server, client_factory):
    a = login(client_factory, server, "hans")
    b = login(client_factory, server, "yoda")
    expect_line(a, "yoda logged in")
    b.sendeof()
    assert wait_exit(b) == 0
    expect_line(a, "yoda logged out")


def test_register_new_user(make_server, client_factory):
    s = make_server(args=("--allow-register", "--hash-ops", "1", "--hash-mem", "8192"))
    watcher = login(client_factory, s, "hans")
    c = client_factory(s.port)
    c.expect_exact("Username: ", timeout=T)
    c.sendline("leia")
    c.expect_exact("This is a new user. Enter a password: ", timeout=T)
    c.sendline("rebel1")
    expect_line(c, WELCOME)
    assert "rebel1" not in c.before
    expect_line(watcher, "leia logged in")
    c.sendline("logout")
    assert wait_exit(c) == 0
    creds = s.credentials_text()
    assert "leia " in creds and "rebel1" not in creds
    # The new account works with its password.
    d = start_login(client_factory, s.port, "leia", "rebel1")
    expect_line(d, WELCOME)
