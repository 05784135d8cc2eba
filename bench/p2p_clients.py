#!/usr/bin/python3
"""Private messages between two real `parley` clients on loopback: hans (from a pipe) opens a
session with yoda (in a pty) and sends COUNT `private` lines of TEXT bytes; the time runs from
the session's opening line to yoda printing the last message. Run it against two builds to
compare P2P version 1 (plain) with version 2 (encrypted):

    bench/p2p_clients.py [BUILD_DIR [COUNT [TEXT]]]     (defaults build, 190, 100)

COUNT stays under the receiver's burst of 200 frames (P2P_BURST), past which a sender counts
as flooding (50 frames/s sustained). Prints messages/s and MB/s, best of five runs."""

import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))


def one_run(build, count, text):
    os.environ["PARLEY_BUILD"] = os.path.abspath(build)
    import importlib
    import conftest
    importlib.reload(conftest)
    d = tempfile.mkdtemp(prefix="p2p-bench-")
    srv = conftest.ParleyServer(d)
    srv.start()
    yoda = conftest.spawn_client(srv.port)
    try:
        yoda.expect("Username: ")
        yoda.sendline("yoda")
        yoda.expect("Password: ")
        yoda.sendline(srv.users["yoda"])
        yoda.expect("Welcome")
        body = "x" * (text - 6)
        lines = ["hans", srv.users["hans"], "startprivate yoda"]
        lines += [f"private yoda {i:05d} {body}" for i in range(count)]
        p = subprocess.Popen([conftest.PARLEY, "127.0.0.1", str(srv.port)], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, env=conftest.client_env())
        p.stdin.write(("\n".join(lines[:3]) + "\n").encode())
        p.stdin.flush()
        yoda.expect("hans started private messaging with you", timeout=10)
        t0 = time.monotonic()
        p.stdin.write(("\n".join(lines[3:]) + "\n").encode())
        p.stdin.flush()
        yoda.expect(f"hans\\(private\\): {count - 1:05d} ", timeout=30)
        dt = time.monotonic() - t0
        p.stdin.write(b"logout\n")
        p.stdin.close()
        p.wait(10)
        return dt
    finally:
        yoda.terminate(force=True)
        srv.stop()


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 190
    text = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    best = min(one_run(build, count, text) for _ in range(5))
    print(f"{build}: {count} messages of {text} bytes in {best * 1e3:.1f} ms: "
          f"{count / best:.0f} msg/s, {count * text / best / 1e6:.2f} MB/s")


if __name__ == "__main__":
    main()
