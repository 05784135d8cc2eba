"""Server: `parleyd --check` (issue 14): exit 0 and silence when parleyd would start; one line
per problem and exit 1 when it would not; never a port, never a lasting lock."""

import os
import subprocess

import pytest

from conftest import PARLEYD, ok

POSITIONAL = ["0", "2", "60"]
FEW_CONNECTIONS = ["--max-connections", "100"]  # below any descriptor limit: no warning


def _check(cwd, *args):
    if not os.access(PARLEYD, os.X_OK):
        pytest.skip("parleyd not built")
    return subprocess.run([PARLEYD, "--check", *FEW_CONNECTIONS, *args, *POSITIONAL], cwd=cwd,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


def _credentials(dir, text="hans falcon\nyoda wise\n"):
    with open(os.path.join(dir, "credentials.txt"), "w") as f:
        f.write(text)


def test_check_good_settings_exit_0_silently(tmp_path):
    _credentials(tmp_path)
    r = _check(tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    # A missing data directory is made at start, not by the check.
    assert not (tmp_path / "parley-data").exists()
    (tmp_path / "parley-data").mkdir()
    r = _check(tmp_path)
    assert (r.returncode, r.stderr) == (0, "")


def test_check_bad_credentials_named(tmp_path):
    r = _check(tmp_path)
    assert r.returncode == 1
    assert "credentials credentials.txt" in r.stderr and "No such file" in r.stderr
    _credentials(tmp_path, "hans falcon\nyoda  two spaces\n")
    r = _check(tmp_path)
    assert r.returncode == 1
    assert "1 line(s) cannot be used" in r.stderr, r.stderr


def test_check_unusable_data_directory(tmp_path):
    _credentials(tmp_path)
    (tmp_path / "file").write_text("not a directory\n")
    r = _check(tmp_path, "--data-dir", "file")
    assert r.returncode == 1
    assert "data directory file" in r.stderr, r.stderr
    r = _check(tmp_path, "--data-dir", "file/sub")
    assert r.returncode == 1 and "data directory file/sub" in r.stderr, r.stderr


def test_check_bad_tls_files(tmp_path):
    _credentials(tmp_path)
    (tmp_path / "cert.pem").write_text("no certificate\n")
    (tmp_path / "key.pem").write_text("no key\n")
    r = _check(tmp_path, "--tls-cert", "cert.pem", "--tls-key", "key.pem")
    assert r.returncode == 1 and "cert.pem" in r.stderr, r.stderr


def test_check_metrics_address(tmp_path):
    _credentials(tmp_path)
    r = _check(tmp_path, "--metrics", "127.0.0.1")
    assert r.returncode == 1 and "--metrics 127.0.0.1: expected ADDR:PORT" in r.stderr, r.stderr
    r = _check(tmp_path, "--metrics", "[::1]:9464")
    assert (r.returncode, r.stderr) == (0, "")


def test_check_descriptor_limit_is_a_warning(tmp_path):
    _credentials(tmp_path)
    r = subprocess.run(["sh", "-c", f"ulimit -n 256 && exec {PARLEYD} --check "
                        "--max-connections 1000 0 2 60"], cwd=tmp_path,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert "warning: --max-connections 1000 needs about 1064 descriptors; the limit is 256" \
        in r.stderr, r.stderr


def test_check_beside_running_server_refused_and_lock_released(make_server):
    """A running server holds the data directory: --check says so (a second server could not
    start there) and exits 1; the server is untouched. With the server stopped, the check
    passes and leaves no lock behind: the server starts again."""
    s = make_server()
    r = _check(s.dir, "--data-dir", os.path.join(s.dir, "parley-data"))
    assert r.returncode == 1
    assert f"in use by another parleyd (pid {s.pid})" in r.stderr, r.stderr
    ok(s.login("hans").request("WHO"))
    assert s.stop() == 0
    r = _check(s.dir)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    s.start()
    ok(s.login("yoda").request("WHO"))
