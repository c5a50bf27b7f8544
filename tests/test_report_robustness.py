"""report.py against what happens around it: files of the user's in a run folder, two reports
in one output folder, TERM, HUP and Ctrl-C, a killed report, and a closed or full stdout.
Each runs the report as a command on a tiny synthetic dataset."""
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import report
from runkit import records
from conftest import run_report

ROOT = Path(report.__file__).resolve().parent
linux_only = pytest.mark.skipif(not Path("/proc/self/cmdline").exists()
                                or not hasattr(os, "killpg"),
                                reason="needs process groups and /proc")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from conftest import make_tiny_dataset
    return make_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny.npz", n_train=48,
                             n_dev=16, n_test=16)


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """A finished tiny report: (argv, output folder)."""
    out = tmp_path_factory.mktemp("finished") / "report"
    argv = ["-data_path", str(data), "-output_dir", str(out), "-epochs", "1"]
    code, _ = run_report(argv)
    assert code == 0
    return argv, out


def copy_of(finished, tmp_path):
    argv, out = finished
    copy = tmp_path / "report"
    shutil.copytree(out, copy)
    return [*argv, "-output_dir", str(copy)], copy


def command(argv, **options):
    return subprocess.Popen([sys.executable, str(ROOT / "report.py"), *argv], text=True,
                            **options)


def _processes_with(text):
    """Pids of the live processes whose command line contains `text` (Linux /proc)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError, IndexError):
            if text.encode() in cmdline.read_bytes():
                state = (cmdline.parent / "stat").read_text().split(")")[-1].split()[0]
                if state != "Z":
                    pids.append(int(cmdline.parent.name))
    return pids


def _none_left(text):
    """Whether no process carries `text` in its command line, allowing them a moment to go."""
    for _ in range(100):
        if not _processes_with(text):
            return True
        time.sleep(0.1)
    return False


# ----------------------------------------------------------------------------- run folders

def test_the_user_s_files_in_a_run_folder_are_kept_and_the_run_redone(finished, tmp_path):
    argv, out = copy_of(finished, tmp_path)
    folder = out / "runs" / "q1-perceptron"
    (folder / "old").mkdir()
    (folder / "old" / "q1-perceptron.json").write_text("an older record, kept by hand")
    (folder / "notes.txt").write_text("my notes")
    code, stdout = run_report([*argv, "--force"])
    assert code == 0, stdout
    assert (folder / "notes.txt").read_text() == "my notes"
    assert (folder / "old" / "q1-perceptron.json").read_text() == \
        "an older record, kept by hand"
    names = {p.name for p in folder.iterdir()}
    kept = {"cache-key", "log.txt", "notes.txt", "old"}
    assert kept <= names
    made = names - kept  # the new run's record and figures, nothing of the old run's
    assert all(n.startswith("q1-perceptron-") for n in made), made
    assert len(made) == 5 and len([n for n in made if n.endswith(".json")]) == 1, made
    assert "[14/14]" in stdout and "FAILED" not in stdout


def test_a_folder_in_the_way_fails_that_run_only_and_nothing_is_deleted(finished, tmp_path,
                                                                      capsys):
    argv, out = copy_of(finished, tmp_path)
    folder = out / "runs" / "q1-perceptron"
    (folder / "log.txt").unlink()
    (folder / "log.txt").mkdir()  # where the run's log goes
    (folder / "log.txt" / "mine").write_text("the user's")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit) as exc:
        report.main([*argv, "--force"])
    assert exc.value.code == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ["error: 1 run(s) failed: q1-perceptron"]
    [failed] = [line for line in captured.out.splitlines() if "FAILED" in line]
    assert failed.endswith(f"{folder}: log.txt/ stand(s) where the run writes its files and "
                           f"the report did not write them: move them out of the way")
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert "| `perceptron` | failed |" in (out / "results.md").read_text()


# ----------------------------------------------------------------------------- the lock

HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_a_second_report_in_the_same_folder_says_so_and_runs_nothing(finished, tmp_path):
    argv, out = copy_of(finished, tmp_path)
    (out / "runs" / "q1-perceptron" / "cache-key").unlink()  # one run to do
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        result = subprocess.run([sys.executable, str(ROOT / "report.py"), *argv],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr == (f"error: {out}: another report.py is writing there; wait "
                                 f"for it to end, or give another --output-dir\n")
        assert not (out / "runs" / "q1-perceptron" / "cache-key").exists()  # not run
    finally:
        holder.kill()
        holder.wait()
    # the kernel released the lock with its holder: the same command now runs
    code, stdout = run_report(argv)
    assert code == 0 and "[14/14] done hw1-q1.py perceptron" in stdout


# ----------------------------------------------------------------------------- signals

def _one_done_and_another_started(lines):
    return lines[-1].startswith("start ") and any("] done " in line for line in lines)


def _start_report(data, out, epochs=150, ready=_one_done_and_another_started):
    """A report whose runs take a while each, in a session of its own (as a shell's
    foreground job); returns (argv, process, its stdout lines so far) once `ready(lines)`."""
    argv = ["-data_path", str(data), "-output_dir", str(out), "-epochs", str(epochs),
            "--jobs", "2"]
    proc = command(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   start_new_session=True, cwd=out.parent)
    lines, event = [], threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if ready(lines):
                event.set()
    threading.Thread(target=read, daemon=True).start()
    if not event.wait(timeout=240):
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("".join(lines))
    return argv, proc, lines


@linux_only
@pytest.mark.parametrize("signum, whom", [(signal.SIGINT, "group"), (signal.SIGTERM, "report"),
                                          (signal.SIGHUP, "report")],
                         ids=["ctrl-c", "term", "hup"])
def test_a_stop_signal_stops_the_runs_keeps_the_finished_ones_and_resumes(
        data, tmp_path, monkeypatch, signum, whom):
    out = tmp_path / "report"
    out.mkdir()
    argv, proc, lines = _start_report(data, out)
    try:
        (os.killpg if whom == "group" else os.kill)(proc.pid, signum)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = proc.stderr.read()
    assert code == 128 + signum, err
    assert "Traceback" not in "".join(lines) + err
    match = re.fullmatch(r"interrupted: (\d+) of 14 runs finished and are kept; run the same "
                         r"command again to resume\n", err)
    assert match, err
    kept = int(match[1])
    folders = list((out / "runs").iterdir())
    stamped = [f for f in folders if (f / "cache-key").is_file()]
    assert 1 <= len(stamped) == kept < len(folders)
    for folder in stamped:  # whole: the record, with every epoch, and the figures
        [path] = folder.glob("*.json")
        assert len(records.read_record(path)["valid_acc"]) == 150
        assert list(folder.glob("*.png"))
    for folder in set(folders) - set(stamped):  # stopped: told so, not killed
        log = (folder / "log.txt").read_text()
        assert "interrupted (the report was stopped)" in log or "not started" in log, log
    assert [p for p in out.rglob(".*")] == []  # no temporary file left
    assert not (out / "results.md").exists()
    assert _none_left(str(out))  # forked runs carry the report's command line

    if signum != signal.SIGINT:
        return
    # the same command again reuses the kept runs and runs the others
    from reporting.runner import Runner
    started = []

    def stub(self, run):
        started.append(run)
        raise RuntimeError("not run in this test")
    monkeypatch.setattr(Runner, "execute", stub)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        run_report(argv)
    assert started and {r.label for r in started}.isdisjoint(f.name for f in stamped)


@linux_only
def test_no_run_outlives_a_killed_report(data, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    # runs long enough to outlive the wait below, were they left running
    two_started = lambda lines: sum(line.startswith("start ") for line in lines) == 2
    _, proc, _ = _start_report(data, out, epochs=5000, ready=two_started)
    for _ in range(100):  # a run's start line comes just before its process
        if len(_processes_with(str(out))) >= 3:  # the report and its two runs
            break
        time.sleep(0.1)
    try:
        assert len(_processes_with(str(out))) >= 3
        proc.kill()  # SIGKILL: the report cannot stop its runs itself
        proc.wait()
        assert _none_left(str(out))
    finally:  # whatever this test started and is left
        for pid in _processes_with(str(out)):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------- stdout

def test_a_closed_stdout_ends_the_report_quietly_with_its_work_done(data, tmp_path):
    out = tmp_path / "report"
    argv = ["-data_path", str(data), "-output_dir", str(out), "-epochs", "1"]
    proc = command(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = [proc.stdout.readline() for _ in range(4)]  # report.py | head -4
    proc.stdout.close()
    code = proc.wait(timeout=300)
    err = proc.stderr.read()
    assert head[0] == "14 runs to do, 2 at a time\n" or head[0].startswith("14 runs to do")
    assert code == 0 and err == ""
    assert (out / "results.md").is_file() and len(list((out / "runs").iterdir())) == 14


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_full_stdout_ends_the_report_with_one_line_after_its_work(data, tmp_path):
    out = tmp_path / "report"
    argv = ["-data_path", str(data), "-output_dir", str(out), "-epochs", "1"]
    with open("/dev/full", "w") as full:
        proc = command(argv, stdout=full, stderr=subprocess.PIPE)
        err = proc.communicate(timeout=300)[1]
    assert proc.returncode == 1
    assert err == ("error: cannot write to standard output (No space left on device); the "
                   "report went on and its files are written\n")
    assert (out / "results.md").is_file() and len(list((out / "runs").iterdir())) == 14
