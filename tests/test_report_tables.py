"""The tables and results.md / results.tex, without running anything: the columns, the spread
over seeds, the course's numbers placed among the seeds by one rule (reporting/seeds.py), the
LaTeX twin of each table, and the note of a short report."""
import math
import re
import statistics

import pytest

from reporting.plan import Sweep, q1, q2
from reporting.results import write_report
from reporting.tables import latex_table, markdown_table, sweep_table
from conftest import report_record, table_rows

Q1 = Sweep("q1", "Q1: numpy models", [q1("perceptron"), q1("logistic_regression"), q1("mlp")],
           pick_best=False)


def seeded_records(sweep, dev, test, seeds):
    return {run.with_seed(seed): report_record(run.model, seed, dev=dev[run.model][i],
                                        test=test[run.model][i])
            for run in sweep.runs for i, seed in enumerate(seeds)}


def test_two_seeds_that_nearly_coincide_do_not_make_the_course_an_outlier(tmp_path):
    """Issue 23: seeds 0.9326 and 0.9327, the course's 0.9373: 0.0046 above the highest, no
    distance in sd (a sample sd of 0.0001 from two seeds says nothing)."""
    dev = {"perceptron": [0.72, 0.73], "logistic_regression": [0.82, 0.83],
           "mlp": [0.9326, 0.9327]}
    test = {"perceptron": [0.61, 0.62], "logistic_regression": [0.70, 0.71],
            "mlp": [0.8500, 0.8501]}
    records = seeded_records(Q1, dev, test, [42, 1])
    md = write_report([Q1], records, {}, tmp_path, 1.0, seeds=[42, 1]).read_text()
    _, table = table_rows(md, Q1.title)
    assert table["mlp"][-2:] == ["0.9373 (0.0046 above the highest of 2 seeds)",
                                 "0.8610 (0.0109 above the highest of 2 seeds)"]
    assert table["perceptron"][-2:] == ["0.7236 (inside the range of 2 seeds)",
                                        "0.6193 (inside the range of 2 seeds)"]
    assert table["logistic_regression"][-2] == "0.8251 (inside the range of 2 seeds)"
    assert " sd " not in " ".join(c for cells in table.values() for c in cells[-2:])
    tex = (tmp_path / "results.tex").read_text()
    assert "0.9373 (0.0046 above the highest of 2 seeds)" in tex
    caption = next(line for line in md.splitlines() if line.startswith("*Figure:"))
    assert "`mlp` 0.9373 (0.0046 above the highest of 2 seeds)" in caption


def test_a_course_number_far_outside_five_seeds_gets_a_conservative_distance(tmp_path):
    dev = {"perceptron": [0.70, 0.71, 0.72, 0.73, 0.74], "logistic_regression": [0.82] * 5,
           "mlp": [0.900, 0.901, 0.902, 0.903, 0.904]}
    test = {m: [0.6, 0.61, 0.62, 0.63, 0.64] for m in dev}
    seeds = [42, 1, 2, 3, 4]
    records = seeded_records(Q1, dev, test, seeds)
    md = write_report([Q1], records, {}, tmp_path, 1.0, seeds=seeds).read_text()
    _, table = table_rows(md, Q1.title)
    # by hand: mean 0.902, sample sd 0.0015811, upper 95% bound sd * sqrt(4 / 0.484) = 0.004545;
    # (0.9373 - 0.902) / 0.004545 = 7.77
    values = dev["mlp"]
    bound = statistics.stdev(values) * math.sqrt(4 / 0.484)
    assert bound == pytest.approx(0.004545, abs=1e-6)
    assert table["mlp"][-2] == ("0.9373 (0.0333 above the highest of 5 seeds; at least 7.8 sd "
                                "above their mean)")
    assert table["perceptron"][-2] == "0.7236 (inside the range of 5 seeds)"
    # seeds that agree exactly: the range alone, no division by a zero sd
    assert table["logistic_regression"][-2] == "0.8251 (0.0051 above the highest of 5 seeds)"
    assert "7.8 sd" in (tmp_path / "results.tex").read_text()


def test_the_rule_is_stated_once_in_both_files_and_only_with_several_seeds(tmp_path):
    dev = {m: [0.7, 0.8] for m in ("perceptron", "logistic_regression", "mlp")}
    records = seeded_records(Q1, dev, dev, [42, 1])
    q2_sweep = Sweep("q2.2", "Q2.2", [q2("mlp", hidden_size=200)])
    records[q2("mlp", hidden_size=200)] = report_record("mlp")
    md = write_report([Q1, q2_sweep], records, {}, tmp_path, 1.0, seeds=[42, 1]).read_text()
    tex = (tmp_path / "results.tex").read_text()
    rule = "a distance in standard deviations only from 5 seeds on"
    assert md.count(rule) == 1 and tex.count(rule) == 1
    assert md.index(rule) > md.rindex("| ")  # under the tables
    assert f"up to {math.sqrt(1 / 0.000982):.0f} times" in md
    one = write_report([Q1], {run: report_record(run.model) for run in Q1.runs}, {}, tmp_path,
                       1.0).read_text()
    assert rule not in one and "one seed: no spread to place them in" in one
    _, table = table_rows(one, Q1.title)
    assert table["perceptron"][-2:] == ["0.7236", "0.6193"]


def test_the_spread_cells_give_mean_sd_and_range_and_the_missing_seeds():
    runs = [q2("mlp"), q2("mlp", layers=2)]
    sweep = Sweep("s", "S", runs)
    records = {runs[0]: report_record("mlp", dev=0.5), runs[0].with_seed(1): report_record("mlp", 1, dev=0.7),
               runs[0].with_seed(2): report_record("mlp", 2, dev=0.9),
               runs[1].with_seed(1): report_record("mlp", 1, dev=0.4)}
    header, rows, notes, best = sweep_table(sweep, records, {}, seeds=[42, 1, 2])
    assert header == ["run", "train acc", "dev acc", "test acc", "seconds",
                      "train acc over 3 seeds", "dev acc over 3 seeds", "test acc over 3 seeds"]
    assert rows[0][6] == ("0.7000 ± 0.2000 (0.5000–0.9000)",
                          r"$0.7000 \pm 0.2000$ (0.5000--0.9000)")
    assert rows[1][1][0] == "not run" and rows[1][6][0] == "0.4000 (1 of 3 seeds)"
    assert best == runs[0] and rows[0][0][0] == "**`mlp`** (best)"
    assert "The best configuration is chosen on the mean final dev accuracy over the 3 seeds." \
        in notes


def test_a_failed_or_diverged_run_says_so():
    runs = [q2("mlp"), q2("mlp", learning_rate="9")]
    sweep = Sweep("s", "S", runs, pick_best=False)
    _, rows, _, _ = sweep_table(sweep, {runs[1]: report_record("mlp", diverged=True)},
                                {runs[0]: None})
    assert rows[0][1][0] == "failed"
    assert rows[1][0] == ("`mlp -learning_rate 9` (diverged)",
                          r"\texttt{mlp -learning\_rate 9} (diverged)")


def test_the_latex_table_is_the_markdown_table_escaped():
    runs = [q2("mlp"), q2("mlp", hidden_size=200)]
    sweep = Sweep("q2.2", "Q2.2 & more", runs)
    records = {run.with_seed(s): report_record("mlp", s, dev=0.5 + s / 1000) for run in runs
               for s in (42, 1)}
    header, rows, _, _ = sweep_table(sweep, records, {}, seeds=[42, 1])
    md, tex = markdown_table(header, rows), latex_table(sweep.title, header, rows)
    assert tex[:3] == ["% Q2.2 & more", "\\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
                       "\\toprule"]
    assert tex[-2:] == ["\\bottomrule", "\\end{tabular}"]
    for md_row, tex_row in zip(md[2:], tex[5:-2]):
        assert re.findall(r"\d+\.\d+", md_row) == re.findall(r"\d+\.\d+", tex_row)
        assert len(tex_row.removesuffix(r" \\").split(" & ")) == len(header)
        assert "_" not in tex_row.replace(r"\_", "") and "`" not in tex_row


@pytest.mark.parametrize("epochs", [None, 20, 1, 5])
def test_only_a_report_with_other_epochs_is_marked_short(tmp_path, epochs):
    run = q1("perceptron")
    sweeps = [Sweep("q1", "Q1: numpy models", [run], pick_best=False)]
    text = write_report(sweeps, {run: report_record()}, {}, tmp_path, 1.0, command="python x",
                        epochs=epochs).read_text()
    assert "Regenerated by `python x`." in text
    short = epochs not in (None, 20)
    assert ("not comparable with the course's published ones" in text) == short
    assert (f"ours after {epochs}." in text) == short


def test_a_course_configuration_not_run_is_named(tmp_path):
    sweep = Sweep("q2.3", "Q2.3", [q2("mlp", layers=2)])
    text = write_report([sweep], {sweep.runs[0]: report_record("mlp")}, {}, tmp_path, 1.0).read_text()
    assert ("The course's configuration `mlp -hidden_size 200 -layers 2` (dev 0.9561, test "
            "0.8939) is not among these runs.") in text

