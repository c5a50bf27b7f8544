"""The course's utils: seeding, the dataset loader, and the names of every edition's utils.py
(2021-22 to 2024-25), so that a hw1-q1.py or hw1-q2.py written on the course's skeletons runs
unchanged beside this file. It needs numpy only; torch is imported when a script uses
`ClassificationDataset` (or seeds it after importing it itself).

The loader checks what it reads: a missing, truncated or malformed file, bad labels, non-finite
pixels and empty splits end in a `DataError` whose message is one line saying what to do.

Shapes: N examples, D features (784 pixels, +1 with the bias column).
"""
import math
import os
import random
import sys
import zipfile
from pathlib import Path

import numpy as np

DEFAULT_DATA_PATH = "Kuzushiji-MNIST.npz"
BUILD_COMMAND = "python download_kuzushiji_mnist.py"

COURSE_KEYS = ("Xtrain", "ytrain", "Xdev", "ydev", "Xtest", "ytest")
MEDMNIST_KEYS = ("train_images", "train_labels", "val_images", "val_labels",
                 "test_images", "test_labels")


class DataError(Exception):
    """A dataset file is missing, unreadable or malformed; the message says which and what to do."""


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
    """Flatten images to (N, D) float64. Integer pixels are 8-bit images, 0..255, scaled by 1/256
    as the course does; float pixels are taken as scaled already, and must lie in [0, 1]."""
    X = np.asarray(X)
    if X.ndim < 2:
        raise DataError(f"{path}: '{key}' has shape {X.shape}; expected (N, ...) images")
    X = X.reshape(X.shape[0], math.prod(X.shape[1:]))  # not -1, which fails for 0 rows
    if X.dtype == np.uint8:
        return X / 256.0  # float64 in [0, 255/256]
    if not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise DataError(f"{path}: '{key}' has dtype {X.dtype}; expected real numbers")
    if np.issubdtype(X.dtype, np.integer):
        low, high = X.min(), X.max()
        if low < 0 or high > 255:
            raise DataError(f"{path}: '{key}' has integer pixels from {low} to {high}; expected "
                            f"8-bit images, 0..255")
        return X / 256.0
    X = X.astype(np.float64)
    bad = X.size - np.count_nonzero(np.isfinite(X))
    if bad:  # a data error, not something training could survive or a learning rate could fix
        raise DataError(f"{path}: '{key}' has {bad} non-finite values (NaN or inf); the data "
                        f"is damaged: rebuild it with: {rebuild}")
    high = X.max()
    if high > 1:  # unscaled 0..255 images train to chance, and look like a bad learning rate
        raise DataError(f"{path}: '{key}' has float pixels up to {high:g}; float pixels must be "
                        f"scaled to [0, 1] (store 0..255 images as integers, which are scaled "
                        f"by 1/256)")
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

