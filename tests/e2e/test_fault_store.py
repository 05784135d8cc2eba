"""Fault: the message store becomes unwritable while the server runs (issue 5).

Two ways, both found to work on a Linux test machine where the tests run as root (for root,
`chmod` does not stop writes):

- full disk: the store lives on a small tmpfs (`mount -t tmpfs -o size=4m`), which is then
  filled with a file to ENOSPC;
- read-only store: the database, its WAL and the queue log are made immutable with `chattr +i`
  (ext4 refuses every write to an immutable file, even through a descriptor opened before).

Either way a sender's `MSG` must get `ERR 503` (and the message must not be delivered, ever);
`WHO`, `BCAST`, `WHOSINCE` and logins keep working; once the space is freed (or the flag
lifted) `MSG` works again, and the messages accepted before the fault are all delivered, in
order, to their offline recipient. Each test skips with its reason when the machine does not
allow the trick (no mount privilege; a filesystem without the immutable flag).
"""

import os
import resource
import time

import pytest

from conftest import err, ok, wait_until
from test_fault_kit import chattr, figures, fill_fs, tmpfs

BODY = "b" * 900
# Larger than a page: a message that must be refused on a full disk must not fit in the unused
# end of the queue log's last block. Servers of the full-disk tests take it (--max-message).
BIG = "B" * 5000
BIG_ARGS = ["--max-message", "6000"]


def _until_503(hans, to, limit=4000):
    """Sends MSGs (pipelined in batches) until one gets 503. Returns (ok ids, count of 503s,
    other replies). Every reply must be OK or 503."""
    ok_ids, n503, other = [], 0, []
    sent = 0
    while sent < limit and not n503:
        tags = [hans.send_request("MSG", to, f"{BODY} {sent + i}") for i in range(50)]
        sent += 50
        for t in tags:
            r = hans.get_reply(t, timeout=15)
            if r[0] == "OK":
                ok_ids.append(int(r[1]))
            elif r[:2] == ["ERR", "503"]:
                n503 += 1
            else:
                other.append(r)
    return ok_ids, n503, other, sent


def _accepted(hans, n, label):
    """n messages to vader (offline), pipelined, all accepted; returns their ids."""
    tags = [hans.send_request("MSG", "vader", f"{label} {i}") for i in range(n)]
    return [int(ok(hans.get_reply(t))[0]) for t in tags]


def _serving_everything_else(s, hans, yoda, tag):
    """WHO, BCAST, WHOSINCE and a new login still work; a MSG to an online user is refused with
    503 and is not shown to them."""
    assert sorted(ok(hans.request("WHO"))) == ["yoda"]
    ok(hans.request("BCAST", f"still here {tag}"))
    ev = yoda.wait_event("BCAST")
    assert ev == ["BCAST", "hans", f"still here {tag}"]
    ok(hans.request("WHOSINCE", "3600"))
    luke = s.login("luke")  # recording the login fails; the login does not
    hans.wait_event("LOGIN luke")
    assert sorted(ok(luke.request("WHO"))) == ["hans", "yoda"]
    ok(luke.request("LOGOUT"))
    assert luke.closed(5)
    r = hans.request("MSG", "yoda", f"to an online user while the store is down {tag} {BIG}")
    err(r, 503)
    yoda.no_event("MSG", within=0.3)


def _check_recovery(s, hans, ok_before, label, n503, sent):
    # After the fault is gone MSG works again (the first try, or within a few).
    r = wait_until(lambda: (lambda x: x if x[0] == "OK" else None)(
        hans.request("MSG", "vader", "after recovery")), timeout=10, interval=0.2,
        what="MSG to work again once the store is writable")
    last_id = int(r[1])
    # vader (offline all along) gets exactly what was accepted, in order, nothing refused.
    vader = s.login("vader")
    want = ok_before + [last_id]
    got = []
    deadline = time.monotonic() + 20
    while len(got) < len(want) and time.monotonic() < deadline:
        vader.pump(0.05)
        m = vader.msgs()
        if m:
            got += [int(e[1]) for e in m]
            vader.ack(got[-1])
    vader.no_event("MSG", within=0.3)
    figures(f"store_{label}", sent_until_fault=sent, accepted_before_fault=len(ok_before),
            refused_503=n503, delivered_after=len(got), lost=len(set(want) - set(got)),
            unexpected=len(set(got) - set(want)))
    assert got == want, (f"vader got {len(got)} messages, expected the {len(want)} accepted "
                         f"ones in order; missing {sorted(set(want) - set(got))[:10]}, extra "
                         f"{sorted(set(got) - set(want))[:10]}")
    assert "store" in s.stderr_text()  # the fault was reported (as an error line)


@pytest.fixture
def full_disk_dir(tmp_path):
    with tmpfs(tmp_path / "store", size="4m") as d:
        yield d


def test_full_disk_503_then_recovers(full_disk_dir, make_server):
    data = os.path.join(full_disk_dir, "parley-data")
    s = make_server(args=["--data-dir", data, "--msg-rate", "0", *BIG_ARGS])
    hans = s.login("hans")
    yoda = s.login("yoda")
    hans.wait_event("LOGIN yoda")
    first = _accepted(hans, 100, "before the disk fills")
    filler = fill_fs(full_disk_dir)
    try:
        ok_ids, n503, other, sent = _until_503(hans, "vader")
        assert not other, f"replies other than OK/503 while the disk is full: {other[:5]}"
        assert n503, f"no 503 after {sent} messages on a full disk"
        # Still full: refused again.
        err(hans.request("MSG", "vader", f"still full {BIG}"), 503)
        _serving_everything_else(s, hans, yoda, "full")
    finally:
        os.unlink(filler)
    _check_recovery(s, hans, first + ok_ids, "full_disk", n503, sent)


def test_full_disk_refused_message_never_shown(full_disk_dir, make_server):
    """A message the store could not keep must not reach an online recipient, and its id must
    not be given later to another message (ids identify messages: ACKs and de-duplication
    rely on them). Frames: hans `9 MSG yoda phantom` on a full disk; expected `9 ERR 503` to
    hans and no `* MSG` to yoda; after the disk is freed hans `MSG yoda real` gets a new id."""
    data = os.path.join(full_disk_dir, "parley-data")
    s = make_server(args=["--data-dir", data, *BIG_ARGS])
    hans = s.login("hans")
    yoda = s.login("yoda")
    hans.wait_event("LOGIN yoda")
    first = ok(hans.request("MSG", "yoda", "before"))[0]
    ev = yoda.wait_event("MSG")
    yoda.ack(ev[1])
    shown = {ev[1]: ev[4]}
    filler = fill_fs(full_disk_dir)
    try:
        hans.send_line(f"9 MSG yoda phantom {BIG}")
        outcome = None
        try:
            outcome = hans.get_reply("9")
        except AssertionError:
            outcome = "connection closed" + (" by a reset" if hans.reset else "")
        yoda.pump(0.5)
        phantoms = yoda.msgs()
        for e in phantoms:
            shown[e[1]] = e[4]
            yoda.ack(e[1])
    finally:
        os.unlink(filler)
    sender = hans if not hans.eof else s.login("hans")
    real = ok(sender.request("MSG", "yoda", "real"))[0]
    figures("store_full_disk_phantom", reply_to_sender=str(outcome), shown_to_recipient=len(
        phantoms), first_id=first, id_after_recovery=real)
    assert not phantoms, (f"yoda was shown a message the store refused: {phantoms} (hans got "
                          f"{outcome})")
    assert real not in shown, (f"id {real} was shown before for {shown[real]!r} and is now "
                               f"given to another message")
    assert outcome == ["ERR", "503", outcome[2]] if isinstance(outcome, list) else False, \
        f"hans's MSG on a full disk: expected ERR 503, got {outcome}"


def test_readonly_store_503_then_recovers(make_server, tmp_path):
    s = make_server(args=["--msg-rate", "0", *BIG_ARGS])
    data = os.path.join(s.dir, "parley-data")
    db, wal = os.path.join(data, "parley.db"), os.path.join(data, "parley.db-wal")
    queue = os.path.join(data, "parley.queue")
    hans = s.login("hans")
    yoda = s.login("yoda")
    hans.wait_event("LOGIN yoda")
    first = _accepted(hans, 100, "before the store turns read-only")
    assert os.path.exists(wal), "no WAL file: is the store in WAL mode?"
    if not chattr("+i", db, wal, queue):
        pytest.skip("this filesystem does not support the immutable flag (chattr +i)")
    try:
        ok_ids, n503, other, sent = _until_503(hans, "vader", limit=200)
        assert not other, f"replies other than OK/503 on a read-only store: {other[:5]}"
        assert n503, f"no 503 after {sent} messages on a read-only store"
        assert not ok_ids, f"{len(ok_ids)} messages accepted although the store is read-only"
        _serving_everything_else(s, hans, yoda, "ro")
    finally:
        chattr("-i", db, wal, queue)
    _check_recovery(s, hans, first + ok_ids, "read_only", n503, sent)


def _limit_file_size(pid, size):
    """Sets the largest file process `pid` may write (RLIMIT_FSIZE, soft); None lifts it."""
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE,
                     (resource.RLIM_INFINITY if size is None else size, hard))


def test_file_size_limit_503_then_recovers_and_restarts(make_server):
    """Issue 9 point 17: at the file-size limit (RLIMIT_FSIZE) a write raises SIGXFSZ, which
    killed the server, and it died again at every start. The limit is now a full disk: MSG gets
    503, everything else keeps working, MSG works again once the limit is lifted; and a server
    started under the limit serves too."""
    s = make_server(args=["--msg-rate", "0", *BIG_ARGS])
    queue = os.path.join(s.dir, "parley-data", "parley.queue")
    hans = s.login("hans")
    yoda = s.login("yoda")
    hans.wait_event("LOGIN yoda")
    # 300 KB of log: the limit is then far above SQLite's files (its WAL index alone is 32 KiB).
    first = _accepted(hans, 300, f"before the limit {BODY}")
    _limit_file_size(s.pid, os.path.getsize(queue) + 100)
    try:
        err(hans.request("MSG", "vader", f"past the limit {BIG}"), 503)
        assert s.running(), "parleyd died at the file-size limit"
        _serving_everything_else(s, hans, yoda, "fsize")
    finally:
        _limit_file_size(s.pid, None)
    _check_recovery(s, hans, first, "file_size_limit", 1, 301)
    s.stop()
    limited = os.path.getsize(queue) + 100
    plain = s.command
    s.command = lambda: ["prlimit", f"--fsize={limited}:unlimited", "--", *plain()]
    s.start()
    hans = s.login("hans")
    err(hans.request("MSG", "vader", f"past the limit at start {BIG}"), 503)
    assert sorted(ok(hans.request("WHO"))) == []
    ok(hans.request("MSG", "vader", "small enough"))


def _wrong_passwords(s, user, n):
    """n wrong passwords for `user` on one connection; returns the codes of the replies."""
    p = s.connect()
    p.hello()
    ok(p.request("USER", user))
    codes = [p.request("PASS", f"wrong{i}")[1] for i in range(n)]
    p.close()
    return codes


def test_failed_logins_on_a_full_disk_survive_restarts(full_disk_dir, make_server):
    """Issue 9 point 19: wrong passwords counted while the disk is full were lost at the next
    restart (their SQLite write failed and nothing wrote them again): a locked-out guesser got
    three more tries per restart. They now take the store's reserve (parley.reserve), so they
    survive a SIGTERM and a kill -9 on a disk that stays full."""
    data = os.path.join(full_disk_dir, "parley-data")
    s = make_server(args=["--data-dir", data])
    filler = fill_fs(full_disk_dir)
    try:
        assert _wrong_passwords(s, "luke", 2) == ["401", "401"]
        assert _wrong_passwords(s, "c3po", 1) == ["401"]
        s.restart()  # SIGTERM, the disk still full
        assert _wrong_passwords(s, "luke", 1) == ["424"]
        assert _wrong_passwords(s, "c3po", 1) == ["401"]
        s.kill9()
        s.start()
        assert _wrong_passwords(s, "c3po", 1) == ["424"]
    finally:
        os.unlink(filler)
    assert "reserve" in s.stderr_text()  # the full disk was reported


def test_store_reserve_option(make_server, tmp_path):
    """--store-reserve sizes parley.reserve (default 1 MiB, 0 = none, at most 1 GiB)."""
    s = make_server()
    reserve = os.path.join(s.dir, "parley-data", "parley.reserve")
    assert os.path.getsize(reserve) == 1 << 20
    s.stop()
    s.args = ["--store-reserve", "0"]
    s.start()
    assert os.path.getsize(reserve) == 0
    s.stop()
    s.args = ["--store-reserve", str((1 << 30) + 1)]
    s.start(wait=False)
    assert s.proc.wait(10) == 2
    s.expected_exit = True
    assert "--store-reserve must be a number from 0 to 1073741824" in s.stderr_text()
