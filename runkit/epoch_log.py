"""The bookkeeping of a training run, the same for both scripts: the path that trains, one line
and one row of curves per epoch, its time, the divergence rule, and the run's record.

A script's `train()` is the course's loop plus one `log.epoch(...)` per epoch and
`log.finish(...)` at the end. Every record has the same keys (RECORD_KEYS); a curve a script
does not measure is None.

`epoch_seconds[i]` is the wall time of epoch i + 1 from the end of the one before: its training
and the evaluations that follow it, everything between two epoch lines.
"""
import math
import sys
import time

RECORD_VERSION = 2
CURVES = ("train_loss", "train_acc", "valid_loss", "valid_acc", "weight_norm")
RECORD_KEYS = ("record_version", "path", "engine", "epochs", *CURVES, "epoch_seconds",
               "train_seconds", "final_train_acc", "test_acc", "diverged")
LINE_PARTS = (("train_loss", "train loss"), ("train_acc", "train acc"),
              ("valid_loss", "dev loss"), ("valid_acc", "dev acc"))


def diverged(epoch, loss, weights_finite, n_classes, already, advice=True, bound_loss=True):
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


class EpochLog:
    """Prints `training path: ...` now, one line per `epoch`, and builds the record.

    path: the fast_sgd.TrainingPath that trains. n_classes: C, for the divergence bound.
    advice: whether a divergence warning suggests a smaller learning rate (the perceptron has
    none). unbounded_epochs: how many first epochs' losses are not held to the bound (the
    numpy MLP starts far above the uniform guess's loss from its N(0.1, 0.1^2) weights).
    """

    def __init__(self, path, n_classes, advice=True, unbounded_epochs=0):
        self.n_classes, self.advice, self.unbounded_epochs = n_classes, advice, unbounded_epochs
        self.record = {"record_version": RECORD_VERSION, "path": str(path),
                       "engine": path.engine.name, "epochs": [],
                       **{key: [] for key in CURVES}, "epoch_seconds": [], "diverged": False}
        print(f"training path: {path}")
        self.started = self.last = time.perf_counter()

    def epoch(self, weights_finite, **values):
        """Log one epoch: `values` are some of CURVES (floats, or None for a loss a model does
        not have); `weights_finite` whether every weight is finite."""
        unknown = set(values) - set(CURVES)
        if unknown:
            raise TypeError(f"unknown curves: {', '.join(sorted(unknown))}")
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        record = self.record
        epoch = len(record["epochs"]) + 1
        record["epochs"].append(epoch)
        record["epoch_seconds"].append(seconds)
        for key in CURVES:
            record[key].append(values.get(key))
        loss = values.get("train_loss")
        record["diverged"] |= diverged(epoch, loss, weights_finite, self.n_classes,
                                       record["diverged"], advice=self.advice,
                                       bound_loss=epoch > self.unbounded_epochs)
        parts = [f"{label} {values[key]:.4f}" for key, label in LINE_PARTS
                 if values.get(key) is not None]
        print(" | ".join([f"epoch {epoch:3d}", *parts, f"{seconds:.2f} s"]), flush=True)

    def finish(self, test_acc, final_train_acc=None):
        """The record (RECORD_KEYS): curves never measured become None; `final_train_acc`
        defaults to the last epoch's training accuracy."""
        record = self.record
        record["train_seconds"] = self.last - self.started
        for key in CURVES:
            if all(value is None for value in record[key]):
                record[key] = None
        if final_train_acc is None and record["train_acc"] is not None:
            final_train_acc = record["train_acc"][-1]
        record["final_train_acc"] = final_train_acc
        record["test_acc"] = test_acc
        return {key: record[key] for key in RECORD_KEYS}


def figures(record):
    """The run's figures for records.save_run, from the curves it has: accuracy (train and
    dev), loss (train and dev), and the weight norm of a linear model."""
    panels = {"accuracy": ("Accuracy", {"train": "train_acc", "dev": "valid_acc"}),
              "loss": ("Loss", {"train": "train_loss", "dev": "valid_loss"}),
              "weight_norm": ("||W||_F", {"W": "weight_norm"})}
    figs = {}
    for name, (ylabel, curves) in panels.items():
        present = {label: record[key] for label, key in curves.items()
                   if record.get(key) is not None}
        if present:
            figs[name] = (ylabel, present)
    return figs
