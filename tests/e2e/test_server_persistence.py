"""Server: where state lives and what survives restarts (spec §1, §5, §6; PROTOCOL §4, §5).

Offline messages, blocks, lock-outs and login history across restarts are also covered in their
own files; this one covers the data directory and a mixed restart."""

import os
import shutil

from conftest import ParleyServer, err, ok


def test_data_dir_created_beside_credentials(server):
    assert os.path.isdir(os.path.join(server.dir, "parley-data"))


def test_data_dir_option(make_server, tmp_path):
    d = tmp_path / "elsewhere" / "store"
    s = make_server(args=["--data-dir", str(d)])
    a = s.login("hans")
    ok(a.request("MSG", "yoda", "kept in elsewhere"))
    assert d.is_dir() and any(d.iterdir())
    assert not os.path.exists(os.path.join(s.dir, "parley-data"))
    s.restart()
    b = s.login("yoda")
    assert b.wait_event("MSG")[4] == "kept in elsewhere"


def test_credentials_option(make_server, tmp_path):
    cred = tmp_path / "accounts.txt"
    cred.write_text("leia princess\nhan solo\n")
    s = make_server(args=["--credentials", str(cred)])
    p = s.connect()
    p.hello()
    err(p.request("USER", "hans"), 404)
    p.login("leia", "princess")


def test_everything_survives_a_crash(server):
    a = server.login("hans")
    ok(a.request("MSG", "vader", "queued"))
    assert a.request("BLOCK", "r2d2") == ["OK"]
    y = server.login("yoda")
    y.request("LOGOUT")
    a.wait_event("LOGOUT yoda")
    l = server.connect()
    l.hello()
    l.request("USER", "luke")
    for pw in ("a", "b"):
        err(l.request("PASS", pw), 401)
    err(l.request("PASS", "c"), 424)
    server.kill9()
    server.start()
    a = server.login("hans")
    assert "yoda" in ok(a.request("WHOSINCE", "120"))
    err(a.request("MSG", "r2d2", "x"), 452)
    v = server.login("vader")
    assert v.wait_event("MSG")[4] == "queued"
    l = server.connect()
    l.hello()
    err(l.login_reply("luke", "skywalker"), 423)


def test_server_starts_in_fresh_directory_copy_of_credentials(tmp_path, make_server):
    s1 = make_server()
    a = s1.login("hans")
    ok(a.request("MSG", "yoda", "s1 only"))
    s1.stop()
    # A copy of the credentials in a new directory is a new server with no state.
    d2 = tmp_path / "copy"
    d2.mkdir()
    shutil.copy(s1.cred_path, d2 / "credentials.txt")
    s2 = make_server(dir=d2)
    b = s2.login("yoda")
    b.no_event("MSG", within=0.3)


def test_second_server_on_the_same_data_dir_refuses_to_start(make_server, tmp_path):
    """Issue 9 point 1: a second parleyd on a data directory another one holds exits non-zero
    with one clear line naming the directory and the other process, before it touches any
    file; the first keeps serving and keeps its messages (ids are not handed out twice)."""
    s1 = make_server()
    a = s1.login("hans")
    first = ok(a.request("MSG", "yoda", "held by the first server"))[0]
    data = os.path.join(s1.dir, "parley-data")
    before = {n: os.stat(os.path.join(data, n)).st_mtime_ns for n in os.listdir(data)}
    s2 = ParleyServer(tmp_path / "second", args=["--data-dir", data])
    s2.start(wait=False)
    try:
        rc = s2.proc.wait(10)
    finally:
        if s2.running():
            s2.kill9()
    s2.expected_exit = True
    assert rc == 1, s2.stderr_text()
    lines = [l for l in s2.stderr_text().splitlines() if l.strip()]
    assert any(data in l and "in use" in l and str(s1.pid) in l for l in lines), lines
    after = {n: os.stat(os.path.join(data, n)).st_mtime_ns for n in os.listdir(data)}
    assert after == before, "the refused server touched the store"
    second = ok(a.request("MSG", "yoda", "still the only one"))[0]
    assert int(second) == int(first) + 1
    s1.restart()
    b = s1.login("yoda")
    assert [e[4] for e in b.wait_events("MSG", 2)] == ["held by the first server",
                                                        "still the only one"]
