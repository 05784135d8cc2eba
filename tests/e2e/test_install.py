"""`make install` and `make uninstall` (issue 14): PREFIX and DESTDIR, the programs, their man
pages and the systemd unit with the installed parleyd's path."""

import os
import subprocess

import pytest

from conftest import BUILD, PARLEYD, ROOT

FILES = ["usr/bin/parley", "usr/sbin/parleyd", "usr/share/man/man1/parley.1",
         "usr/share/man/man8/parleyd.8", "usr/lib/systemd/system/parleyd.service"]


def _make(target, dest):
    if not os.access(PARLEYD, os.X_OK):
        pytest.skip("parleyd not built")
    return subprocess.run(["make", "--no-print-directory", f"BUILD={BUILD}", "PREFIX=/usr",
                           f"DESTDIR={dest}", target], cwd=ROOT, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, names in os.walk(root) for f in names)


def test_install_and_uninstall_under_destdir(tmp_path):
    dest = tmp_path / "stage"
    r = _make("install", dest)
    assert r.returncode == 0, r.stderr
    assert _files(dest) == sorted(FILES)
    assert os.access(dest / "usr/sbin/parleyd", os.X_OK)
    unit = (dest / "usr/lib/systemd/system/parleyd.service").read_text()
    assert "ExecStartPre=/usr/sbin/parleyd --check $PARLEYD_OPTS" in unit
    assert "ExecStart=/usr/sbin/parleyd $PARLEYD_OPTS" in unit
    assert "@SBINDIR@" not in unit
    version = subprocess.run([dest / "usr/sbin/parleyd", "--version"], capture_output=True,
                             text=True, timeout=10)
    assert version.returncode == 0 and version.stdout.startswith("parleyd ")
    r = _make("uninstall", dest)
    assert r.returncode == 0, r.stderr
    assert _files(dest) == []


def test_unit_descriptor_limit_fits_max_connections():
    """LimitNOFILE is --max-connections plus the descriptors --check counts besides them."""
    text = open(os.path.join(ROOT, "dist", "parleyd.service.in")).read()
    opts = next(l for l in text.splitlines() if l.startswith('Environment="PARLEYD_OPTS='))
    words = opts.split("=", 2)[2].rstrip('"').split()
    max_conn = int(words[words.index("--max-connections") + 1])
    limit = int(next(l for l in text.splitlines() if l.startswith("LimitNOFILE=")).split("=")[1])
    assert limit >= max_conn + 64
