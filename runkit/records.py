"""Run records: the JSON record of a run (its configuration, curves and result), its name
from the flags, and its saving with the run's figures, all or nothing."""
import json
import math
import os
import re
from pathlib import Path

import numpy as np

from runkit.errors import OutputError
from runkit.figures import plot_curves
from runkit.files import atomic_path, os_error_in, staged_files, writable_dir


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



def _same_files(config, other):
    """Whether two configurations name the same files in their path flags (keys ending in
    _path): two runs whose names agree otherwise differ only there."""
    keys = {key for key in (*config, *other) if key.endswith("_path")}
    return all(config.get(key) is not None and other.get(key) is not None
               and os.path.abspath(str(config[key])) == os.path.abspath(str(other[key]))
               for key in keys)


def free_name(output_dir, name, config):
    """`name`, or `name+2`, `name+3`, ... when `name`.json in `output_dir` is the record of a
    run on other files (va/data.npz and vb/data.npz both give `data_path=data`): a rerun
    replaces its own files, never another run's."""
    candidate, count = name, 1
    while True:
        try:
            other = read_record(Path(output_dir) / f"{candidate}.json").get("config", {})
        except (OSError, ValueError, AttributeError):
            return candidate  # no record there (or one unreadable: the run's own, half-done)
        if not isinstance(other, dict) or _same_files(config, other):
            return candidate
        count += 1
        candidate = f"{name}+{count}"


def save_run(output_dir, name, record, figures):
    """Save a run: each figure as `name`-KEY.pdf/.png, then the record as `name`.json, where
    `name` is made free of other runs' records (free_name). Returns the paths written.

    figures: {KEY: (ylabel, {label: values per epoch})}, plotted against record["epochs"].
    All or nothing (`staged_files`): the files replace the run's old ones only once all are
    written, the record last, so its presence means the run's files are all there. Raises
    OutputError ("cannot write PATH: REASON", e.g. a full disk), and leaves no file of this run
    and the earlier run's files as they were, if they cannot be written.
    """
    output_dir = writable_dir(output_dir)
    name = free_name(output_dir, name, record.get("config", {}))
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
