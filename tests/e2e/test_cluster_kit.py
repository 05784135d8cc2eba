"""The cluster tests' own Redis (conftest `make_redis`): on a Unix socket in a temporary
directory, never a TCP port or a system instance; durable with appendfsync always; stopped by
its PID."""

import os
import socket

import pytest

from conftest import RedisError


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
