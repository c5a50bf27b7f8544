"""The report's cache: a folder per run under runs/, holding the run's files (its record, its
figures, its log) and a key made from the run's flags, seed, the code it runs and the data. A
run whose folder holds the current key and a whole record is not run again.

A run folder may also hold files of the user's; the report never deletes them, and deletes
only its own: KEY_FILE, LOG_FILE and the script's outputs, named `q1-MODEL`, `q1-MODEL-...` or
`q1-MODEL+N...` (and q2-...; .json, .pdf, .png), with their temporary files.
"""
import ast
import hashlib
import json
import os
import re
import sys
from pathlib import Path

from reporting.plan import SCRIPTS
from runkit import epoch_log, files, records

ROOT = Path(__file__).resolve().parent.parent
KEY_FILE = "cache-key"
LOG_FILE = "log.txt"
OUTPUT_SUFFIXES = (".json", ".pdf", ".png")
# runkit.files' temporary files: .NAME.part-HOST-PID-RANDOM[.suffix]
_TEMP = re.compile(r"\.(?P<name>.+)\.part-[A-Za-z0-9]+-\d+-[a-z0-9_]+(\.[^.]*)?")


class InTheWay(Exception):
    """Something the report did not write stands where a run's file goes; the message says
    what and where."""


def file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def local_imports(path, root=ROOT):
    """The Python files under `root` that `path` imports, directly or not: root/NAME.py for
    `import NAME`, every file of the package root/NAME/ for `from NAME import ...` or
    `import NAME.sub`."""
    found, todo = set(), [Path(path)]
    while todo:
        try:
            tree = ast.parse(todo.pop().read_text())
        except (SyntaxError, ValueError):  # it will fail its runs; its digest is still in the key
            continue
        names = {alias.name.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module.split(".")[0] for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module and not node.level}
        for name in names:
            module, package = Path(root) / f"{name}.py", Path(root) / name
            paths = ([module] if module.is_file() else
                     sorted(package.rglob("*.py")) if (package / "__init__.py").is_file() else [])
            for file in paths:
                if file not in found:
                    found.add(file)
                    todo.append(file)
    return sorted(found - {Path(path)})


def code_digests(script, root=ROOT):
    """{path relative to root: sha256} of `script` and of every local file it imports."""
    paths = [Path(root) / script, *local_imports(Path(root) / script, root)]
    return {path.relative_to(root).as_posix(): file_digest(path) for path in paths}


# ----------------------------------------------------------------------------- records

def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _curve(value, length):
    return (isinstance(value, list) and len(value) == length
            and all(v is None or _number(v) for v in value))


def record_problem(record, run):
    """What makes `record` unfit for the report as `run`'s record (a record of another run, of
    an older format, or damaged), or None."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not a record"
    if record.get("record_version") != epoch_log.RECORD_VERSION:
        return (f"a record of format {record.get('record_version', 1)!r}, not "
                f"{epoch_log.RECORD_VERSION}")
    for key in ("model", "config", *epoch_log.RECORD_KEYS):
        if key not in record:
            return f"no '{key}'"
    if record["model"] != run.model:
        return f"a record of {record['model']!r}, not {run.model!r}"
    if not isinstance(record["config"], dict) or record["config"].get("seed") != run.seed:
        return f"not a record of seed {run.seed}"
    epochs = record["epochs"]
    if not (isinstance(epochs, list) and epochs and all(_number(e) for e in epochs)):
        return "'epochs' is not a list of epochs"
    if not _curve(record["valid_acc"], len(epochs)):
        return f"'valid_acc' is not {len(epochs)} numbers"
    for key in (*epoch_log.CURVES, "epoch_seconds"):
        if record[key] is not None and not _curve(record[key], len(epochs)):
            return f"'{key}' is not None or {len(epochs)} numbers"
    if not _number(record["test_acc"]) or not _number(record["train_seconds"]):
        return "'test_acc' or 'train_seconds' is not a number"
    if record["final_train_acc"] is not None and not _number(record["final_train_acc"]):
        return "'final_train_acc' is not a number"
    if not isinstance(record["diverged"], bool):
        return "'diverged' is not true or false"
    return None


# ----------------------------------------------------------------------------- the cache

class Cache:
    """The run folders under `runs_dir`: where each run goes, its key, the files the report
    wrote there, and the record of a finished run.

    common_args: the flags every run gets (the data's path, an -epochs override); data_digest:
    the data file's digest; force: every lookup misses; warn: called with a one-line warning.
    """

    def __init__(self, runs_dir, common_args, data_digest, force=False, root=ROOT,
                 scripts=SCRIPTS, warn=None):
        self.runs_dir = Path(runs_dir)
        self.common_args = list(common_args)
        self.data_digest = data_digest
        self.force = force
        self.code = {script: code_digests(script, root) for script in scripts}
        self.warn = warn or (lambda text: print(text, file=sys.stderr, flush=True))

    def folder(self, run):
        return self.runs_dir / run.label

    def key(self, run):
        payload = {"script": run.script, "args": list(run.args), "common": self.common_args,
                   "data": self.data_digest, "code": self.code[run.script],
                   "record_version": epoch_log.RECORD_VERSION}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def lookup(self, run):
        """The run's record if an earlier call finished it with the same key, else None.

        A finished run whose record does not read back whole (truncated, garbled, a key
        missing or of the wrong kind) is a miss too, with a warning: it runs again."""
        if self.force:
            return None
        try:
            if (self.folder(run) / KEY_FILE).read_text().strip() != self.key(run):
                return None
        except (OSError, UnicodeDecodeError):  # no key (an unfinished run), or a garbled one
            return None
        record, problem = self.load_record(run)
        if problem:
            self.warn(f"warning: {problem}; running {run.label} again")
        return record

    def is_ours(self, run, name):
        """Whether the file `name` of `run`'s folder is one the report (or its run) writes."""
        temp = _TEMP.fullmatch(name)
        name = temp["name"] if temp else name
        if name in (KEY_FILE, LOG_FILE):
            return True
        stem, suffix = os.path.splitext(name)
        prefix = f"{run.tag}-{run.model}"
        # the script's name for the run: the prefix, its flags after "-", maybe "+2" after
        return suffix in OUTPUT_SUFFIXES and (stem == prefix or stem[len(prefix):][:1] in "-+"
                                              and stem.startswith(prefix))

    def clear(self, run):
        """Make the run's folder ready for a new run: delete the report's files there, and
        nothing else. Raises InTheWay, having deleted nothing, when something that is not a
        plain file stands where one of them goes. Returns the folder."""
        folder = self.folder(run)
        if folder.exists() and not folder.is_dir():
            raise InTheWay(f"{folder} is a file, not the run's folder: move it out of the way")
        ours, blocking = [], []
        if folder.is_dir():
            for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                if self.is_ours(run, entry.name):
                    if entry.is_file(follow_symlinks=False) or entry.is_symlink():
                        ours.append(Path(entry.path))
                    else:
                        blocking.append(entry.name + "/")
        if blocking:
            raise InTheWay(f"{folder}: {', '.join(blocking)} stand(s) where the run writes its "
                           f"files and the report did not write them: move them out of the way")
        for path in ours:
            path.unlink(missing_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def record_paths(self, run):
        folder = self.folder(run)
        return sorted(path for path in folder.glob("*.json")
                      if self.is_ours(run, path.name) and not _TEMP.fullmatch(path.name))

    def load_record(self, run):
        """(record, None) if the run's folder holds one whole record of `run`, else (None,
        what is wrong)."""
        paths = self.record_paths(run)
        if len(paths) != 1:
            return None, f"{self.folder(run)}: {len(paths)} records ({run.tag}-*.json), not 1"
        try:
            record = records.read_record(paths[0])
        except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError included
            reason = " ".join(str(err).split())
            return None, f"{paths[0]}: unreadable ({type(err).__name__}: {reason})"
        problem = record_problem(record, run)
        return (None, f"{paths[0]}: {problem}") if problem else (record, None)

    def complete(self, run):
        """After the run ended well: (its record, None) with the key written, or (None, what is
        wrong with its record)."""
        record, problem = self.load_record(run)
        if problem:
            return None, problem
        # the key goes last: a run interrupted before here is run again next time
        with files.atomic_path(self.folder(run) / KEY_FILE) as tmp:
            tmp.write_text(self.key(run) + "\n")
        return record, None
