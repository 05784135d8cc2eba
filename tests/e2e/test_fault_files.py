"""Fault: the files of the store are damaged or lost between two runs (issue 9, points 2 and 3).

- A flipped bit in the middle of `parley.queue` used to cut the log there ("an unfinished
  batch"): every acknowledged message after it was deleted, and the evidence with it. Only a
  torn end may be cut; damage elsewhere is skipped, the rest is kept, the damaged file is copied
  to `parley.queue.damaged-<time>` and the server says so on stderr.
- A missing or emptied `parley.queue` or `parley.db` used to start a blank store silently: ids
  back at 1 (a client that drops ids it has seen then drops new messages), blocks and failure
  counts gone. The server now refuses to start, naming the file and `--accept-store-loss`;
  with that option it goes on, and message ids go on above every id it gave before.
"""

import glob
import os

from conftest import ParleyServer, err, ok


def _data(s, name=""):
    return os.path.join(s.dir, "parley-data", name)


def _offline_messages(s, texts):
    """hans sends `texts` to yoda (offline); returns their ids (ints)."""
    a = s.login("hans")
    ids = [int(ok(a.request("MSG", "yoda", t))[0]) for t in texts]
    a.close()
    return ids


def _take_all(s, user, count):
    """Logs `user` in and returns the (id, text) of `count` messages, acknowledged."""
    p = s.login(user)
    evs = p.wait_events("MSG", count) if count else []
    if evs:
        p.ack(evs[-1][1])
    p.no_event("MSG", within=0.3)
    return [(int(e[1]), e[4]) for e in evs]


def _refused(s, *needles):
    """Starts `s` and expects it to refuse with exit status 1 and one line holding `needles`."""
    s.start(wait=False)
    try:
        rc = s.proc.wait(10)
    finally:
        if s.running():
            s.kill9()
    s.expected_exit = True
    assert rc == 1, s.stderr_text()
    lines = s.stderr_text().splitlines()
    assert any(all(n in line for n in needles) for line in lines), lines[-5:]


def test_flipped_bit_in_the_middle_of_the_log_keeps_every_other_message(make_server):
    """Frames: hans sends yoda (offline) m0..m9, one batch each; the server stops; one bit of
    m4's text is flipped in parley.queue; at the restart yoda gets the nine others (m5..m9 were
    deleted before), a copy of the damaged file is kept, and the damage is reported."""
    s = make_server()
    texts = [f"message number {i}" for i in range(10)]
    ids = _offline_messages(s, texts)
    s.stop()
    queue = _data(s, "parley.queue")
    with open(queue, "r+b") as f:
        data = f.read()
        at = data.index(b"message number 4") + 3
        f.seek(at)
        f.write(bytes([data[at] ^ 0x04]))
        damaged = data[:at] + bytes([data[at] ^ 0x04]) + data[at + 1:]
    s.start()
    got = _take_all(s, "yoda", 9)
    assert got == [(i, t) for i, t in zip(ids, texts) if t != "message number 4"]
    copies = glob.glob(_data(s, "parley.queue.damaged-*"))
    assert len(copies) == 1
    with open(copies[0], "rb") as f:
        assert f.read() == damaged
    log = s.stderr_text()
    assert "unreadable bytes" in log and "damaged file is kept as" in log
    # The log was rewritten whole: a restart reports nothing more, ids go on.
    s.restart()
    assert len(glob.glob(_data(s, "parley.queue.damaged-*"))) == 1
    assert int(_offline_messages(s, ["after"])[0]) > ids[-1]


def test_torn_end_is_cut_quietly(make_server):
    """A torn last batch (a crash during a write) is still just cut: no copy, the committed
    messages are kept."""
    s = make_server()
    ids = _offline_messages(s, ["kept 1", "kept 2"])
    s.stop()
    with open(_data(s, "parley.queue"), "ab") as f:
        f.write(b"\x30\x00\x00\x00\x01\x02")  # a record head that the file ends in
    s.start()
    assert _take_all(s, "yoda", 2) == [(ids[0], "kept 1"), (ids[1], "kept 2")]
    assert not glob.glob(_data(s, "parley.queue.damaged-*"))


def test_lost_queue_log_is_refused_and_ids_never_go_back(make_server):
    """parley.queue deleted (then emptied) between two runs: the server refuses to start,
    naming the file and --accept-store-loss, and creates no new log; with the option it
    starts, keeps the blocks and failure counts, and the next id is above every id given."""
    s = make_server()
    ids = _offline_messages(s, ["gone 1", "gone 2"])
    a = s.login("vader")
    ok(a.request("BLOCK", "luke"))
    a.close()
    s.stop()
    queue = _data(s, "parley.queue")
    os.unlink(queue)
    _refused(s, "parley.queue is missing or empty", "--accept-store-loss", "parley-data")
    assert not os.path.exists(queue)
    open(queue, "w").close()
    _refused(s, "parley.queue is missing or empty", "--accept-store-loss")
    s.args = ["--accept-store-loss"]
    s.start()
    assert "going on without it" in s.stderr_text()
    new = _offline_messages(s, ["new"])[0]
    assert new > max(ids), f"id {new} given again after the log was lost (ids before: {ids})"
    luke = s.login("luke")
    err(luke.request("MSG", "vader", "still blocked"), 451)
    s.args = []
    s.restart()  # a whole store again: no option needed
    assert _take_all(s, "yoda", 1) == [(new, "new")]


def test_emptied_database_is_refused(make_server):
    """parley.db emptied between two runs: the server refuses to start (the blocks and failure
    counts would be gone); with --accept-store-loss it starts with the messages of the log and
    ids that go on."""
    s = make_server()
    ids = _offline_messages(s, ["kept"])
    a = s.login("vader")
    ok(a.request("BLOCK", "luke"))
    a.close()
    s.stop()
    for name in ("parley.db-wal", "parley.db-shm"):
        if os.path.exists(_data(s, name)):
            os.unlink(_data(s, name))
    open(_data(s, "parley.db"), "w").close()
    _refused(s, "parley.db is missing or empty", "--accept-store-loss")
    assert os.path.getsize(_data(s, "parley.db")) == 0
    s.args = ["--accept-store-loss"]
    s.start()
    assert int(_offline_messages(s, ["after"])[0]) > ids[0]
    assert [t for _, t in _take_all(s, "yoda", 2)] == ["kept", "after"]


def test_queue_log_of_another_store_is_refused(make_server, tmp_path):
    """A parley.queue copied in from another server's directory is refused."""
    s1 = make_server()
    s2 = make_server()
    _offline_messages(s2, ["from another server"])
    s1.stop()
    s2.stop()
    os.replace(_data(s2, "parley.queue"), _data(s1, "parley.queue"))
    _refused(s1, "parley.queue belongs to another store", "--accept-store-loss")
