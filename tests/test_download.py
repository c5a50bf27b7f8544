"""download_kuzushiji_mnist.py: the download (against a server on 127.0.0.1), the offline build
from --source, what it refuses, and the course's split it writes."""
import errno
import gc
import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from conftest import ROOT, make_tiny_dataset

import download_kuzushiji_mnist as dl
import utils


# ----------------------------------------------------------------------------- fake release

def _npz_bytes(array):
    buf = io.BytesIO()
    np.savez_compressed(buf, arr_0=array)
    return buf.getvalue()


@pytest.fixture(scope="module")
def fake_release():
    """Small files in the official layout, and a checksum table that makes them verify."""
    rng = np.random.RandomState(7)
    arrays = {
        "kmnist-train-imgs.npz": rng.randint(0, 256, size=(60, 28, 28)).astype(np.uint8),
        "kmnist-train-labels.npz": (np.arange(60) % 10).astype(np.uint8),
        "kmnist-test-imgs.npz": rng.randint(0, 256, size=(12, 28, 28)).astype(np.uint8),
        "kmnist-test-labels.npz": (np.arange(12) % 10).astype(np.uint8),
    }
    blobs = {name: _npz_bytes(a) for name, a in arrays.items()}
    checksums = {name: (len(b), hashlib.md5(b).hexdigest()) for name, b in blobs.items()}
    return arrays, blobs, checksums


class FakeHost:
    """An HTTP server on 127.0.0.1 serving `files`; `drop[name] = k` cuts the next k responses
    for `name` halfway through (Content-Length promises the whole file)."""

    def __init__(self, files):
        self.files = dict(files)
        self.drop = {}
        self.requests = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                host.requests.append(name)
                body = host.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if host.drop.get(name, 0) > 0:
                    host.drop[name] -= 1
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/kmnist/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


SCRIPT = Path(dl.__file__).resolve()


def _exit_code(argv, **kwargs):
    """What the command exits with: main's return value, or the code of its SystemExit."""
    try:
        return dl.main(argv, **kwargs)
    except SystemExit as exc:
        return exc.code


def _run(host_url, tmp_path, checksums, *extra):
    argv = ["--url-base", host_url, "--cache-dir", str(tmp_path / "raw"),
            "--output", str(tmp_path / "out.npz"), *extra]
    return _exit_code(argv, checksums=checksums, backoff=0.01)


def _cli(*args, cwd):
    """Run the script as a user would, in `cwd`."""
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


def _error_line(stderr):
    """The single `error: ...` line of a failed run's stderr (and no traceback)."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, stderr
    return lines[0]


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".part")
                  or p.name.startswith("."))


def test_download_builds_the_split(fake_release, tmp_path, capsys):
    arrays, blobs, checksums = fake_release
    with FakeHost(blobs) as host:
        assert _run(host.url, tmp_path, checksums, "--retries", "0") == 0
    assert sorted(host.requests) == sorted(blobs)
    # each file's final progress line gives its size in a unit it reads in (not 0.0/0.0 MB)
    lines = capsys.readouterr().err.splitlines()
    for name, blob in blobs.items():
        n = len(blob)
        size = f"{n / 1e3:.1f}/{n / 1e3:.1f} kB" if n >= 1000 else f"{n}/{n} B"
        assert any(line.strip().startswith(name) and line.endswith(f" {size}") for line in lines)
    assert not any("0.0/0.0" in line for line in lines)
    for name, blob in blobs.items():
        assert (tmp_path / "raw" / name).read_bytes() == blob
    train_idx, dev_idx = dl.course_split(60)
    with np.load(tmp_path / "out.npz") as out:
        assert out["Xtrain"].dtype == np.uint8
        flat = arrays["kmnist-train-imgs.npz"].reshape(60, -1)
        np.testing.assert_array_equal(out["Xtrain"], flat[train_idx])
        np.testing.assert_array_equal(out["Xdev"], flat[dev_idx])
        np.testing.assert_array_equal(out["ytrain"], arrays["kmnist-train-labels.npz"][train_idx])
        np.testing.assert_array_equal(out["Xtest"], arrays["kmnist-test-imgs.npz"].reshape(12, -1))
        np.testing.assert_array_equal(out["ytest"], arrays["kmnist-test-labels.npz"])
    data = utils.load_dataset(tmp_path / "out.npz")
    assert [len(data[s][0]) for s in ("train", "dev", "test")] == [50, 10, 12]
    assert _leftovers(tmp_path) == []


def test_md5_mismatch_is_an_error_and_leaves_no_file(fake_release, tmp_path, capsys):
    _, blobs, checksums = fake_release
    corrupt = dict(blobs)
    blob = bytearray(blobs["kmnist-test-imgs.npz"])
    blob[len(blob) // 2] ^= 0xFF
    corrupt["kmnist-test-imgs.npz"] = bytes(blob)
    with FakeHost(corrupt) as host:
        assert _run(host.url, tmp_path, checksums) == 1
    err = capsys.readouterr().err
    assert "md5 mismatch" in err and "kmnist-test-imgs.npz" in err and "--source" in err
    assert not (tmp_path / "raw" / "kmnist-test-imgs.npz").exists()
    assert not (tmp_path / "out.npz").exists()
    assert _leftovers(tmp_path) == []


def test_dropped_connection_is_retried(fake_release, tmp_path, capsys):
    _, blobs, checksums = fake_release
    with FakeHost(blobs) as host:
        host.drop["kmnist-train-imgs.npz"] = 1
        assert _run(host.url, tmp_path, checksums, "--retries", "2") == 0
    assert host.requests.count("kmnist-train-imgs.npz") == 2
    assert "retrying" in capsys.readouterr().err
    assert (tmp_path / "raw" / "kmnist-train-imgs.npz").read_bytes() == blobs["kmnist-train-imgs.npz"]


def test_connection_that_keeps_dropping_gives_a_clean_error(fake_release, tmp_path, capsys):
    _, blobs, checksums = fake_release
    with FakeHost(blobs) as host:
        host.drop["kmnist-train-labels.npz"] = 10
        assert _run(host.url, tmp_path, checksums, "--retries", "2") == 1
    assert host.requests.count("kmnist-train-labels.npz") == 3
    err = capsys.readouterr().err
    assert "network error after 3 attempts" in err and "--source" in err
    assert not (tmp_path / "raw" / "kmnist-train-labels.npz").exists()
    assert not (tmp_path / "out.npz").exists()
    assert _leftovers(tmp_path) == []


def test_missing_file_in_a_file_url_folder_is_not_retried(fake_release, tmp_path, capsys,
                                                          monkeypatch):
    _, blobs, checksums = fake_release
    (tmp_path / "mirror").mkdir()
    mirror = _source_folder(tmp_path / "mirror", blobs)
    (mirror / "kmnist-test-labels.npz").unlink()
    slept = []
    monkeypatch.setattr(dl.time, "sleep", slept.append)
    argv = ["--url-base", mirror.as_uri() + "/", "--cache-dir", str(tmp_path / "raw"),
            "--output", str(tmp_path / "out.npz"), "--retries", "3"]
    assert _exit_code(argv, checksums=checksums) == 1
    err = capsys.readouterr().err
    assert "kmnist-test-labels.npz: no such file" in err and "retrying" not in err
    assert slept == []


def test_the_wait_between_attempts_is_capped(fake_release, tmp_path, capsys, monkeypatch):
    _, blobs, checksums = fake_release
    slept = []
    monkeypatch.setattr(dl.time, "sleep", slept.append)
    with FakeHost(blobs) as host:
        host.drop["kmnist-train-imgs.npz"] = 8
        argv = ["--url-base", host.url, "--cache-dir", str(tmp_path / "raw"), "--output",
                str(tmp_path / "out.npz"), "--retries", "8"]
        assert _exit_code(argv, checksums=checksums, backoff=10.0) == 0
    assert slept == [10.0, 20.0, 40.0] + [dl.MAX_WAIT] * 5


def test_unreachable_host_says_what_to_do(fake_release, tmp_path, capsys):
    _, _, checksums = fake_release
    with FakeHost({}) as host:
        url = host.url
    # the server is closed now: connections are refused
    assert _run(url, tmp_path, checksums, "--retries", "1") == 1
    line = _error_line(capsys.readouterr().err)  # the hint is on the error's one line
    assert "network error after 2 attempts" in line and "--source DIR" in line


def test_one_attempt_is_singular(fake_release, tmp_path, capsys):
    _, _, checksums = fake_release
    with FakeHost({}) as host:
        url = host.url
    assert _run(url, tmp_path, checksums, "--retries", "0") == 1
    assert "network error after 1 attempt (" in _error_line(capsys.readouterr().err)


def test_failed_download_leaves_no_folder_it_made(fake_release, tmp_path, capsys):
    _, blobs, checksums = fake_release
    with FakeHost({}) as host:
        url = host.url
    argv = ["--url-base", url, "--retries", "0", "--cache-dir", str(tmp_path / "a" / "raw"),
            "--output", str(tmp_path / "b" / "c" / "out.npz")]
    assert _exit_code(argv, checksums=checksums) == 1
    assert "network error" in _error_line(capsys.readouterr().err)
    assert _tree(tmp_path) == []
    # a cache folder that was there before is the user's: it stays, even empty
    (tmp_path / "a" / "raw").mkdir(parents=True)
    assert _exit_code(argv, checksums=checksums) == 1
    assert _tree(tmp_path) == ["a", "a/raw"]


def test_failed_download_keeps_the_verified_files(fake_release, tmp_path, capsys):
    _, blobs, checksums = fake_release
    partial = {name: blob for name, blob in blobs.items() if name != "kmnist-test-labels.npz"}
    with FakeHost(partial) as host:
        argv = ["--url-base", host.url, "--cache-dir", str(tmp_path / "raw"),
                "--output", str(tmp_path / "new" / "out.npz")]
        assert _exit_code(argv, checksums=checksums) == 1
    assert "HTTP 404" in _error_line(capsys.readouterr().err)
    # the next run fetches only the missing file; the output's new folder is gone
    assert _tree(tmp_path) == ["raw"] + [f"raw/{name}" for name in sorted(partial)]


def test_rerun_fetches_nothing(fake_release, tmp_path, capsys):
    _, blobs, checksums = fake_release
    with FakeHost(blobs) as host:
        assert _run(host.url, tmp_path, checksums) == 0
        first = len(host.requests)
        assert _run(host.url, tmp_path, checksums) == 0
        assert len(host.requests) == first == 4
    assert capsys.readouterr().err.count("present, md5 verified") == 4


def test_a_corrupt_cached_file_is_fetched_again(fake_release, tmp_path):
    _, blobs, checksums = fake_release
    with FakeHost(blobs) as host:
        assert _run(host.url, tmp_path, checksums) == 0
        (tmp_path / "raw" / "kmnist-test-labels.npz").write_bytes(b"garbage")
        assert _run(host.url, tmp_path, checksums) == 0
    assert host.requests.count("kmnist-test-labels.npz") == 2
    assert (tmp_path / "raw" / "kmnist-test-labels.npz").read_bytes() == blobs["kmnist-test-labels.npz"]


def _source_folder(tmp_path, blobs):
    src = tmp_path / "src"
    src.mkdir()
    for name, blob in blobs.items():
        (src / name).write_bytes(blob)
    return src


def test_source_folder_builds_offline(fake_release, tmp_path):
    arrays, blobs, checksums = fake_release
    src = _source_folder(tmp_path, blobs)
    out = tmp_path / "out.npz"
    assert dl.main(["--source", str(src), "--output", str(out)], checksums=checksums) == 0
    _, dev_idx = dl.course_split(60)
    with np.load(out) as data:
        np.testing.assert_array_equal(data["ydev"], arrays["kmnist-train-labels.npz"][dev_idx])


def test_source_folder_missing_or_corrupt_file(fake_release, tmp_path, capsys):
    _, blobs, checksums = fake_release
    src = _source_folder(tmp_path, blobs)
    out = tmp_path / "out.npz"
    (src / "kmnist-test-labels.npz").unlink()
    assert _exit_code(["--source", str(src), "--output", str(out)], checksums=checksums) == 1
    assert "kmnist-test-labels.npz is missing" in capsys.readouterr().err
    (src / "kmnist-test-labels.npz").write_bytes(b"not the file")
    assert _exit_code(["--source", str(src), "--output", str(out)], checksums=checksums) == 1
    assert (f"kmnist-test-labels.npz has md5 {hashlib.md5(b'not the file').hexdigest()}, "
            f"expected {checksums['kmnist-test-labels.npz'][1]}; it is none of the official "
            f"files: corrupt, or not the official release") in capsys.readouterr().err
    assert _exit_code(["--source", str(tmp_path / "nowhere"), "--output", str(out)],
                      checksums=checksums) == 1
    assert "no such folder" in capsys.readouterr().err
    assert not out.exists()


def test_unreadable_source_file_is_a_one_line_error(fake_release, tmp_path, capsys,
                                                    monkeypatch):
    """A file it may not read (root reads everything, so the refusal is simulated)."""
    _, blobs, checksums = fake_release
    src = _source_folder(tmp_path, blobs)
    out = tmp_path / "out.npz"
    locked = src / "kmnist-train-imgs.npz"

    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(dl, "md5sum", refuse)
    assert _exit_code(["--source", str(src), "--output", str(out)], checksums=checksums) == 1
    err = capsys.readouterr().err
    assert err == f"error: {locked}: Permission denied\n"
    assert not out.exists()


def test_bad_flag_values_are_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        dl.main(["--retries", "-1"])
    assert exc.value.code == 2
    assert "--retries" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["folder", "file_in_path", "sysfs", "no_such_proc_folder"])
def test_unwritable_output_fails_before_any_download(fake_release, tmp_path, case):
    _, blobs, _ = fake_release
    (tmp_path / "out").mkdir()
    (tmp_path / "afile").write_text("a regular file")
    output, reason = {
        "folder": (tmp_path / "out", "is a folder; name the file to write"),
        "file_in_path": (tmp_path / "afile" / "k.npz", "a file of that name (or in its path) "
                                                       "is in the way"),
        "sysfs": (Path("/sys/kernel/k.npz"), "cannot write there (Permission denied)"),
        "no_such_proc_folder": (Path("/proc/nope/k.npz"),
                                "cannot write there (No such file or directory)"),
    }[case]
    if case == "sysfs" and not output.parent.is_dir():
        pytest.skip("no /sys/kernel on this system")
    before = _tree(tmp_path)
    with FakeHost(blobs) as host:
        result = _cli("--url-base", host.url, "--cache-dir", tmp_path / "raw",
                      "--output", output, cwd=tmp_path)
    assert result.returncode == 1
    line = _error_line(result.stderr)
    assert result.stderr == line + "\n"  # nothing else: no traceback, no progress
    assert line.startswith(f"error: --output {output}: ") and reason in line
    assert host.requests == []  # checked before any download
    assert _tree(tmp_path) == before  # no cache folder, no temporary file
    assert not Path("/proc/nope").exists() and not Path("/sys/kernel/k.npz").exists()


def test_cache_dir_that_is_a_file_fails_before_any_download(fake_release, tmp_path):
    _, blobs, _ = fake_release
    (tmp_path / "afile").write_text("a regular file")
    with FakeHost(blobs) as host:
        result = _cli("--url-base", host.url, "--cache-dir", tmp_path / "afile",
                      "--output", tmp_path / "new" / "out.npz", cwd=tmp_path)
    assert result.returncode == 1
    line = _error_line(result.stderr)
    assert result.stderr == line + "\n"
    assert line == (f"error: --cache-dir {tmp_path / 'afile'}: cannot be used as an output "
                    f"folder: a file of that name (or in its path) is in the way")
    assert host.requests == []
    assert _tree(tmp_path) == ["afile"]  # not even the output's folder
    assert (tmp_path / "afile").read_text() == "a regular file"


def test_write_failure_during_the_build_is_a_clean_error(fake_release, tmp_path, capsys,
                                                         monkeypatch):
    _, blobs, checksums = fake_release
    src = _source_folder(tmp_path, blobs)
    written = []

    def disk_full(member, array, **kwargs):  # the disk fills up in the third array
        written.append(array.shape)
        if len(written) == 3:
            member.write(b"\x93NUMPY")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write_array(member, array, **kwargs)

    real_write_array = np.lib.format.write_array
    monkeypatch.setattr(np.lib.format, "write_array", disk_full)
    unraisable = []  # what a ZipFile left open would report when collected
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    out = tmp_path / "new" / "out.npz"
    assert _exit_code(["--source", str(src), "--output", str(out)], checksums=checksums) == 1
    gc.collect()
    assert len(written) == 3
    assert _error_line(capsys.readouterr().err) == (
        f"error: --output {out}: cannot write the split (No space left on device)")
    assert unraisable == []
    assert _tree(tmp_path) == ["src"] + [f"src/{name}" for name in sorted(blobs)]


@pytest.mark.parametrize("flag, value, message", [
    ("--url-base", "notaurl", "must be an http://, https:// or file:// URL, got 'notaurl'"),
    ("--url-base", "http://", "must be an http://, https:// or file:// URL"),
    ("--url-base", "ftp://example.org/kmnist/", "must be an http://, https:// or file:// URL"),
    ("--url-base", "http://127.0.0.1:port/", "must be an http://, https:// or file:// URL"),
    ("--timeout", "-1", "must be a number of seconds in (0, 86400], got '-1'"),
    ("--timeout", "0", "must be a number of seconds in (0, 86400], got '0'"),
    ("--timeout", "nan", "must be a number of seconds in (0, 86400], got 'nan'"),
    ("--timeout", "inf", "must be a number of seconds in (0, 86400], got 'inf'"),
    ("--timeout", "1e12", "must be a number of seconds in (0, 86400], got '1e12'"),
    ("--timeout", "soon", "must be a number of seconds in (0, 86400], got 'soon'"),
    ("--output", "", "must name a file or folder, got ''"),
    ("--cache-dir", "", "must name a file or folder, got ''"),
    ("--source", "", "must name a file or folder, got ''"),
])
def test_bad_url_base_and_timeout_are_argparse_errors(flag, value, message, capsys):
    with pytest.raises(SystemExit) as exc:
        dl.main([f"{flag}={value}"])
    assert exc.value.code == 2
    assert f"error: argument {flag}: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--url-base", "notaurl"], ["--timeout=-1"],
                                  ["--timeout", "nan"], ["--timeout", "0"]])
def test_bad_flag_values_exit_2_without_traceback_or_files(args, tmp_path):
    result = _cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    flag = args[0].split("=")[0]
    assert f"download_kuzushiji_mnist.py: error: argument {flag}: must be" in _error_line(
        result.stderr)
    assert result.stdout == "" and _tree(tmp_path) == []  # no kmnist-raw/, no output


def test_good_url_base_and_timeout_values(fake_release, tmp_path):
    """file:// (a local mirror) downloads like http://, and the timeout is a float."""
    arrays, blobs, checksums = fake_release
    src = _source_folder(tmp_path, blobs)
    argv = ["--url-base", src.as_uri() + "/", "--cache-dir", str(tmp_path / "raw"),
            "--output", str(tmp_path / "out.npz"), "--timeout", "2.5"]
    assert dl._parser().parse_args(argv).timeout == 2.5
    assert _exit_code(argv, checksums=checksums, backoff=0.01) == 0
    for name, blob in blobs.items():
        assert (tmp_path / "raw" / name).read_bytes() == blob
    with np.load(tmp_path / "out.npz") as out:
        np.testing.assert_array_equal(out["Xtest"], arrays["kmnist-test-imgs.npz"].reshape(12, -1))
    for url in ("https://example.org/kmnist/", "http://127.0.0.1:8000/k/", "file:///tmp/k/"):
        assert dl._parser().parse_args(["--url-base", url]).url_base == url


@pytest.mark.parametrize("size, text", [(18_384_171, "18.4/18.4 MB"), (29_700, "29.7/29.7 kB"),
                                        (5_304, "5.3/5.3 kB"), (512, "512/512 B")])
def test_progress_shows_sizes_in_a_readable_unit(size, text):
    stream = io.StringIO()
    dl._progress("kmnist-train-labels.npz", size, size, stream, final=True)
    assert stream.getvalue().rstrip("\n").endswith(" " + text)


def test_help_shows_the_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # one line per flag, so no default is wrapped
    with pytest.raises(SystemExit) as exc:
        dl.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag, default in (("--url-base URL", dl.URL_BASE), ("--output PATH", dl.DEFAULT_OUTPUT),
                          ("--cache-dir DIR", dl.DEFAULT_CACHE), ("--retries N", "3"),
                          ("--timeout SECONDS", "30.0")):
        [line] = [line for line in out.splitlines() if line.lstrip().startswith(flag)]
        assert line.endswith(f"(default: {default})")
    text = " ".join(out.split())
    assert ("A file already at --output is replaced only when this script wrote it (its first "
            "member is 'kmnist_split') and it no longer holds the split, or with --force; an "
            "official file in --source or --cache-dir never.") in text


# ----------------------------------------------------------------------------- a damaged split

def _expected_split(arrays):
    """The split the downloader should build from the fake release, made here by hand."""
    train_idx, dev_idx = dl.course_split(60)
    flat = arrays["kmnist-train-imgs.npz"].reshape(60, -1)
    labels = arrays["kmnist-train-labels.npz"]
    return {"Xtrain": flat[train_idx], "ytrain": labels[train_idx], "Xdev": flat[dev_idx],
            "ydev": labels[dev_idx], "Xtest": arrays["kmnist-test-imgs.npz"].reshape(12, -1),
            "ytest": arrays["kmnist-test-labels.npz"]}


def _resave(path, split, **changes):
    """Change arrays of a split this script wrote, keeping its members (the marker first)."""
    with np.load(path) as data:
        members = {key: data[key] for key in data.files}
    np.savez_compressed(path, **{**members, **changes})


def _flip_a_byte(path):
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))


DAMAGES = {
    "Xtrain zeroed": lambda path, split: _resave(path, split,
                                                 Xtrain=np.zeros_like(split["Xtrain"])),
    "one pixel": lambda path, split: _resave(path, split, Xtest=split["Xtest"] ^ np.eye(
        *split["Xtest"].shape, dtype=np.uint8)),
    "last dev label": lambda path, split: _resave(path, split, ydev=np.r_[
        split["ydev"][:-1], (split["ydev"][-1] + 1) % 10].astype(np.uint8)),
    "pixels as int64": lambda path, split: _resave(path, split,
                                                   Xdev=split["Xdev"].astype(np.int64)),
    "truncated": lambda path, split: path.write_bytes(path.read_bytes()[:-100]),
    "a flipped byte": lambda path, split: _flip_a_byte(path),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_split_is_built_again(fake_release, tmp_path, capsys, damage):
    """"Nothing to do" only when every array is the split's, not just its shapes; a split this
    script wrote that no longer holds it is rebuilt without --force."""
    arrays, blobs, checksums = fake_release
    src = _source_folder(tmp_path, blobs)
    out = tmp_path / "out.npz"
    expected = _expected_split(arrays)
    argv = ["--source", str(src), "--output", str(out)]
    kwargs = {"checksums": checksums, "fingerprint": dl.split_fingerprint(expected)}
    assert dl.main(argv, **kwargs) == 0
    built = out.read_bytes()
    assert dl.main(argv, **kwargs) == 0
    assert "already holds the course's split; nothing to do" in capsys.readouterr().out
    assert out.read_bytes() == built
    DAMAGES[damage](out, expected)
    assert out.read_bytes() != built
    assert dl.main(argv, **kwargs) == 0
    assert (f"{out} was written by this script but does not hold the course's split "
            f"(damaged); building it again") in capsys.readouterr().out
    with np.load(out) as data:
        assert data.files == [dl.MARKER_KEY, *expected]
        for key, value in expected.items():
            assert data[key].dtype == value.dtype
            np.testing.assert_array_equal(data[key], value)
    assert _leftovers(tmp_path) == []


def test_split_fingerprint_sees_every_array_and_its_layout(fake_release):
    expected = _expected_split(fake_release[0])
    base = dl.split_fingerprint(expected)
    assert dl.split_fingerprint({key: value.copy() for key, value in expected.items()}) == base
    for key, value in expected.items():
        flipped = value.copy()
        flipped.flat[-1] ^= 1
        for changed in (flipped, value.astype(np.int16), value.reshape(1, -1)):
            assert dl.split_fingerprint({**expected, key: changed}) != base, key
    swapped = {**expected, "Xdev": expected["Xtest"][:10], "Xtest": expected["Xdev"]}
    assert dl.split_fingerprint(swapped) != base


# --------------------------------------------------------------------- what --output may replace

def test_the_split_is_marked_as_written_here(fake_release, tmp_path):
    """The marker is the archive's first member, found at the file's start even when the rest
    is lost; the loader ignores it."""
    arrays, blobs, checksums = fake_release
    src = _source_folder(tmp_path, blobs)
    out = tmp_path / "out.npz"
    expected = _expected_split(arrays)
    assert dl.main(["--source", str(src), "--output", str(out)], checksums=checksums) == 0
    with np.load(out, allow_pickle=False) as data:
        assert data.files == [dl.MARKER_KEY, *utils.COURSE_KEYS]
        assert data[dl.MARKER_KEY][()] == dl.MARKER_TEXT
    assert dl.split_is_valid(out, dl.split_fingerprint(expected))
    np.testing.assert_array_equal(utils.load_dataset(out)["dev"][1], expected["ydev"])
    assert dl.written_here(out)
    out.write_bytes(out.read_bytes()[:100])
    assert dl.written_here(out)
    resaved = tmp_path / "resaved.npz"
    np.savez_compressed(resaved, **expected)
    assert not dl.written_here(resaved)
    resaved.write_bytes(b"")
    assert not dl.written_here(resaved)


def test_a_file_that_holds_the_split_is_kept_whoever_wrote_it(fake_release, tmp_path, capsys):
    arrays, blobs, checksums = fake_release
    src = _source_folder(tmp_path, blobs)
    copy = tmp_path / "copy.npz"
    expected = _expected_split(arrays)
    np.savez_compressed(copy, **expected)  # the split's arrays, without the marker
    before = copy.read_bytes()
    argv = ["--source", str(src), "--output", str(copy)]
    assert dl.main(argv, checksums=checksums, fingerprint=dl.split_fingerprint(expected)) == 0
    assert "already holds the course's split; nothing to do" in capsys.readouterr().out
    assert copy.read_bytes() == before


UNRELATED = {
    "a text file": lambda path, split: path.write_text("my notes\n"),
    "an empty file": lambda path, split: path.write_bytes(b""),
    "another dataset in the course's layout": lambda path, split: make_tiny_dataset(path),
    "another split, saved by numpy": lambda path, split: np.savez_compressed(
        path, **{**split, "ydev": (split["ydev"] + 1) % 10}),
}


@pytest.mark.parametrize("kind", list(UNRELATED))
def test_a_file_this_script_did_not_write_is_replaced_only_with_force(fake_release, tmp_path,
                                                                      capsys, kind):
    arrays, blobs, checksums = fake_release
    src = _source_folder(tmp_path, blobs)
    mine = tmp_path / "mine.npz"
    expected = _expected_split(arrays)
    UNRELATED[kind](mine, expected)
    before, tree = mine.read_bytes(), _tree(tmp_path)
    argv = ["--source", str(src), "--output", str(mine)]
    kwargs = {"checksums": checksums, "fingerprint": dl.split_fingerprint(expected)}
    assert _exit_code(argv, **kwargs) == 1
    captured = capsys.readouterr()
    assert captured.err == (f"error: --output {mine}: is there and is not a split this script "
                            f"wrote (no 'kmnist_split' marker), so it is left as it is: pass "
                            f"--force to replace it, or choose another --output\n")
    assert captured.out == ""
    assert mine.read_bytes() == before and _tree(tmp_path) == tree
    assert _exit_code(argv + ["--force"], **kwargs) == 0
    with np.load(mine) as data:
        assert data.files == [dl.MARKER_KEY, *expected]
        for key, value in expected.items():
            np.testing.assert_array_equal(data[key], value)
    assert _leftovers(tmp_path) == []


def test_an_unrelated_file_at_the_default_output_is_refused_on_the_command_line(tmp_path):
    """As a user runs it: in the current folder, the default --output, no traceback."""
    (tmp_path / "Kuzushiji-MNIST.npz").write_text("my own split")
    result = _cli("--source", tmp_path / "nowhere", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == ("error: --output Kuzushiji-MNIST.npz: is there and is not a split "
                             "this script wrote (no 'kmnist_split' marker), so it is left as it "
                             "is: pass --force to replace it, or choose another --output\n")
    assert result.stdout == ""
    assert (tmp_path / "Kuzushiji-MNIST.npz").read_text() == "my own split"
    assert _tree(tmp_path) == ["Kuzushiji-MNIST.npz"]


def _official_output(case, tmp_path, src):
    """(--output, the official file it is, the flag of that file's folder) for each way an
    --output can name an official file."""
    if case == "a linked folder":
        (tmp_path / "alias").symlink_to(src, target_is_directory=True)
        return tmp_path / "alias" / "kmnist-test-imgs.npz", "kmnist-test-imgs.npz", "--source"
    if case == "a symlink":
        (tmp_path / "link.npz").symlink_to(src / "kmnist-train-imgs.npz")
        return tmp_path / "link.npz", "kmnist-train-imgs.npz", "--source"
    if case == "a hard link":
        os.link(src / "kmnist-test-labels.npz", tmp_path / "hard.npz")
        return tmp_path / "hard.npz", "kmnist-test-labels.npz", "--source"
    if case == "through ..":
        return src / ".." / "src" / "kmnist-train-labels.npz", "kmnist-train-labels.npz", "--source"
    if case.startswith("the cache's"):
        return tmp_path / "raw" / "kmnist-train-imgs.npz", "kmnist-train-imgs.npz", "--cache-dir"
    return src / "kmnist-train-imgs.npz", "kmnist-train-imgs.npz", "--source"


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("case", ["the source file", "through ..", "a linked folder", "a symlink",
                                  "a hard link", "the cache's file, downloaded",
                                  "the cache's file, not yet downloaded"])
def test_the_split_never_replaces_an_official_file(fake_release, tmp_path, capsys, case, force):
    """Not even with --force: a source or cached file replaced by the split fails every later
    build's md5 check. Refused before anything is fetched, written or removed."""
    _, blobs, checksums = fake_release
    src = _source_folder(tmp_path, blobs)
    output, name, flag = _official_output(case, tmp_path, src)
    with FakeHost(blobs) as host:
        if case == "the cache's file, downloaded":
            assert _run(host.url, tmp_path, checksums) == 0
            (tmp_path / "out.npz").unlink()
        host.requests.clear()
        folder = {"--source": src, "--cache-dir": tmp_path / "raw"}[flag]
        argv = ["--output", str(output), "--cache-dir", str(tmp_path / "raw"),
                "--url-base", host.url] + (["--source", str(src)] if flag == "--source" else [])
        capsys.readouterr()
        tree = _tree(tmp_path)
        assert _exit_code(argv + ["--force"] * force, checksums=checksums) == 1
    captured = capsys.readouterr()
    assert captured.err == (f"error: --output {output}: is the official file {name} of {flag} "
                            f"{folder}, which the split is built from; it is never replaced, "
                            f"even with --force: choose another --output\n")
    assert captured.out == "" and host.requests == []
    assert _tree(tmp_path) == tree
    for name, blob in blobs.items():
        assert (src / name).read_bytes() == blob
        if case == "the cache's file, downloaded":
            assert (tmp_path / "raw" / name).read_bytes() == blob


def test_a_swapped_source_file_is_named(fake_release, tmp_path, capsys):
    _, blobs, checksums = fake_release
    src = _source_folder(tmp_path, blobs)
    (src / "kmnist-train-labels.npz").write_bytes(blobs["kmnist-test-labels.npz"])
    (src / "kmnist-test-labels.npz").write_bytes(blobs["kmnist-train-labels.npz"])
    out = tmp_path / "new" / "out.npz"
    assert _exit_code(["--source", str(src), "--output", str(out)], checksums=checksums) == 1
    md5 = checksums["kmnist-test-labels.npz"][1]
    assert capsys.readouterr().err == (
        f"error: --source {src}: kmnist-train-labels.npz is the official kmnist-test-labels.npz "
        f"(md5 {md5}), not kmnist-train-labels.npz: the files were swapped or renamed; give "
        f"each its official name\n")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("name", ["kmnist-train-imgs.npz", "notes.txt"])
def test_a_source_that_is_a_file_says_so(fake_release, tmp_path, capsys, name):
    _, blobs, checksums = fake_release
    src = _source_folder(tmp_path, blobs)
    (src / "notes.txt").write_text("not a folder")
    tree = _tree(tmp_path)
    source = src / name
    argv = ["--source", str(source), "--output", str(tmp_path / "new" / "out.npz")]
    assert _exit_code(argv, checksums=checksums) == 1
    hint = (f": --source {src}" if name in checksums
            else " (kmnist-train-imgs.npz, kmnist-train-labels.npz, kmnist-test-imgs.npz, "
                 "kmnist-test-labels.npz)")
    assert capsys.readouterr().err == (f"error: --source {source}: is a file, not a folder; give "
                                       f"the folder that holds the four official files{hint}\n")
    assert _tree(tmp_path) == tree


KILLED_BUILD = """\
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from runkit import files
with files.atomic_path(sys.argv[2]) as tmp:
    tmp.write_bytes(b"PK" + bytes(100_000))
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")
def test_a_killed_builds_temporary_file_is_removed_by_the_next_run(fake_release, tmp_path,
                                                                    capsys):
    arrays, blobs, checksums = fake_release
    src = _source_folder(tmp_path, blobs)
    out = tmp_path / "out.npz"
    script = tmp_path / "killed.py"
    script.write_text(KILLED_BUILD)
    argv = ["--source", str(src), "--output", str(out)]
    kwargs = {"checksums": checksums,
              "fingerprint": dl.split_fingerprint(_expected_split(arrays))}
    for outcome in ("Wrote", "nothing to do"):  # the build, then the run that keeps it
        killed = subprocess.run([sys.executable, str(script), str(ROOT), str(out)], timeout=60)
        assert killed.returncode == -9
        [left] = _leftovers(tmp_path)
        assert left.startswith(".out.npz.part-") and left.endswith(".npz")
        assert dl.main(argv, **kwargs) == 0
        assert outcome in capsys.readouterr().out
        assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed.py", "out.npz", "src"]


LIMITED_BUILD = """\
import hashlib, resource, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import download_kuzushiji_mnist as dl
src = Path(sys.argv[2])
checksums = {name: (0, hashlib.md5((src / name).read_bytes()).hexdigest()) for name in dl.FILES}
if sys.argv[4] == "numpy 1.26's savez_compressed":
    import zipfile
    import numpy as np

    def savez_compressed(file, **arrays):  # as numpy 1.26's: not closed when a write fails
        archive = zipfile.ZipFile(file, mode="w", compression=zipfile.ZIP_DEFLATED)
        for key, array in arrays.items():
            with archive.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
        archive.close()

    np.savez_compressed = savez_compressed
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (8000, resource.RLIM_INFINITY))
dl.main(["--source", str(src), "--output", sys.argv[3], "--force"], checksums=checksums)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE")
@pytest.mark.parametrize("numpy_writer", ["numpy as installed", "numpy 1.26's savez_compressed"])
def test_a_real_write_failure_during_the_build_keeps_the_earlier_file(fake_release, tmp_path,
                                                                      numpy_writer):
    """A file-size limit makes the kernel refuse the writes, as a full disk would. stderr is the
    error line alone, whichever numpy writes .npz archives: numpy 1.26's savez_compressed left
    its ZipFile open on a failed write, and its __del__ printed 'Exception ignored' and a
    traceback at exit."""
    _, blobs, _ = fake_release
    src = _source_folder(tmp_path, blobs)
    out = tmp_path / "out.npz"
    out.write_bytes(b"an earlier file")
    script = tmp_path / "limited.py"
    script.write_text(LIMITED_BUILD)
    result = subprocess.run([sys.executable, str(script), str(ROOT), str(src), str(out),
                             numpy_writer], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == f"error: --output {out}: cannot write the split (File too large)\n"
    assert out.read_bytes() == b"an earlier file"
    assert _leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- the split

def test_course_split_indices():
    train_idx, dev_idx = dl.course_split()
    order = np.random.RandomState(42).permutation(60000)
    np.testing.assert_array_equal(dev_idx, order[:10000])
    np.testing.assert_array_equal(train_idx, order[10000:60000])
    assert len(train_idx) == 50000 and len(dev_idx) == 10000
    assert not set(train_idx.tolist()) & set(dev_idx.tolist())
    assert sorted(np.concatenate([train_idx, dev_idx]).tolist()) == list(range(60000))


def test_real_split_fingerprints(real_data_path):
    with np.load(real_data_path) as data:
        # the marker leads when this script wrote the file; a copy saved otherwise has none
        assert data.files in (list(utils.COURSE_KEYS), [dl.MARKER_KEY, *utils.COURSE_KEYS])
        assert data["Xtrain"].dtype == np.uint8
        assert data["Xtrain"].shape == (50000, 784)
        assert data["Xdev"].shape == (10000, 784)
        assert data["Xtest"].shape == (10000, 784)
        assert data["ydev"][:10].tolist() == [6, 4, 7, 5, 8, 2, 3, 0, 1, 9]
        assert data["ytrain"][:10].tolist() == [9, 3, 8, 8, 2, 0, 7, 1, 9, 5]
        assert np.bincount(data["ytrain"]).tolist() == [5024, 4982, 5017, 4993, 5028, 4978,
                                                         5000, 4928, 5025, 5025]
        assert np.bincount(data["ytest"]).tolist() == [1000] * 10
    assert dl.split_is_valid(real_data_path)
    splits = utils.load_dataset(real_data_path)
    X = splits["train"][0]
    assert X.dtype == np.float64 and X.min() == 0.0 and X.max() == 255 / 256


RAW_DIR_ENV = "KMNIST_RAW_DIR"


def test_real_split_matches_the_official_files(real_data_path):
    """The split is built from the four official files in $KMNIST_RAW_DIR (set by CI), else in
    ../shared/data/kmnist beside the project."""
    value = os.environ.get(RAW_DIR_ENV)
    source = Path(value) if value else ROOT.parent / "shared" / "data" / "kmnist"
    missing = [name for name in dl.FILES if not (source / name).is_file()]
    if missing:
        pytest.skip(f"official files not found in {source} (missing {', '.join(missing)}): "
                    f"set {RAW_DIR_ENV} to the folder that holds them")
    images = np.load(source / "kmnist-train-imgs.npz")["arr_0"].reshape(60000, -1)
    labels = np.load(source / "kmnist-train-labels.npz")["arr_0"]
    test_images = np.load(source / "kmnist-test-imgs.npz")["arr_0"].reshape(10000, -1)
    test_labels = np.load(source / "kmnist-test-labels.npz")["arr_0"]
    train_idx, dev_idx = dl.course_split()
    official = {"Xtrain": images[train_idx], "ytrain": labels[train_idx], "Xdev": images[dev_idx],
                "ydev": labels[dev_idx], "Xtest": test_images, "ytest": test_labels}
    assert dl.split_fingerprint(official) == dl.SPLIT_SHA256  # the constant is that split's
    with np.load(real_data_path) as data:
        np.testing.assert_array_equal(data["Xdev"], images[dev_idx])
        np.testing.assert_array_equal(data["ydev"], labels[dev_idx])
        np.testing.assert_array_equal(data["Xtrain"], images[train_idx])
        np.testing.assert_array_equal(data["ytrain"], labels[train_idx])
        np.testing.assert_array_equal(data["Xtest"], test_images)
        np.testing.assert_array_equal(data["ytest"], test_labels)
