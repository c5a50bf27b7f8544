"""Files written atomically: output folders checked before training, several files replaced
all or nothing, and the temporary files of killed runs recognised and removed."""
import atexit
import contextlib
import errno
import os
import re
import socket
import tempfile
from pathlib import Path

from runkit.errors import OutputError


def new_folders(folder):
    """`folder` and those of its parents that do not exist yet (what a mkdir -p would make),
    deepest first."""
    new = []
    for path in (Path(folder).absolute(), *Path(folder).absolute().parents):
        if path.exists() or path.is_symlink():
            break
        new.append(path)
    return new


def remove_empty(folders):
    """Remove those of `folders` that are empty, deepest first (a failure leaves no husk)."""
    for folder in sorted(set(folders), key=lambda path: len(path.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty, or already gone
            folder.rmdir()


# Temporary files are named .NAME.part-HOST-PID-XXXXXXXX[.suffix], so that a later run can tell
# those of a process that is gone (killed mid-write) from those of a run still writing.
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:16] or "host"
_TEMP = re.compile(r"\..+\.part-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[a-z0-9_]+(\.[^.]*)?")


def temp_prefix(name):
    """mkstemp's prefix for a temporary file standing in for `name` (see remove_stale_temps)."""
    return f".{name}.part-{_HOST}-{os.getpid()}-"


def _process_alive(pid):
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process, or a name that is not ours: keep the file
    return True


def remove_stale_temps(folder):
    """Remove the temporary files (see temp_prefix) in `folder` of processes of this host that
    no longer run; returns their paths. Those of live processes are kept."""
    removed = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = _TEMP.fullmatch(entry.name)
            if (match and match["host"] == _HOST and not _process_alive(int(match["pid"]))
                    and entry.is_file(follow_symlinks=False)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


_CREATED = []  # (pid, folder) of each folder writable_dir made, for remove_created_folders


def remove_created_folders():
    """Remove the folders that writable_dir made in this process and that are still empty
    (a run that failed before writing anything leaves no empty output folder). Also run at exit.
    """
    pid = os.getpid()  # a forked child leaves its parent's folders alone
    remove_empty([folder for owner, folder in _CREATED if owner == pid])
    _CREATED[:] = [(owner, folder) for owner, folder in _CREATED if owner != pid]


atexit.register(remove_created_folders)


def writable_dir(path):
    """Create the folder `path` if needed and check that a file can be written in it.

    Returns it as a Path; raises OutputError naming the folder otherwise (and then removes the
    folders it made). Scripts call this before they train, so that a bad -output_dir fails at
    once, not after the run. Also removes the temporary files of killed runs there; the folders
    it makes are removed at exit, or by remove_created_folders(), if still empty.
    """
    if isinstance(path, str) and not path:  # Path("") is the current folder: never meant
        raise OutputError("the output folder is '' (empty): name a folder, or '.' for the "
                          "current one")
    path = Path(path)
    made = new_folders(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=temp_prefix("write-check")):
            pass
    except OSError as err:
        remove_empty(made)
        if isinstance(err, (FileExistsError, NotADirectoryError)):
            raise OutputError(f"{path}: cannot be used as an output folder: a file of that "
                              f"name (or in its path) is in the way") from None
        raise OutputError(f"{path}: cannot write there ({err.strerror or err})") from None
    _CREATED.extend((os.getpid(), folder) for folder in made)
    remove_stale_temps(path)
    return path


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def staged_files():
    """Yield `stage(path)`, which returns a temporary path beside `path` to write instead.

    When the block succeeds, each staged file replaces its path, in the order staged; if it
    fails, none does, and the temporary files are removed: several files written all or
    nothing (a file of the same name is replaced whole, never left half-written).
    `stage.current` is the path last staged or being replaced, for error messages. Temporary
    files that a killed process left are removed by the next `writable_dir` of their folder.
    """
    staged = []

    def stage(path):
        path = stage.current = Path(path)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "a folder of that name is in the way", str(path))
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=path.suffix,
                                   dir=path.parent)
        os.close(fd)
        staged.append((Path(tmp), path))
        return Path(tmp)

    stage.current = None
    try:
        yield stage
        for tmp, path in staged:
            stage.current = path
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        for tmp, path in staged:
            stage.current = path
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with staged_files() as stage:
        yield stage(path)


def os_error_in(exc):
    """The OSError behind `exc`: itself or one of its causes or contexts; None if none.

    matplotlib's PDF writer, for one, reports a full disk as AttributeError ('Stream' object has
    no attribute 'pos'), raised while it handles the OSError.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None

