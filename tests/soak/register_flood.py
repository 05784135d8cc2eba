#!/usr/bin/python3
"""A flood of abandoned registrations (issue 9 point 10; the short version is
tests/e2e/test_fault_accounts.py::test_abandoned_registrations_are_not_hashed).

    /usr/bin/python3 tests/soak/register_flood.py [--build DIR] [--count 100000]
        [--seconds 10] [--sources 50]

Before the fix, 100,000 connections that sent `HELLO`, `USER <new name>`, `PASS` and closed
at once, in ten seconds, held the hash threads for hours, grew the server to 200 MB and
starved every hashed login.

1. `--register-rate 0` (so only the cancellation and the `--max-hash-jobs` bound hold it):
   up to --count such connections within --seconds, from --sources loopback addresses, while
   a probe logs in a hashed account and a plain one every 0.5 s. Checks: every probe login
   succeeds (a 508 is retried) and takes under 2 s, the RSS grows by less than the memory of
   the hashes running plus 32 MiB, at most
   1 % of the abandoned registrations became accounts, and afterwards a hashed login is
   immediate and the descriptors are back to where they were.
2. The default `--register-rate` (10 a minute per address), the same flood from one address:
   at most 10 accounts are created.
Both servers' stderr must hold no sanitizer report. The RSS bound is for the plain build
(ASan's shadow memory and quarantine grow it by more). Exit status 0 when all hold; a JSON
summary is printed.
"""

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

THREADS, HASH_MEM = 2, 16 << 20
COST = ["--hash-threads", str(THREADS), "--hash-ops", "3", "--hash-mem", str(HASH_MEM)]
# What the server may grow by: the hashes running (argon2id memory) plus 32 MiB.
RSS_SLACK_KB = (THREADS * HASH_MEM + (32 << 20)) >> 10


def flood(port, count, seconds, sources, tag):
    """Sends `count` abandoned registrations (or as many as fit in `seconds`)."""
    addrs = [f"127.0.0.{1 + i}" for i in range(max(1, min(sources, 250)))]
    sent = errors = 0
    deadline = time.monotonic() + seconds
    while sent < count and time.monotonic() < deadline:
        src = addrs[sent % len(addrs)]
        try:
            sk = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sk.bind((src, 0))
            sk.connect(("127.0.0.1", port))
            sk.sendall(b"1 HELLO 1 flood\n2 USER %s%d\n3 PASS pw\n" % (tag, sent))
            sk.close()
        except OSError:
            errors += 1
        sent += 1
    return sent, errors


def timed_login(s, user, pw):
    """Logs in (retrying 508) and returns the seconds it took, or None on a failure."""
    t0 = time.monotonic()
    p = s.connect()
    try:
        p.hello()
        if p.request("USER", user) != ["OK"]:
            return None
        while True:
            r = p.request("PASS", pw, timeout=30)
            if r == ["OK"]:
                return time.monotonic() - t0
            if r[:2] != ["ERR", "508"]:
                return None
            time.sleep(0.05)
    finally:
        p.close()
        if p in s.protos:
            s.protos.remove(p)


def probe(s, stop, out):
    while not stop.is_set():
        out["hashed"].append(timed_login(s, "hashy", "hashpw"))
        out["plain"].append(timed_login(s, "hans", "falcon"))
        out["rss_kb"] = max(out["rss_kb"], s.rss_kb())
        stop.wait(0.5)


def stop_and_check(s, failures):
    from conftest import SANITIZER_MARKS
    s.close_protos()
    s.stop(expect=None)
    if any(m in s.stderr_text() for m in SANITIZER_MARKS):
        failures.append(f"sanitizer report in {s.stderr_path}")


def created(s, tag):
    return sum(1 for l in s.credentials_text().splitlines() if l.startswith(tag))


def phase_cancel(a, failures, summary):
    from conftest import ParleyServer
    s = ParleyServer(tempfile.mkdtemp(prefix="parley-regflood-"),
                     args=["--allow-register", "--register-rate", "0", *COST])
    s.start()
    try:
        p = s.connect()
        p.hello()
        assert p.request("USER", "hashy") == ["OK", "new"]
        assert p.request("PASS", "hashpw", timeout=30) == ["OK"]
        p.close()
        s.protos.remove(p)
        fds0, rss0 = s.fd_count(), s.rss_kb()
        out = {"hashed": [], "plain": [], "rss_kb": rss0}
        stop = threading.Event()
        t = threading.Thread(target=probe, args=(s, stop, out))
        t.start()
        t0 = time.monotonic()
        sent, errors = flood(s.port, a.count, a.seconds, a.sources, b"gone")
        took = time.monotonic() - t0
        stop.set()
        t.join()
        after = timed_login(s, "hashy", "hashpw")
        made = created(s, "gone")
        time.sleep(0.5)
        summary["cancel"] = {
            "sent": sent, "connect_errors": errors, "seconds": round(took, 1),
            "accounts_created": made, "probe_logins": len(out["hashed"]),
            "hashed_login_max_s": max((x for x in out["hashed"] if x is not None), default=None),
            "plain_login_max_s": max((x for x in out["plain"] if x is not None), default=None),
            "rss_kb_before": rss0, "rss_kb_peak": out["rss_kb"], "fds_before": fds0,
            "fds_after": s.fd_count(), "hashed_login_after_s": after}
        c = summary["cancel"]
        if None in out["hashed"] or None in out["plain"]:
            failures.append("a probe login failed during the flood")
        if c["hashed_login_max_s"] is None or c["hashed_login_max_s"] >= 2.0:
            failures.append(f"a hashed login took {c['hashed_login_max_s']} s")
        if c["plain_login_max_s"] is None or c["plain_login_max_s"] >= 2.0:
            failures.append(f"a plain login took {c['plain_login_max_s']} s")
        if out["rss_kb"] - rss0 >= RSS_SLACK_KB:
            failures.append(f"RSS grew from {rss0} to {out['rss_kb']} KiB")
        if made > sent // 100:
            failures.append(f"{made} of {sent} abandoned registrations were hashed")
        if after is None or after >= 1.0:
            failures.append(f"a hashed login after the flood took {after} s")
        if c["fds_after"] > fds0:
            failures.append(f"descriptors {fds0} before, {c['fds_after']} after")
    finally:
        stop_and_check(s, failures)


def phase_rate(a, failures, summary):
    from conftest import ParleyServer
    s = ParleyServer(tempfile.mkdtemp(prefix="parley-regflood-rate-"),
                     args=["--allow-register", *COST])
    s.start()
    try:
        sent, errors = flood(s.port, min(a.count, 20000), a.seconds, 1, b"rate")
        ok = timed_login(s, "hans", "falcon")
        made = created(s, "rate")
        summary["rate"] = {"sent": sent, "connect_errors": errors, "accounts_created": made,
                           "plain_login_after_s": ok}
        if made > 10:
            failures.append(f"{made} registrations from one address within a minute")
        if ok is None:
            failures.append("a login after the one-address flood failed")
    finally:
        stop_and_check(s, failures)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("PARLEY_BUILD", os.path.join(ROOT, "build")))
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--sources", type=int, default=50)
    a = ap.parse_args()
    os.environ["PARLEY_BUILD"] = os.path.abspath(a.build)
    failures, summary = [], {}
    phase_cancel(a, failures, summary)
    phase_rate(a, failures, summary)
    print(json.dumps(summary, indent=1))
    print("PASS" if not failures else "FAIL: " + "; ".join(failures))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
