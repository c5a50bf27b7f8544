"""The speed engine beside the training scripts: the same results, with less overhead.

`TrainingPath` says, as data, which way a run trains; its sentence is made from it.
"""
import enum
from dataclasses import dataclass


class Engine(enum.Enum):
    """What trains an epoch. The reference engines are the scripts' own code."""
    PER_EXAMPLE = ("reference", "per-example loop")                 # hw1-q1.py
    BLOCKED = ("fast", "fast_sgd/blocked.py")                        # hw1-q1.py's fast path
    DATALOADER = ("reference", "DataLoader and autograd")           # hw1-q2.py
    MANUAL_SGD = ("fast", "ManualSGD (no autograd), pre-shuffled batches")
    AUTOGRAD_PRESHUFFLED = ("fast", "autograd on pre-shuffled batches")

    @property
    def kind(self):
        return self.value[0]

    @property
    def description(self):
        return self.value[1]


@dataclass(frozen=True)
class TrainingPath:
    """The engine that trains, and why not a faster one (empty when nothing stood in the way)."""
    engine: Engine
    reason: str = ""

    def __str__(self):
        reason = f" ({self.reason})" if self.reason else ""
        return f"{self.engine.kind}: {self.engine.description}{reason}"
