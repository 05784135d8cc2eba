"""The cluster tests' own Redis (conftest `make_redis`): on a Unix socket in a temporary
directory, never a TCP port or a system instance; durable with appendfsync always; stopped by
its PID. And the three-node cluster of the "cluster" topology (conftest `ParleyCluster`,
`make_cluster`): how its nodes are started, and how clients are spread over them."""

import os
import socket

import pytest

from conftest import ParleyCluster, RedisError


def test_redis_listens_on_its_socket_only(make_redis):
    r = make_redis()
    assert r.command("PING") == "PONG"
    assert r.command("CONFIG", "GET", "port") == ["port", "0"]
    assert r.command("CONFIG", "GET", "unixsocket") == ["unixsocket", r.path]
    assert os.path.dirname(r.path) == r.dir
    assert r.addr == f"unix:{r.path}"
    with pytest.raises(RedisError):
        r.command("NOSUCHCOMMAND")


def test_redis_keeps_writes_across_kill9(make_redis):
    r = make_redis()
    assert r.command("CONFIG", "GET", "appendfsync") == ["appendfsync", "always"]
    assert r.command("SET", "parley:test", "kept") == "OK"
    r.kill9()
    r.start()
    assert r.command("GET", "parley:test") == "kept"


def test_redis_stopped_by_its_pid(make_redis):
    r = make_redis()
    pid = r.pid
    r.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(OSError):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(r.path)


def test_two_redis_share_nothing(make_redis):
    a, b = make_redis(), make_redis()
    assert a.path != b.path
    a.command("SET", "x", "1")
    assert b.command("GET", "x") is None


def _option(argv, name):
    return argv[argv.index(name) + 1]


@pytest.fixture
def unstarted(tmp_path):
    """ParleyCluster(**kw) in tmp_path, never started (its Redis directory removed after)."""
    made = []

    def factory(**kw):
        made.append(ParleyCluster(tmp_path / f"c{len(made)}", **kw))
        return made[-1]

    yield factory
    for c in made:
        c.redis.cleanup()


def test_cluster_nodes_command_lines(unstarted):
    c = unstarted(args=["--allow-register"], tls=True)
    first = c.node(0).command()
    assert not os.path.exists(os.path.join(c.root, "node2", "credentials.txt"))
    for i, n in enumerate(c.nodes):
        argv = n.command()
        assert n.dir == os.path.join(c.root, f"node{i + 1}")
        assert _option(argv, "--redis") == c.redis.addr
        assert _option(argv, "--node-id") == f"node{i + 1}"
        assert "--allow-register" in argv
        if i:  # the first node's credentials file and TLS key
            assert _option(argv, "--credentials") == c.node(0).cred_path
            assert _option(argv, "--tls-cert").startswith(os.path.join(c.node(0).dir, ""))
    assert "--credentials" not in first and "--tls-cert" not in first
    c.add_user("newbie", "pw")
    assert "newbie pw" in c.credentials_text()
    assert all(n.users["newbie"] == "pw" for n in c.nodes)
    c.args = ["--max-queued", "5"]  # what a test sets before a restart reaches every node
    assert all(_option(n.command(), "--max-queued") == "5" and "--redis" in n.command()
               for n in c.nodes)


def test_cluster_spreads_clients_over_nodes(unstarted):
    c = unstarted()
    for n, port in zip(c.nodes, (7001, 7002, 7003)):
        n.port = port  # as wait_ready sets it
    assert c.ports == [7001, 7002, 7003]
    assert [c.port for _ in range(4)] == [7001, 7002, 7003, 7001]


def test_three_nodes_start_and_share_one_login(make_cluster):
    c = make_cluster()
    assert c.running() and len(set(c.ports)) == 3
    c.login("hans")
    r = c.connect().login_reply("hans", c.users["hans"])
    assert r[:2] == ["ERR", "409"], r  # one login per user across the nodes
