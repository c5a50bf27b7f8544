"""Fetch Kuzushiji-MNIST and build the course's train/dev/test split as Kuzushiji-MNIST.npz.

    python download_kuzushiji_mnist.py                      # download, verify, build
    python download_kuzushiji_mnist.py --source DIR         # build offline from the four files in DIR

The split: dev = official training images at RandomState(42).permutation(60000)[:10000], train = the
next 50,000 of that permutation (both in permutation order; this is scikit-learn's
train_test_split(train_size=50000, test_size=10000, random_state=42)), test = the official test set.
Pixels are stored as uint8; utils.load_dataset scales them by 1/256.

An --output that is already there is replaced only when this script wrote it (the archive's first
member is MARKER_KEY), or with --force; an official file of --source or --cache-dir, never.
"""
import argparse
import hashlib
import http.client
import math
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from runkit.errors import OutputError, fail, run_command
from runkit.files import (atomic_path, new_folders, os_error_in, remove_empty, remove_stale_temps,
                          writable_dir)
from utils import COURSE_KEYS

URL_BASE = "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"
DEFAULT_OUTPUT = "Kuzushiji-MNIST.npz"
DEFAULT_CACHE = "kmnist-raw"

# name -> (bytes, md5) of the official release.
FILES = {
    "kmnist-train-imgs.npz": (18_384_171, "a183fbc01ed9a345513b145673d3d0bb"),
    "kmnist-train-labels.npz": (29_700, "b0e1d240e8afec72b50437fc3bc5908a"),
    "kmnist-test-imgs.npz": (3_079_479, "dace6de62ca8b90843cc45366337d02e"),
    "kmnist-test-labels.npz": (5_304, "3ae489a79983d0fe386152684e3b5412"),
}

SPLIT_SEED = 42
# split_fingerprint of the course's split of the official files: a built file is kept only if
# its arrays hash to this (shapes and a few labels would let a damaged file through).
SPLIT_SHA256 = "13dbf9a3b5bc163ee28601f1b3ba09c557c7789ad9f9aa19be2995c6fd57cccb"

# The member that marks a split this script wrote, so that a damaged one is rebuilt while any
# other file at --output is left alone. It is the archive's first member: its name stays at the
# start of the file even when the file is truncated (a zip's directory, at the end, goes first).
MARKER_KEY = "kmnist_split"
MARKER_TEXT = "the course's split of Kuzushiji-MNIST, written by download_kuzushiji_mnist.py"

MANUAL_HINT = ("Fetch the four files by hand ({}) from {} and run: "
               "python download_kuzushiji_mnist.py --source DIR")

# The sockets refuse timeouts past the platform's time_t (OverflowError near 1e12 s here);
# a day is already longer than any stall worth waiting for.
MAX_TIMEOUT = 86_400.0

# The longest wait between two attempts: the backoff doubles up to it.
MAX_WAIT = 60.0

# (bytes per unit, unit) for progress sizes, largest first.
UNITS = ((1e6, "MB"), (1e3, "kB"), (1, "B"))


class DownloadError(Exception):
    """A file could not be fetched, verified or found; the message says what to do next."""


def md5sum(path, chunk=1 << 20):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _unit(size):
    """(bytes per unit, unit) in which `size` reads as at least 1: 29.7 kB, not 0.0 MB."""
    return next((unit for unit in UNITS if size >= unit[0]), UNITS[-1])


def _progress(name, done, total, stream, final=False):
    scale, unit = _unit(total or done)
    digits = 0 if scale == 1 else 1  # whole bytes
    if total:
        bar = "#" * int(30 * done / total)
        text = (f"\r  {name:<26} [{bar:<30}] {done / scale:6.{digits}f}/"
                f"{total / scale:.{digits}f} {unit}")
    else:
        text = f"\r  {name:<26} {done / scale:6.{digits}f} {unit}"
    if final or stream.isatty():
        stream.write(text + ("\n" if final else ""))
        stream.flush()


def _fetch_once(url, tmp, name, timeout, stream):
    """Stream `url` into `tmp`. Raises OSError-family errors on network failures."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        with open(tmp, "wb") as f:
            while block := response.read(1 << 16):
                f.write(block)
                done += len(block)
                _progress(name, done, total, stream)
        if total and done != total:
            raise http.client.IncompleteRead(b"", total - done)
    _progress(name, done, total, stream, final=True)


def download_file(url, dest, md5, retries=3, backoff=1.0, timeout=30.0, stream=None):
    """Download `url` to `dest`, verified against `md5`; no partial file ever sits at `dest`.

    Network errors are retried `retries` times with exponential backoff (at most MAX_WAIT
    between attempts); an md5 mismatch, an HTTP error or a missing file:// file is not.
    """
    stream = stream or sys.stderr
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        for attempt in range(retries + 1):
            try:
                _fetch_once(url, tmp, dest.name, timeout, stream)
                break
            except urllib.error.HTTPError as err:
                raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
            except (OSError, http.client.HTTPException, socket.timeout) as err:
                reason = getattr(err, "reason", None) or err
                if isinstance(reason, FileNotFoundError):  # file://: waiting will not help
                    raise DownloadError(f"{url}: no such file") from None
                if attempt == retries:
                    attempts = f"{retries + 1} attempt" + ("s" if retries else "")
                    raise DownloadError(f"{url}: network error after {attempts} "
                                        f"({type(err).__name__}: {reason})") from None
                wait = min(backoff * 2 ** attempt, MAX_WAIT)
                print(f"\n  {dest.name}: {type(err).__name__}: {reason}; retrying in {wait:.1f} s "
                      f"({attempt + 1}/{retries})", file=stream)
                time.sleep(wait)
        got = md5sum(tmp)
        if got != md5:
            raise DownloadError(f"{url}: md5 mismatch (got {got}, expected {md5}); "
                                f"the file was discarded")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def md5_problem(name, got, checksums=FILES):
    """Why a file named `name` whose md5 is `got` is not that official file: it is another of
    them (named, as when two files were swapped or renamed), or none of them."""
    others = [other for other, (_, md5) in checksums.items() if md5 == got and other != name]
    if others:
        return (f"is the official {others[0]} (md5 {got}), not {name}: the files were swapped "
                f"or renamed; give each its official name")
    return (f"has md5 {got}, expected {checksums[name][1]}; it is none of the official files: "
            f"corrupt, or not the official release")


def fetch_all(cache_dir, url_base=URL_BASE, checksums=FILES, retries=3, backoff=1.0,
              timeout=30.0, stream=None):
    """Make sure every file of `checksums` is in `cache_dir` with the right md5; return the folder."""
    stream = stream or sys.stderr
    cache_dir = Path(cache_dir)
    for name, (_, md5) in checksums.items():
        path = cache_dir / name
        if path.is_file():
            if md5sum(path) == md5:
                print(f"  {name}: present, md5 verified", file=stream)
                continue
            print(f"  {name}: present but md5 differs; fetching again", file=stream)
        url = url_base.rstrip("/") + "/" + name
        try:
            download_file(url, path, md5, retries=retries, backoff=backoff, timeout=timeout,
                          stream=stream)
        except DownloadError as err:
            # one line, as every error of the script
            raise DownloadError(f"{err}. {MANUAL_HINT.format(', '.join(checksums), url_base)}"
                                ) from None
    return cache_dir


def verify_source(source, checksums=FILES):
    """Check that `source` holds every file of `checksums` with the right md5."""
    source = Path(source)
    if not source.is_dir():
        if not source.exists():
            raise DownloadError(f"--source {source}: no such folder")
        hint = (f": --source {source.parent}" if source.name in checksums  # one of the four
                else f" ({', '.join(checksums)})")
        raise DownloadError(f"--source {source}: is a file, not a folder; give the folder that "
                            f"holds the four official files{hint}")
    for name, (_, md5) in checksums.items():
        path = source / name
        if not path.is_file():
            raise DownloadError(f"--source {source}: {name} is missing. "
                                + MANUAL_HINT.format(", ".join(checksums), URL_BASE))
        got = md5sum(path)
        if got != md5:
            raise DownloadError(f"--source {source}: {name} {md5_problem(name, got, checksums)}")
    return source


def course_split(n=60_000, seed=SPLIT_SEED):
    """(train_idx, dev_idx) into the official training set, as train_test_split(random_state=42).

    dev is the first n/6 of the permutation (10,000 of 60,000), train the rest (50,000).
    """
    order = np.random.RandomState(seed).permutation(n)
    n_dev = n // 6
    return order[n_dev:], order[:n_dev]


def _read_array(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["arr_0"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise DownloadError(f"{path}: cannot be read ({type(err).__name__}: {err})") from None


def build_split(raw_dir, output):
    """Write the course's split of the four files in `raw_dir` to `output` (uint8, atomically)."""
    raw_dir = Path(raw_dir)
    X = _read_array(raw_dir / "kmnist-train-imgs.npz")
    y = _read_array(raw_dir / "kmnist-train-labels.npz")
    Xtest = _read_array(raw_dir / "kmnist-test-imgs.npz")
    ytest = _read_array(raw_dir / "kmnist-test-labels.npz")
    if len(X) != len(y) or len(Xtest) != len(ytest):
        raise DownloadError(f"{raw_dir}: image and label counts differ")
    train_idx, dev_idx = course_split(len(X))
    flat = X.reshape(len(X), -1)
    arrays = {"Xtrain": flat[train_idx], "ytrain": y[train_idx],
              "Xdev": flat[dev_idx], "ydev": y[dev_idx],
              "Xtest": Xtest.reshape(len(Xtest), -1), "ytest": ytest}
    try:
        with atomic_path(output) as tmp:
            with open(tmp, "wb") as f:
                write_split(f, arrays)
    except Exception as err:  # checked writable at the start, so a full disk or the like
        cause = os_error_in(err)  # zipfile may report it as another error
        if cause is None:
            raise
        raise OutputError(f"--output {output}: cannot write the split "
                          f"({cause.strerror or cause})") from None
    return Path(output)


def write_split(f, arrays):
    """Write `arrays` ({key: array}) to the binary file `f` as an .npz archive (what
    np.savez_compressed writes), with the MARKER_KEY member first.

    The archive is closed on every path, also when a write fails: numpy before 2.0 leaves its
    ZipFile open then, and the ZipFile's __del__ later prints 'Exception ignored' and a
    traceback after the error line.
    """
    members = {MARKER_KEY: np.array(MARKER_TEXT), **arrays}
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, array in members.items():
            with archive.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def written_here(path):
    """True when the file `path` starts with the MARKER_KEY member: a split this script wrote,
    whole or damaged. Read from the first member's header, at the start of the file, so that a
    truncated archive (which np.load cannot open) is still recognised. Raises OSError when the
    file cannot be read."""
    name = f"{MARKER_KEY}.npy".encode()
    with open(path, "rb") as f:
        head = f.read(30 + len(name))  # a zip local file header is 30 bytes, then the name
    return (head[:4] == b"PK\x03\x04" and int.from_bytes(head[26:28], "little") == len(name)
            and head[30:] == name)


def _same_file(a, b):
    """True when the paths `a` and `b` name one file: the same path once links are resolved, or
    the same inode (a hard link)."""
    try:
        if a.resolve() == b.resolve():
            return True
    except (OSError, RuntimeError):  # a symlink loop: compare the inodes only
        pass
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def check_not_a_source(output, source, cache_dir, checksums=FILES):
    """Raise OutputError when `output` is one of the official files the split is built from, in
    --source or in --cache-dir (there or not yet: a download would put it there); --force does
    not lift this."""
    output = Path(output)
    folders = [(cache_dir, "--cache-dir")] + ([(source, "--source")] if source is not None else [])
    for folder, flag in folders:
        for name in checksums:
            if _same_file(output, Path(folder) / name):
                raise OutputError(f"--output {output}: is the official file {name} of {flag} "
                                  f"{folder}, which the split is built from; it is never "
                                  f"replaced, even with --force: choose another --output")


def check_replaceable(output, force, fingerprint=SPLIT_SHA256):
    """Whether the file already at `output` (if any) may be replaced by a new build.

    Returns "absent" (nothing there, or a folder: check_output reports that), "split" (it holds
    the course's split, and not `force`), "damaged" (a split this script wrote that no longer
    holds the course's split) or "forced"; raises OutputError for any other file, without --force.
    """
    output = Path(output)
    if not os.path.lexists(output) or output.is_dir():
        return "absent"
    if force:
        return "forced"
    if split_is_valid(output, fingerprint):
        return "split"
    try:
        ours = written_here(output)
    except OSError as err:
        raise OutputError(f"--output {output}: cannot be read ({err.strerror or err}), so it is "
                          f"left as it is: pass --force to replace it, or choose another --output"
                          ) from None
    if not ours:
        raise OutputError(f"--output {output}: is there and is not a split this script wrote "
                          f"(no {MARKER_KEY!r} marker), so it is left as it is: pass --force to "
                          f"replace it, or choose another --output")
    return "damaged"


def split_fingerprint(arrays):
    """sha256 over the six arrays of a split ({key: array}): each key, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for key in COURSE_KEYS:
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key} {array.dtype.str} {array.shape}\n".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def split_is_valid(output, fingerprint=SPLIT_SHA256):
    """True when every array of `output` is the course's split (its fingerprint matches)."""
    try:
        with np.load(output, allow_pickle=False) as data:
            return split_fingerprint({key: data[key] for key in COURSE_KEYS}) == fingerprint
    except Exception:  # unreadable, truncated, keys missing: not the split
        return False


def url_base(text):
    """argparse type: a URL urllib can fetch the files from, http(s):// (a mirror) or file://."""
    parts = urllib.parse.urlsplit(text)
    try:
        parts.port  # raises ValueError on a malformed port
        ok = (parts.scheme in ("http", "https") and bool(parts.hostname)
              or parts.scheme == "file" and bool(parts.path))
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"must be an http://, https:// or file:// URL, "
                                         f"got {text!r}")
    return text


def timeout_seconds(text):
    """argparse type: a finite timeout in (0, MAX_TIMEOUT] seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_TIMEOUT:  # also false for nan
        raise argparse.ArgumentTypeError(f"must be a number of seconds in (0, {MAX_TIMEOUT:g}], "
                                         f"got {text!r}")
    return value


def path_value(text):
    """argparse type: a path; '' is refused (Path('') would be the current folder)."""
    if not text:
        raise argparse.ArgumentTypeError("must name a file or folder, got ''")
    return Path(text)


def check_output(output):
    """Raise OutputError now, before any download, if the split cannot be written to `output`."""
    output = Path(output)
    if output.is_dir():
        raise OutputError(f"--output {output}: is a folder; name the file to write, "
                          f"e.g. {output / DEFAULT_OUTPUT}")
    try:
        writable_dir(output.parent)
    except OutputError as err:
        raise OutputError(f"--output {output}: {err}") from None


def _parser():
    parser = argparse.ArgumentParser(
        description="Download Kuzushiji-MNIST (md5-verified) and build the course's "
                    "train/dev/test split.",
        epilog="Without network access: fetch the four files (" + ", ".join(FILES) + ") by hand "
               "and pass their folder with --source. A file already at --output is replaced "
               f"only when this script wrote it (its first member is {MARKER_KEY!r}) and it no "
               "longer holds the split, or with --force; an official file in --source or "
               "--cache-dir never.")
    parser.add_argument("--source", type=path_value, default=None, metavar="DIR",
                        help="build offline from a folder that already holds the four official "
                             "files (without it: download them)")
    parser.add_argument("--url-base", type=url_base, default=URL_BASE, metavar="URL",
                        help="base URL of the files: an http(s):// mirror or a file:// folder "
                             "(default: %(default)s)")
    parser.add_argument("--output", type=path_value, default=Path(DEFAULT_OUTPUT), metavar="PATH",
                        help="where to write the split, the scripts' default -data_path; "
                             "a file there that this script did not write is replaced only "
                             "with --force (default: %(default)s)")
    parser.add_argument("--cache-dir", type=path_value, default=Path(DEFAULT_CACHE), metavar="DIR",
                        help="folder for the downloaded raw files (default: %(default)s)")
    parser.add_argument("--retries", type=int, default=3, metavar="N",
                        help="retries per file on network errors (default: %(default)s)")
    parser.add_argument("--timeout", type=timeout_seconds, default=30.0, metavar="SECONDS",
                        help="seconds before a stalled connection counts as a network error "
                             "(default: %(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="rebuild the split even if the output already holds it, and "
                             "replace an --output file this script did not write (never an "
                             "official file of --source or --cache-dir)")
    return parser


def main(argv=None, checksums=FILES, backoff=1.0, fingerprint=SPLIT_SHA256):
    """The command line; `checksums`, `backoff` and the split's `fingerprint` are injectable
    for tests.

    Returns 0; on an error prints `error: ...` and exits 1, leaving no folder it made empty.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.retries < 0:
        parser.error(f"argument --retries: must be >= 0, got {args.retries}")

    try:  # refused before anything is fetched, written or removed
        check_not_a_source(args.output, args.source, args.cache_dir, checksums)
        existing = check_replaceable(args.output, args.force, fingerprint)
    except OutputError as err:
        fail(str(err))
    if args.output.parent.is_dir():
        remove_stale_temps(args.output.parent)  # a killed build's temporary file
    if existing == "split":
        print(f"{args.output} already holds the course's split; nothing to do "
              f"(--force rebuilds)")
        return 0
    if existing == "damaged":
        print(f"{args.output} was written by this script but does not hold the course's split "
              f"(damaged); building it again")
    created = new_folders(args.output.parent)
    if args.source is None:
        created += new_folders(args.cache_dir)
    try:
        check_output(args.output)  # a bad --output fails now, not after the download and build
        if args.source is not None:
            raw_dir = verify_source(args.source, checksums)
            print(f"Using the files in {raw_dir} (md5 verified)")
        else:
            try:
                writable_dir(args.cache_dir)
            except OutputError as err:
                raise OutputError(f"--cache-dir {err}") from None
            print(f"Fetching Kuzushiji-MNIST from {args.url_base} into {args.cache_dir}/")
            raw_dir = fetch_all(args.cache_dir, args.url_base, checksums, retries=args.retries,
                                backoff=backoff, timeout=args.timeout)
        start = time.perf_counter()
        output = build_split(raw_dir, args.output)
    except (DownloadError, OutputError) as err:
        fail(str(err))
    except OSError as err:  # e.g. a cached or --source file it may not read
        fail(f"{err.filename}: {err.strerror}" if err.filename else str(err))
    finally:
        remove_empty(created)  # a failed run leaves no folder it made
    print(f"Wrote {output} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    run_command(main)
