#!/usr/bin/python3
"""P2P secrets expire (issue 5; too slow for `make test`: it waits out the 60 s window).

    /usr/bin/python3 tests/soak/p2p_expiry.py [--build DIR] [--wait 62]

1. A real `parley` client (hans, in a pty) accepts a private session asked for by a raw
   protocol client (vader), who thus holds the one-time secret. Nobody connects for --wait
   seconds (default 62 > the 60 s window); then vader presents the secret to hans's listener:
   it must be refused (`ERR`), and hans must not show a session.
2. At the same time the server side: vader asks a raw yoda (with a listener) who never answers
   the `* P2PREQ`; after 60 s vader's `P2P` must get `ERR 455` (unanswered counts as declined).
3. Controls: a secret issued at the same time and used after 50 s works; a fresh secret used at
   once works.
Exit status 0 when all hold.
"""

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("PARLEY_BUILD", os.path.join(ROOT, "build")))
    ap.add_argument("--wait", type=float, default=62.0)
    a = ap.parse_args()
    os.environ["PARLEY_BUILD"] = os.path.abspath(a.build)
    import pexpect
    from conftest import ParleyServer, spawn_client
    from test_client_kit import listening_ports
    from noise_peer import NoisePeer, Refused

    s = ParleyServer(tempfile.mkdtemp(prefix="parley-p2p-expiry-"), timeout=600)
    s.start()
    hans = spawn_client(s.port)
    failures = []
    try:
        hans.expect_exact("Username: ")
        hans.sendline("hans")
        hans.expect_exact("Password: ")
        hans.sendline("falcon")
        hans.expect_exact("Welcome to the greatest messaging application ever!")
        port = listening_ports(hans.pid)[0]
        vader = s.login("vader")
        vader.open_listener()
        yoda = s.login("yoda")
        yoda.open_listener()
        secret = vader.request("P2P", "hans")[3]
        luke = s.login("luke")
        luke.open_listener()
        secret_l = luke.request("P2P", "hans")[3]  # used at 50 s: still inside the window
        luke_used = None
        pending = vader.send_request("P2P", "yoda")  # yoda never answers
        yoda.wait_event("P2PREQ")
        print(f"secret issued; waiting {a.wait:.0f} s", flush=True)
        t0 = time.monotonic()
        while time.monotonic() - t0 < a.wait:
            time.sleep(1)
            vader.pump(0)
            yoda.pump(0)
            if luke_used is None and time.monotonic() - t0 >= 50:
                try:
                    NoisePeer.connect(port, "luke", "hans", secret_l).close()
                    luke_used = "open"
                except Refused as e:
                    luke_used = f"refused {e.data!r}"
                print(f"secret used after {time.monotonic() - t0:.0f} s -> {luke_used}")
                if luke_used != "open":
                    failures.append(f"a secret 50 s old was refused: {luke_used}")
        try:
            NoisePeer.connect(port, "vader", "hans", secret).close()
            reply = b"open"
        except Refused as e:
            reply = e.data
        print(f"expired secret -> {reply!r}")
        if not reply.startswith(b"ERR"):
            failures.append(f"an expired secret was accepted: {reply!r}")
        try:
            hans.expect_exact("vader started private messaging", timeout=1)
            failures.append("hans shows a session opened with an expired secret")
        except pexpect.TIMEOUT:
            pass
        r = vader.get_reply(pending, timeout=10)
        print(f"unanswered P2P after {time.monotonic() - t0:.0f} s -> {r}")
        if r[:2] != ["ERR", "455"]:
            failures.append(f"an unanswered P2P request got {r}, expected ERR 455")
        # control: a fresh secret works at once
        vader.request("P2PEND", "hans")
        secret2 = vader.request("P2P", "hans")[3]
        try:
            NoisePeer.connect(port, "vader", "hans", secret2).close()
            reply = b"open"
        except Refused as e:
            reply = e.data
        print(f"fresh secret -> {reply!r}")
        if reply != b"open":
            failures.append(f"a fresh secret was refused: {reply!r}")
    finally:
        hans.terminate(force=True)
        s.close_protos()
        s.stop(expect=None)
    print("PASS" if not failures else "FAIL: " + "; ".join(failures))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
