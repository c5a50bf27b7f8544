"""A sweep's table: one row per configuration (seed 42's accuracies and seconds; with several
seeds, each accuracy's mean ± sd (min–max) over them; the course's numbers, placed among the
seeds by reporting.seeds' rule), and the same table as Markdown and as a LaTeX tabular. Each
cell is a pair (Markdown, LaTeX)."""

from reporting import seeds as seedstats
from reporting.plan import (COURSE, COURSE_SEED, accuracy_on_test, best_run, course_entry,
                            dev_accuracy, seed_values, train_accuracy)

MEASURES = (train_accuracy, dev_accuracy, accuracy_on_test)

TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
               "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
               "^": r"\textasciicircum{}", "—": "---", "–": "--", "±": r"$\pm$"}


def tex_escape(text):
    return "".join(TEX_SPECIAL.get(c, c) for c in text)


def fmt(value, digits=4):
    return "—" if value is None else f"{value:.{digits}f}"


def cell(text):
    """A table cell: (Markdown, LaTeX)."""
    return text, tex_escape(text)


def spread(values, count):
    """The cell of `values` (one per seed that finished, of `count`): mean ± sd (min–max)."""
    if not values:
        return cell("—")
    stats = seedstats.summary(values)
    if stats["count"] == 1:
        return cell(f"{stats['mean']:.4f} (1 of {count} seeds)")
    extent = f"{stats['min']:.4f}–{stats['max']:.4f}"
    if stats["count"] < count:
        extent += f"; {stats['count']} of {count} seeds"
    mean, sd = stats["mean"], stats["sd"]
    return (f"{mean:.4f} ± {sd:.4f} ({extent})",
            f"${mean:.4f} \\pm {sd:.4f}$ ({tex_escape(extent)})")


def course_cell(course, values, count):
    """The course's number, placed among our seeds' `values` when there are several seeds."""
    if count == 1:
        return cell(f"{course:.4f}")
    return cell(f"{course:.4f} ({seedstats.placement(course, values)})")


def placement_rule():
    """The rule by which the course's numbers are placed among the seeds, in one sentence."""
    few = seedstats.MIN_SEEDS_FOR_SD
    return (f"The course's numbers are placed among our seeds' final accuracies by one rule: "
            f"first against the seeds' range (inside it, or how far above the highest or "
            f"below the lowest seed); a distance in standard deviations only from {few} seeds "
            f"on, and then measured with the sd's upper {seedstats.CONFIDENCE:.0%} confidence "
            f"bound, which makes it a lower bound (at least z sd), because the sd of a few "
            f"seeds is itself uncertain: "
            f"with 2 seeds the true sd may be up to {seedstats.sd_upper_factor(2):.0f} times the sample's, "
            f"with {few} up to {seedstats.sd_upper_factor(few):.1f} times.")


def sweep_table(sweep, records, failures, seeds=(COURSE_SEED,)):
    """The sweep's table: (header, rows of cells, notes for under it, best configuration)."""
    count = len(seeds)
    best = best_run(sweep.runs, records, seeds) if sweep.pick_best else None
    entries = {run: course_entry(run) for run in sweep.runs}
    with_course = any(entries.values())
    header = ["run", "train acc", "dev acc", "test acc", "seconds"]
    if count > 1:
        header += [f"{name} acc over {count} seeds" for name in ("train", "dev", "test")]
    if with_course:
        header += ["course dev", "course test"]
    rows = [_row(run, records, failures, seeds, best, entries[run], with_course)
            for run in sweep.runs]

    notes = []
    if count > 1:
        notes.append(f"The first accuracies are seed {COURSE_SEED}'s; the columns over "
                     f"{count} seeds give the mean ± sd (sample sd) and the min–max of the "
                     f"final accuracies of the seeds {', '.join(map(str, seeds))}.")
        if sweep.pick_best:
            notes.append(f"The best configuration is chosen on the mean final dev accuracy "
                         f"over the {count} seeds.")
    if with_course:
        notes.append("The course's numbers against ours: one seed: no spread to place them "
                      "in (`--seeds K` runs K seeds and places each number among them)."
                      if count == 1 else
                      "The course's numbers are placed among our seeds' final accuracies "
                      "(the rule is stated under the tables).")
    shown = set(entries.values())
    for key, run, dev, test in COURSE:
        if key == sweep.key and (key, run, dev, test) not in shown:
            notes.append(f"The course's configuration `{run.description}` (dev {dev:.4f}, test "
                         f"{test:.4f}) is not among these runs.")
    return header, rows, notes, best


def _row(run, records, failures, seeds, best, entry, with_course):
    record = records.get(run)
    md, tex = f"`{run.description}`", f"\\texttt{{{tex_escape(run.description)}}}"
    if run == best:
        md, tex = f"**{md}** (best)", f"\\textbf{{{tex}}} (best)"
    if record is not None and record.get("diverged"):
        md, tex = md + " (diverged)", tex + " (diverged)"
    row = [(md, tex)]
    if record is None:
        row += [cell("failed" if run in failures else "not run")] + [cell("")] * 3
    else:
        row += [cell(fmt(measure(record))) for measure in MEASURES]
        row.append(cell(fmt(record.get("train_seconds"), 1)))
    values = [seed_values(run, records, seeds, measure) for measure in MEASURES]
    if len(seeds) > 1:
        row += [spread(v, len(seeds)) for v in values]
    if with_course:
        if entry is None:
            row += [cell("—")] * 2
        else:
            row += [course_cell(course, ours, len(seeds))
                    for course, ours in zip(entry[2:], values[1:])]
    return row


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(md for md, _ in row) + " |" for row in rows]


def latex_table(title, header, rows):
    """A booktabs tabular of the table, under a comment with its title."""
    lines = [f"% {title}", "\\begin{tabular}{l" + "r" * (len(header) - 1) + "}", "\\toprule",
             " & ".join(tex_escape(h) for h in header) + " \\\\", "\\midrule"]
    lines += [" & ".join(tex for _, tex in row) + " \\\\" for row in rows]
    return lines + ["\\bottomrule", "\\end{tabular}"]
