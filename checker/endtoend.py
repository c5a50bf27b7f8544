"""End to end (--full): the student's own main, run with the course's commands, each in its own
sandbox with a time limit; the accuracies it computes are compared with this project's.

Deterministic runs (the perceptron, logistic regression, Q2.1 at lr 0.001 and 0.01) must match
the reference's dev and test accuracy to the fourth decimal. The chaotic ones (the MLP, Q2.2,
Q2.3, Q2.1 at lr 0.1) must fall inside the band of this project's runs over seeds
(checker/bands.json, reporting/seeds.py's rule). With fewer epochs than 20 (the quick mode) the
dev accuracy after the last epoch run is compared with the reference's at that epoch, and the
test accuracy (known after 20 epochs only) is not compared.
"""
from dataclasses import dataclass

import numpy as np

from checker import sandbox
from reporting import seeds

EPOCHS = 20
STARTUP_SECONDS = 120  # python, numpy / torch, the dataset, before the first epoch


@dataclass(frozen=True)
class Run:
    key: str  # its entry in bands.json
    question: str
    script: str
    model: str
    flags: tuple  # (flag, value) pairs, every flag the course's command sets, epochs aside
    deterministic: bool
    seconds_per_epoch: int  # the time limit: STARTUP_SECONDS + epochs x this

    def argv(self, epochs):
        args = [self.model, "-epochs", str(epochs)]
        for flag, value in self.flags:
            args += [f"-{flag}", str(value)]
        return args

    def command(self, epochs=EPOCHS):
        return f"python {self.script} {' '.join(self.argv(epochs))}"

    def relevant_flags(self):
        """The flags that change this run (a linear model has no hidden layer, the perceptron
        no learning rate): those a record must match to count as one of its seeds."""
        unused = {"perceptron": ("learning_rate", "hidden_size"),
                  "logistic_regression": ("hidden_size", "layers", "dropout", "activation")}
        return [(flag, value) for flag, value in self.flags
                if flag not in unused.get(self.model, ())]

    def time_limit(self, epochs):
        return STARTUP_SECONDS + epochs * self.seconds_per_epoch


Q1_FLAGS = (("learning_rate", 0.001), ("hidden_size", 200))


def _q2(lr, batch, layers=1, hidden=200):
    return (("batch_size", batch), ("learning_rate", lr), ("l2_decay", 0),
            ("hidden_size", hidden), ("layers", layers), ("dropout", 0.3),
            ("activation", "relu"), ("optimizer", "sgd"))


RUNS = (
    Run("q1-perceptron", "Q1.1a", "hw1-q1.py", "perceptron", Q1_FLAGS, True, 30),
    Run("q1-logistic_regression", "Q1.1b", "hw1-q1.py", "logistic_regression", Q1_FLAGS,
        True, 60),
    Run("q1-mlp", "Q1.2b", "hw1-q1.py", "mlp", Q1_FLAGS, False, 180),
    Run("q2-logistic_regression-lr0.001", "Q2.1", "hw1-q2.py", "logistic_regression",
        _q2(0.001, 1), True, 90),
    Run("q2-logistic_regression-lr0.01", "Q2.1", "hw1-q2.py", "logistic_regression",
        _q2(0.01, 1), True, 90),
    Run("q2-logistic_regression-lr0.1", "Q2.1", "hw1-q2.py", "logistic_regression",
        _q2(0.1, 1), False, 90),
    Run("q2-mlp", "Q2.2", "hw1-q2.py", "mlp", _q2(0.01, 16), False, 60),
    Run("q2-mlp-layers2", "Q2.3", "hw1-q2.py", "mlp", _q2(0.01, 16, layers=2), False, 60),
)
BY_KEY = {run.key: run for run in RUNS}


def runs_of(question):
    return [run for run in RUNS if run.question == question]


def write_labels(data_path, folder):
    """The dev and test labels, for the harness to tell which split each evaluate call got."""
    with np.load(data_path) as data:
        np.savez(folder / "labels.npz", dev=data["ydev"].astype(np.int64),
                 test=data["ytest"].astype(np.int64))
    return folder / "labels.npz"


def execute(run, student_file, data_path, epochs):
    """Run the student's main for `run`; return (accuracies or None, one-line problem or None).
    Accuracies: {"dev": [per evaluate call on dev], "test": [...]}."""
    folder = sandbox.make_workdir(student_file, run.script, data_path)
    try:
        labels = write_labels(data_path, folder)
        limit = run.time_limit(epochs)
        outcome = sandbox.run_harness(["run", run.script, "result.json", str(labels), "--",
                                       *run.argv(epochs)], folder, limit)
    finally:
        sandbox.remove_workdir(folder)
    result = outcome.result
    calls = result.get("calls") or {"dev": [], "test": []}
    problem = result.get("import_error") or result.get("error")
    if problem is None and (outcome.timed_out or result.get("phase") != "done"):
        problem = sandbox.crash_reason(outcome, limit)
        if outcome.timed_out and result.get("phase") == "running":
            problem += f" (after {len(calls['dev'])} epochs)"
    if problem and result.get("dropped_flags"):
        problem += f"; its parser lacks {', '.join(result['dropped_flags'])}"
    return calls, problem


def compare(run, calls, reference, epochs):
    """(passed, one line) for the accuracies of a finished run against the reference's entry
    in bands.json."""
    dev, test = calls["dev"], calls["test"]
    if len(dev) > epochs and len(dev) % epochs == 0:
        # a main that evaluates the dev set k times per epoch (to print it, then to keep it)
        k = len(dev) // epochs
        dev = dev[k - 1::k]
    if len(dev) != epochs:
        return False, (f"main evaluated the dev set {len(dev)} times in {epochs} epochs; the "
                       f"course's main evaluates it once per epoch")
    value = dev[epochs - 1]
    checks = [("dev", value, epochs, [v[epochs - 1] for v in reference["valid_acc"]],
               reference["band_dev"][epochs - 1])]
    if epochs == EPOCHS:
        if not test:
            return False, "main never evaluated the test set"
        checks.append(("test", test[-1], epochs, reference["test_acc"], reference["band_test"]))
    texts = []
    for split, got, epoch, values, band in checks:
        where = f"after epoch {epoch}" if split == "dev" else "at the end"
        if run.deterministic:
            expected = values[0]
            if round(got, 4) != round(expected, 4):
                return False, (f"{split} accuracy {where} is {got:.4f}, the reference's "
                               f"{expected:.4f}; this run is deterministic and should match to "
                               f"the fourth decimal")
            texts.append(f"{split} {got:.4f}")
        else:
            low, high = band
            if not low <= got <= high:
                return False, (f"{split} accuracy {where} is {got:.4f}, outside the band "
                               f"[{low:.4f}, {high:.4f}] of {len(values)} seeds of the "
                               f"reference ({seeds.placement(got, values)})")
            texts.append(f"{split} {got:.4f} in [{low:.4f}, {high:.4f}]")
    kind = "= reference" if run.deterministic else "in band"
    return True, f"{', '.join(texts)} ({kind})"


def check_question(question, student_file, data_path, epochs, bands):
    """(passed, one line) for the end-to-end runs of `question` (Q2.1 has three: each is
    named by its learning rate)."""
    runs, texts = runs_of(question), []
    for run in runs:
        reference = bands["runs"].get(run.key)
        if reference is None or len(reference["valid_acc"][0]) < epochs:
            return False, f"no reference numbers for {run.key} in bands.json"
        calls, problem = execute(run, student_file, data_path, epochs)
        label = f"lr {dict(run.flags)['learning_rate']}: " if len(runs) > 1 else ""
        passed, text = (False, problem) if problem else compare(run, calls, reference, epochs)
        if not passed:
            return False, f"{label}{text}"
        texts.append(f"{label}{text}")
    return True, "; ".join(texts)
