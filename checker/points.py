"""The questions of the 2022-23 homework that the checker grades, and the points of each check:
the one place where points are set.

Each question's checks add up to its points. Without --full the end-to-end check is not run and
the unit checks carry the question's points (each scaled by points / unit points), so a
question is out of the same points in both modes.
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Question:
    key: str  # "Q1.1a"
    title: str
    script: str  # the course's file name: "hw1-q1.py" or "hw1-q2.py"
    points: float
    checks: dict = field(default_factory=dict)  # check name -> points; "end_to_end" last

    def unit_checks(self):
        return [name for name in self.checks if name != END_TO_END]

    def check_points(self, name, full):
        """The points of check `name`: as listed with --full; scaled up to the question's
        points without it (the end-to-end check then counts for nothing)."""
        if full:
            return self.checks[name]
        if name == END_TO_END:
            return 0.0
        unit_total = sum(self.checks[check] for check in self.unit_checks())
        return self.checks[name] * self.points / unit_total


END_TO_END = "end_to_end"

QUESTIONS = (
    Question("Q1.1a", "perceptron", "hw1-q1.py", 10,
             {"update_weight": 8, END_TO_END: 2}),
    Question("Q1.1b", "logistic regression", "hw1-q1.py", 10,
             {"update_weight": 6, "large_scores": 2, END_TO_END: 2}),
    Question("Q1.2b", "MLP", "hw1-q1.py", 10,
             {"init": 2, "train_epoch": 5, "predict": 1, END_TO_END: 2}),
    Question("Q2.1", "logistic regression (torch)", "hw1-q2.py", 10,
             {"model": 3, "train_batch": 5, END_TO_END: 2}),
    Question("Q2.2", "feed-forward network", "hw1-q2.py", 15,
             {"structure": 4, "forward_backward": 5, "evaluate": 3, END_TO_END: 3}),
    Question("Q2.3", "deeper networks", "hw1-q2.py", 10,
             {"structure": 4, "forward_backward": 4, END_TO_END: 2}),
)

BY_KEY = {question.key: question for question in QUESTIONS}
SCRIPTS = ("hw1-q1.py", "hw1-q2.py")


def questions_of(script):
    return [question for question in QUESTIONS if question.script == script]


def total_points():
    return sum(question.points for question in QUESTIONS)
