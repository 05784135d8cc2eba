#!/usr/bin/python3
"""Runs one parleyd under valgrind (memcheck, --leak-check=full) through every feature, then
SIGTERM, and reports errors and leaks (issue 5: "valgrind shows no leak in a server run that
saw every feature").

    /usr/bin/python3 tests/soak/valgrind_tour.py [--build DIR] [--keep]

The tour, over raw protocol connections (tests/e2e/conftest.py's Proto) and, when pexpect is
there, two real `parley` clients in a private session:
HELLO (good, bad version), USER unknown / online / locked, wrong passwords up to a lock-out,
registration of an argon2id account (cheap cost) and a log-in to it (worker threads), direct
messages online and offline with ACK and redelivery, 404/422/451/452/413/400/501/403 errors, the
rate limit (429), BCAST, WHO, WHOSINCE, BLOCK/UNBLOCK/453, LISTEN, P2P with consent (accept and
decline), 410/454/456, P2PEND, TOUCH, a slow reader cut off at --max-output, a malformed-frame
flood (BYE flood), the login timeout, the idle timeout, SIGHUP, LOGOUT, a close and a reset in
the middle of a session, and the shutdown with clients still connected.
Exit status 0 when valgrind reports no error and nothing definitely/indirectly/possibly lost.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
os.environ.setdefault("PARLEY_E2E_TIMEOUT", "30")  # valgrind is slow
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))


def log(msg):
    print(f"[tour] {msg}", flush=True)


def tour(port, build):
    from conftest import Proto  # noqa: E402 (after the timeout is set)

    def conn():
        return Proto(port)

    def login(user, pw):
        p = conn()
        p.login(user, pw)
        return p

    def expect(r, *want):
        assert r[:len(want)] == list(want), f"got {r}, want {want}"
        return r

    # HELLO and login errors
    p = conn()
    expect(p.request("WHO"), "ERR", "403")
    expect(p.request("HELLO", "2"), "ERR", "505")
    assert p.closed(30)
    p = conn()
    p.hello()
    expect(p.request("USER", "nobody-here"), "OK", "new")  # registration is on
    expect(p.request("PASS", "Reg-pass-1"), "OK")
    expect(p.request("LOGOUT"), "OK")
    assert p.closed(30)
    reg = login("nobody-here", "Reg-pass-1")  # argon2id check on a worker thread
    log("registration and argon2id login")
    q = conn()
    q.hello()
    expect(q.request("USER", "vader"), "OK")
    expect(q.request("PASS", "x1"), "ERR", "401")
    expect(q.request("PASS", "x2"), "ERR", "401")
    expect(q.request("PASS", "x3"), "ERR", "424")
    assert q.closed(30)
    q = conn()
    q.hello()
    expect(q.request("USER", "vader"), "OK")  # the lock is told at PASS (PROTOCOL §4)
    expect(q.request("PASS", "sithlord"), "ERR", "423")
    assert q.closed(30)
    log("lock-out")

    hans = login("hans", "falcon")
    yoda = login("yoda", "wise")
    hans.wait_event("LOGIN yoda")
    r = conn()
    r.hello()
    expect(r.request("USER", "hans"), "OK")
    expect(r.request("PASS", "falcon"), "ERR", "409")  # told after the right password
    r.close()
    # messages
    mid = expect(hans.request("MSG", "yoda", "hello yoda"), "OK")[1]
    ev = yoda.wait_event("MSG")
    yoda.ack(ev[1])
    for i in range(5):
        expect(hans.request("MSG", "luke", f"offline {i}"), "OK")
    expect(hans.request("MSG", "nobody", "x"), "ERR", "404")
    expect(hans.request("MSG", "hans", "x"), "ERR", "422")
    expect(hans.request("MSG", "yoda", "x" * 4100), "ERR", "413")
    expect(hans.send_bad(b"MSG yoda bad\x01byte"), "ERR", "400")
    expect(hans.request("FROB"), "ERR", "501")
    expect(hans.send_bad(b"LINE " + b"y" * 9000), "ERR", "413")
    luke = login("luke", "skywalker")
    got = luke.wait_events("MSG", 5)
    luke.ack(got[2][1])  # partial ack: the rest comes again
    luke.close()
    luke = login("luke", "skywalker")
    got = luke.wait_events("MSG", 2)
    luke.ack(got[-1][1])
    expect(luke.request("LOGOUT"), "OK")
    log(f"messages (first id {mid})")
    # rate limit
    tags = [hans.send_request("MSG", "yoda", f"burst {i}") for i in range(80)]
    codes = [hans.get_reply(t)[0:2] for t in tags]
    assert ["ERR", "429"] in codes, codes
    time.sleep(1.5)
    for ev in yoda.msgs():
        yoda.ack(ev[1])
    # blocks and broadcasts
    expect(yoda.request("BLOCK", "hans"), "OK")
    expect(hans.request("MSG", "yoda", "blocked?"), "ERR", "451")
    expect(yoda.request("MSG", "hans", "blocked?"), "ERR", "452")
    expect(hans.request("BCAST", "to all"), "OK")
    expect(yoda.request("UNBLOCK", "hans"), "OK")
    expect(yoda.request("UNBLOCK", "hans"), "ERR", "453")
    expect(yoda.request("BLOCK", "c3po"), "OK")
    expect(hans.request("BCAST", "to all again"), "OK")
    expect(hans.request("WHO"), "OK")
    expect(hans.request("WHOSINCE", "3600"), "OK")
    expect(hans.request("TOUCH"), "OK")
    log("blocks, broadcasts, who")
    # P2P with consent
    hans.open_listener()
    yoda.open_listener()
    expect(hans.request("P2P", "c3po"), "ERR", "410")
    c3po = login("c3po", "gold")
    expect(hans.request("P2P", "c3po"), "ERR", "456")
    tag = hans.send_request("P2P", "yoda")
    ev = yoda.wait_event("P2PREQ")
    expect(yoda.request("P2PACCEPT", "hans"), "OK")
    rep = expect(hans.get_reply(tag), "OK")
    expect(hans.request("P2P", "yoda"), "ERR", "454")
    expect(hans.request("P2PEND", "yoda"), "OK")
    expect(yoda.request("P2PEND", "hans"), "OK")
    tag = hans.send_request("P2P", "yoda")
    yoda.wait_event("P2PREQ")
    expect(yoda.request("P2PDECLINE", "hans"), "OK")
    expect(hans.get_reply(tag), "ERR", "455")
    tag = hans.send_request("P2P", "yoda")
    yoda.wait_event("P2PREQ")
    yoda.close()  # the asked peer goes away: 410 for the asker
    expect(hans.get_reply(tag), "ERR")
    log(f"p2p (secret length {len(rep[3])})")
    # real clients, when pexpect is there
    try:
        import pexpect  # noqa: F401
        from conftest import spawn_client
        kids = []
        for user, pw in (("r2d2", "beepboop"), ("yoda", "wise")):
            k = spawn_client(port, timeout=60)
            k.expect_exact("Username: ")
            k.sendline(user)
            k.expect_exact("Password: ")
            k.sendline(pw)
            k.expect_exact("Welcome")
            kids.append(k)
        a, b = kids
        a.sendline("startprivate yoda")
        b.expect("would like to private message")
        b.sendline("y")
        a.expect_exact("Start private messaging with yoda")
        a.sendline("private yoda hello over p2p")
        b.expect_exact("r2d2(private): hello over p2p")
        a.sendline("whoelse")
        a.sendline("stopprivate yoda")
        b.expect_exact("r2d2 stopped private messaging")
        a.sendline("logout")
        a.expect(pexpect.EOF)
        b.sendline("logout")
        b.expect(pexpect.EOF)
        log("terminal clients in a private session")
    except ImportError:
        log("pexpect missing: terminal clients skipped")
    # slow reader cut off at --max-output
    slow = Proto(port, rcvbuf=4096)
    slow.login("r2d2", "beepboop")
    c3po.wait_event("LOGIN r2d2")
    expect(c3po.request("BLOCK", "hans"), "OK")  # the broadcasts go to the slow reader only
    text = "z" * 4000
    deadline = time.monotonic() + 120
    for i in range(2000):  # at most 8 MB; the kernel's socket buffer takes about 4 MB first
        hans.send_request("BCAST", text)
        if i % 40 == 39:
            hans.pump(0.01)
            hans.replies.clear()
            time.sleep(0.25)  # stay under the rate limit
            c3po.pump(0)
            if ["LOGOUT", "r2d2"] in c3po.all_events or time.monotonic() > deadline:
                break
    hans.pump(0.5)
    log(f"slow reader cut off: {['LOGOUT', 'r2d2'] in c3po.all_events}")
    slow.close()
    # SIGHUP is sent by the caller; a reset and a close mid-session
    a = login("luke", "skywalker")
    a.send_raw(b"7 MSG hans half")
    a.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    a.close()
    time.sleep(0.5)
    expect(hans.request("LOGOUT"), "OK")
    hans.close()
    # malformed flood and login timeout
    f = conn()
    f.send_raw(b"\xff\n" * 10)
    assert f.closed(30)
    idle = conn()  # never logs in: login timeout
    assert idle.closed(60)
    log("flood and login timeout")
    # idle timeout (timeout 4 s): reg goes idle
    assert reg.closed(60)
    log("idle timeout")
    # left connected for the shutdown: yoda logged in, and one at the USER stage
    y = login("yoda", "wise")
    w = conn()
    w.hello()
    expect(w.request("USER", "hans"), "OK")
    return [y, w, c3po]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("PARLEY_BUILD", os.path.join(ROOT, "build")))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--no-valgrind", action="store_true",
                    help="run the tour against a plain parleyd (to check the tour itself)")
    a = ap.parse_args()
    a.build = os.path.abspath(a.build)
    d = tempfile.mkdtemp(prefix="parley-valgrind-")
    with open(os.path.join(d, "credentials.txt"), "w") as f:
        f.write("# tour accounts\nhans falcon\nyoda wise\nvader sithlord\nr2d2 beepboop\n"
                "c3po gold\nluke skywalker\n")
    vlog = os.path.join(d, "valgrind.log")
    cmd = ["valgrind", "--leak-check=full", "--show-leak-kinds=definite,indirect,possible",
           "--errors-for-leak-kinds=definite,indirect,possible", "--error-exitcode=9",
           f"--log-file={vlog}", os.path.join(a.build, "parleyd"), "--verbose",
           "--allow-register", "--p2p-consent", "--hash-ops", "1", "--hash-mem", "8192",
           "--msg-rate", "200", "--msg-burst", "50", "--max-output", "65536",
           "--max-message", "4000", "--max-line", "8192",
           "--login-timeout", "5", "--max-errors", "5", "--port-file",
           os.path.join(d, "port"), "0", "2", "4"]
    if a.no_valgrind:
        cmd = cmd[cmd.index(f"--log-file={vlog}") + 1:]
        open(vlog, "w").write("ERROR SUMMARY: 0 errors (not run under valgrind)\n")
    log(" ".join(cmd))
    err = open(os.path.join(d, "parleyd.stderr"), "wb")
    proc = subprocess.Popen(cmd, cwd=d, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    port = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and port is None:
        try:
            t = open(os.path.join(d, "port")).read()
            if t.endswith("\n"):
                port = int(t)
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    if port is None:
        print(open(vlog).read() if os.path.exists(vlog) else "no valgrind log")
        return 1
    tour_error = None
    try:
        keep = tour(port, a.build)
        proc.send_signal(signal.SIGHUP)
        time.sleep(2)
    except Exception as e:  # report, then still stop the server and read valgrind's verdict
        tour_error = e
        keep = []
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(180)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = "timeout"
    del keep
    text = open(vlog).read()

    def grab(pattern):
        m = re.search(pattern, text)
        return m.group(1).replace(",", "") if m else "?"
    summary = {
        "exit_status": rc,
        "errors": grab(r"ERROR SUMMARY: ([\d,]+) errors"),
        "definitely_lost": grab(r"definitely lost: ([\d,]+) bytes"),
        "indirectly_lost": grab(r"indirectly lost: ([\d,]+) bytes"),
        "possibly_lost": grab(r"possibly lost: ([\d,]+) bytes"),
        "still_reachable": grab(r"still reachable: ([\d,]+) bytes"),
        "in_use_at_exit": grab(r"in use at exit: ([\d,]+) bytes"),
        "heap": grab(r"total heap usage: ([^\n]+)"),
        "tour_error": repr(tour_error) if tour_error else None,
    }
    if "All heap blocks were freed" in text:
        for k in ("definitely_lost", "indirectly_lost", "possibly_lost", "still_reachable"):
            summary[k] = "0"
    print("\n".join(f"{k}: {v}" for k, v in summary.items()))
    bad = rc != 0 or tour_error is not None or summary["errors"] != "0"
    if bad or a.keep:
        print(f"valgrind log and server directory kept: {d}")
        if bad:
            print(text[-6000:])
    else:
        shutil.rmtree(d, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
