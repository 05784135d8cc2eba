#!/usr/bin/python3
"""The big versions of the server-limit tests of issue 9 (the short ones are in make test).

    /usr/bin/python3 tests/soak/limits.py [--build DIR] [--only p2p|whosince|idle]

1. p2p: 500 users each ask 200 others for a private session (100,000 requests, then as many
   sessions), all pipelined; a probe's WHO must come back within 2 s after each wave (the
   linear work of 100,000 requests is about 0.4 s; with the old lists, about 40 s)
   (tests/e2e/test_server_p2p.py::p2p_storm; point 11).
2. whosince: 1,000,000 old logouts in the history; one user pipelines 5,000 `WHOSINCE 60`;
   the probe's WHO within 0.2 s, and past the request budget the rest are 429 (point 12).
3. idle: 2,000 connections from 127.0.0.2 that never send; at most --max-per-address (256) are
   held, the rest refused at once, and --hello-timeout 2 closes the held ones: descriptors
   back to the baseline, one refusal line on stderr (point 14).
Prints one FIGURES line per part; exit status 0 when all hold.
"""

import argparse
import os
import resource
import socket
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))


def run_p2p(ParleyServer, users, p2p_storm):
    names = sorted(users("p", 500))
    s = ParleyServer(tempfile.mkdtemp(prefix="parley-limits-p2p-"),
                     users={**users("p", 500), "probe": "probe"},
                     args=["--req-rate", "0", "--max-per-address", "1000"])
    s.start()
    try:
        t = time.monotonic()
        rtts = p2p_storm(s, names, 200, s.login("probe"))
        took = time.monotonic() - t
    finally:
        problem = s.check_and_cleanup()
    print(f"FIGURES p2p users=500 requests=100000 wave_rtts={[round(x, 4) for x in rtts]} "
          f"total_s={took:.1f}", flush=True)
    return problem or (None if max(rtts) < 2.0 else f"p2p: WHO round trips {rtts}")


def run_whosince(ParleyServer, add_history, ok):
    s = ParleyServer(tempfile.mkdtemp(prefix="parley-limits-whosince-"))
    s.start()
    try:
        add_history(s, [f"gone{i:07d}" for i in range(1000000)], int(time.time()) - 30 * 86400)
        attacker, probe = s.login("vader"), s.login("hans")
        n = 5000
        attacker.send_raw("".join(f"w{i} WHOSINCE 60\n" for i in range(n)))
        worst = 0.0
        for _ in range(20):
            t = time.monotonic()
            ok(probe.request("WHO", timeout=60))
            worst = max(worst, time.monotonic() - t)
        replies = [attacker.get_reply(f"w{i}", timeout=120) for i in range(n)]
        answered = sum(1 for r in replies if r[0] == "OK")
        limited = sum(1 for r in replies if r[:2] == ["ERR", "429"])
    finally:
        problem = s.check_and_cleanup()
    print(f"FIGURES whosince history=1000000 requests={n} answered={answered} "
          f"limited={limited} probe_worst_ms={worst * 1000:.1f}", flush=True)
    if problem:
        return problem
    if worst >= 0.2 or answered + limited != n or answered > 300:
        return f"whosince: probe worst {worst:.3f} s, {answered} answered, {limited} limited"
    return None


def run_idle(ParleyServer, wait_until, ok):
    s = ParleyServer(tempfile.mkdtemp(prefix="parley-limits-idle-"), args=["--hello-timeout", "2"])
    s.start()
    socks = []
    try:
        probe = s.login("hans")  # from 127.0.0.1 (and a low descriptor: conftest uses select)
        fd0 = s.fd_count()
        for _ in range(2000):
            sk = socket.socket()
            sk.bind(("127.0.0.2", 0))
            sk.connect(("127.0.0.1", s.port))
            socks.append(sk)
        peak = s.fd_count()
        t = time.monotonic()
        wait_until(lambda: s.fd_count() <= fd0, timeout=10, what="descriptors back")
        back_after = time.monotonic() - t
        ok(probe.request("WHO"))  # never affected
        lines = [x for x in s.stderr_text().splitlines() if "refused" in x]
    finally:
        for sk in socks:
            sk.close()
        problem = s.check_and_cleanup()
    print(f"FIGURES idle connections=2000 fd_baseline={fd0} fd_peak={peak} "
          f"back_after_s={back_after:.2f} refusal_lines={len(lines)}", flush=True)
    if problem:
        return problem
    if peak > fd0 + 256 + 5 or len(lines) != 1:
        return f"idle: peak {peak} descriptors (baseline {fd0}), {len(lines)} refusal lines"
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("PARLEY_BUILD", os.path.join(ROOT, "build")))
    ap.add_argument("--only", choices=["p2p", "whosince", "idle"])
    a = ap.parse_args()
    os.environ["PARLEY_BUILD"] = os.path.abspath(a.build)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    from conftest import ParleyServer, ok, wait_until
    from test_fault_kit import users
    from test_server_p2p import p2p_storm
    from test_server_whosince import add_history

    parts = {
        "p2p": lambda: run_p2p(ParleyServer, users, p2p_storm),
        "whosince": lambda: run_whosince(ParleyServer, add_history, ok),
        "idle": lambda: run_idle(ParleyServer, wait_until, ok),
    }
    failures = [f for name, part in parts.items() if a.only in (None, name) for f in [part()] if f]
    for f in failures:
        print("FAIL", f, file=sys.stderr)
    print("limits soak:", "FAIL" if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
