"""Client: pipe mode (stdin not a terminal, spec §1): the same commands line by line, no prompt
for commands and no escape codes, each command's reply awaited before the next line, exit after
`logout` or at end of input (logging out cleanly). The login prompts are printed as they are
(without a newline), so a session's output starts `Username: Password: Welcome...`."""

import os
import subprocess

from conftest import PARLEY, client_env
from test_client_kit import T, WELCOME, run_pipe


def test_spec_example(server):
    rc, out, err = run_pipe(server.port, "hans\nfalcon\nwhoelse\nlogout\n")
    assert rc == 0, err
    assert out == f"Username: Password: {WELCOME}\nNo other users\n"
    assert err == ""


def test_output_is_plain_and_ordered(server):
    watcher = server.login("yoda")
    script = "".join([
        "hans\n", "falcon\n",
        "whoelse\n",
        "message yoda one\n", "message yoda two\n", "message nobody x\n",
        "block vader\n", "unblock vader\n", "unblock vader\n",
        "whoelsesince abc\n", "bogus\n",
        "broadcast to all\n",
        "logout\n",
    ])
    rc, out, err = run_pipe(server.port, script)
    assert rc == 0, err
    assert "\x1b" not in out and "\r" not in out
    assert out.split("\n") == [
        f"Username: Password: {WELCOME}",
        "yoda",
        "Error. Invalid user",
        "vader is blocked",
        "vader is unblocked",
        "Error. vader was not blocked",
        "Error. Time must be a whole number of seconds",
        "Error. Invalid command",
        "",
    ]
    msgs = [watcher.wait_event("MSG")[4] for _ in range(2)]
    assert msgs == ["one", "two"]
    assert watcher.wait_event("BCAST")[2] == "to all"
    watcher.wait_event("LOGOUT hans")


def test_end_of_input_logs_out(server):
    watcher = server.login("yoda")
    rc, out, err = run_pipe(server.port, "hans\nfalcon\nmessage yoda bye\n")
    assert rc == 0, err
    assert out == f"Username: Password: {WELCOME}\n"
    watcher.wait_event("LOGIN hans")
    assert watcher.wait_event("MSG")[4] == "bye"
    watcher.wait_event("LOGOUT hans")


def test_incoming_messages_printed(server):
    """Messages sent to a pipe client while it waits for its replies are printed too, and an
    offline message comes right after the welcome line."""
    sender = server.login("yoda")
    assert sender.request("MSG", "hans", "stored for you")[0] == "OK"
    rc, out, err = run_pipe(server.port, "hans\nfalcon\nwhoelse\nlogout\n")
    assert rc == 0, err
    assert out == f"Username: Password: {WELCOME}\nyoda: stored for you\nyoda\n"


REFUSED = "parley: login refused; stopping, as the input is not a terminal\n"


def test_wrong_password_in_pipe_ends_the_run(make_server):
    """One wrong password ends the run (exit 1): the lines after it are not tried as passwords,
    so a script cannot lock the account (issue 10, defect 2)."""
    s = make_server(block_duration=60)
    rc, out, err = run_pipe(s.port, "yoda\na\nb\nc\nwise\nlogout\n")
    assert rc == 1
    assert out == "Username: Password: Invalid Password. Please try again\n"
    assert err == REFUSED
    s.login("yoda")  # one failure counted, not locked


def test_unknown_and_online_user_in_pipe_end_the_run(server):
    watcher = server.login("hans")
    rc, out, err = run_pipe(server.port, "nobody\nyoda\nwise\nlogout\n")
    assert (rc, out, err) == (1, "Username: Invalid Username. Please try again\n", REFUSED)
    rc, out, err = run_pipe(server.port, "hans\nfalcon\nyoda\nwise\nlogout\n")
    assert (rc, out, err) == (1, "Username: Password: This user is already logged in\n", REFUSED)
    watcher.no_event("LOGIN", within=0.3)


def test_locked_account_in_pipe(make_server):
    s = make_server(block_duration=60)
    p = s.connect()
    assert p.login_reply("yoda", "a")[:2] == ["ERR", "401"]
    assert p.request("PASS", "b")[:2] == ["ERR", "401"]
    rc, out, _ = run_pipe(s.port, "yoda\nc\nwise\n")
    assert rc == 1
    assert out == ("Username: Password: Invalid Password. Your account has been blocked. "
                   "Please try again later\n")
    rc, out, _ = run_pipe(s.port, "yoda\nwise\n")
    assert rc == 1
    assert out == ("Username: Password: Your account is blocked due to multiple login failures. "
                   "Please try again later\n")


def test_end_of_input_before_login(server):
    rc, out, _ = run_pipe(server.port, "hans\n")
    assert rc == 1
    assert out == "Username: Password: "


def test_stdin_from_file_and_dev_null(server, tmp_path):
    script = tmp_path / "script.txt"
    script.write_text("hans\nfalcon\nwhoelse\nlogout\n")
    with open(script) as f:
        p = subprocess.run([PARLEY, "127.0.0.1", str(server.port)], stdin=f, capture_output=True,
                           timeout=T, env=client_env())
    assert p.returncode == 0
    assert p.stdout.decode() == f"Username: Password: {WELCOME}\nNo other users\n"
    with open(os.devnull) as f:
        p = subprocess.run([PARLEY, "127.0.0.1", str(server.port)], stdin=f, capture_output=True,
                           timeout=T, env=client_env())
    assert p.returncode == 1
    assert p.stdout.decode().startswith("Username: ")


def test_crlf_input_and_last_line_without_newline(server):
    watcher = server.login("yoda")
    rc, out, _ = run_pipe(server.port, "hans\r\nfalcon\r\nmessage yoda crlf\r\nlogout")
    assert rc == 0
    assert out == f"Username: Password: {WELCOME}\n"
    assert watcher.wait_event("MSG")[4] == "crlf"


def test_bad_bytes_and_huge_lines_refused_locally(server):
    watcher = server.login("yoda")
    script = ("hans\nfalcon\n"
              "message yoda nul\0byte\n"
              "message yoda esc\x1b[2Jape\n"
              "message yoda " + "y" * 70000 + "\n"
              "message yoda fine\n"
              "logout\n")
    rc, out, _ = run_pipe(server.port, script)
    assert rc == 0
    assert out.split("\n")[1:] == [
        "Error. Message contains characters that cannot be sent",
        "Error. Message contains characters that cannot be sent",
        "Error. Line too long",
        "",
    ]
    assert watcher.wait_event("MSG")[4] == "fine"
    watcher.no_event("MSG", within=0.2)
