"""Helpers for the fault-injection tests (test_fault_*.py); no tests here.

- `users(prefix, n)`: a dict of n accounts `<prefix>000 -> pw-<prefix>000`.
- `percentile(samples, p)`, `who_rtts(proto, n)`: latency figures of WHO round trips.
- `proc_rss_kb(pid)`, `proc_fd_count(pid)`: memory and descriptors of a process.
- `tmpfs(path, size)`: a context manager mounting a small tmpfs (skips the test when the
  machine does not allow it) and unmounting it afterwards, whatever happened.
- `fill_fs(path)`: fills the filesystem holding `path` with a file; returns that file.
- `figures(name, **counts)`: prints a figures line (visible with `pytest -s`) and, when
  $PARLEY_FAULT_FIGURES names a file, appends it there as JSON, for docs/RELIABILITY.md.
- `is_asan()`: the binaries under test are the sanitizer build (slower: bounds are looser).
"""

import contextlib
import errno
import json
import os
import subprocess
import time

import pytest

from conftest import BUILD


def is_asan():
    return "asan" in os.path.basename(BUILD.rstrip("/")) or "asan" in BUILD


def users(prefix, n, width=3):
    return {f"{prefix}{i:0{width}d}": f"pw-{prefix}{i:0{width}d}" for i in range(n)}


def percentile(samples, p):
    s = sorted(samples)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


def who_rtts(proto, n, pause=0.0):
    """Measures `n` sequential WHO round trips on `proto`; returns the list of seconds."""
    out = []
    for _ in range(n):
        t = time.monotonic()
        r = proto.request("WHO", timeout=10)
        out.append(time.monotonic() - t)
        assert r and r[0] == "OK", r
        proto.events.clear()
        if pause:
            time.sleep(pause)
    return out


def proc_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


@contextlib.contextmanager
def tmpfs(path, size="4m"):
    """Mounts a tmpfs of `size` on `path` (created). Skips the test when mounting is not
    possible here (no privilege, no tmpfs); always unmounts on the way out."""
    os.makedirs(path, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                        str(path)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here to simulate a full disk: "
                    f"{(p.stderr or p.stdout).strip()}")
    try:
        yield path
    finally:
        for _ in range(50):
            u = subprocess.run(["umount", str(path)], capture_output=True, text=True)
            if u.returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill_fs(directory, name="filler"):
    """Writes a file in `directory` until its filesystem is full (ENOSPC); returns its path."""
    path = os.path.join(directory, name)
    chunk = b"\0" * 65536
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(1 << 16):  # bounded: at most 4 GiB
            try:
                n = os.write(fd, chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
            if n < len(chunk):
                chunk = chunk[:max(1, len(chunk) - n)]
        # Top up the last blocks byte-granularly.
        for size in (4096, 512, 1):
            for _ in range(4096):
                try:
                    os.write(fd, b"\0" * size)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return path


def chattr(flag, *paths):
    """Runs `chattr <flag> paths...`; returns True when it worked."""
    p = subprocess.run(["chattr", flag, *[str(x) for x in paths]], capture_output=True)
    return p.returncode == 0


def figures(name, **counts):
    line = json.dumps({"test": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                       "build": os.path.basename(BUILD.rstrip("/")), **counts})
    print(f"\nFIGURES {line}")
    out = os.environ.get("PARLEY_FAULT_FIGURES")
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")
