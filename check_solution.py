#!/usr/bin/env python
"""Check a student's hw1-q1.py / hw1-q2.py (the 2022-23 skeleton): a verdict, the points and a
one-line reason per coded question.

    python check_solution.py path/to/hw1-q1.py path/to/hw1-q2.py    # or the folder holding them
    python check_solution.py --full --epochs 2 my-solution/          # + a quick end-to-end run
    python check_solution.py --full --csv grades.csv submissions/*/  # a TA: a folder each

Unit checks (seconds, no dataset) compare the student's code with this project's answers on
tiny inputs; --full also runs the student's main with the course's commands on the real data
and compares the accuracies with this project's (checker/bands.json). Every check runs the
student's code in a subprocess, in a temporary folder, with a time limit. Exit code: 0 when
every question checked passes, 1 when one does not, 2 on bad input.
"""
import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from checker import bands, endtoend, grade, output, points  # noqa: E402

DEFAULT_DATA = ROOT / "Kuzushiji-MNIST.npz"


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _which(path):
    """hw1-q1.py or hw1-q2.py for a student's file: by its name, else by the classes it
    defines."""
    name = path.name.lower()
    for script, mark in (("hw1-q1.py", "q1"), ("hw1-q2.py", "q2")):
        if mark in name:
            return script
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        fail(f"{path}: cannot be read ({err.strerror})")
    if "FeedforwardNetwork" in text or "train_batch" in text:
        return "hw1-q2.py"
    if "Perceptron" in text or "class MLP" in text:
        return "hw1-q1.py"
    fail(f"{path}: neither hw1-q1.py nor hw1-q2.py by its name or its classes; name it "
         f"hw1-q1.py or hw1-q2.py")


def _find_in(folder, script):
    exact = folder / script
    if exact.is_file():
        return exact
    mark = script[4:6]  # "q1"
    candidates = sorted(p for p in folder.glob("*.py") if mark in p.name.lower())
    return candidates[0] if len(candidates) == 1 else None


def submissions_of(paths):
    """The submissions: one per folder, or one made of the files given."""
    for path in paths:
        if not path.exists():
            fail(f"{path}: no such file or folder")
    if all(p.is_dir() for p in paths):
        names = [p.resolve().name or str(p) for p in paths]
        return [grade.Submission(name if names.count(name) == 1 else str(path),
                                 {s: _find_in(path, s) for s in points.SCRIPTS}, True)
                for name, path in zip(names, paths)]
    if any(p.is_dir() for p in paths):
        fail("give either files (one submission) or folders (one submission each), not both")
    files = {}
    for path in paths:
        script = _which(path)
        if script in files:
            fail(f"{files[script]} and {path} are both {script}")
        files[script] = path
    return [grade.Submission(" + ".join(str(p) for p in paths), files, False)]


def question_list(text):
    keys = [key.strip() for key in text.split(",") if key.strip()]
    unknown = [key for key in keys if key not in points.BY_KEY]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown) or 'none given'}: not a question; choose from "
            f"{', '.join(points.BY_KEY)}")
    return keys


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path,
                        help="a student's hw1-q1.py and/or hw1-q2.py, or folders holding them "
                             "(one submission per folder)")
    parser.add_argument("--full", action="store_true",
                        help="also run the student's main with the course's commands on the "
                             "real data (minutes to an hour per submission)")
    parser.add_argument("--epochs", type=int, default=endtoend.EPOCHS,
                        help="with --full: epochs per run; fewer than 20 compares the dev "
                             "accuracy at that epoch (default: %(default)s)")
    parser.add_argument("--questions", type=question_list,
                        default=[q.key for q in points.QUESTIONS], metavar="Q,Q",
                        help="check only these questions, comma-separated, e.g. Q1.1a,Q2.2 "
                             "(default: all)")
    parser.add_argument("--data", type=Path, default=None,
                        help="with --full: the course's Kuzushiji-MNIST.npz (default: "
                             "$KMNIST_NPZ, else the one beside this script)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds allowed for one question's unit checks (default: "
                             "%(default)s)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="checks run at once, each in its own process (default: "
                             "%(default)s)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="write Gradescope's results.json for the one submission")
    parser.add_argument("--csv", type=Path, default=None, metavar="FILE",
                        help="write one row per submission: total, and per question the "
                             "points, verdict and reason")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.epochs <= endtoend.EPOCHS:
        fail(f"--epochs: between 1 and {endtoend.EPOCHS}, not {args.epochs}")
    if args.timeout <= 0 or args.jobs < 1:
        fail("--timeout must be positive and --jobs at least 1")
    if (args.epochs != endtoend.EPOCHS or args.data) and not args.full:
        fail("--epochs and --data apply to --full only")
    submissions = submissions_of(args.paths)
    if args.json and len(submissions) > 1:
        fail("--json writes one submission's results (Gradescope grades one at a time); use "
             "--csv for several")
    for target in (args.json, args.csv):
        if target is not None and not target.parent.resolve().is_dir():
            fail(f"{target}: its folder does not exist")
    options = grade.Options(full=args.full, epochs=args.epochs, timeout=args.timeout,
                            questions=tuple(args.questions))
    if args.full:
        data = args.data or Path(os.environ.get("KMNIST_NPZ") or DEFAULT_DATA)
        if not data.is_file():
            fail(f"{data}: no such dataset file; build it with 'python "
                 f"download_kuzushiji_mnist.py' or pass --data")
        options.data_path = data
        try:
            options.bands = bands.load()
        except (OSError, ValueError) as err:
            fail(f"{bands.BANDS_PATH}: cannot be read ({err}); regenerate it with "
                 f"'python -m checker.bands'")
    for i, submission in enumerate(submissions):
        grade.check_submission(submission, options, jobs=args.jobs)
        if len(submissions) == 1:
            print(output.table(submission))
        else:
            print(f"[{i + 1}/{len(submissions)}] {submission.name}: "
                  f"{output.fmt(submission.score)}/{output.fmt(submission.max_score)}",
                  flush=True)
    if len(submissions) > 1:
        print(output.summary_table(submissions))
    if args.json:
        output.write_json(submissions[0], args.json)
    if args.csv:
        output.write_csv(submissions, args.csv)
    return 0 if all(s.passed for s in submissions) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
