#!/usr/bin/python3
"""Parley soak test (issue 5): many clients connecting, logging in, chatting and dropping for a
long time; afterwards the server's descriptors and memory must be back to their baseline, its
log must hold no error line, and no accepted message may be lost.

    /usr/bin/python3 tests/soak/soak.py [--seconds 600] [--clients 1000] [--build DIR]

What it does, all from one epoll loop on loopback (bounded in time and count):
1. starts `parleyd --verbose` in a fresh directory with --clients accounts (plus a probe),
   and records its descriptors and RSS (pristine baseline);
2. warm-up: every client logs in once and leaves; the RSS after that is the warm baseline;
3. soak for --seconds: each client slot loops: connect; HELLO/USER/PASS (pipelined); a few
   actions with think times (MSG to a random user, online or not; WHO; WHOSINCE; BLOCK and
   UNBLOCK; a BCAST now and then, globally rate-limited), acknowledging every `* MSG` at once;
   then it drops, one way picked at random: LOGOUT, close (FIN), reset (SO_LINGER 0), close in
   the middle of the login, or half a frame then a reset; then it waits a little and starts
   over. A probe user times a WHO round trip every 0.5 s;
4. every client leaves; then each account logs in once more, takes its backlog and logs out
   (so every message whose sender got `OK <id>` must have been seen by its recipient);
5. checks: the server is alive; its descriptors equal the pristine count; its RSS is within
   --rss-tolerance (KiB, default 16384, or 25 %, whichever is larger) of the warm baseline; no
   `error:` line in its stderr; lost messages = 0; SIGTERM ends it with status 0.
It prints progress every 10 s and a JSON summary at the end (also to --report FILE); the exit
status is 0 when every check passed, 1 otherwise.
"""

import argparse
import errno
import heapq
import json
import os
import random
import resource
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def pct(xs, p):
    s = sorted(xs)
    if not s:
        return None
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


class Stats(dict):
    def inc(self, k, n=1):
        self[k] = self.get(k, 0) + n


class Client:
    """One client slot: a user account, a socket, a tiny state machine."""

    def __init__(self, soak, idx):
        self.soak = soak
        self.idx = idx
        self.user = f"u{idx:04d}"
        self.pw = f"pw-{idx:04d}"
        self.sock = None
        self.state = "idle"
        self.buf = b""
        self.wake = 0.0
        self.pending = None      # tag of the outstanding request
        self.pending_kind = None
        self.actions_left = 0
        self.tag = 0
        self.blocked = set()
        self.top_ack = 0
        self.mode = "soak"       # soak | warm | drain
        self.quiet_since = 0.0

    def schedule(self, t):
        self.wake = t
        self.soak.timer(t, self)

    # -- socket plumbing --

    def open(self):
        s = self.soak
        sk = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sk.setblocking(False)
        rc = sk.connect_ex(("127.0.0.1", s.port))
        if rc not in (0, errno.EINPROGRESS):
            sk.close()
            s.stats.inc("connect_failed")
            self.state = "idle"
            self.schedule(time.monotonic() + 0.5)
            return
        sk.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sk
        self.buf = b""
        self.tag = 0
        self.state = "connecting"
        s.sel.register(sk, selectors.EVENT_WRITE, self)
        s.stats.inc("connects")

    def send(self, data):
        try:
            n = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self.lost("send_error")
            return False
        if n < len(data):
            # Our frames are tiny; a full send buffer means the server stopped reading us.
            self.soak.stats.inc("short_send")
            self.lost("short_send")
            return False
        return True

    def request(self, kind, line):
        self.tag += 1
        self.pending = str(self.tag)
        self.pending_kind = kind
        return self.send(f"{self.tag} {line}\n".encode())

    def close(self, how="fin"):
        if self.sock is None:
            return
        try:
            self.soak.sel.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        try:
            if how == "rst":
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()
        except OSError:
            pass
        self.sock = None
        self.pending = None

    def lost(self, why):
        """The connection failed without us choosing to drop it."""
        self.soak.stats.inc(f"unexpected_{why}")
        self.close("fin")
        self.state = "idle"
        self.schedule(time.monotonic() + random.uniform(0.2, 1.0))

    # -- behaviour --

    def think(self, lo=None, hi=None):
        s = self.soak
        self.state = "thinking"
        self.schedule(time.monotonic() + random.uniform(
            lo if lo is not None else s.args.think_min, hi if hi is not None else s.args.think_max))

    def start_login(self):
        s = self.soak
        if self.mode == "soak" and random.random() < 0.03:
            # Drop in the middle of the login.
            self.send(b"1 HELLO 1 soak\n2 USER " + self.user.encode() + b"\n")
            s.stats.inc("drop_mid_login")
            self.close(random.choice(["fin", "rst"]))
            self.state = "idle"
            self.schedule(time.monotonic() + random.uniform(0.1, 1.0))
            return
        self.tag = 3
        if not self.send(f"1 HELLO 1 soak\n2 USER {self.user}\n3 PASS {self.pw}\n".encode()):
            return
        self.pending, self.pending_kind = "3", "login"
        self.state = "login"

    def act(self):
        s = self.soak
        if self.mode != "soak":
            return
        if self.actions_left <= 0:
            self.drop()
            return
        self.actions_left -= 1
        r = random.random()
        now = time.monotonic()
        if r < 0.02 and now >= s.next_bcast:
            s.next_bcast = now + 1.0 / s.args.bcast_rate
            self.request("bcast", f"BCAST soak broadcast from {self.user}")
        elif r < 0.70:
            to = f"u{random.randrange(s.args.clients):04d}"
            if to == self.user:
                to = f"u{(self.idx + 1) % s.args.clients:04d}"
            self.request("msg", f"MSG {to} soak {self.user} {s.stats.get('msg_sent', 0)}")
            s.stats.inc("msg_sent")
        elif r < 0.78:
            self.request("who", "WHO")
        elif r < 0.84:
            self.request("whosince", f"WHOSINCE {random.choice([1, 60, 3600])}")
        elif r < 0.92:
            other = f"u{random.randrange(s.args.clients):04d}"
            if other == self.user:
                self.request("who", "WHO")
            elif other in self.blocked:
                self.blocked.discard(other)
                self.request("unblock", f"UNBLOCK {other}")
            else:
                self.blocked.add(other)
                self.request("block", f"BLOCK {other}")
        else:
            self.request("touch", "TOUCH")
        self.state = "waiting"

    def drop(self):
        s = self.soak
        how = random.choices(["logout", "fin", "rst", "halfline"], [4, 3, 3, 1])[0]
        if self.blocked and how == "logout":
            # Unblock everyone first now and then, so blocks do not pile up for ever.
            pass
        s.stats.inc(f"drop_{how}")
        if how == "logout":
            self.request("logout", "LOGOUT")
            self.state = "waiting"
            return
        if how == "halfline":
            self.send(b"99 MSG u0000 half a fra")
            how = "rst"
        self.close(how)
        self.state = "idle"
        self.schedule(time.monotonic() + random.uniform(0.05, 1.0))

    def on_reply(self, tag, rest):
        s = self.soak
        if tag != self.pending:
            if self.pending_kind == "login" and tag in ("1", "2"):
                if tag == "2" and rest.startswith("ERR 409"):
                    # Our previous connection is not gone yet: try again a bit later.
                    s.stats.inc("login_409")
                    self.pending = None
                    self.close("fin")
                    self.state = "idle"
                    self.schedule(time.monotonic() + 0.3)
                elif not rest.startswith("OK"):
                    s.stats.inc("login_error")
                    s.errors.append(f"{self.user} login tag {tag}: {rest}")
                return
            s.stats.inc("stray_reply")
            return
        kind = self.pending_kind
        self.pending = None
        if kind == "login":
            if rest != "OK":
                if rest.startswith("ERR 403"):
                    return  # after a 409 on USER
                s.stats.inc("login_error")
                s.errors.append(f"{self.user} PASS: {rest}")
                self.close("fin")
                self.state = "idle"
                self.schedule(time.monotonic() + 1.0)
                return
            s.stats.inc("logins")
            if self.mode == "warm":
                self.request("logout", "LOGOUT")
                self.state = "waiting"
                return
            if self.mode == "drain":
                self.state = "draining"
                self.quiet_since = time.monotonic()
                self.schedule(self.quiet_since + 1.0)
                return
            self.actions_left = random.randint(s.args.actions_min, s.args.actions_max)
            self.think()
            return
        if rest.startswith("ERR 429"):
            s.stats.inc("rate_limited")
        elif rest.startswith("ERR"):
            code = rest.split(" ")[1]
            if not (kind == "unblock" and code == "453"):
                s.stats.inc(f"err_{kind}_{code}")
                if code not in ("404", "422", "451", "452"):
                    s.errors.append(f"{self.user} {kind}: {rest}")
        elif kind == "msg":
            s.stats.inc("msg_ok")
            s.ok_ids.add(int(rest.split(" ")[1]))
        if kind == "logout":
            self.close("fin")
            self.state = "idle"
            self.schedule(time.monotonic() + random.uniform(0.05, 1.0))
            if self.mode != "soak":
                self.state = "done"
            return
        self.think()

    def on_event(self, line):
        s = self.soak
        if line.startswith("* MSG "):
            mid = int(line.split(" ", 3)[2])
            s.delivered_ids.add(mid)
            s.stats.inc("msg_events")
            if mid > self.top_ack:
                self.top_ack = mid
                self.send(f"* ACK {mid}\n".encode())
            self.quiet_since = time.monotonic()
        elif line.startswith("* BCAST "):
            s.stats.inc("bcast_events")
        elif line.startswith("* BYE"):
            s.stats.inc("bye_" + line[6:].split(" ")[0])
        else:
            s.stats.inc("other_events")

    def on_readable(self):
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = None
        if not data:
            if self.state == "waiting" and self.pending_kind == "logout":
                self.pending = None
                self.close("fin")
                if self.mode == "soak":
                    self.state = "idle"
                    self.schedule(time.monotonic() + 0.1)
                else:
                    self.state = "done"
                return
            self.lost("closed_by_server")
            return
        self.buf += data
        if b"\n" not in data:
            return
        lines = self.buf.split(b"\n")
        self.buf = lines.pop()
        s = self.soak
        for raw in lines:
            if raw[:1] == b"*":
                if raw[:6] == b"* MSG " or raw[:5] == b"* BYE":
                    self.on_event(raw.decode("utf-8", "replace"))
                elif raw[:8] == b"* BCAST ":
                    s.stats["bcast_events"] = s.stats.get("bcast_events", 0) + 1
                else:
                    s.stats["presence_events"] = s.stats.get("presence_events", 0) + 1
            else:
                tag, _, rest = raw.decode("utf-8", "replace").partition(" ")
                self.on_reply(tag, rest)
            if self.sock is None:
                return

    def on_writable(self):
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.soak.stats.inc("connect_failed")
            self.close("fin")
            self.state = "idle"
            self.schedule(time.monotonic() + 0.5)
            return
        self.soak.sel.modify(self.sock, selectors.EVENT_READ, self)
        self.start_login()

    def tick(self, now):
        if self.state == "idle" and now >= self.wake:
            self.top_ack = 0
            self.open()
        elif self.state == "thinking" and now >= self.wake:
            self.act()
        elif self.state == "draining":
            if now - self.quiet_since >= 1.0:
                self.request("logout", "LOGOUT")
                self.state = "waiting"
            else:
                self.schedule(self.quiet_since + 1.0)


class Soak:
    def __init__(self, args):
        self.args = args
        self.stats = Stats()
        self.errors = []
        self.ok_ids = set()
        self.delivered_ids = set()
        self.next_bcast = 0.0
        self.sel = selectors.DefaultSelector()
        self.dir = tempfile.mkdtemp(prefix="parley-soak-")
        self.proc = None
        self.port = None
        self.samples = []
        self.heap = []
        self.seq = 0
        self.last_report = time.monotonic()

    def timer(self, t, client):
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, client))

    # -- the server --

    def start_server(self):
        a = self.args
        with open(os.path.join(self.dir, "credentials.txt"), "w") as f:
            for i in range(a.clients):
                f.write(f"u{i:04d} pw-{i:04d}\n")
            f.write("probe pw-probe\n")
        self.err_path = os.path.join(self.dir, "parleyd.stderr")
        # Every client comes from 127.0.0.1: room for all of them (and the probe) from there.
        cmd = [os.path.join(a.build, "parleyd"), "--verbose", "--port-file",
               os.path.join(self.dir, "port"), "--max-per-address", str(a.clients + 64),
               *a.server_arg, "0", "60", "3600"]
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        self.proc = subprocess.Popen(cmd, cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(self.err_path, "wb"),
                                     env=env)
        port_file = os.path.join(self.dir, "port")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.path.exists(port_file):
                t = open(port_file).read()
                if t.endswith("\n"):
                    self.port = int(t)
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise SystemExit(f"parleyd did not start: {open(self.err_path).read()}")

    # -- the probe --

    def probe_connect(self):
        sk = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sk.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sk.sendall(b"1 HELLO 1 probe\n2 USER probe\n3 PASS pw-probe\n")
        f = sk.makefile("rb")
        got = 0
        while got < 3:
            line = f.readline()
            if not line:
                raise SystemExit("probe could not log in")
            if not line.startswith(b"*"):
                got += 1
        sk.setblocking(False)
        self.probe = sk
        self.probe_buf = b""
        self.probe_sent = None
        self.probe_next = time.monotonic()
        self.probe_n = 10
        self.sel.register(sk, selectors.EVENT_READ, "probe")

    def probe_tick(self, now):
        if self.probe_sent is None and now >= self.probe_next:
            self.probe_n += 1
            self.probe.send(f"{self.probe_n} WHO\n".encode())
            self.probe_sent = now

    def probe_read(self):
        try:
            data = self.probe.recv(1 << 20)
        except BlockingIOError:
            return
        if not data:
            self.errors.append("the probe's connection was closed")
            self.sel.unregister(self.probe)
            self.probe_sent = None
            self.probe_next = float("inf")
            return
        self.probe_buf += data
        while b"\n" in self.probe_buf:
            line, _, self.probe_buf = self.probe_buf.partition(b"\n")
            if line.startswith(f"{self.probe_n} ".encode()) and self.probe_sent is not None:
                self.samples.append(time.monotonic() - self.probe_sent)
                self.probe_sent = None
                self.probe_next = time.monotonic() + 0.5

    # -- running phases --

    def run_phase(self, clients, until, label, stop_when_done=False):
        while True:
            now = time.monotonic()
            if now >= until:
                break
            if stop_when_done and all(c.state == "done" for c in clients):
                break
            if self.proc.poll() is not None:
                self.errors.append(f"parleyd died with status {self.proc.returncode} "
                                   f"during {label}")
                return False
            while self.heap and self.heap[0][0] <= now:
                t, _, c = heapq.heappop(self.heap)
                if c.wake == t:
                    c.tick(now)
            if label == "soak":
                self.probe_tick(now)
            for key, ev in self.sel.select(0.01):
                obj = key.data
                if obj == "probe":
                    self.probe_read()
                elif ev & selectors.EVENT_WRITE and obj.state == "connecting":
                    obj.on_writable()
                elif obj.sock is not None:
                    obj.on_readable()
            if now - self.last_report >= 10:
                self.last_report = now
                online = sum(1 for c in clients if c.sock is not None)
                print(f"[{label} {now - self.t_start:7.1f}s] connected {online:4d}  "
                      f"fds {fd_count(self.proc.pid):5d}  rss {rss_kb(self.proc.pid):7d} KiB  "
                      f"logins {self.stats.get('logins', 0):7d}  "
                      f"msgs ok {self.stats.get('msg_ok', 0):7d}  "
                      f"who p99 {1000 * (pct(self.samples[-200:], 99) or 0):6.1f} ms",
                      flush=True)
        return True

    def settle_fds(self, want, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = fd_count(self.proc.pid)
            if n <= want:
                return n
            time.sleep(0.2)
        return fd_count(self.proc.pid)

    def main(self):
        a = self.args
        self.t_start = time.monotonic()
        self.start_server()
        time.sleep(0.3)
        pid = self.proc.pid
        fd0, rss0 = fd_count(pid), rss_kb(pid)
        print(f"parleyd pid {pid} port {self.port} dir {self.dir}: pristine fds {fd0}, "
              f"rss {rss0} KiB", flush=True)
        clients = [Client(self, i) for i in range(a.clients)]

        # warm-up: everybody logs in once and out
        for c in clients:
            c.mode = "warm"
            c.schedule(time.monotonic() + random.uniform(0, 2))
        self.run_phase(clients, time.monotonic() + 60, "warm-up", stop_when_done=True)
        fd_warm = self.settle_fds(fd0)
        rss_warm = rss_kb(pid)
        print(f"after warm-up: fds {fd_warm}, rss {rss_warm} KiB", flush=True)

        # soak
        self.probe_connect()
        for c in clients:
            c.mode = "soak"
            c.state = "idle"
            c.schedule(time.monotonic() + random.uniform(0, 3))
        peak_rss, peak_fds = rss_warm, fd_warm
        t_end = time.monotonic() + a.seconds
        while time.monotonic() < t_end:
            if not self.run_phase(clients, min(t_end, time.monotonic() + 5), "soak"):
                break
            peak_rss = max(peak_rss, rss_kb(pid))
            peak_fds = max(peak_fds, fd_count(pid))
        soak_stats = dict(self.stats)

        # everybody leaves (half cleanly, half by reset)
        for c in clients:
            if c.sock is not None:
                c.close(random.choice(["fin", "rst"]))
            c.state = "done"
        self.sel.unregister(self.probe)
        self.probe.close()
        fd_after_soak = self.settle_fds(fd0)
        rss_after_soak = rss_kb(pid)

        # drain: every account takes its backlog
        if self.proc.poll() is None:
            for c in clients:
                c.mode = "drain"
                c.state = "idle"
                c.schedule(time.monotonic() + random.uniform(0, 3))
            self.run_phase(clients, time.monotonic() + 120, "drain", stop_when_done=True)
            not_done = sum(1 for c in clients if c.state != "done")
            if not_done:
                self.errors.append(f"{not_done} accounts did not finish draining")
            for c in clients:
                c.close("fin")
        fd_end = self.settle_fds(fd0)
        time.sleep(1)
        rss_end = rss_kb(pid) if self.proc.poll() is None else None

        alive = self.proc.poll() is None
        rc = None
        if alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = "timeout"
        log = open(self.err_path, encoding="utf-8", errors="replace").read()
        error_lines = [ln for ln in log.splitlines() if " error: " in ln or "ERROR" in ln
                       or "runtime error" in ln]
        lost = sorted(self.ok_ids - self.delivered_ids)
        tol = max(a.rss_tolerance, rss_warm // 4)
        summary = {
            "seconds": a.seconds, "clients": a.clients, "build": a.build,
            "fds": {"pristine": fd0, "after_warmup": fd_warm, "peak": peak_fds,
                    "after_soak": fd_after_soak, "end": fd_end},
            "rss_kb": {"pristine": rss0, "after_warmup": rss_warm, "peak": peak_rss,
                       "after_soak": rss_after_soak, "end": rss_end, "tolerance": tol},
            "who_rtt_ms": {"samples": len(self.samples),
                           "p50": round(1000 * (pct(self.samples, 50) or 0), 2),
                           "p99": round(1000 * (pct(self.samples, 99) or 0), 2),
                           "max": round(1000 * max(self.samples or [0]), 2)},
            "counts": soak_stats,
            "messages": {"accepted": len(self.ok_ids), "delivered": len(self.delivered_ids),
                         "lost": len(lost)},
            "server": {"alive_at_end": alive, "sigterm_status": rc,
                       "log_lines": len(log.splitlines()), "error_lines": len(error_lines)},
            "errors": self.errors[:20],
        }
        problems = []
        if not alive:
            problems.append("parleyd died")
        if rc != 0:
            problems.append(f"SIGTERM exit status {rc}")
        if fd_end != fd0:
            problems.append(f"descriptors {fd_end} at the end, {fd0} at the start")
        if rss_end is not None and rss_end > rss_warm + tol:
            problems.append(f"RSS {rss_end} KiB at the end, {rss_warm} KiB after warm-up "
                            f"(tolerance {tol} KiB)")
        if error_lines:
            problems.append(f"{len(error_lines)} error lines in the log, e.g. {error_lines[:5]}")
        if lost:
            problems.append(f"{len(lost)} accepted messages never delivered, e.g. {lost[:10]}")
        unexpected = {k: v for k, v in soak_stats.items() if k.startswith("unexpected_")}
        if unexpected:
            problems.append(f"connections lost without the client dropping them: {unexpected}")
        if self.errors:
            problems.append(f"{len(self.errors)} protocol errors, e.g. {self.errors[:5]}")
        summary["problems"] = problems
        summary["passed"] = not problems
        print(json.dumps(summary, indent=2))
        if a.report:
            with open(a.report, "w") as f:
                json.dump(summary, f, indent=2)
        if not problems and not a.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print(f"server directory kept: {self.dir}")
        return 0 if not problems else 1


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=600, help="soak duration (default 600)")
    ap.add_argument("--clients", type=int, default=1000, help="client slots (default 1000)")
    ap.add_argument("--build", default=os.environ.get("PARLEY_BUILD",
                                                      os.path.join(ROOT, "build")),
                    help="directory holding parleyd (default $PARLEY_BUILD or build/)")
    ap.add_argument("--think-min", type=float, default=0.2)
    ap.add_argument("--think-max", type=float, default=1.5)
    ap.add_argument("--actions-min", type=int, default=5,
                    help="requests in one session, at least (default 5)")
    ap.add_argument("--actions-max", type=int, default=40,
                    help="requests in one session, at most (default 40)")
    ap.add_argument("--bcast-rate", type=float, default=2.0,
                    help="broadcasts a second, all clients together (default 2)")
    ap.add_argument("--rss-tolerance", type=int, default=16384,
                    help="KiB the final RSS may exceed the warm baseline (default 16384)")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra parleyd option (repeatable)")
    ap.add_argument("--report", help="write the JSON summary to this file")
    ap.add_argument("--keep", action="store_true", help="keep the server directory")
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args(argv)
    a.build = os.path.abspath(a.build)
    if a.seconds <= 0 or a.seconds > 24 * 3600 or not 1 <= a.clients <= 5000:
        ap.error("--seconds must be in (0, 86400] and --clients in [1, 5000]")
    return a


def main(argv=None):
    a = parse_args(argv if argv is not None else sys.argv[1:])
    random.seed(a.seed)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, a.clients * 2 + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return Soak(a).main()


if __name__ == "__main__":
    sys.exit(main())
