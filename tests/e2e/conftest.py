"""Shared machinery for Parley's end-to-end tests.

Run with Debian's interpreter: `/usr/bin/python3 -m pytest tests/e2e`.
The binaries come from $PARLEY_BUILD (default <root>/build).

What is here:

- `ParleyServer(dir, users=DEFAULT_USERS, block_duration=2, timeout=60, args=())`: a parleyd in
  its own directory on an OS-chosen port (`--port-file`, port 0). `.start()`, `.stop()`,
  `.kill9()`, `.restart()`, `.sighup()`, `.port`, `.pid`, `.rss_kb()`, `.stderr_text()`,
  `.stdout_text()`, `.add_user(name, pw)`, `.connect()` (a `Proto`), `.login(user, pw=None)`.
  Set `.listen_port = s.port` before a restart to come back on the same port (clients key
  what they remember by server address).
- TLS: `ParleyServer(..., tls=True)` also serves TLS on a second port (`--tls-port 0`,
  `.tls_port`), and then `.connect()` / `.login()` use it (pass `tls=False` for the plain
  port). `Proto(port, tls=True)` speaks TLS without checking the key. The files in
  `TLS_SUITE` run twice, `transport` = "plain" and "tls": `server` and `make_server` follow it.
- fixtures `server` (started, defaults, in tmp_path) and `make_server(**kwargs)` (a factory;
  every server is checked and stopped at teardown: an unexpected death, a non-zero exit on
  SIGTERM or a sanitizer report in stderr fails the test and shows stderr).
- `Proto(port, host='127.0.0.1')`: a raw protocol client. `.request(*fields)` returns the reply
  as a list (`['OK', '17']`, `['ERR', '404', 'no such user']`); events met meanwhile go to
  `.events` (lists of fields without the `*`, text kept whole: `['MSG', '17', 'yoda',
  '1764081000', 'hi there']`). `.wait_event(pred_or_prefix)` returns (and removes from
  `.events`) the first matching event; `.no_event(prefix, within=0.5)` asserts none arrives.
  Also: `.send_request(*fields) -> tag` and `.get_reply(tag)` (pipelining, the deferred P2P
  reply), `.get_reply_any(('7', '-'))`, `.send_bad(raw_bytes)` (a tagged frame that may be
  answered with '-'), `.send_line`, `.send_raw`, `.recv_line(timeout)` (raw), `.pump(seconds)`,
  `.closed(timeout)`, `.ack(id)`, `.hello()`, `.login(user, pw)`, `.login_reply(user, pw)` (the
  reply to PASS, for refusals), `.open_listener()` (a real
  P2P listener + LISTEN), `.msgs()`; `.frames` (every frame received), `.all_events`, `.eof`,
  `.reset`. `Proto(port, source='127.0.0.2')` binds the client side; `rcvbuf=4096` makes a
  small receive window (a slow reader). `ok(reply)` / `err(reply, code)` assert a reply.
- `spawn_client(port, ...)` and fixture `client_factory(port, ...)`: the `parley` client in a pty
  (`client_env()` gives its environment: INPUTRC without bracketed paste, and a fresh empty
  XDG_STATE_HOME for each client, so no run remembers the messages another one was shown or
  its input history; pass `env={"XDG_STATE_HOME": dir}` to let several runs share one; with
  `bracketed_paste=True`, to either, readline's defaults as a user has them).
- `wait_until(pred, timeout)`: poll with a deadline.
- Every client gets XDG_CONFIG_HOME = one directory shared by the whole run (`CONFIG_HOME`), so
  each user's identity key is made once and pins made in one test hold in the next; a test
  that changes keys passes `env={"XDG_CONFIG_HOME": its own dir}`. Raw P2P peers speak the
  encrypted handshake through `noise_peer.py` (`NoisePeer.connect/accept`), whose default key
  for a user is that user's key in `CONFIG_HOME` (`static_for`).
- Topologies: the files in `CLUSTER_SUITE` run once per topology named in $PARLEY_TOPOLOGIES
  (a comma list; default "single,cluster"; the client suite files follow
  $PARLEY_CLIENT_TOPOLOGIES instead when it is set): `topology` = "single" (one parleyd) or "cluster", where
  `server` and `make_server` give a `ParleyCluster`: three nodes on one Redis of their own,
  sharing the first node's credentials file, with the same interface as far as tests use a
  ParleyServer (`.port`, `.tls_port`, `.connect()`, `.login()` hand out the nodes in turn;
  `.ports`, `.node(i)`; start/stop/kill9/restart/sighup on all nodes; `stderr_text()` with a
  header per node). Ids read `test_x[plain-cluster]`. A test about one process's files or life
  is `@pytest.mark.single_node` (reason beside it) and skipped on the cluster. Fixture
  `make_cluster(nodes=3, **kw)` makes a cluster whatever the topology (fault tests).
- `RedisServer(appendfsync="always")` and fixture `make_redis(**kwargs)` (a factory; each is
  stopped at teardown): a redis-server of the tests' own, on a Unix socket in a fresh short
  temporary directory (no TCP port: never a fixed port, never a system instance), its
  append-only file there too. `.start()`, `.stop()` (SIGTERM by its PID, then SIGKILL),
  `.kill9()`, `.restart()`, `.path` (the socket), `.addr` (`unix:<path>`, for `--redis`),
  `.pid`, `.command(*args)` (one command over the socket; the reply as Python values, an error
  as `RedisError`).

Every read has a deadline: no test can hang.
"""

import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("PARLEY_BUILD", os.path.join(ROOT, "build")))
PARLEYD = os.path.join(BUILD, "parleyd")
PARLEY = os.path.join(BUILD, "parley")

DEFAULT_USERS = {
    "hans": "falcon",
    "yoda": "wise",
    "vader": "sithlord",
    "r2d2": "beepboop",
    "c3po": "gold",
    "luke": "skywalker",
}

# Sanitizer reports in a server's stderr fail the test that ran it.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "ThreadSanitizer", "UndefinedBehaviorSanitizer")

DEFAULT_READ_TIMEOUT = float(os.environ.get("PARLEY_E2E_TIMEOUT", "5"))


def wait_until(pred, timeout=5.0, interval=0.02, what="condition"):
    """Polls `pred()` until it returns a true value (returned) or fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _need(path):
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} is not built (make {os.path.relpath(path, ROOT)})")


# --------------------------------------------------------------------------------------------
# The server


class ParleyServer:
    def __init__(self, dir, users=None, block_duration=2, timeout=60, args=(), env=None,
                 tls=False, credentials=None):
        self.dir = str(dir)
        self.tls = tls  # also serve TLS on a second port (--tls-port 0); connect() uses it
        self.tls_port = None
        self.users = dict(DEFAULT_USERS if users is None else users)
        self.block_duration = block_duration
        self.timeout = timeout
        self.args = [str(a) for a in args]
        self.env = env
        self.proc = None
        self.port = None
        self.listen_port = 0  # 0: any free port
        self.port_file = os.path.join(self.dir, "parleyd.port")
        self.stderr_path = os.path.join(self.dir, "parleyd.stderr")
        self.stdout_path = os.path.join(self.dir, "parleyd.stdout")
        # `credentials`: the file another server wrote (a cluster node shares the first node's);
        # passed with --credentials and never written here.
        self.shared_credentials = credentials is not None
        self.cred_path = str(credentials) if credentials else os.path.join(self.dir,
                                                                           "credentials.txt")
        self.expected_exit = False  # set when a test killed or stopped the process itself
        self.protos = []
        os.makedirs(self.dir, exist_ok=True)
        if not self.shared_credentials and not os.path.exists(self.cred_path):
            with open(self.cred_path, "w") as f:
                for name, pw in self.users.items():
                    f.write(f"{name} {pw}\n")

    # -- life cycle --

    def command(self):
        tls = ["--tls-port", "0"] if self.tls else []
        cred = ["--credentials", self.cred_path] if self.shared_credentials else []
        return [PARLEYD, "--port-file", self.port_file, *cred, *tls, *self.args,
                str(self.listen_port), str(self.block_duration), str(self.timeout)]

    def start(self, wait=True):
        _need(PARLEYD)
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        try:
            os.unlink(self.port_file)
        except FileNotFoundError:
            pass
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        if self.env:
            env.update(self.env)
        with open(self.stderr_path, "ab") as err, open(self.stdout_path, "ab") as out:
            self.proc = subprocess.Popen(self.command(), cwd=self.dir, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, env=env)
        self.expected_exit = False
        self.port = None
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(self.port_file) as f:
                    data = f.read()
                ports = data.split()
                if data.endswith("\n") and ports and all(p.isdigit() for p in ports) and \
                        len(ports) == (2 if self.tls else 1):
                    self.port = int(ports[0])
                    self.tls_port = int(ports[1]) if self.tls else None
                    return self.port
            except FileNotFoundError:
                pass
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"parleyd exited with {rc} before listening; stderr:\n"
                                     f"{self.stderr_text()}")
            time.sleep(0.01)
        raise AssertionError(f"parleyd wrote no port file within {timeout}s; stderr:\n"
                             f"{self.stderr_text()}")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def close_protos(self):
        for p in self.protos:
            p.close()
        self.protos = []

    def stop(self, expect=0, timeout=10.0, sig=signal.SIGTERM):
        """Sends `sig` (SIGTERM), waits, and asserts the exit code is `expect` (None: any)."""
        assert self.proc is not None
        self.expected_exit = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"parleyd did not exit within {timeout}s of signal {sig}; "
                                 f"stderr:\n{self.stderr_text()}")
        if expect is not None:
            assert rc == expect, (f"parleyd exited with {rc}, expected {expect}; stderr:\n"
                                  f"{self.stderr_text()}")
        return rc

    def kill9(self):
        self.expected_exit = True
        self.proc.kill()
        self.proc.wait(10)

    def restart(self, **kw):
        """Stops the server if running (SIGTERM, exit 0) and starts it again on the same data."""
        if self.running():
            self.stop()
        return self.start(**kw)

    def sighup(self):
        self.proc.send_signal(signal.SIGHUP)

    # -- inspection --

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stdout_text(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def add_user(self, name, pw):
        self.users[name] = pw
        with open(self.cred_path, "a") as f:
            f.write(f"{name} {pw}\n")

    def credentials_text(self):
        with open(self.cred_path) as f:
            return f.read()

    # -- clients --

    def connect(self, **kw):
        """A Proto to the server: over TLS to the TLS port when the server has one."""
        if self.tls:
            kw.setdefault("tls", True)
        p = Proto(self.tls_port if kw.get("tls") else self.port, **kw)
        self.protos.append(p)
        return p

    def login(self, user, pw=None, **kw):
        p = self.connect(**kw)
        p.login(user, self.users[user] if pw is None else pw)
        return p

    # -- teardown --

    def check_and_cleanup(self):
        """Returns a failure message (or None) and leaves no process behind."""
        self.close_protos()
        problems = []
        if self.proc is not None:
            rc = self.proc.poll()
            if rc is not None and not self.expected_exit:
                problems.append(f"parleyd died unexpectedly with exit status {rc}"
                                + (f" (signal {-rc})" if rc < 0 else ""))
            elif rc is None:
                try:
                    self.stop(expect=None)
                    rc = self.proc.returncode
                    if rc != 0:
                        problems.append(f"parleyd exited with {rc} on SIGTERM at teardown")
                except AssertionError as e:
                    problems.append(str(e).split("\n")[0])
        err = self.stderr_text()
        if any(m in err for m in SANITIZER_MARKS):
            problems.append("sanitizer report in parleyd's stderr")
        if problems:
            return "; ".join(problems) + f"\n--- parleyd stderr ({self.dir}) ---\n{err[-20000:]}"
        return None


class ParleyCluster:
    """`nodes` parleyd nodes on one RedisServer of their own, as one server (topology
    "cluster"): each in `<dir>/nodeN`, started with `--redis unix:<socket> --node-id nodeN` and
    the same other arguments, all reading the first node's credentials file (and, with `tls`,
    serving the first node's TLS key). As far as tests use a ParleyServer, it is one: `.port`
    (and `.tls_port`, `.connect()`, `.login()`) hand out the nodes in turn, so two clients land
    on two nodes; `.ports` lists them; `.node(i)` is one node (a ParleyServer). `.start()`,
    `.stop()`, `.kill9()`, `.restart()`, `.sighup()` act on every node; Redis keeps running
    (`.redis`). There is no `.dir`, `.pid` or data file: a test about one process's files or
    life is `@pytest.mark.single_node`."""

    def __init__(self, dir, nodes=3, users=None, args=(), tls=False, **kw):
        self.root = str(dir)
        self.redis = RedisServer()
        self.tls = tls
        self._args = [str(a) for a in args]
        self._turn = 0
        first = ParleyServer(os.path.join(self.root, "node1"), users=users, tls=tls, **kw)
        self.nodes = [first]
        for i in range(2, nodes + 1):
            n = ParleyServer(os.path.join(self.root, f"node{i}"), users=users, tls=tls,
                             credentials=first.cred_path, **kw)
            n.users = first.users  # one credentials file, one dict of passwords
            self.nodes.append(n)
        self.args = self._args

    # -- what a test sets or reads as on one server --

    @property
    def args(self):
        return self._args

    @args.setter
    def args(self, args):
        """The test's own arguments, after each node's cluster ones (for the next start)."""
        self._args = [str(a) for a in args]
        for i, n in enumerate(self.nodes):
            n.args = self._node_args(i) + self._args

    def _node_args(self, i):
        args = ["--redis", self.redis.addr, "--node-id", f"node{i + 1}"]
        if self.tls and i > 0:  # one server, one TLS identity: the key the first node made
            data = os.path.join(self.nodes[0].dir, "parley-data")
            args += ["--tls-cert", os.path.join(data, "tls-cert.pem"),
                     "--tls-key", os.path.join(data, "tls-key.pem")]
        return args

    @property
    def users(self):
        return self.nodes[0].users

    @property
    def cred_path(self):
        return self.nodes[0].cred_path

    def add_user(self, name, pw):
        self.nodes[0].add_user(name, pw)

    def credentials_text(self):
        return self.nodes[0].credentials_text()

    def node(self, i):
        return self.nodes[i]

    def _next(self):
        n = self.nodes[self._turn % len(self.nodes)]
        self._turn += 1
        return n

    @property
    def port(self):
        """A node's port, the next node's at each read (clients spread over the nodes)."""
        return self._next().port

    @property
    def tls_port(self):
        return self._next().tls_port

    @property
    def ports(self):
        return [n.port for n in self.nodes]

    def connect(self, **kw):
        return self._next().connect(**kw)

    def login(self, user, pw=None, **kw):
        return self._next().login(user, pw, **kw)

    # -- life cycle --

    def start(self, wait=True):
        """Starts Redis (unless running) and every node; the first alone first when the others
        need its TLS key. A node that cannot start fails here, with its stderr, and the others
        are stopped (the failure is reported once)."""
        if not self.redis.running():
            self.redis.start()
        first, rest = self.nodes[0], self.nodes[1:]
        try:
            first.start(wait=wait or self.tls)
            for n in rest:
                n.start(wait=False)
            if wait:
                for n in rest:
                    n.wait_ready()
        except AssertionError:
            for n in self.nodes:
                if n.running():
                    n.kill9()
                n.expected_exit = True
            raise
        return self

    def wait_ready(self, timeout=10.0):
        for n in self.nodes:
            n.wait_ready(timeout)

    def running(self):
        return all(n.running() for n in self.nodes)

    def stop(self, expect=0, timeout=10.0, sig=signal.SIGTERM):
        """Stops every node (see ParleyServer.stop); returns their exit codes."""
        return [n.stop(expect=expect, timeout=timeout, sig=sig) for n in self.nodes]

    def kill9(self):
        for n in self.nodes:
            n.kill9()

    def restart(self, **kw):
        """Stops the running nodes (SIGTERM, exit 0) and starts all again; Redis keeps its data
        and keeps running."""
        for n in self.nodes:
            if n.running():
                n.stop()
        return self.start(**kw)

    def sighup(self):
        for n in self.nodes:
            n.sighup()

    def close_protos(self):
        for n in self.nodes:
            n.close_protos()

    # -- inspection --

    def _texts(self, what, texts):
        """The nodes' texts one after the other, each under a header; "" when all are empty."""
        return "".join(f"--- node{i + 1} {what} ---\n{t}" for i, t in enumerate(texts) if t)

    def stderr_text(self):
        return self._texts("stderr", [n.stderr_text() for n in self.nodes])

    def stdout_text(self):
        return self._texts("stdout", [n.stdout_text() for n in self.nodes])

    def check_and_cleanup(self):
        """Every node's failure message (or None), then Redis stopped and removed."""
        failures = [m for m in (n.check_and_cleanup() for n in self.nodes) if m]
        self.redis.cleanup()
        return "\n\n".join(failures) or None


# The server suite files that run a second time over TLS: every one whose tests go through the
# byte path. Those about time (timeout, whosince), the process (signals) and the store
# (persistence) do the same over either transport and run once.
TLS_SUITE = {"test_server_block", "test_server_broadcast", "test_server_limits",
             "test_server_login", "test_server_messaging", "test_server_offline",
             "test_server_p2p", "test_server_presence"}


# The server and client suite files that run against each topology of PARLEY_TOPOLOGIES: one
# parleyd ("single"), or three nodes on one Redis with the clients spread over them ("cluster").
# The others are about one process's files or life (the data directory, --check, metrics,
# signals, its TLS key files) and run on one node. In these files a test of that kind is marked
# @pytest.mark.single_node (with the reason beside it) and skipped in the cluster topology.
CLUSTER_SUITE = {"test_server_block", "test_server_broadcast", "test_server_limits",
                 "test_server_login", "test_server_messaging", "test_server_offline",
                 "test_server_p2p", "test_server_presence", "test_server_timeout",
                 "test_server_whosince", "test_client_chat", "test_client_e2e_private",
                 "test_client_keyboard", "test_client_lifecycle", "test_client_login",
                 "test_client_p2p", "test_client_pipe"}
TOPOLOGIES = ("single", "cluster")


def _topologies(module):
    """The topologies to run `module` on: $PARLEY_TOPOLOGIES (a comma list; default both), or
    for a client suite file $PARLEY_CLIENT_TOPOLOGIES when set (the sanitizer pass runs the
    client suites on one node: what they test is the client)."""
    var = "PARLEY_TOPOLOGIES"
    if module.startswith("test_client_") and os.environ.get("PARLEY_CLIENT_TOPOLOGIES"):
        var = "PARLEY_CLIENT_TOPOLOGIES"
    names = [t.strip() for t in os.environ.get(var, "single,cluster").split(",") if t.strip()]
    bad = [t for t in names if t not in TOPOLOGIES]
    if bad or not names:
        raise pytest.UsageError(f"{var}={os.environ.get(var)!r}: "
                                f"a comma list of {', '.join(TOPOLOGIES)}")
    return names


def _transports():
    """The transports the server suite runs over, from $PARLEY_TRANSPORTS (default both)."""
    names = [t.strip() for t in os.environ.get("PARLEY_TRANSPORTS", "plain,tls").split(",")
             if t.strip()]
    if not names or any(t not in ("plain", "tls") for t in names):
        raise pytest.UsageError(f"PARLEY_TRANSPORTS={os.environ.get('PARLEY_TRANSPORTS')!r}: "
                                "a comma list of plain, tls")
    return names


def pytest_generate_tests(metafunc):
    """The server suite (TLS_SUITE) runs twice: over plain TCP and over TLS; the CLUSTER_SUITE
    once per topology (ids like `test_x[plain-cluster]`), single_node tests skipped on the
    cluster."""
    module = metafunc.module.__name__.split(".")[-1]
    if "transport" in metafunc.fixturenames and module in TLS_SUITE:
        metafunc.parametrize("transport", _transports())
    if "topology" in metafunc.fixturenames and module in CLUSTER_SUITE:
        one = metafunc.definition.get_closest_marker("single_node") is not None
        skip = pytest.mark.skip(reason="single_node: about one parleyd process")
        metafunc.parametrize("topology", [
            pytest.param(t, marks=skip if one and t == "cluster" else ()) for t in _topologies(module)])


@pytest.fixture
def transport():
    """How `server` and `make_server` clients reach the server: "plain" or "tls"."""
    return "plain"


@pytest.fixture
def topology():
    """What `server` and `make_server` start: "single" (one parleyd) or "cluster"."""
    return "single"


def _servers_factory(tmp_path, transport, make):
    """A factory of started servers in tmp_path (`make(dir, **kw)` builds one) and the list of
    them, for the teardown check."""
    servers = []
    counter = [0]

    def factory(dir=None, **kw):
        if dir is None:
            counter[0] += 1
            dir = tmp_path / f"server{counter[0]}"
        kw.setdefault("tls", transport == "tls")
        s = make(dir, **kw)
        servers.append(s)
        s.start()
        return s

    return factory, servers


def _check_servers(servers):
    _close_all_protos()
    failures = [m for m in (s.check_and_cleanup() for s in servers) if m]
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


@pytest.fixture
def make_server(tmp_path, transport, topology):
    """make_server(**kw): a started ParleyServer, or with topology "cluster" a ParleyCluster of
    three nodes with the same arguments."""
    make = ParleyCluster if topology == "cluster" else ParleyServer
    factory, servers = _servers_factory(tmp_path, transport, make)
    yield factory
    _check_servers(servers)


@pytest.fixture
def make_cluster(tmp_path, transport):
    """make_cluster(nodes=3, **kw): a started ParleyCluster whatever the topology (the cluster's
    own tests: a node killed, stalled, cut off from Redis)."""
    factory, servers = _servers_factory(tmp_path, transport, ParleyCluster)
    yield factory
    _check_servers(servers)


@pytest.fixture
def server(make_server, tmp_path):
    return make_server(dir=tmp_path / "server")


# --------------------------------------------------------------------------------------------
# Redis, for the cluster tests

REDIS_SERVER = "redis-server"
# How long redis-server may take to answer its first PING, and to exit on SIGTERM.
REDIS_START_SEC = 5.0
REDIS_STOP_SEC = 5.0


class RedisError(Exception):
    """An error reply (`-ERR ...`) from Redis."""


def _resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _resp_read(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise ConnectionError(f"unexpected reply from redis: {line!r}")


class RedisServer:
    def __init__(self, appendfsync="always"):
        # A short directory of its own: a Unix socket path must fit in 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="parley-redis-")
        self.path = os.path.join(self.dir, "redis.sock")
        self.addr = f"unix:{self.path}"
        self.appendfsync = appendfsync
        self.log_path = os.path.join(self.dir, "redis.log")
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        _need_program(REDIS_SERVER)
        argv = [REDIS_SERVER, "--port", "0", "--unixsocket", self.path, "--unixsocketperm", "700",
                "--dir", self.dir, "--save", "", "--appendonly", "yes",
                "--appendfsync", self.appendfsync, "--logfile", self.log_path,
                "--daemonize", "no"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_until(self._answers, REDIS_START_SEC, what=f"redis-server on {self.path}")
        return self

    def _answers(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.proc.returncode}:\n"
                                 f"{self.log_text()}")
        try:
            return self.command("PING") == "PONG"
        except (OSError, ConnectionError, RedisError):
            return False

    def command(self, *args, timeout=DEFAULT_READ_TIMEOUT):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.path)
            sock.sendall(_resp_encode(args))
            with sock.makefile("rb") as f:
                return _resp_read(f)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if not self.running():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(REDIS_STOP_SEC)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill9(self):
        self.proc.kill()
        self.proc.wait(REDIS_STOP_SEC)

    def restart(self):
        self.stop()
        return self.start()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _need_program(name):
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed (scripts/deps.sh test)")


@pytest.fixture
def make_redis():
    servers = []

    def factory(**kw):
        r = RedisServer(**kw)
        servers.append(r)
        return r.start()

    yield factory
    for r in servers:
        r.cleanup()


# --------------------------------------------------------------------------------------------
# A raw protocol client

_OPEN_PROTOS = []


def _close_all_protos():
    while _OPEN_PROTOS:
        _OPEN_PROTOS.pop().close()


@pytest.fixture(autouse=True)
def _cleanup_protos():
    yield
    _close_all_protos()


def _tls_client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


_TLS_CONTEXT = _tls_client_context()
# A non-blocking socket that cannot go on yet (plain or TLS).
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class ProtoClosed(AssertionError):
    pass


class ProtoTimeout(AssertionError):
    pass


# Events whose last field is text (may contain spaces): number of fields before the text.
_EVENT_TEXT_AT = {"MSG": 4, "BCAST": 2, "BYE": 1}


def parse_event(line):
    """'* MSG 17 yoda 1764081000 hi there' -> ['MSG', '17', 'yoda', '1764081000', 'hi there']."""
    body = line[2:] if line.startswith("* ") else line
    verb = body.split(" ", 1)[0]
    n = _EVENT_TEXT_AT.get(verb)
    if n is None:
        return body.split(" ")
    return body.split(" ", n)


def parse_reply(rest):
    """'OK a b' -> ['OK','a','b']; 'ERR 404 no such user' -> ['ERR','404','no such user']."""
    if rest.startswith("ERR"):
        return rest.split(" ", 2)
    if rest == "":
        return []
    return rest.split(" ")


class Proto:
    """A protocol client over one TCP connection. Every read has a deadline."""

    def __init__(self, port, host="127.0.0.1", timeout=DEFAULT_READ_TIMEOUT, connect_timeout=5.0,
                 source=None, rcvbuf=None, tls=False):
        self.port = port
        self.host = host
        self.timeout = timeout
        if rcvbuf is None and source is None:
            self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        else:
            # A small receive buffer must be set before connecting (window scaling).
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if rcvbuf is not None:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if source is not None:
                self.sock.bind((source, 0))
            self.sock.settimeout(connect_timeout)
            try:
                self.sock.connect((host, port))
            except OSError:
                self.sock.close()
                raise
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tls = tls
        if tls:  # the handshake runs blocking, within connect_timeout; the key is not checked
            self.sock.settimeout(connect_timeout)
            self.sock = _TLS_CONTEXT.wrap_socket(self.sock, server_hostname=host)
        self.sock.setblocking(False)
        self.buf = b""
        self.eof = False
        self.reset = False     # the server closed with a TCP reset (RST) rather than a FIN
        self.unclean_eof = False  # TLS: the stream ended without a close_notify
        self.events = []       # unconsumed events, each a list of fields without the '*'
        self.all_events = []   # every event ever received, in order
        self.replies = {}      # tag -> reply list, for replies not yet claimed
        self.raw_replies = {}  # tag -> the raw reply line
        self.frames = []       # every frame received (raw strings), in order
        self.next_tag = 1
        self.user = None
        _OPEN_PROTOS.append(self)

    # -- sending --

    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout
        while view:
            try:
                n = self.sock.send(view)
                view = view[n:]
            except _WOULD_BLOCK:
                if time.monotonic() > deadline:
                    raise ProtoTimeout("send blocked: the server is not reading")
                # Keep reading while we wait so the server is never blocked on us.
                self._fill(0.05)

    def send_line(self, line):
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.send_raw(line + b"\n")

    def send_request(self, *fields):
        """Sends `<tag> fields...` and returns the tag (for pipelining / deferred replies)."""
        tag = str(self.next_tag)
        self.next_tag += 1
        self.send_line(" ".join([tag, *[str(f) for f in fields]]))
        return tag

    def request(self, *fields, timeout=None):
        return self.get_reply(self.send_request(*fields), timeout=timeout)

    def ack(self, msg_id):
        self.send_line(f"* ACK {msg_id}")

    # -- receiving --

    def _fill(self, timeout):
        """Reads what arrives within `timeout` s (0: only what is there) into the buffer.
        Returns True when it read data; sets `.eof` when the server closed."""
        if self.eof:
            return False
        if not (self.tls and self.sock.pending()):  # decrypted bytes wait inside ssl
            r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
            if not r:
                return False
        try:
            data = self.sock.recv(1 << 16)
        except _WOULD_BLOCK:
            return False
        except ConnectionResetError:
            self.reset = True
            data = b""
        except ssl.SSLEOFError:
            self.unclean_eof = True
            data = b""
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _pop_line(self):
        i = self.buf.find(b"\n")
        if i < 0:
            return None
        line, self.buf = self.buf[:i], self.buf[i + 1:]
        return line.decode("utf-8", "surrogateescape")

    def recv_line(self, timeout=None):
        """Returns the next frame (without LF) as a string, raw: events are not sorted out."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            line = self._pop_line()
            if line is not None:
                self.frames.append(line)
                return line
            if self.eof:
                raise ProtoClosed(f"connection closed by the server; frames so far: "
                                  f"{self.frames[-10:]}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtoTimeout(f"no frame within {timeout}s; last frames: {self.frames[-10:]}"
                                   f"; unconsumed events: {self.events[-10:]}")
            self._fill(left)

    def _dispatch(self, line):
        if line.startswith("* ") or line == "*":
            ev = parse_event(line)
            self.events.append(ev)
            self.all_events.append(ev)
            return
        tag, _, rest = line.partition(" ")
        self.replies[tag] = parse_reply(rest)
        self.raw_replies[tag] = line

    def pump(self, timeout):
        """Reads and sorts frames for up to `timeout` s (returns early on EOF). With 0 it reads
        everything already there without waiting."""
        deadline = time.monotonic() + timeout
        while True:
            got = self._fill(max(0.0, deadline - time.monotonic()))
            while True:
                line = self._pop_line()
                if line is None:
                    break
                self.frames.append(line)
                self._dispatch(line)
            if self.eof or (not got and time.monotonic() >= deadline):
                return

    def _read_one(self, deadline, what):
        left = deadline - time.monotonic()
        try:
            line = self.recv_line(timeout=max(left, 0.0))
        except ProtoTimeout:
            raise ProtoTimeout(f"timed out waiting for {what}; last frames: {self.frames[-10:]}"
                               f"; unconsumed events: {self.events[-10:]}") from None
        except ProtoClosed:
            raise ProtoClosed(f"connection closed while waiting for {what}; last frames: "
                              f"{self.frames[-10:]}") from None
        self._dispatch(line)

    def get_reply(self, tag, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while tag not in self.replies:
            self._read_one(deadline, f"the reply to tag {tag}")
        return self.replies.pop(tag)

    def get_reply_any(self, tags, timeout=None):
        """Waits for a reply carrying one of `tags` (e.g. ('7', '-')); returns (tag, reply)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            for t in tags:
                if t in self.replies:
                    return t, self.replies.pop(t)
            self._read_one(deadline, f"a reply tagged one of {tags}")

    def send_bad(self, body):
        """Sends `<tag> <body>` where body is raw bytes (maybe invalid) and returns the reply to
        it, which may carry the tag or '-' (when the server could not read the tag)."""
        tag = str(self.next_tag)
        self.next_tag += 1
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_raw(tag.encode() + b" " + body + b"\n")
        return self.get_reply_any((tag, "-"))[1]

    def _matcher(self, pred):
        if callable(pred):
            return pred
        prefix = str(pred)
        return lambda ev: " ".join(ev) == prefix or " ".join(ev).startswith(prefix + " ") \
            or (prefix.endswith(" ") and " ".join(ev).startswith(prefix))

    def wait_event(self, pred, timeout=None):
        """Returns and removes the first event matching `pred` (a callable on the field list, or
        a prefix of whole fields such as 'MSG' or 'LOGIN yoda')."""
        match = self._matcher(pred)
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if match(ev):
                    return self.events.pop(i)
            self._read_one(deadline, f"an event matching {pred!r}")

    def wait_events(self, pred, count, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        return [self.wait_event(pred, timeout=max(0.0, deadline - time.monotonic()))
                for _ in range(count)]

    def no_event(self, pred, within=0.5):
        """Asserts that no event matching `pred` is pending or arrives within `within` s."""
        match = self._matcher(pred)
        self.pump(within)
        bad = [ev for ev in self.events if match(ev)]
        assert not bad, f"unexpected event(s) {bad}"

    def closed(self, timeout=None):
        """True when the server closes the connection within `timeout` s. Frames read meanwhile
        are sorted into `.events` / `.replies`."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.pump(min(left, 0.2))
        self.pump(0)
        return True

    def close(self):
        for sk in (self.sock, getattr(self, "listener", None)):
            try:
                if sk is not None:
                    sk.close()
            except OSError:
                pass
        if self in _OPEN_PROTOS:
            _OPEN_PROTOS.remove(self)

    # -- session helpers --

    def hello(self, version="1", name="e2e/0.1"):
        r = self.request("HELLO", version, name) if name else self.request("HELLO", version)
        assert r[0] == "OK", f"HELLO failed: {r}"
        self.greeted = True
        return r

    def login(self, user, pw):
        """HELLO (unless done already), USER, PASS; asserts each is OK."""
        if not getattr(self, "greeted", False):
            self.hello()
        r = self.request("USER", user)
        assert r == ["OK"], f"USER {user}: {r}"
        r = self.request("PASS", pw)
        assert r == ["OK"], f"PASS for {user}: {r}"
        self.user = user
        return self

    def login_reply(self, user, pw):
        """HELLO (unless done already), USER (asserted OK: whether an account is locked or its
        user online is told only after a password, spec §3.8), PASS; returns PASS's reply."""
        if not getattr(self, "greeted", False):
            self.hello()
        r = self.request("USER", user)
        assert r == ["OK"], f"USER {user}: {r}"
        return self.request("PASS", pw)

    def open_listener(self):
        """Opens a real TCP listener (the P2P side of a client), tells the server with LISTEN
        and returns its port. The socket is closed with this connection."""
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.bind(("127.0.0.1", 0))
        ls.listen(4)
        self.listener = ls
        port = ls.getsockname()[1]
        r = self.request("LISTEN", port)
        assert r == ["OK"], f"LISTEN {port}: {r}"
        return port

    def msgs(self):
        """The unconsumed MSG events, removed from `.events`."""
        out = [ev for ev in self.events if ev[0] == "MSG"]
        self.events = [ev for ev in self.events if ev[0] != "MSG"]
        return out


def ok(reply):
    """Asserts a reply is OK and returns its fields."""
    assert reply and reply[0] == "OK", f"expected OK, got {reply}"
    return reply[1:]


def err(reply, code):
    assert reply[:2] == ["ERR", str(code)], f"expected ERR {code}, got {reply}"
    return reply


# --------------------------------------------------------------------------------------------
# The terminal client

_INPUTRC_DIR = tempfile.mkdtemp(prefix="parley-e2e-")
INPUTRC = os.path.join(_INPUTRC_DIR, "inputrc")
with open(INPUTRC, "w") as _f:
    _f.write("set enable-bracketed-paste off\n")
CONFIG_HOME = os.path.join(_INPUTRC_DIR, "config")
# Readline's defaults, as a user has them (bracketed paste on), without anyone's ~/.inputrc.
INPUTRC_DEFAULTS = os.path.join(_INPUTRC_DIR, "inputrc-defaults")
with open(INPUTRC_DEFAULTS, "w") as _f:
    _f.write("")


def client_env(extra=None, bracketed_paste=False):
    """The client's environment: INPUTRC turns bracketed paste off unless `bracketed_paste`,
    which leaves readline's defaults (what a user has in a terminal)."""
    env = dict(os.environ)
    env["INPUTRC"] = INPUTRC_DEFAULTS if bracketed_paste else INPUTRC
    env["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="state-", dir=_INPUTRC_DIR)
    env["XDG_CONFIG_HOME"] = CONFIG_HOME  # no parley.conf but a test's own
    env.pop("NO_COLOR", None)
    env.setdefault("TERM", "xterm")
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    if extra:
        env.update(extra)
    return env


def spawn_client(port, *, host="127.0.0.1", env=None, args=None, timeout=10, cwd=None,
                 dimensions=(24, 200), bracketed_paste=False, **spawn_kw):
    """Starts `parley <host> <port>` in a pty (pexpect, utf-8, timeout 10 s); with
    `bracketed_paste` readline keeps its defaults (see client_env)."""
    import pexpect
    _need(PARLEY)
    argv = list(args) if args is not None else [host, str(port)]
    return pexpect.spawn(PARLEY, argv, encoding="utf-8", timeout=timeout,
                         env=client_env(env, bracketed_paste=bracketed_paste), cwd=cwd,
                         dimensions=dimensions, **spawn_kw)


@pytest.fixture
def client_factory():
    children = []

    def factory(port, **kw):
        c = spawn_client(port, **kw)
        children.append(c)
        return c

    yield factory
    for c in children:
        try:
            if c.isalive():
                c.terminate(force=True)
            c.close(force=True)
        except Exception:
            pass
