"""The report's plan: each run (Run), the groups compared in one table and figure (Sweep), the
sweeps of the 2022-23 report and the extras, the course's published numbers, the flags as each
script reads them (from the script's own parser), how a sweep's best is chosen, and a rough
guess of a run's length."""
import contextlib
import functools
import io
import statistics
from dataclasses import dataclass, field

import utils

COURSE_EPOCHS = 20
COURSE_SEED = 42  # the scripts' default: a run at this seed needs no -seed flag
SCRIPTS = ("hw1-q1.py", "hw1-q2.py")


@dataclass(frozen=True)
class Run:
    """One invocation of a script: `python SCRIPT *args` (plus the report's common flags)."""
    script: str
    args: tuple

    @property
    def model(self):
        return self.args[0]

    @property
    def flags(self):
        return dict(zip(self.args[1::2], self.args[2::2]))

    @property
    def description(self):
        flags = " ".join(f"{k} {v}" for k, v in self.flags.items())
        return f"{self.model} {flags}".strip()

    @property
    def tag(self):
        """The script's short name, which starts its runs' labels and file names: q1, q2."""
        return self.script.removeprefix("hw1-").removesuffix(".py")

    @property
    def label(self):
        parts = [self.tag, self.model] + [f"{k.lstrip('-')}={v}" for k, v in self.flags.items()]
        return "-".join(parts)

    def with_flags(self, **flags):
        merged = dict(self.flags)
        merged.update({f"-{k}": str(v) for k, v in flags.items()})
        return Run(self.script, (self.model, *[x for kv in merged.items() for x in kv]))

    @property
    def seed(self):
        return int(self.flags.get("-seed", COURSE_SEED))

    def with_seed(self, seed):
        """This configuration with `seed`. The course's seed is left implicit: such a run is
        the plain run of the script (same label, same cache key)."""
        flags = {k: v for k, v in self.flags.items() if k != "-seed"}
        run = Run(self.script, (self.model, *[x for kv in flags.items() for x in kv]))
        return run if seed == COURSE_SEED else run.with_flags(seed=seed)

    @property
    def config(self):
        """The configuration, without the seed: (script, model, flags in any order)."""
        return self.script, self.model, frozenset(self.with_seed(COURSE_SEED).flags.items())


def seed_list(count):
    """The seeds of `--seeds count`: the course's 42, then 1, 2, 3, ..."""
    return [COURSE_SEED, *[s for s in range(1, count + 1) if s != COURSE_SEED][:count - 1]]


@dataclass
class Sweep:
    """A group of runs compared in one table and one figure."""
    key: str
    title: str
    runs: list = field(default_factory=list)
    pick_best: bool = True
    after: str = None        # key of the sweep whose best run this one builds on
    build: object = None     # callable(best Run of `after`) -> list of Runs
    words: str = ""          # how to state the best in results.md
    weight_norm: bool = False  # add a panel of ||W||_F per epoch to the sweep's figure


def q1(model, **flags):
    return Run("hw1-q1.py", (model,)).with_flags(**flags)


def q2(model, **flags):
    return Run("hw1-q2.py", (model,)).with_flags(**flags)


# The course's published results (final dev, test accuracy), 2022-23, after 20 epochs at seed
# 42, with the sweep each belongs to.
COURSE = [
    ("q1", q1("perceptron"), 0.7236, 0.6193),
    ("q1", q1("logistic_regression", learning_rate="0.001"), 0.8251, 0.7028),
    ("q1", q1("mlp", hidden_size=200, learning_rate="0.001"), 0.9373, 0.8610),
    ("q2.1", q2("logistic_regression", batch_size=1, learning_rate="0.001"), 0.8256, 0.7019),
    ("q2.1", q2("logistic_regression", batch_size=1, learning_rate="0.01"), 0.8033, 0.6806),
    ("q2.1", q2("logistic_regression", batch_size=1, learning_rate="0.1"), 0.7516, 0.6155),
    ("q2.2", q2("mlp", hidden_size=200), 0.9492, 0.8813),
    ("q2.3", q2("mlp", hidden_size=200, layers=2), 0.9561, 0.8939),
]


def plan(extras):
    """The report's sweeps, in order. `extras` adds the other editions' experiments."""
    ffn = q2("mlp")
    sweeps = [
        Sweep("q1", "Q1: numpy models", [q1("perceptron"), q1("logistic_regression"), q1("mlp")],
              pick_best=False),
        Sweep("q2.1", "Q2.1: logistic regression, batch 1, learning rate",
              [q2("logistic_regression", batch_size=1, learning_rate=lr)
               for lr in ("0.001", "0.01", "0.1")],
              words="learning rate"),
        Sweep("q2.2", "Q2.2: feed-forward network, one hyperparameter varied at a time",
              [ffn, ffn.with_flags(learning_rate="0.001"), ffn.with_flags(learning_rate="0.1"),
               ffn.with_flags(hidden_size=200), ffn.with_flags(dropout="0.5"),
               ffn.with_flags(activation="tanh")],
              words="configuration"),
        Sweep("q2.3", "Q2.3: deeper networks at the best Q2.2 configuration", after="q2.2",
              build=lambda best: [best, best.with_flags(layers=2), best.with_flags(layers=3)],
              words="depth"),
    ]
    if extras:
        sweeps += [
            Sweep("x-l2", "Extra (2024-25): L2 penalty on logistic regression (numpy)",
                  [q1("logistic_regression"), q1("logistic_regression", l2_penalty="0.01")],
                  words="penalty", weight_norm=True),
            Sweep("x-batch", "Extra: FFN batch size (compare the times)",
                  [ffn.with_flags(batch_size=b) for b in (16, 64, 512, 1024)],
                  words="batch size"),
            Sweep("x-momentum", "Extra (2024-25): SGD momentum",
                  [ffn, ffn.with_flags(momentum="0.9")], words="momentum"),
            Sweep("x-l2-dropout", "Extra (2024-25): L2 decay against dropout",
                  [ffn.with_flags(l2_decay="0.0001", dropout="0"), ffn.with_flags(dropout="0.2")],
                  words="regulariser"),
            Sweep("x-adam", "Extra: the adam optimizer",
                  [ffn, ffn.with_flags(optimizer="adam", learning_rate="0.001")],
                  words="optimizer"),
        ]
    return sweeps


# ----------------------------------------------------------------------------- the flags

@functools.lru_cache(maxsize=None)
def _settings(script, args):
    try:
        module = utils.load_script(script)
    except Exception:  # a script that does not import: its runs fail and say why
        return None
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # argparse's usage lines
            values = vars(module.build_parser().parse_args(list(args)))
    except SystemExit:
        return None
    model = args[0]
    for name, value in values.items():
        # a default that depends on the model: the script's DEFAULT_<FLAG>[model]
        table = getattr(module, f"DEFAULT_{name.upper()}", None)
        if value is None and isinstance(table, dict) and model in table:
            values[name] = table[model]
    return values


def settings(run):
    """{flag: value} of every flag as the run's script reads `run.args`, its defaults filled in
    by the script's own parser; None if the script refuses the flags (or does not import)."""
    values = _settings(run.script, tuple(run.args))
    return None if values is None else dict(values)


def same_configuration(a, b):
    """Whether `a` and `b` train the same way but for the seed (a flag spelled out at its
    default, or a number spelled another way, is the same configuration)."""
    if (a.script, a.model) != (b.script, b.model):
        return False
    a, b = settings(a.with_seed(COURSE_SEED)), settings(b.with_seed(COURSE_SEED))
    return a is not None and a == b


def course_entry(run):
    """The COURSE entry (sweep key, run, dev, test) of `run`'s configuration, or None."""
    return next((entry for entry in COURSE if same_configuration(entry[1], run)), None)


# Rough seconds per epoch of each script's models at their defaults, only to start the long
# runs first while none of a configuration has been timed yet (a poor guess costs some idle
# time at the end, nothing else).
ROUGH_EPOCH_SECONDS = {
    ("hw1-q1.py", "perceptron"): 0.4, ("hw1-q1.py", "logistic_regression"): 0.6,
    ("hw1-q1.py", "mlp"): 3.0, ("hw1-q2.py", "logistic_regression"): 1.0,
    ("hw1-q2.py", "mlp"): 0.8,
}


def rough_seconds(run):
    """A guess of the run's length in seconds: its epochs times the model's rough epoch time;
    for a network, half of that fixed and half in proportion to its hidden units times layers;
    with a batch size, in inverse proportion to it (all relative to the script's defaults)."""
    seconds = ROUGH_EPOCH_SECONDS.get((run.script, run.model), 1.0)
    flags, defaults = settings(run), settings(Run(run.script, (run.model,)))
    if flags is None or defaults is None:  # flags the script refuses: the run fails fast
        return COURSE_EPOCHS * seconds
    if run.model == "mlp":
        units = flags["hidden_size"] * flags["layers"]
        seconds *= 0.5 + 0.5 * units / (defaults["hidden_size"] * defaults["layers"])
    if flags.get("batch_size"):
        seconds *= defaults["batch_size"] / flags["batch_size"]
    return flags["epochs"] * seconds


# ----------------------------------------------------------------------------- the measures

def final(record, key):
    """The last value of a record's curve `key`, or the value of a single-number key."""
    values = record.get(key)
    if isinstance(values, list):
        return values[-1] if values else None
    return values


def train_accuracy(record):
    return record.get("final_train_acc")


def dev_accuracy(record):
    return final(record, "valid_acc")


def accuracy_on_test(record):
    return record.get("test_acc")


def seed_values(run, records, seeds, measure):
    """`measure(record)` of each seed of `run`'s configuration that has a record (not None)."""
    values = []
    for seed in seeds:
        record = records.get(run.with_seed(seed))
        if record is not None and (value := measure(record)) is not None:
            values.append(value)
    return values


def best_run(runs, records, seeds=(COURSE_SEED,)):
    """The configuration with the highest final dev accuracy, averaged over `seeds` (those
    that finished); the first one on ties."""
    scored = []
    for i, run in enumerate(runs):
        values = seed_values(run, records, seeds, dev_accuracy)
        if values:
            scored.append((statistics.fmean(values), -i, run))
    return max(scored)[2] if scored else None
