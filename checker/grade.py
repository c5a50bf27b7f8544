"""Verdicts and points: run a submission's unit checks (and with --full its end-to-end runs),
one sandbox per question, and turn what they found into one verdict per question."""
import concurrent.futures
import time
from dataclasses import dataclass, field
from pathlib import Path

from checker import endtoend, points, sandbox
from checker.points import END_TO_END

PASS, FAIL, NOT_IMPLEMENTED, NOT_CHECKED = "pass", "fail", "not implemented", "not checked"


@dataclass
class CheckResult:
    name: str
    status: str  # "passed", "failed", "not implemented", "not run"
    reason: str
    points: float
    max_points: float


@dataclass
class QuestionResult:
    question: points.Question
    verdict: str
    reason: str
    checks: list = field(default_factory=list)

    @property
    def points(self):
        return sum(check.points for check in self.checks)

    @property
    def max_points(self):
        return self.question.points


@dataclass
class Submission:
    name: str
    files: dict  # course name ("hw1-q1.py") -> the student's file, or None
    required: bool  # a folder: a missing file fails its questions; else they are not checked
    questions: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def score(self):
        return sum(q.points for q in self.questions)

    @property
    def max_score(self):
        return sum(q.max_points for q in self.questions)

    @property
    def passed(self):
        return all(q.verdict in (PASS, NOT_CHECKED) for q in self.questions) and any(
            q.verdict == PASS for q in self.questions)


@dataclass
class Options:
    full: bool = False
    epochs: int = endtoend.EPOCHS
    timeout: float = 60.0  # seconds, the unit checks of one question
    data_path: Path = None
    bands: dict = None
    questions: tuple = tuple(q.key for q in points.QUESTIONS)


def _verdict(question, checks, full):
    """The question's verdict and reason from its checks' results."""
    failed = [c for c in checks if c.status == "failed"]
    missing = [c for c in checks if c.status == "not implemented"]
    if failed and len({c.reason for c in failed}) == 1 and len(failed) > 1:
        return FAIL, failed[0].reason  # one cause (a missing class, a hang): said once
    if failed:
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return FAIL, f"{first.name}: {first.reason}{more}"
    if missing:
        return NOT_IMPLEMENTED, f"{missing[0].name}: {missing[0].reason}"
    ran = [c for c in checks if c.status == "passed"]
    if full:
        e2e = next((c for c in ran if c.name == END_TO_END), None)
        if e2e is not None:
            return PASS, f"unit checks pass; {e2e.reason}"
    return PASS, f"{', '.join(c.name for c in ran)} pass"


def _make(question, statuses, full):
    """QuestionResult from {check name: (status, reason)}; a check absent is "not run"."""
    checks = []
    for name in question.checks:
        if name == END_TO_END and not full:
            continue
        status, reason = statuses.get(name, ("not run", ""))
        worth = question.check_points(name, full)
        checks.append(CheckResult(name, status, reason, worth if status == "passed" else 0.0,
                                  worth))
    verdict, reason = _verdict(question, checks, full)
    return QuestionResult(question, verdict, reason, checks)


def _all(question, status, reason, full):
    names = [n for n in question.checks if full or n != END_TO_END]
    result = _make(question, {n: (status, reason) for n in names}, full)
    result.reason = reason
    if status == "failed":
        result.verdict = FAIL
    return result


def check_script(script, student_file, required, options):
    """The QuestionResults of one of the submission's files."""
    questions = [q for q in points.questions_of(script) if q.key in options.questions]
    if student_file is None:
        if required:
            return [_all(q, "failed", f"no {script} in the submission", options.full)
                    for q in questions]
        result = []
        for q in questions:
            r = _make(q, {}, options.full)
            r.verdict, r.reason = NOT_CHECKED, f"no {script} given"
            result.append(r)
        return result
    unit = _unit_statuses(script, student_file, questions, options.timeout)
    results = []
    for question in questions:
        statuses = unit[question.key]
        file_level = isinstance(statuses, str)
        if file_level:
            results.append(_all(question, "failed", statuses, options.full))
            continue
        if options.full:
            unit_ok = all(statuses.get(n, ("",))[0] == "passed" for n in question.unit_checks())
            if any(s[0] == "not implemented" for s in statuses.values()):
                statuses[END_TO_END] = ("not run", "not run: a unit check is not implemented")
            else:
                passed, text = endtoend.check_question(question.key, student_file,
                                                       options.data_path, options.epochs,
                                                       options.bands)
                if passed and not unit_ok:
                    text += " (close to the reference's numbers, yet a unit check fails)"
                statuses[END_TO_END] = ("passed" if passed else "failed", text)
        results.append(_make(question, statuses, options.full))
    return results


STARTUP_SECONDS = 60  # a sandbox's python, numpy, torch and the reference, before any check


def _unit_statuses(script, student_file, questions, timeout):
    """{question key: {check: (status, reason)}}, or {key: one line} for a file that cannot be
    checked at all (it does not import, or hangs there). The questions run in one process, each
    within `timeout` seconds; a process killed by its hard limit is started again for the
    questions after the one that hung."""
    found, remaining = {}, [q.key for q in questions]
    while remaining:
        folder = sandbox.make_workdir(student_file, script)
        limit = STARTUP_SECONDS + timeout * (len(remaining) + 1)
        try:
            outcome = sandbox.run_harness(["unit", script, "result.json", f"{timeout:g}",
                                           *remaining], folder, limit)
        finally:
            sandbox.remove_workdir(folder)
        result = outcome.result
        phase = result.get("phase")
        problem = result.get("import_error")
        if problem is None and phase in (None, "start", "import"):
            problem = result.get("error") or sandbox.crash_reason(outcome, limit)
        if problem is not None:
            found.update({key: problem for key in remaining})
            break
        done = result.get("questions") or {}
        for key in remaining:
            if key in done:
                found[key] = {name: (c["status"], c["reason"]) for name, c in done[key].items()}
        if phase != "done" or result.get("error"):
            # killed or broken in the question it was checking: that one fails, the rest again
            current = result.get("question")
            why = result.get("error") or sandbox.crash_reason(outcome, limit)
            if current not in remaining:  # between the import and the first question
                found.update({key: why for key in remaining})
                break
            statuses = found.setdefault(current, {})
            for name in points.BY_KEY[current].unit_checks():
                statuses.setdefault(name, ("failed", why))
            remaining = remaining[remaining.index(current) + 1:]
        else:
            remaining = []
    return found


def check_submission(submission, options, jobs=1):
    """Fill submission.questions, in the order of points.QUESTIONS."""
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {script: pool.submit(check_script, script, submission.files.get(script),
                                       submission.required, options)
                   for script in points.SCRIPTS}
        found = []
        for script, future in futures.items():
            try:
                found += future.result()
            except OSError as err:  # the student's file unreadable, the temporary folder full
                why = f"the checker cannot check {script}: {err}"
                found += [_all(q, "failed", why, options.full)
                          for q in points.questions_of(script) if q.key in options.questions]
    order = [q.key for q in points.QUESTIONS]
    submission.questions = sorted(found, key=lambda r: order.index(r.question.key))
    submission.seconds = time.perf_counter() - started
    return submission
