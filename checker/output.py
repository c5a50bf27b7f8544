"""What the checker prints and writes: a table per submission on the terminal (one row per
submission when there are several), Gradescope's results.json, and a CSV with one row per
submission."""
import csv
import json
import shutil
import sys

from checker import points


def fmt(value):
    """Points as printed: 10, 3.8."""
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def _fit(text, width):
    """Cut `text` to the terminal's width; written to a file or a pipe, it stays whole."""
    if not sys.stdout.isatty() or len(text) <= width:
        return text
    return text[:max(width - 3, 0)] + "..."


def table(submission):
    """The terminal table of one submission: question, verdict, points, reason."""
    width = shutil.get_terminal_size((160, 24)).columns
    rows = [(f"{q.question.key} {q.question.title}", q.verdict.upper(),
             f"{fmt(q.points)}/{fmt(q.max_points)}", q.reason) for q in submission.questions]
    heads = ("question", "verdict", "points", "reason")
    widths = [max(len(r[i]) for r in rows + [heads]) for i in range(3)]
    lines = [f"{submission.name}"]
    for row in [heads] + rows:
        left = "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths))
        lines.append(f"{left}  {_fit(row[3], max(width - len(left) - 3, 40))}")
    lines.append(f"{'total'.ljust(widths[0])}  {''.ljust(widths[1])}  "
                 f"{fmt(submission.score)}/{fmt(submission.max_score)}  "
                 f"({submission.seconds:.1f} s)")
    return "\n".join(lines)


def summary_table(submissions):
    """One row per submission: its points per question, its total and its first problem."""
    keys = [q.key for q in points.QUESTIONS]
    heads = ["submission", *keys, "total", "first problem"]
    rows = []
    for s in submissions:
        by_key = {q.question.key: q for q in s.questions}
        cells = [s.name] + [fmt(by_key[k].points) if k in by_key else "-" for k in keys]
        problem = next((f"{q.question.key}: {q.reason}" for q in s.questions
                        if q.verdict not in ("pass", "not checked")), "")
        rows.append(cells + [f"{fmt(s.score)}/{fmt(s.max_score)}", problem])
    widths = [max(len(r[i]) for r in rows + [heads]) for i in range(len(heads) - 1)]
    out = []
    for row in [heads] + rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + "  " +
                   _fit(row[-1], 100))
    return "\n".join(out)


def gradescope(submission):
    """Gradescope's autograder results.json: the total score and one test per question."""
    tests = []
    for q in submission.questions:
        lines = [f"{q.verdict}: {q.reason}"]
        lines += [f"- {c.name}: {c.status} ({fmt(c.points)}/{fmt(c.max_points)})"
                  f"{': ' + c.reason if c.reason else ''}" for c in q.checks]
        tests.append({"name": f"{q.question.key} {q.question.title}",
                      "score": round(q.points, 4), "max_score": q.max_points,
                      "output": "\n".join(lines), "visibility": "visible",
                      "status": "passed" if q.verdict == "pass" else "failed"})
    return {"score": round(submission.score, 4), "execution_time": round(submission.seconds, 1),
            "output": f"{fmt(submission.score)}/{fmt(submission.max_score)} points",
            "visibility": "visible", "tests": tests}


def write_json(submission, path):
    with open(path, "w") as f:
        json.dump(gradescope(submission), f, indent=1)
        f.write("\n")


def write_csv(submissions, path):
    """One row per submission: its total, and each question's points, verdict and reason."""
    keys = [q.key for q in points.QUESTIONS]
    header = ["submission", "score", "max_score"]
    for key in keys:
        header += [f"{key} points", f"{key} verdict", f"{key} reason"]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for s in submissions:
            by_key = {q.question.key: q for q in s.questions}
            row = [s.name, round(s.score, 4), s.max_score]
            for key in keys:
                q = by_key.get(key)
                row += [round(q.points, 4), q.verdict, q.reason] if q else ["", "", ""]
            writer.writerow(row)
