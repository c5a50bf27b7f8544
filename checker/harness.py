"""What runs inside the sandbox's subprocess: import the student's file, run its unit checks
question by question or the student's own main, and write what happened to a JSON file for
the checker.

    python -m checker.harness unit STUDENT_FILE RESULT_JSON SECONDS QUESTION...
    python -m checker.harness run STUDENT_FILE RESULT_JSON LABELS_NPZ -- ARGS...

Unit checks: each question within SECONDS (an alarm), the import too; the checker also kills
the whole process after a hard limit, for code the alarm cannot stop.

It runs with the sandbox folder as its working directory and first on sys.path (the student's
`import utils` finds the copy there) and this project's root after it (for `checker` and the
reference scripts). Nothing the student's code raises escapes: every outcome is one line in the
result file. The result file is rewritten after each step, so a run killed for its time limit
still says where it was.
"""
import importlib.util
import io
import json
import os
import resource
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT_CAP = 64 * 1024  # characters of a student's printing kept, per stream
FILE_SIZE_LIMIT = 256 * 1024 * 1024  # any one file the student's code writes (plots, logs)


class CappedWriter(io.TextIOBase):
    """A text stream that keeps the first OUTPUT_CAP characters and drops the rest, quickly:
    a model that prints every step must not slow its check down or fill the disk."""

    def __init__(self, stream):
        self.stream, self.written = stream, 0

    def write(self, text):
        if self.written < OUTPUT_CAP:
            self.stream.write(text[:OUTPUT_CAP - self.written])
            if self.written + len(text) >= OUTPUT_CAP:
                self.stream.write("\n[output cut here]\n")
            self.stream.flush()
        self.written += len(text)
        return len(text)

    def flush(self):
        self.stream.flush()

    def isatty(self):
        return False


class Result:
    """The result file, rewritten whole after each change."""

    def __init__(self, path):
        # absolute: the student's code may change the working directory
        self.path, self.data = Path(path).resolve(), {"phase": "start"}
        self.save()

    def update(self, **fields):
        self.data.update(fields)
        self.save()

    def save(self):
        temp = self.path.with_suffix(".tmp")
        temp.write_text(json.dumps(self.data))
        os.replace(temp, self.path)


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class TimeLimit(BaseException):
    """Raised by the alarm when a step overruns its time; a BaseException, so that a student's
    `except Exception` does not swallow it."""


def _alarm(signum, frame):
    raise TimeLimit()


def time_limit(seconds):
    """Raise TimeLimit in the main thread after `seconds` (0: cancel). A loop in C that never
    returns to Python is not stopped by it; the checker's hard limit on the process is."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def import_student(path, result, seconds=0):
    """The student's module, or None after writing why it cannot be imported."""
    from checker.probe import describe_exception
    result.update(phase="import")
    try:
        time_limit(seconds)
        module = load_module(path, "student_" + Path(path).stem.replace("-", "_"))
        time_limit(0)
    except SyntaxError as err:
        time_limit(0)
        result.update(phase="done", import_error=f"syntax error in {Path(path).name}, line "
                                                 f"{err.lineno}: {err.msg}")
        return None
    except TimeLimit:
        result.update(phase="done", import_error=f"importing {Path(path).name} takes more than "
                                                 f"{seconds:g} s (code at module level?)")
        return None
    except BaseException as err:  # SystemExit and KeyboardInterrupt too: one line, no crash
        time_limit(0)
        result.update(phase="done", import_error=f"importing {Path(path).name} raises "
                                                 f"{describe_exception(err, path)}")
        return None
    result.update(phase="imported")
    return module


def run_unit(student_path, questions, seconds, result):
    """Each question's unit checks in turn, each question within `seconds`."""
    from checker.probe import CheckFailed, describe_exception
    script = "hw1-q1.py" if questions[0].startswith("Q1") else "hw1-q2.py"
    checks = __import__(f"checker.unit_q{script[5]}", fromlist=["CHECKS"]).CHECKS
    # the reference first, before the student's code can change anything it relies on
    ref = load_module(ROOT / script, "reference_" + script[:-3].replace("-", "_"))
    student = import_student(student_path, result, seconds)
    if student is None:
        return
    done = {}
    for question in questions:
        outcomes = done[question] = {}
        result.update(phase="checks", question=question, questions=done)
        time_limit(seconds)
        try:
            for name, check in checks[question].items():
                result.update(current=name, questions=done)
                started = time.perf_counter()
                try:
                    outcomes[name] = {"status": "passed", "reason": check(student, ref)}
                except CheckFailed as err:
                    outcomes[name] = {"status": "failed", "reason": str(err)}
                except NotImplementedError as err:
                    where = describe_exception(err, student_path)
                    outcomes[name] = {"status": "not implemented",
                                      "reason": f"not implemented: raises {where}"}
                except (TimeLimit, SystemExit):
                    raise
                except BaseException as err:
                    outcomes[name] = {"status": "failed",
                                      "reason": f"raises {describe_exception(err, student_path)}"}
                outcomes[name]["seconds"] = round(time.perf_counter() - started, 3)
            time_limit(0)
        except TimeLimit:
            outcomes[name] = {"status": "failed", "reason": f"timed out after {seconds:g} s"}
            for other in checks[question]:
                outcomes.setdefault(other, {"status": "failed",
                                            "reason": f"not run: {name} timed out"})
        except SystemExit as err:
            time_limit(0)
            for other in checks[question]:
                outcomes.setdefault(other, {"status": "failed",
                                            "reason": f"calls exit({err.code!r}) in {name}"})
    result.update(phase="done", current=None, questions=done)


def _translate_argv(parser, argv):
    """The course's flags for this student's parser: the skeleton's -hidden_sizes where they
    kept that spelling, and flags their parser lacks dropped (listed in the result)."""
    known = set(parser._option_string_actions)
    out, dropped, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-") and not arg.lstrip("-")[:1].isdigit():
            value = argv[i + 1] if i + 1 < len(argv) else None
            name = arg
            if name not in known:
                for other in (name + "s", name.rstrip("s"), "-" + name, name.replace("_", "-")):
                    if other in known:
                        name = other
                        break
            if name not in known:
                dropped.append(arg)
                i += 2
                continue
            out += [name, value]
            i += 2
        else:
            out.append(arg)
            i += 1
    return out, dropped


def _no_windows():
    """matplotlib draws to files only, and plt.show() returns at once (the skeleton ends in it)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.show = lambda *args, **kwargs: None


def _translate_flags(result):
    """Make argparse read sys.argv through _translate_argv (a student's own flag spellings),
    noting in `result` the flags the student's parser has no place for."""
    import argparse
    original_parse = argparse.ArgumentParser.parse_known_args

    def parse_known_args(self, args=None, namespace=None):
        if args is None:
            args, dropped = _translate_argv(self, sys.argv[1:])
            result.update(dropped_flags=dropped)
        return original_parse(self, args, namespace)

    argparse.ArgumentParser.parse_known_args = parse_known_args


class EvaluateRecorder:
    """Wraps a student's evaluate functions to record each outermost call's accuracy under the
    split its labels are (dev or test), into `result["calls"]`."""

    def __init__(self, labels_path, result):
        import numpy as np
        with np.load(labels_path) as labels:
            self.gold = {"dev": labels["dev"], "test": labels["test"]}
        self.calls = {"dev": [], "test": []}
        self.result = result
        self.depth = 0  # an evaluate that calls another is recorded once

    def record(self, accuracy, y):
        import numpy as np
        y = np.asarray(y.detach().cpu() if hasattr(y, "detach") else y)
        for split, gold in self.gold.items():
            if y.shape == gold.shape and np.array_equal(y, gold):
                self.calls[split].append(float(accuracy))
                self.result.update(calls=self.calls)

    def wrap(self, fn):
        def evaluate(*args, **kwargs):
            self.depth += 1
            try:
                accuracy = fn(*args, **kwargs)
            finally:
                self.depth -= 1
            if self.depth == 0:
                y = kwargs.get("y", args[-1] if args else None)
                try:
                    self.record(accuracy.item() if hasattr(accuracy, "item") else accuracy, y)
                except (TypeError, ValueError):
                    pass
            return accuracy
        return evaluate

    def wrap_module(self, student, is_q2):
        """hw1-q2: the module's evaluate; hw1-q1: every class of the file that defines one."""
        if is_q2:
            if callable(getattr(student, "evaluate", None)):
                student.evaluate = self.wrap(student.evaluate)
            return
        for value in list(vars(student).values()):
            if isinstance(value, type) and value.__module__ == student.__name__ and \
                    "evaluate" in vars(value):
                value.evaluate = self.wrap(vars(value)["evaluate"])


def run_main(student_path, labels_path, argv, result):
    """Run the student's main() as `python hw1-qN.py ARGS`, recording each evaluate call: the
    split (by its labels) and the accuracy."""
    from checker.probe import describe_exception
    _no_windows()
    _translate_flags(result)
    recorder = EvaluateRecorder(labels_path, result)
    sys.argv = [Path(student_path).name] + argv
    student = import_student(student_path, result)
    if student is None:
        return
    recorder.wrap_module(student, is_q2="q2" in Path(student_path).name)
    main = getattr(student, "main", None)
    if not callable(main):
        result.update(phase="done", error=f"{Path(student_path).name} has no main()")
        return
    result.update(phase="running", calls=recorder.calls)
    try:
        main()
    except SystemExit as err:
        if err.code not in (None, 0):
            result.update(phase="done", error=f"main() exits with {err.code!r}")
            return
    except BaseException as err:
        result.update(phase="done", error=f"main() raises {describe_exception(err, student_path)}")
        return
    result.update(phase="done", calls=recorder.calls)


def main(argv):
    # output written below Python's sys.stdout (C code, a subprocess) is capped here instead
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    soft = FILE_SIZE_LIMIT if hard == resource.RLIM_INFINITY else min(hard, FILE_SIZE_LIMIT)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    result = Result(argv[2])
    sys.stdout = CappedWriter(sys.stdout)
    sys.stderr = CappedWriter(sys.stderr)
    sys.path.insert(0, os.getcwd())
    try:
        if argv[0] == "unit":
            run_unit(argv[1], argv[4:], float(argv[3]), result)
        else:
            run_main(argv[1], argv[3], argv[argv.index("--") + 1:], result)
    except BaseException as err:  # the harness's own failure: still one line
        from checker.probe import describe_exception
        result.update(phase="done", error=f"checker harness: {describe_exception(err)}")
    sys.stdout.flush()
    sys.stderr.flush()
    # the student's threads or atexit hooks must not keep the process alive or change its code
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
