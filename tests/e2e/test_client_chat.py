"""Client: the commands of spec §4, blocking (§5), offline messages (§6) and presence (§7) as
users see them on their terminals, with three or more clients at once."""

import io

import pexpect

from test_client_kit import (T, WELCOME, absent, command, expect_line, expect_lines, login,
                             prompt, start_login, wait_exit)


def test_sample_session_three_users(server, client_factory):
    hans = login(client_factory, server, "hans")
    yoda = login(client_factory, server, "yoda")
    expect_line(hans, "yoda logged in")
    vader = login(client_factory, server, "vader")
    expect_line(hans, "vader logged in")
    expect_line(yoda, "vader logged in")

    # Direct messages appear at once, without the receiver pressing anything.
    command(hans, "message yoda Hello there")
    expect_line(yoda, "hans: Hello there")
    command(yoda, "message hans General Kenobi")
    expect_line(hans, "yoda: General Kenobi")

    # whoelse lists the others, one per line.
    hans.sendline("whoelse")
    expect_lines(hans, ["yoda", "vader"])

    # yoda blocks vader: both directions are cut, broadcasts skip, presence is hidden.
    command(yoda, "block vader", "vader is blocked")
    command(vader, "message yoda let me in",
            "Your message could not be delivered as the recipient has blocked you")
    command(yoda, "message vader nope", "Error. You have blocked vader")
    command(vader, "broadcast the empire is here",
            "Your message could not be delivered to some recipients")
    expect_line(hans, "vader: the empire is here")
    absent(yoda, "the empire is here")
    command(yoda, "broadcast peace")
    expect_line(hans, "yoda: peace")
    absent(vader, "yoda: peace")
    absent(yoda, "could not be delivered", within=0.2)

    # Blocks do not hide anyone from whoelse.
    vader.sendline("whoelse")
    expect_lines(vader, ["hans", "yoda"])

    # vader leaves: hans is told, yoda (who blocked him) is not.
    vader.sendline("logout")
    assert wait_exit(vader) == 0
    expect_line(hans, "vader logged out")
    absent(yoda, "vader logged out")

    # An offline message waits for vader's next login, after the welcome line.
    command(hans, "message vader see you later")
    hans.sendline("whoelsesince 60")
    expect_lines(hans, ["yoda", "vader"])
    vader = start_login(client_factory, server.port, "vader", "sithlord")
    expect_line(vader, WELCOME)
    expect_line(vader, "hans: see you later")
    expect_line(hans, "vader logged in")
    absent(yoda, "vader logged in")

    # unblock restores everything.
    command(yoda, "unblock vader", "vader is unblocked")
    command(vader, "message yoda truce?")
    expect_line(yoda, "vader: truce?")
    command(yoda, "unblock vader", "Error. vader was not blocked")


def test_offline_messages_all_in_order(server, client_factory):
    hans = login(client_factory, server, "hans")
    for i in range(5):
        command(hans, f"message r2d2 beep {i}")
    # A pipe of commands from one user is answered in order; wait for the last one.
    command(hans, "whoelse", "No other users")
    r2 = start_login(client_factory, server.port, "r2d2", "beepboop")
    expect_line(r2, WELCOME)
    for i in range(5):
        expect_line(r2, f"hans: beep {i}")
    # Delivered once: a second login shows nothing again.
    r2.sendline("logout")
    wait_exit(r2)
    r2 = login(client_factory, server, "r2d2")
    absent(r2, "hans: beep", within=0.5)


def test_error_lines_exact(server, client_factory):
    hans = login(client_factory, server, "hans")
    login(client_factory, server, "yoda")
    expect_line(hans, "yoda logged in")
    cases = [
        ("message nobody hi", "Error. Invalid user"),
        ("message hans hi", "Error. Cannot message self"),
        ("block hans", "Error. Cannot block self"),
        ("unblock hans", "Error. Cannot unblock self"),
        ("block nobody", "Error. Invalid user"),
        ("unblock nobody", "Error. Invalid user"),
        ("unblock yoda", "Error. yoda was not blocked"),
        ("startprivate hans", "Error. Cannot start private messaging with self"),
        ("startprivate nobody", "Error. Invalid user"),
        ("startprivate c3po", "Error. c3po is offline"),
        ("private yoda hi", "Error. Private messaging to yoda not enabled"),
        ("stopprivate yoda", "Error. No private messaging session with yoda"),
        ("dance", "Error. Invalid command"),
        ("Whoelse", "Error. Invalid command"),
        ("message", "Error. Usage: message <user> <message>"),
        ("message yoda", "Error. Usage: message <user> <message>"),
        ("broadcast", "Error. Usage: broadcast <message>"),
        ("whoelsesince", "Error. Usage: whoelsesince <seconds>"),
        ("whoelsesince soon", "Error. Time must be a whole number of seconds"),
        ("whoelsesince -5", "Error. Time must be a whole number of seconds"),
        ("block", "Error. Usage: block <user>"),
        ("whoelse now", "Error. Usage: whoelse"),
        ("message yoda " + "x" * 1001, "Error. Message too long (at most 1000 bytes)"),
    ]
    for line, out in cases:
        command(hans, line, out)
        prompt(hans)
    # Blocking works for offline users and is idempotent.
    command(hans, "block c3po", "c3po is blocked")
    command(hans, "block c3po", "c3po is blocked")
    command(hans, "message c3po hi", "Error. You have blocked c3po")


def test_empty_lists(server, client_factory):
    hans = login(client_factory, server, "hans")
    command(hans, "whoelse", "No other users")
    command(hans, "whoelsesince 100", "No other users")


def test_whoelsesince_window(server, client_factory):
    hans = login(client_factory, server, "hans")
    yoda = login(client_factory, server, "yoda")
    expect_line(hans, "yoda logged in")
    yoda.sendline("logout")
    wait_exit(yoda)
    expect_line(hans, "yoda logged out")
    command(hans, "whoelsesince 3600", "yoda")
    command(hans, "whoelse", "No other users")


def test_typed_line_survives_incoming_message(server, client_factory):
    hans = login(client_factory, server, "hans")
    yoda = login(client_factory, server, "yoda")
    expect_line(hans, "yoda logged in")
    hans.send("mess")  # no Enter
    absent(hans, "yoda: ", within=0.2)
    command(yoda, "message hans Do or do not")
    expect_line(hans, "yoda: Do or do not")
    hans.expect_exact("> mess", timeout=T)  # the partial line is redrawn below the message
    hans.sendline("age yoda There is no try")
    expect_line(yoda, "hans: There is no try")


def test_broadcast_reaches_everyone_else(server, client_factory):
    users = ["hans", "yoda", "vader", "luke"]
    kids = {u: login(client_factory, server, u) for u in users}
    for u in users[1:]:
        expect_line(kids["hans"], f"{u} logged in")
    command(kids["luke"], "broadcast May the Force be with you")
    for u in users[:3]:
        expect_line(kids[u], "luke: May the Force be with you")
    absent(kids["luke"], "luke: May the Force", within=0.3)


def test_help_and_completion(server, client_factory):
    hans = login(client_factory, server, "hans")
    hans.sendline("help")
    for usage in ("message <user> <message>", "broadcast <message>", "whoelse",
                  "whoelsesince <seconds>", "block <user>", "unblock <user>", "logout",
                  "startprivate <user>", "private <user> <message>", "stopprivate <user>"):
        hans.expect_exact(usage, timeout=T)
    prompt(hans)
    yoda = login(client_factory, server, "yoda")
    expect_line(hans, "yoda logged in")
    # Tab completes the command name, then a user name the client has seen.
    # (readline echoes only what completion adds.)
    hans.send("unbl\t")
    hans.expect_exact("unblock ", timeout=T)
    hans.send("\x15")  # Ctrl-U: clear the line
    hans.send("mes\t")
    hans.expect_exact("mes" + "sage ", timeout=T)
    hans.send("yo\t")
    hans.expect_exact("yo" + "da ", timeout=T)
    hans.sendline("completed")
    expect_line(yoda, "hans: completed")


def test_history_recalls_previous_command(server, client_factory):
    hans = login(client_factory, server, "hans")
    yoda = login(client_factory, server, "yoda")
    expect_line(hans, "yoda logged in")
    command(hans, "message yoda once")
    expect_line(yoda, "hans: once")
    hans.send("\x1b[A")  # Up arrow
    hans.expect_exact("message yoda once", timeout=T)
    hans.send("\r")
    expect_line(yoda, "hans: once")


def test_logout_notice_and_exit(server, client_factory):
    hans = login(client_factory, server, "hans")
    yoda = login(client_factory, server, "yoda")
    expect_line(hans, "yoda logged in")
    yoda.sendline("logout")
    yoda.expect(pexpect.EOF, timeout=T)
    expect_line(hans, "yoda logged out")


def test_format_characters_neutralised(server, client_factory):
    """Issue 9, point 8: bidirectional and invisible format characters (U+202A-U+202E,
    U+2066-U+2069, U+200B-U+200F) reached the terminal and reordered what it showed. Each is
    shown as `?`, in direct messages, broadcasts and private messages alike."""
    hans = login(client_factory, server, "hans")
    hans.logfile_read = seen = io.StringIO()
    yoda = login(client_factory, server, "yoda")
    expect_line(hans, "yoda logged in")
    evil = ("\u202e", "\u2067", "\u200b", "\u200f", "\u202a", "\u2069")
    command(yoda, "message hans left \u202eright")
    expect_line(hans, "yoda: left ?right")
    command(yoda, "broadcast a\u2067b\u200bc\u200fd")
    expect_line(hans, "yoda: a?b?c?d")
    command(yoda, "startprivate hans", "Start private messaging with hans")
    expect_line(hans, "yoda started private messaging with you")
    command(yoda, "private hans x\u202ay\u2069z")
    expect_line(hans, "yoda(private): x?y?z")
    out = seen.getvalue()
    for ch in evil:
        assert ch not in out, f"U+{ord(ch):04X} reached the terminal: {out!r}"
