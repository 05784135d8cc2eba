"""Helpers for the `parley` client tests (no tests here): log a terminal client in, expect whole
output lines, assert that some text does not appear, find a client's P2P listening port.

The client runs in a pty through conftest's `client_factory` / `spawn_client`. On a terminal it
prints incoming lines as `\\r ESC[K \\r <line> \\r\\n` (clearing the input line first), and
ordinary output as `<line>\\r\\n`, so a whole line is "after a CR or LF, before CR LF"."""

import os
import re
import subprocess

import pexpect

from conftest import PARLEY, client_env

PROMPT = "> "
WELCOME = "Welcome to the greatest messaging application ever!"
T = 5  # seconds for anything that must happen


def line_re(text):
    """A regex matching `text` as a whole output line."""
    return r"(?:^|[\r\n])" + re.escape(text) + r"\r\n"


def expect_line(child, text, timeout=T):
    """Waits for `text` as a whole line of the client's output."""
    child.expect(line_re(text), timeout=timeout)


def expect_lines(child, texts, timeout=T):
    """Waits for each of `texts` as whole lines, in any order."""
    left = list(texts)
    while left:
        i = child.expect([line_re(t) for t in left], timeout=timeout)
        left.pop(i)


def absent(child, text, within=0.5):
    """Asserts that `text` does not appear in the client's output within `within` seconds."""
    try:
        child.expect_exact(text, timeout=within)
    except pexpect.TIMEOUT:
        return
    raise AssertionError(f"unexpected {text!r} in the output of {child.args}")


def prompt(child, timeout=T):
    child.expect_exact(PROMPT, timeout=timeout)


def command(child, line, *expected, timeout=T):
    """Types `line` + Enter, then waits for each expected whole line (in order)."""
    child.sendline(line)
    for e in expected:
        expect_line(child, e, timeout=timeout)


def answer_login(c, user, pw):
    """Answers the `Username: ` and `Password: ` prompts of a running client."""
    c.expect_exact("Username: ", timeout=T)
    c.sendline(user)
    c.expect_exact("Password: ", timeout=T)
    c.sendline(pw)


def start_login(client_factory, port, user, pw, **kw):
    """Spawns a client (`kw` go to spawn_client: env, args) and answers the two prompts;
    returns the child (welcome not awaited)."""
    c = client_factory(port, **kw)
    answer_login(c, user, pw)
    return c


def login(client_factory, server, user, pw=None, **kw):
    """A logged-in client at its `> ` prompt."""
    c = start_login(client_factory, server.port, user, server.users[user] if pw is None else pw,
                    **kw)
    expect_line(c, WELCOME)
    prompt(c)
    return c


def wait_exit(child, timeout=T):
    """Waits for the client to exit; returns its exit status."""
    child.expect(pexpect.EOF, timeout=timeout)
    child.close()
    return child.exitstatus


def run_pipe(port, text, timeout=15, host="127.0.0.1"):
    """Runs `parley` with `text` on a pipe as stdin; returns (exit status, stdout, stderr)."""
    p = subprocess.run([PARLEY, host, str(port)], input=text.encode(), capture_output=True,
                       timeout=timeout, env=client_env())
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def listening_ports(pid):
    """The TCP ports process `pid` listens on (from /proc/<pid>/fd and /proc/net/tcp*)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for row in f:
                    cols = row.split()
                    if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                        ports.append(int(cols[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            pass
    return ports
