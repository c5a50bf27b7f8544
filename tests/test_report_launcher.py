"""The launcher: a script's main run in a forked child (its output in the log, its exit code,
Ctrl-C from `stop`), the data hook that hands a forked run the split loaded once, and no run
outliving the report, even when the report is killed."""
import importlib.util
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import utils
from reporting.launcher import FORK, Launcher, SharedSplits, takes_loader
from runkit import records

ROOT = Path(__file__).resolve().parent.parent
needs_fork = pytest.mark.skipif(not FORK, reason="runs are forked on Linux only")

SCRIPT = """
import sys, time
def main(argv, loader=None):
    what = argv[0]
    if what == "data":
        split = loader("DATA", bias=True) if loader else None
        print("rows", None if split is None else split["train"][0].shape)
    elif what == "fail":
        sys.exit("error: told to fail")
    elif what == "raise":
        raise ValueError("broken")
    elif what == "sleep":
        print("sleeping", flush=True)
        time.sleep(float(argv[1]))
    print("done")
"""


def scripts(folder, **texts):
    """A loader of the scripts `texts` ({name: source}) written in `folder`."""
    for name, text in texts.items():
        (folder / name).write_text(textwrap.dedent(text))

    def load(name):
        spec = importlib.util.spec_from_file_location(name.replace(".", "_"), folder / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


def launch(launcher, tmp_path, *argv, script="s.py"):
    log = tmp_path / f"log-{argv[0]}.txt"
    with open(log, "w") as out:
        code = launcher.launch(script, list(argv), out)
    return code, log.read_text()


@needs_fork
@pytest.mark.parametrize("argv, code, text", [
    (["ok"], 0, "done\n"), (["fail"], 1, "error: told to fail\n"),
    (["raise"], 1, "ValueError: broken\n")], ids=["ok", "exit", "exception"])
def test_a_forked_run_logs_its_output_and_returns_its_exit_code(tmp_path, argv, code, text):
    launcher = Launcher(tmp_path, load_script=scripts(tmp_path, **{"s.py": SCRIPT}))
    got, log = launch(launcher, tmp_path, *argv)
    assert got == code and log.endswith(text)


@needs_fork
def test_a_forked_run_reads_the_split_loaded_once_through_its_main_s_loader(tmp_path):
    from conftest import make_tiny_dataset
    data = make_tiny_dataset(tmp_path / "tiny.npz", n_train=30)
    shared = SharedSplits(data)
    source = SCRIPT.replace('"DATA"', repr(str(data)))
    launcher = Launcher(tmp_path, loader=shared, load_script=scripts(tmp_path, **{"s.py": source}))
    data.unlink()  # the run cannot read the file: only the split loaded here
    assert launch(launcher, tmp_path, "data") == (0, "rows (30, 17)\ndone\n")
    plain = Launcher(tmp_path, load_script=scripts(tmp_path, **{"s.py": source}))
    assert launch(plain, tmp_path, "data") == (0, "rows None\ndone\n")  # no loader given


def test_shared_splits_stand_in_for_their_file_only(tmp_path):
    from conftest import make_tiny_dataset
    a = make_tiny_dataset(tmp_path / "a.npz", seed=0)
    b = make_tiny_dataset(tmp_path / "b.npz", seed=1)
    shared = SharedSplits(a)
    for bias in (False, True):
        for path in (a, os.path.relpath(a)):
            got, want = shared(path, bias=bias), utils.load_dataset(a, bias=bias)
            assert all(np.array_equal(got[s][0], want[s][0]) for s in want)
        other = shared(b, bias=bias)
        assert np.array_equal(other["train"][0], utils.load_dataset(b, bias=bias)["train"][0])
    got = shared(a)
    got["train"] = None  # a run's own dict
    assert shared(a)["train"] is not None


def test_the_data_hook_is_a_loader_parameter_of_main():
    assert takes_loader(lambda argv=None, loader=None: 0)
    assert not takes_loader(lambda argv=None: 0)


@needs_fork
def test_the_real_scripts_take_the_split_through_the_hook(tmp_path):
    """Where a script's main has the hook, a preloaded split stands in for its data file."""
    from conftest import make_tiny_dataset
    q1 = utils.load_script("hw1-q1.py")
    if not takes_loader(q1.main):
        pytest.skip("hw1-q1.py's main takes no loader yet: its runs load their own split")
    a = make_tiny_dataset(tmp_path / "a.npz", seed=0)
    b = make_tiny_dataset(tmp_path / "b.npz", seed=1)
    swapped = SharedSplits(b)
    swapped.path = str(a.resolve())  # b's split, given for a's path

    def weight_norm(loader, name):
        launcher = Launcher(loader=loader)
        out = tmp_path / name
        code, log = launch(launcher, tmp_path, "perceptron", "-data_path", str(a), "-epochs",
                           "1", "-output_dir", str(out), script="hw1-q1.py")
        assert code == 0, log
        return records.read_record(next(out.glob("*.json")))["weight_norm"]
    assert weight_norm(swapped, "swapped") != weight_norm(None, "plain")


@needs_fork
def test_stop_interrupts_the_running_runs_and_starts_no_more(tmp_path):
    launcher = Launcher(tmp_path, load_script=scripts(tmp_path, **{"s.py": SCRIPT}))
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        zip(("code", "log"), launch(launcher, tmp_path, "sleep", "60"))))
    thread.start()
    log = tmp_path / "log-sleep.txt"
    for _ in range(600):  # until the run is under way
        if log.exists() and "sleeping" in log.read_text():
            break
        time.sleep(0.05)
    launcher.stop()
    thread.join(timeout=30)
    assert result["code"] == 130
    assert result["log"].endswith("interrupted (the report was stopped)\n")
    from reporting.launcher import NotStarted
    with pytest.raises(NotStarted):
        launch(launcher, tmp_path, "ok")


KILLED_PARENT = """
import sys, time
sys.path[:0] = [{root!r}, {tests!r}]
from reporting.launcher import Launcher
from test_report_launcher import scripts
from pathlib import Path
folder = Path({folder!r})
launcher = Launcher(folder, fork={fork}, load_script=scripts(folder))
with open(folder / "log.txt", "w") as out:
    launcher.launch("s.py", ["sleep", "120"], out)
"""


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("fork", [True, False], ids=["forked", "spawned"])
def test_no_run_outlives_a_killed_report(tmp_path, fork):
    scripts(tmp_path, **{"s.py": SCRIPT + "\nif __name__ == '__main__':\n    main(sys.argv[1:])\n"})
    source = KILLED_PARENT.format(root=str(ROOT), tests=str(ROOT / "tests"),
                                  folder=str(tmp_path), fork=fork)
    parent = subprocess.Popen([sys.executable, "-c", source])
    try:
        log = tmp_path / "log.txt"
        for _ in range(1200):
            if log.exists() and "sleeping" in log.read_text():
                break
            time.sleep(0.05)
        assert "sleeping" in log.read_text()
        children = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/stat")
                    if _ppid(p) == parent.pid]
        assert children
        parent.kill()
        parent.wait()
        for _ in range(200):
            if not any(map(_alive, children)):
                break
            time.sleep(0.05)
        assert not any(map(_alive, children))
    finally:
        if parent.poll() is None:
            parent.kill()


def _ppid(stat):
    try:
        return int(stat.read_text().split(")")[-1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


@needs_fork
def test_a_script_that_does_not_import_fails_its_runs_not_the_report(tmp_path, tiny_data):
    from reporting.cache import Cache
    from reporting.plan import q2
    from reporting.runner import Runner

    def broken(name):
        raise AttributeError(f"{name}: module 'utils' has no attribute 'checked'")
    launcher = Launcher(load_script=broken)
    launcher.warm_up(["hw1-q2.py"])  # what fails here is left to the runs
    runner = Runner(Cache(tmp_path / "runs", ["-data_path", str(tiny_data)], "d"), launcher)
    for run in (q2("mlp"), q2("mlp", layers=2)):
        result = runner.execute(run)
        assert result.record is None
        assert "hw1-q2.py: module 'utils' has no attribute 'checked'" in result.log.read_text()
        assert runner.cached(run) is None
