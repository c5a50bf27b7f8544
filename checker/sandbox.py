"""The subprocess a student's code runs in: a temporary folder laid out as the course's (the
student's file under the course's name, a copy of this project's utils.py, a copy of the data
when needed), a time limit, a new process group killed whole on timeout, output to files with a size
cap, and nothing written beside the student's own file."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_NAME = "Kuzushiji-MNIST.npz"
TAIL = 2000  # characters of the student's output kept in a result


def make_workdir(student_file, course_name, data_path=None):
    """A fresh folder holding the student's file as `course_name`, utils.py and, if given, a
    copy of the dataset under its default name (a copy, not a link: the student's code may
    write where it reads)."""
    folder = Path(tempfile.mkdtemp(prefix="check-solution-"))
    shutil.copyfile(student_file, folder / course_name)
    shutil.copyfile(ROOT / "utils.py", folder / "utils.py")
    if data_path is not None:
        shutil.copyfile(data_path, folder / DATA_NAME)
    return folder


def remove_workdir(folder):
    shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Outcome:
    result: dict  # what the harness wrote; {} if nothing
    timed_out: bool
    returncode: int
    seconds: float
    output_tail: str  # the last characters the student's code printed (stdout then stderr)


def _tail(path):
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - TAIL))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run_harness(harness_args, folder, timeout, threads=1):
    """Run `python -m checker.harness HARNESS_ARGS` in `folder` for at most `timeout` seconds;
    return its Outcome. The harness writes `folder`/result.json."""
    result_path = folder / "result.json"
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
                # one BLAS thread: the numbers of the reference's runs, and a fair share of a
                # machine running several checks
                "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                "OPENBLAS_NUM_THREADS": str(threads)})
    started = time.perf_counter()
    with open(folder / "stdout.txt", "wb") as out, open(folder / "stderr.txt", "wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "checker.harness", *harness_args],
                                   cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=err, start_new_session=True)
        timed_out = False
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            # the whole group: a student's own subprocesses or DataLoader workers go too
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
    seconds = time.perf_counter() - started
    try:
        result = json.loads(result_path.read_text())
    except (OSError, ValueError):
        result = {}
    tail = (_tail(folder / "stdout.txt") + _tail(folder / "stderr.txt")).strip()
    return Outcome(result, timed_out, process.returncode, seconds, tail)


def crash_reason(outcome, timeout):
    """One line for a harness that did not finish: a timeout (and where), or a crash."""
    phase = outcome.result.get("phase", "start")
    if outcome.timed_out:
        where = {"start": "while starting", "import": "while importing the file"}.get(phase)
        if where is None:
            current = outcome.result.get("current")
            where = f"in {current}" if current else "while running"
        return f"timed out after {timeout:g} s {where}"
    if outcome.returncode < 0:
        name = signal.Signals(-outcome.returncode).name
        why = " (file size limit)" if name == "SIGXFSZ" else (
            " (out of memory?)" if name == "SIGKILL" else "")
        return f"the process was killed by {name}{why}"
    last = outcome.output_tail.strip().splitlines()[-1:] or ["no output"]
    return f"the process ended early (exit code {outcome.returncode}): {last[0][:150]}"
