"""Shared helpers for the homework scripts: seeding, data loading, flags, plots and run records.

Shapes: N examples, D features (784 pixels, +1 with the bias column).
"""
import argparse
import atexit
import contextlib
import errno
import json
import math
import os
import random
import re
import socket
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

DEFAULT_DATA_PATH = "Kuzushiji-MNIST.npz"
BUILD_COMMAND = "python download_kuzushiji_mnist.py"

COURSE_KEYS = ("Xtrain", "ytrain", "Xdev", "ydev", "Xtest", "ytest")
MEDMNIST_KEYS = ("train_images", "train_labels", "val_images", "val_labels",
                 "test_images", "test_labels")


class RunError(Exception):
    """A run cannot go on; the message, one line, says why and what to do."""


class DataError(RunError):
    """A dataset file is missing, unreadable or malformed; the message says which and what to do."""


class OutputError(RunError):
    """An output folder or file cannot be written; the message says which and why."""


class SizeError(RunError):
    """A model too large for this machine's memory."""


def configure_seed(seed):
    """Seed Python's `random`, numpy's global generator and, if the caller imported it, torch
    (CPU and every GPU), with cuDNN made deterministic, as the course's configure_seed does.

    torch is seeded only when it is already in `sys.modules`: hw1-q2.py imports it before calling
    this, while hw1-q1.py (numpy only) never pays torch's start-up time.
    """
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
        torch.cuda.manual_seed_all(seed)  # the course's cuda.manual_seed, for every GPU
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False  # its autotuner may pick kernels run to run


# ----------------------------------------------------------------------------- data

def _few(values, limit=5):
    """'1, 2, 3' or '1, 2, 3, 4, 5, ... (12 in all)': a few of `values` for a message."""
    values = [v.item() if hasattr(v, "item") else v for v in values]
    text = ", ".join(str(v) for v in values[:limit])
    return text + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _scale(X, path, key, rebuild):
    """Flatten images to (N, D) float64; uint8 pixels are scaled by 1/256 as the course does."""
    X = np.asarray(X)
    if X.ndim < 2:
        raise DataError(f"{path}: '{key}' has shape {X.shape}; expected (N, ...) images")
    X = X.reshape(X.shape[0], math.prod(X.shape[1:]))  # not -1, which fails for 0 rows
    if X.dtype == np.uint8:
        return X / 256.0  # float64 in [0, 255/256]
    if not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise DataError(f"{path}: '{key}' has dtype {X.dtype}; expected real numbers")
    X = X.astype(np.float64)
    bad = X.size - np.count_nonzero(np.isfinite(X))
    if bad:  # a data error, not something training could survive or a learning rate could fix
        raise DataError(f"{path}: '{key}' has {bad} non-finite values (NaN or inf); the data "
                        f"is damaged: rebuild it with: {rebuild}")
    return X


def _labels(y, path, key):
    """The labels as stored, checked to be (N,) integers ((N, 1) is flattened)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:  # MedMNIST stores labels as (N, 1)
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{path}: '{key}' has shape {y.shape}; expected class labels of "
                        f"shape (N,)")
    if not np.issubdtype(y.dtype, np.integer):
        # whole-number floats are refused too: a float label column is usually not labels
        shown = f" (values {_few(np.unique(y))})" if y.dtype.kind in "fc" else ""
        raise DataError(f"{path}: '{key}' has dtype {y.dtype}{shown}; class labels must be "
                        f"stored as integers 0, 1, ..., C-1")
    return y


_WARNED = set()  # (path, size, mtime) of the files whose missing classes were reported


def _check_classes(path, ykeys, labels):
    """Refuse negative labels and class counts beyond the examples; warn (once per file) when
    a split lacks a class that another has, or no split has some class below the largest."""
    for key, y in zip(ykeys, labels):
        negative = np.unique(y[y < 0]) if y.dtype.kind == "i" else []
        if len(negative):
            raise DataError(f"{path}: '{key}' has negative labels ({_few(negative)}); class "
                            f"labels must be 0, 1, ..., C-1")
    top_key, top = max(zip(ykeys, (int(y.max()) for y in labels)), key=lambda item: item[1])
    n_classes, total = top + 1, sum(len(y) for y in labels)
    if n_classes > total:  # mostly classes no example has; the model would not fit in memory
        raise DataError(f"{path}: '{top_key}' has label {top}, but the splits hold only "
                        f"{total} examples; class labels must be 0, 1, ..., C-1")
    if n_classes < 2:
        raise DataError(f"{path}: every label of {', '.join(map(repr, ykeys))} is 0; a "
                        f"classifier needs at least two classes")
    present = [np.bincount(y.astype(np.int64), minlength=n_classes) > 0 for y in labels]
    anywhere = np.logical_or.reduce(present)

    def classes(mask):
        return f"class{'es' if np.count_nonzero(mask) > 1 else ''} {_few(np.flatnonzero(mask))}"

    problems = [f"'{key}' lacks {classes(anywhere & ~has)}"
                for key, has in zip(ykeys, present) if (anywhere & ~has).any()]
    if not anywhere.all():
        problems.append(f"no split has {classes(~anywhere)}")
    stat = path.stat()
    seen = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if problems and seen not in _WARNED:
        _WARNED.add(seen)
        print(f"warning: {path}: {'; '.join(problems)}; the model still gets all {n_classes} "
              f"outputs (labels 0..{top})", file=sys.stderr)


def class_count(data):
    """The number of classes C of `load_dataset`'s splits: the largest label + 1 across all
    three (load_dataset has checked the labels are 0..C-1; a split may lack some)."""
    return 1 + max((int(y.max()) for _, y in data.values() if len(y)), default=-1)


def load_dataset(path=DEFAULT_DATA_PATH, bias=False):
    """Load a split file as {"train": (X, y), "dev": (X, y), "test": (X, y)}.

    X is float64 (N, D), with a trailing column of ones when `bias`; y is int64 (N,), with the
    labels of all splits in 0..C-1 (see `class_count`). Reads the course layout (Xtrain, ytrain,
    Xdev, ...) and the MedMNIST layout (train_images, train_labels, val_images, ...); other keys
    are ignored. Raises DataError with a one-line message; prints one `warning:` line to stderr
    when a split lacks a class that another split has.
    """
    path = Path(path)
    build = BUILD_COMMAND if path.name == DEFAULT_DATA_PATH else f"{BUILD_COMMAND} --output {path}"
    rebuild = f"{build} --force"
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give the dataset file (.npz) itself")
    if not path.is_file():
        raise DataError(f"{path}: no such file. Create it with: {build}")
    if not zipfile.is_zipfile(path):  # np.load would try it as a pickle, and say so
        raise DataError(f"{path}: not a .npz dataset (no zip archive in it: truncated, or a "
                        f"file of another kind). Rebuild it with: {rebuild}")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            if set(COURSE_KEYS) <= keys:
                names = {"train": ("Xtrain", "ytrain"), "dev": ("Xdev", "ydev"),
                         "test": ("Xtest", "ytest")}
            elif set(MEDMNIST_KEYS) <= keys:
                names = {"train": ("train_images", "train_labels"),
                         "dev": ("val_images", "val_labels"),
                         "test": ("test_images", "test_labels")}
            else:
                missing = sorted(set(COURSE_KEYS) - keys)
                raise DataError(f"{path}: missing keys {', '.join(missing)} (found: "
                                f"{', '.join(sorted(keys)) or 'none'}); expected "
                                f"{', '.join(COURSE_KEYS)} or the MedMNIST layout")
            splits, labels = {}, []
            for split, (xkey, ykey) in names.items():
                X, y = data[xkey], data[ykey]
                for key, array in ((xkey, X), (ykey, y)):
                    if array.ndim and not len(array):  # not "truncated": it was saved empty
                        raise DataError(f"{path}: the {split} split is empty ('{key}' has 0 "
                                        f"rows); rebuild it with: {rebuild}")
                X = _scale(X, path, xkey, rebuild)
                y = _labels(y, path, ykey)
                if len(X) != len(y):
                    raise DataError(f"{path}: '{xkey}' has {len(X)} examples but '{ykey}' has "
                                    f"{len(y)} labels")
                if bias:
                    X = with_bias_column(X)
                splits[split] = (X, y)
                labels.append(y)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise DataError(f"{path}: cannot be read as a .npz dataset ({type(err).__name__}: {err}). "
                        f"The file may be truncated; rebuild it with: {rebuild}") from None
    widths = {split: X.shape[1] for split, (X, _) in splits.items()}
    if len(set(widths.values())) != 1:
        raise DataError(f"{path}: the splits have different feature counts {widths}")
    _check_classes(path, [ykey for _, ykey in names.values()], labels)
    return {split: (X, y.astype(np.int64)) for split, (X, y) in splits.items()}


def with_bias_column(X):
    """X (N, D) -> (N, D + 1): a trailing column of ones, the bias feature."""
    return np.hstack((X, np.ones((X.shape[0], 1))))


def find_dataset(path=None):
    """The dataset a benchmark should use: `path` if given, else $KMNIST_NPZ, else the default
    file in the current folder, then beside the scripts, then in build/. None if none exists."""
    here = Path(__file__).resolve().parent
    candidates = [path] if path else [os.environ.get("KMNIST_NPZ"), DEFAULT_DATA_PATH,
                                      here / DEFAULT_DATA_PATH, here / "build" / DEFAULT_DATA_PATH]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def load_script(filename):
    """Import a script beside this file, such as hw1-q1.py (not importable by name), as a module."""
    import importlib.util
    name = filename.replace("-", "_").removesuffix(".py")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / filename)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- the course's utils
# The names of the course's utils.py (2021-22 to 2024-25), so that a hw1-q1.py / hw1-q2.py written
# on the course's skeletons runs unchanged beside this file.

def load_classification_data(path=DEFAULT_DATA_PATH, bias=False):
    """The course's 2022-23 loader: `load_dataset` with its signature."""
    return load_dataset(path, bias=bias)


OCT_TEST_PER_CLASS = (182, 55, 42, 250)  # the 2023-24 course's test set: first n of classes 0-3


def load_oct_data(bias=False, eq_test_dist=False, root="."):
    """The course's 2023-24 loader: <root>/octmnist.npz (MedMNIST layout), as `load_dataset`.

    Unless `eq_test_dist`, the test set is cut, as the course's is, to the first 182, 55, 42 and
    250 examples of classes 0, 1, 2 and 3, in that class order.
    """
    path = Path(root) / "octmnist.npz"
    if not path.is_file():  # load_dataset's hint would point at the Kuzushiji-MNIST script
        raise DataError(f"{path}: no such file. Download octmnist.npz from MedMNIST "
                        f"(https://medmnist.com) into {root}")
    data = load_dataset(path, bias=bias)
    if not eq_test_dist:
        X, y = data["test"]
        keep = np.concatenate([np.flatnonzero(y == label)[:n]
                               for label, n in enumerate(OCT_TEST_PER_CLASS)])
        data["test"] = (X[keep], y[keep])
    return data


def load_regression_data(bias=False, path="ames.npz"):
    """The course's 2021-22 loader: ames.npz as {"train": (X, y), "test": (X, y)}.

    X (N, D) as stored, with a trailing column of ones when `bias`; y flattened to (N,).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; the 2021-22 course's ames.npz is needed here")
    keys = ("Xtrain", "ytrain", "Xtest", "ytest")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in keys if key not in data.files]
            if missing:
                raise DataError(f"{path}: missing keys {', '.join(missing)}; expected "
                                f"{', '.join(keys)}")
            splits = {}
            for split in ("train", "test"):
                X, y = data[f"X{split}"], data[f"y{split}"].reshape(-1)
                if X.ndim != 2 or len(X) != len(y):
                    raise DataError(f"{path}: 'X{split}' has shape {X.shape} for {len(y)} "
                                    f"targets; expected (N, D) with N = {len(y)}")
                if bias:
                    X = with_bias_column(X)
                splits[split] = (X, y)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: cannot be read as a .npz file ({type(err).__name__}: "
                        f"{err})") from None
    return splits


def fetch_classification_data(dataset="Kuzushiji-MNIST", random_state=42):
    """The course's 2022-23 builder: write the split as <dataset>.npz in the current folder.

    Runs download_kuzushiji_mnist.py (download into kmnist-raw/, md5 check, build); as that
    script, it prints `error: ...` and exits 1 when it cannot. Returns the file's path.
    """
    if dataset != "Kuzushiji-MNIST":
        raise ValueError(f"fetch_classification_data: only 'Kuzushiji-MNIST' can be built here, "
                         f"not {dataset!r}")
    if random_state != 42:  # the script builds the course's split only
        raise ValueError(f"fetch_classification_data: only the course's split "
                         f"(random_state=42) can be built here, not random_state={random_state!r}")
    script_name = "download_kuzushiji_mnist.py"
    if not (Path(__file__).resolve().parent / script_name).is_file():
        raise DataError(f"{script_name} is not beside {Path(__file__).name}; copy it there to "
                        f"build the dataset")
    script = load_script(script_name)
    output = Path(f"{dataset}.npz")
    # the checksums read here, not bound as main's default, so that tests can swap in their own
    script.main(["--output", str(output)], checksums=script.FILES)
    return output


def _classification_dataset_class():
    """Define ClassificationDataset; here, not at import, so numpy-only scripts never load torch."""
    import torch

    class ClassificationDataset(torch.utils.data.Dataset):
        """The course's 2022-23 dataset: the training set as (X[i], y[i]) pairs (float32 (D,),
        int64), dev and test as whole tensors dev_X (N, D), dev_y (N,), test_X, test_y."""

        def __init__(self, data):
            self.X = torch.tensor(data["train"][0], dtype=torch.float32)
            self.y = torch.tensor(data["train"][1], dtype=torch.long)
            self.dev_X = torch.tensor(data["dev"][0], dtype=torch.float32)
            self.dev_y = torch.tensor(data["dev"][1], dtype=torch.long)
            self.test_X = torch.tensor(data["test"][0], dtype=torch.float32)
            self.test_y = torch.tensor(data["test"][1], dtype=torch.long)

        def __len__(self):
            return len(self.X)

        def __getitem__(self, idx):
            return self.X[idx], self.y[idx]

    # pickled by name (utils.ClassificationDataset), e.g. for DataLoader workers
    ClassificationDataset.__module__ = __name__
    ClassificationDataset.__qualname__ = "ClassificationDataset"
    return ClassificationDataset


_LAZY = {"ClassificationDataset": _classification_dataset_class}


def __getattr__(name):
    """Build a torch-dependent name (ClassificationDataset) on its first use."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # setdefault: two threads racing here still share one class (isinstance agrees)
    return globals().setdefault(name, _LAZY[name]())


def fail(message, code=1):
    """Print `error: message` to stderr and exit non-zero, without a traceback."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C (SIGINT)


def run_command(main):
    """A script's entry point: exit with main()'s return value; Ctrl-C ends the script with
    `interrupted` and exit code 130 instead of a traceback (the scripts' clean-up, such as
    removing temporary files and stopping helper processes, has run on the way out)."""
    try:
        code = main()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code if isinstance(code, int) else 0)


# ----------------------------------------------------------------------------- flags

def add_flag(parser, name, *other_names, **kwargs):
    """Add the course's single-dash flag `-name` with a double-dash alias `--name-with-dashes`,
    and the same for each of `other_names` (other spellings of the flag)."""
    aliases = []
    for spelling in (name, *other_names):
        aliases += [f"-{spelling}", f"--{spelling.replace('_', '-')}"]
    return parser.add_argument(*aliases, dest=name, **kwargs)


def checked(convert, ok, requirement):
    """An argparse type: convert(text), which must satisfy ok(value) ("must be <requirement>")."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {convert.__name__}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value
    parse.__name__ = convert.__name__  # argparse names the type in its messages
    return parse


positive_int = checked(int, lambda v: v >= 1, ">= 1")
positive_float = checked(float, lambda v: math.isfinite(v) and v > 0, "> 0")
nonnegative_float = checked(float, lambda v: math.isfinite(v) and v >= 0, ">= 0")
probability = checked(float, lambda v: 0 <= v < 1, "in [0, 1)")
seed_value = checked(int, lambda v: 0 <= v < 2 ** 32, "in [0, 2**32)")  # numpy's seed range
# torch keeps an optimizer's hyperparameters in the parameters' type (float32) in its update: a
# larger value cannot be converted, and fails in the first step
FLOAT32_MAX = 3.4e38
float32_positive = checked(float, lambda v: 0 < v <= FLOAT32_MAX, "> 0 and at most 3.4e38")
float32_nonnegative = checked(float, lambda v: 0 <= v <= FLOAT32_MAX, ">= 0 and at most 3.4e38")


def torch_device(text):
    """argparse type for -device: auto, or a device this torch build can train on (a small
    tensor is put there and read back, as training does)."""
    if text == "auto":
        return text
    import torch
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text} requested but CUDA is not available")
    if device.type == "meta":
        raise argparse.ArgumentTypeError(f"{text} holds no data (a meta device cannot train)")
    try:
        torch.ones(1, device=device).sum().item()
    except Exception as err:  # torch raises RuntimeError, AssertionError, ... by backend
        reason = (str(err).strip() or type(err).__name__).splitlines()[0].split(". ")[0]
        raise argparse.ArgumentTypeError(
            f"{text}: not usable with this torch build ({reason[:120]})") from None
    return text


def resolve_device(name):
    """auto -> cuda when available, else cpu; any other name as it is."""
    if name != "auto":
        return name
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


# ----------------------------------------------------------------------------- outputs

def run_name(model, config, defaults, ignore=("output_dir",)):
    """A file-name stem from the model and every flag that differs from its default.

    e.g. `mlp`, `mlp-hidden_size=100-learning_rate=0.01`. Paths contribute their stem, and a
    path whose file name is the default's (the default dataset in another folder) none.
    """
    parts = [model]
    for key in sorted(config):
        value, default = config[key], defaults.get(key)
        if key in ignore or key == "model" or value == default:
            continue
        if key.endswith("_path") or key.endswith("_dir"):
            if default is not None and Path(str(value)).name == Path(str(default)).name:
                continue
            value = Path(str(value)).stem
        parts.append(f"{key}={value}")
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", "-".join(parts))


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


def _jsonable(value):
    """numpy scalars and arrays to Python; non-finite floats to None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_record(path, record, stage=None):
    """Write a run record as JSON, atomically (never a half-written file), or into
    `stage(path)` (see `staged_files`)."""
    text = json.dumps(_jsonable(record), indent=2, allow_nan=False) + "\n"
    if stage is not None:
        stage(path).write_text(text)
    else:
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return Path(path)


def read_record(path):
    return json.loads(Path(path).read_text())


def plot_curves(stem, epochs, curves, ylabel, title=None, xlabel="Epoch", stage=None):
    """Plot one line per entry of `curves` ({label: values per epoch}) against `epochs`.

    Saves `stem`.pdf and `stem`.png (headless, atomically) and returns both paths.
    """
    return plot_panels(stem, epochs, [(ylabel, curves)], title=title, xlabel=xlabel, stage=stage)


def panels_figure(epochs, panels, title=None, xlabel="Epoch", colors=None):
    """A matplotlib Figure of side-by-side plots, one per (ylabel, {label: values per epoch})
    of `panels`. Values may be None (a diverged epoch) and curves may be shorter than `epochs`;
    `colors` ({label: colour}) keeps a label in one colour across panels that lack some labels.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = list(epochs)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (ylabel, curves) in zip(axes[0], panels):
        for label, values in curves.items():
            values = np.asarray([np.nan if v is None else v for v in values], dtype=float)
            ax.plot(epochs[:len(values)], values, marker="o", markersize=3, label=label,
                    color=(colors or {}).get(label))
        if epochs:
            # whole epochs only, even for one: a lone point otherwise spans a few hundredths,
            # and the integer locator needs min_n_ticks=1 to place a single tick
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_panels(stem, epochs, panels, title=None, xlabel="Epoch", stage=None):
    """`panels_figure`, saved by `save_figure`; returns both paths."""
    return save_figure(panels_figure(epochs, panels, title=title, xlabel=xlabel), stem, stage)


def save_figure(fig, stem, stage=None):
    """Save `fig` as `stem`.pdf and `stem`.png and close it; returns both paths. Both files or
    neither, into `stage(path)` if given (see `staged_files`), else staged here. A failed write
    raises its OSError (not what the writer turned it into)."""
    import matplotlib.pyplot as plt

    paths = [Path(f"{stem}{suffix}") for suffix in (".pdf", ".png")]
    try:
        with contextlib.ExitStack() as stack:
            if stage is None:
                paths[0].parent.mkdir(parents=True, exist_ok=True)
                stage = stack.enter_context(staged_files())
            for path in paths:
                try:
                    fig.savefig(stage(path), format=path.suffix[1:], dpi=120)
                except Exception as err:
                    cause = os_error_in(err)
                    if cause is None or cause is err:
                        raise
                    raise cause from None
    finally:
        plt.close(fig)
    return paths


def save_run(output_dir, name, record, figures):
    """Save a run: each figure as `name`-KEY.pdf/.png, then the record as `name`.json.

    figures: {KEY: (ylabel, {label: values per epoch})}, plotted against record["epochs"].
    All or nothing (`staged_files`): the files replace the run's old ones only once all are
    written, the record last, so its presence means the run's files are all there. Raises
    OutputError ("cannot write PATH: REASON", e.g. a full disk), and leaves no file of this run
    and the earlier run's files as they were, if they cannot be written.
    """
    output_dir = writable_dir(output_dir)
    paths = []
    stage = None
    try:
        with staged_files() as stage:
            for key, (ylabel, curves) in figures.items():
                paths += plot_curves(output_dir / f"{name}-{key}", record["epochs"], curves,
                                     ylabel, title=name, stage=stage)
            paths.append(write_record(output_dir / f"{name}.json", record, stage=stage))
    except Exception as err:
        cause = os_error_in(err)
        if cause is None:
            raise
        target = getattr(stage, "current", None) or output_dir
        raise OutputError(f"cannot write {target}: {cause.strerror or cause}") from None
    return paths


# ----------------------------------------------------------------------------- runs

def flag_divergence(epoch, loss, weights_finite, n_classes, already, advice=True,
                    bound_loss=True):
    """Whether the run counts as diverged after this epoch: a non-finite loss or weight, or
    (when `bound_loss`) a mean training loss above 2 log(C), twice the uniform guess's.
    Warns on stderr the first time (`already` False), with advice on the learning rate when
    `advice`; the run goes on."""
    if loss is not None and not math.isfinite(loss):
        problem = "non-finite training loss"
    elif not weights_finite:
        problem = "non-finite weights"
    elif bound_loss and loss is not None and loss > 2 * math.log(n_classes):
        problem = f"training loss {loss:.4g} > 2 log({n_classes}), worse than guessing"
    else:
        return False
    if not already:
        hint = "; try a smaller -learning_rate" if advice else ""
        print(f"warning: training diverged at epoch {epoch} ({problem}){hint}. The run "
              f"continues; its record is flagged.", file=sys.stderr)
    return True


def check_mlp_size(data, hidden_size, layers, itemsize):
    """Raise SizeError when an MLP with `layers` hidden layers of `hidden_size` units on `data`
    cannot fit in this machine's memory (where it is known): its weights, with a gradient and
    a working copy of each, and the hidden activations of an evaluation of the training set."""
    n_examples, n_features = data["train"][0].shape
    sizes = [n_features] + [hidden_size] * layers + [class_count(data)]
    n_weights = sum(a * b for a, b in zip(sizes, sizes[1:]))
    needed = itemsize * (3 * n_weights + 2 * n_examples * hidden_size)
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not on this system (Windows)
        return
    if needed > available:
        raise SizeError(f"-hidden_size {hidden_size} needs about {_readable_bytes(needed)} for "
                        f"its weights and activations; this machine has "
                        f"{_readable_bytes(available)} of memory")


def _readable_bytes(n):
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
