"""check_solution.py and checker/: verdicts on this project's answers, on students' solutions
written on the course's skeleton, on mutants with one classic bug each, and on files that hang,
raise or print; the outputs (table, Gradescope JSON, CSV), the exit codes and the bands file."""
import argparse
import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from checker import bands, endtoend, grade, harness, points, unit_q1, unit_q2
from conftest import make_tiny_dataset
from reporting import seeds

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "checker_cases"
KEYS = [q.key for q in points.QUESTIONS]
Q1, Q2 = ("Q1.1a", "Q1.1b", "Q1.2b"), ("Q2.1", "Q2.2", "Q2.3")


def check(files, timeout=30.0, **options):
    """The verdicts on a submission made of `files` ({"hw1-q1.py": path, ...})."""
    submission = grade.Submission("test", files, required=False)
    grade.check_submission(submission, grade.Options(timeout=timeout, **options))
    return {q.question.key: q for q in submission.questions}


def mutant(tmp_path, script, replacements, source="good"):
    """CASES/<source>/<script> with each (old, new) replaced; each old must occur once."""
    text = (CASES / source / script).read_text()
    for old, new in replacements:
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {script}"
        text = text.replace(old, new)
    path = tmp_path / script
    path.write_text(text)
    return path


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "check_solution.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


# ----------------------------------------------------------------------------- the points


def test_points_add_up_and_name_the_checks_that_exist():
    assert points.total_points() == 65
    assert {q.key: q.points for q in points.QUESTIONS} == {
        "Q1.1a": 10, "Q1.1b": 10, "Q1.2b": 10, "Q2.1": 10, "Q2.2": 15, "Q2.3": 10}
    for question in points.QUESTIONS:
        assert sum(question.checks.values()) == question.points
        unit = (unit_q1 if question.script == "hw1-q1.py" else unit_q2).CHECKS[question.key]
        assert list(unit) == question.unit_checks()
        for full in (True, False):
            total = sum(question.check_points(n, full) for n in question.checks)
            assert total == pytest.approx(question.points)


# ----------------------------------------------------------------------------- full marks


@pytest.fixture(scope="module")
def project_run(tmp_path_factory):
    """check_solution.py on this project's own hw1-q1.py and hw1-q2.py, with --json."""
    out = tmp_path_factory.mktemp("project") / "results.json"
    process = run_cli(ROOT / "hw1-q1.py", ROOT / "hw1-q2.py", "--json", out)
    return process, json.loads(out.read_text()) if out.exists() else None


def test_this_projects_answers_get_full_marks(project_run):
    process, results = project_run
    assert process.returncode == 0, process.stdout + process.stderr
    assert results["score"] == 65
    assert [t["status"] for t in results["tests"]] == ["passed"] * 6
    for key in KEYS:
        assert any(line.startswith(key) and " PASS " in line
                   for line in process.stdout.splitlines()), key


def test_json_has_gradescopes_keys(project_run):
    _, results = project_run
    assert isinstance(results["score"], (int, float))
    assert len(results["tests"]) == len(points.QUESTIONS)
    for test, question in zip(results["tests"], points.QUESTIONS):
        assert set(test) >= {"name", "score", "max_score", "output", "visibility", "status"}
        assert test["name"].startswith(question.key)
        assert test["max_score"] == question.points
        assert 0 <= test["score"] <= test["max_score"]
        assert test["visibility"] in ("hidden", "after_due_date", "after_published", "visible")
        assert test["status"] in ("passed", "failed")
        assert isinstance(test["output"], str) and test["output"]
    assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]))


@pytest.mark.parametrize("folder", ["good", "good2"])
def test_skeleton_style_solutions_get_full_marks(folder):
    """Weights stored (in, out) as W1 / W2, or a dict of lists W / B with column biases and a
    constructor that needs a layer count; nn.ModuleList with functional activations, or an
    nn.Parameter stored (D, C); the skeleton's evaluate without torch.no_grad()."""
    verdicts = check({s: CASES / folder / s for s in points.SCRIPTS})
    assert {k: v.verdict for k, v in verdicts.items()} == dict.fromkeys(KEYS, grade.PASS)
    assert sum(v.points for v in verdicts.values()) == 65


# ----------------------------------------------------------------------------- mutants

MUTANTS = {
    "perceptron updates only the gold row": (
        "hw1-q1.py", "Q1.1a", [("            self.W[y_hat, :] -= x_i\n", "")],
        "only the gold class's row moved"),
    "logistic regression's gradient sign": (
        "hw1-q1.py", "Q1.1b", [("self.W = self.W - learning_rate * grad",
                                "self.W = self.W + learning_rate * grad")],
        "goes up the gradient"),
    "softmax without the max subtracted": (
        "hw1-q1.py", "Q1.1b", [("        scores = scores - np.max(scores)\n", "")],
        "subtract the largest score before exp"),
    "MLP: ReLU derivative taken on the output": (
        "hw1-q1.py", "Q1.2b", [("            grad_z2 = probs - one_hot\n",
                                "            grad_z2 = (probs - one_hot) * "
                                "(self.forward(x_i)[2] > 0)\n")],
        "the output layer has no ReLU"),
    "MLP: activation used as the ReLU's derivative": (
        "hw1-q1.py", "Q1.2b", [("grad_z1 = grad_h1 * (z1 > 0)", "grad_z1 = grad_h1 * h1")],
        "the ReLU's derivative is 1 where the pre-activation is positive"),
    "MLP: W2 updated before the hidden gradient": (
        "hw1-q1.py", "Q1.2b", [("            self.W2 -= learning_rate * grad_W2\n", ""),
                               ("            grad_h1 = self.W2.dot(grad_z2)\n",
                                "            self.W2 -= learning_rate * grad_W2\n"
                                "            grad_h1 = self.W2.dot(grad_z2)\n")],
        "compute every gradient before changing any weight"),
    "MLP: biases not updated": (
        "hw1-q1.py", "Q1.2b", [("            self.b1 -= learning_rate * grad_b1\n", ""),
                               ("            self.b2 -= learning_rate * grad_b2\n", "")],
        "the biases are not updated"),
    "MLP: init sigma 0.01": (
        "hw1-q1.py", "Q1.2b", [("np.random.normal(0.1, 0.1, size=(n_features, hidden_size))",
                                "np.random.normal(0.1, 0.01, size=(n_features, hidden_size))")],
        "sd 0.0099"),
    "MLP ignores the learning rate passed": (
        "hw1-q1.py", "Q1.2b", [("    def train_epoch(self, X, y, learning_rate=0.001):\n",
                                "    def train_epoch(self, X, y, learning_rate=0.001):\n"
                                "        learning_rate = 0.001\n")],
        "is the learning_rate passed to train_epoch used"),
    "train_batch without zero_grad": (
        "hw1-q2.py", "Q2.1", [("    optimizer.zero_grad()\n", "")],
        "call optimizer.zero_grad()"),
    "forward returns probabilities": (
        "hw1-q2.py", "Q2.1", [("        return self.layer(x)",
                               "        return torch.softmax(self.layer(x), dim=-1)")],
        "forward returns probabilities"),
    "evaluate in train mode": (
        "hw1-q2.py", "Q2.2", [("    model.eval()\n", "")], "call model.eval() first"),
    "evaluate leaves eval mode on": (
        "hw1-q2.py", "Q2.2", [("    model.train()\n    return n_correct", "    return n_correct")],
        "call model.train() before returning"),
    "tanh ignored": (
        "hw1-q2.py", "Q2.2", [("self.activation = torch.relu if activation_type == 'relu' "
                               "else torch.tanh", "self.activation = torch.relu")],
        "activation_type 'tanh' is ignored"),
    "no activation between hidden layers": (
        "hw1-q2.py", "Q2.3", [("            h = drop(self.activation(layer(h)))",
                               "            h = drop(layer(h))")],
        "only the first hidden layer has an activation"),
}


@pytest.mark.parametrize("name", list(MUTANTS))
def test_a_mutant_fails_its_question_only(tmp_path, name):
    script, question, replacements, reason = MUTANTS[name]
    verdicts = check({script: mutant(tmp_path, script, replacements)})
    assert verdicts[question].verdict == grade.FAIL
    assert reason in verdicts[question].reason
    assert verdicts[question].points < verdicts[question].max_points
    for key in (Q1 if script == "hw1-q1.py" else Q2):
        if key != question:
            assert verdicts[key].verdict == grade.PASS, (key, verdicts[key].reason)


def test_the_relu_mask_taken_from_the_activation_is_accepted(tmp_path):
    """1[relu(z) > 0] is 1[z > 0]: the same update, so no failure."""
    path = mutant(tmp_path, "hw1-q1.py", [("grad_z1 = grad_h1 * (z1 > 0)",
                                            "grad_z1 = grad_h1 * (h1 > 0)")])
    assert check({"hw1-q1.py": path})["Q1.2b"].verdict == grade.PASS


# ----------------------------------------------------------------------------- broken files


def test_the_untouched_skeleton_is_not_implemented_everywhere():
    verdicts = check({s: CASES / "skeleton" / s for s in points.SCRIPTS})
    for key, verdict in verdicts.items():
        assert verdict.verdict == grade.NOT_IMPLEMENTED, (key, verdict.reason)
        assert "NotImplementedError" in verdict.reason
        assert verdict.points == 0


def test_a_file_that_hangs_at_import_fails_its_questions_in_one_line():
    verdicts = check({"hw1-q1.py": CASES / "hang" / "hw1-q1.py"}, timeout=2)
    for key in Q1:
        assert verdicts[key].verdict == grade.FAIL
        assert verdicts[key].reason == ("importing hw1-q1.py takes more than 2 s (code at "
                                        "module level?)")


def test_a_file_that_raises_at_import_fails_its_questions_in_one_line():
    verdicts = check({"hw1-q2.py": CASES / "raises" / "hw1-q2.py"})
    for key in Q2:
        assert verdicts[key].verdict == grade.FAIL
        assert verdicts[key].reason.startswith("importing hw1-q2.py raises FileNotFoundError")
        assert "line 6" in verdicts[key].reason


def test_a_method_that_hangs_fails_its_question_and_the_others_are_checked(tmp_path):
    path = mutant(tmp_path, "hw1-q1.py", [("        y_hat = np.argmax(self.W.dot(x_i))\n",
                                            "        while True:\n            pass\n")])
    verdicts = check({"hw1-q1.py": path}, timeout=2)
    assert verdicts["Q1.1a"].reason == "update_weight: timed out after 2 s"
    assert verdicts["Q1.1b"].verdict == verdicts["Q1.2b"].verdict == grade.PASS


def test_a_hang_the_alarm_cannot_stop_is_killed_and_the_rest_checked(tmp_path, monkeypatch):
    """A student's code that ignores SIGALRM: the checker's hard limit kills the process and
    starts another for the questions after it."""
    monkeypatch.setattr(grade, "STARTUP_SECONDS", 2)
    path = mutant(tmp_path, "hw1-q1.py", [
        ("        y_hat = np.argmax(self.W.dot(x_i))\n",
         "        import signal\n        signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
         "        while True:\n            pass\n")])
    verdicts = check({"hw1-q1.py": path}, timeout=1)
    assert verdicts["Q1.1a"].verdict == grade.FAIL
    assert verdicts["Q1.1a"].reason.startswith("update_weight: timed out after ")
    assert verdicts["Q1.1b"].verdict == verdicts["Q1.2b"].verdict == grade.PASS


def test_syntax_error_missing_class_and_exceptions_are_one_line_each(tmp_path):
    syntax = mutant(tmp_path, "hw1-q1.py", [("    def relu(self, z):", "    def relu(self, z)")])
    for key, verdict in check({"hw1-q1.py": syntax}).items():
        if key in Q1:
            assert verdict.reason == "syntax error in hw1-q1.py, line 83: expected ':'"
    missing = mutant(tmp_path, "hw1-q1.py", [("class MLP(object):", "class MyMLP(object):")])
    verdicts = check({"hw1-q1.py": missing})
    assert verdicts["Q1.2b"].reason == "hw1-q1.py has no MLP"
    assert verdicts["Q1.1a"].verdict == grade.PASS
    raising = mutant(tmp_path, "hw1-q1.py", [("        grad = np.outer(probs - one_hot, x_i)\n",
                                              "        grad = 1 / 0\n")])
    reason = check({"hw1-q1.py": raising})["Q1.1b"].reason
    assert reason.startswith("raises ZeroDivisionError: division by zero (hw1-q1.py, line ")
    assert reason.endswith(", in update_weight)")
    assert "\n" not in reason


def test_a_model_that_prints_a_lot_is_still_checked(tmp_path):
    path = mutant(tmp_path, "hw1-q1.py", [
        ("        scores = self.W.dot(x_i)\n",
         "        scores = self.W.dot(x_i)\n        for _ in range(300):\n"
         "            print('debug', scores)\n")])
    verdicts = check({"hw1-q1.py": path})
    assert verdicts["Q1.1b"].verdict == grade.PASS


def test_nothing_is_written_beside_the_students_file(tmp_path):
    path = mutant(tmp_path, "hw1-q1.py", [
        ("import utils\n", "import utils\nopen('written-by-student.txt', 'w').write('x')\n"
                           "open(__file__ + '.bak', 'w').write('x')\n")])
    check({"hw1-q1.py": path})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hw1-q1.py"]


# ----------------------------------------------------------------------------- the command


def test_several_folders_give_one_csv_row_each_and_exit_1(tmp_path):
    good, broken = tmp_path / "alice", tmp_path / "bob"
    good.mkdir()
    broken.mkdir()
    (good / "hw1-q1.py").write_text((CASES / "good" / "hw1-q1.py").read_text())
    mutant(broken, "hw1-q1.py", [("            self.W[y_hat, :] -= x_i\n", "")])
    out = tmp_path / "grades.csv"
    process = run_cli("--questions", ",".join(Q1), "--csv", out, good, broken)
    assert process.returncode == 1, process.stderr
    rows = list(csv.DictReader(out.open()))
    assert [(r["submission"], float(r["score"])) for r in rows] == [("alice", 30), ("bob", 20)]
    assert rows[1]["Q1.1a verdict"] == "fail"
    assert "only the gold class's row moved" in rows[1]["Q1.1a reason"]
    assert rows[0]["Q1.2b verdict"] == "pass"
    assert "alice" in process.stdout and "bob" in process.stdout


def test_a_folder_without_one_of_the_files_fails_that_files_questions(tmp_path):
    (tmp_path / "hw1-q2.py").write_text("")
    out = tmp_path / "results.json"
    process = run_cli("--questions", "Q2.1,Q1.1a", "--json", out, tmp_path)
    assert process.returncode == 1
    tests = {t["name"].split()[0]: t for t in json.loads(out.read_text())["tests"]}
    assert "no hw1-q1.py in the submission" in tests["Q1.1a"]["output"]
    assert tests["Q2.1"]["status"] == "failed"  # an empty file: no LogisticRegression


@pytest.mark.parametrize("args, message", [
    (["does-not-exist.py"], "does-not-exist.py: no such file or folder"),
    (["--json", "x.json", "tests/checker_cases/good", "tests/checker_cases/good2"],
     "--json writes one submission's results"),
    (["--epochs", "3", "hw1-q1.py"], "--epochs and --data apply to --full only"),
    (["--full", "--data", "nowhere.npz", "hw1-q1.py"], "nowhere.npz: no such dataset file"),
    (["hw1-q1.py", "tests/checker_cases/good"], "give either files"),
])
def test_bad_input_is_one_error_line_and_exit_2(args, message):
    process = run_cli(*args)
    assert process.returncode == 2
    assert process.stderr.startswith("error: ") and message in process.stderr
    assert len(process.stderr.strip().splitlines()) == 1
    assert "Traceback" not in process.stderr


# ----------------------------------------------------------------------------- end to end


def test_compare_matches_deterministic_runs_to_four_decimals_and_chaotic_ones_to_the_band():
    perceptron, mlp = endtoend.BY_KEY["q1-perceptron"], endtoend.BY_KEY["q1-mlp"]
    reference = {"valid_acc": [[0.70, 0.72]], "test_acc": [0.61],
                 "band_dev": [[0.70, 0.70], [0.72, 0.72]], "band_test": [0.61, 0.61]}
    ok, _ = endtoend.compare(perceptron, {"dev": [0.70002, 0.72004], "test": [0.61]},
                             reference, 2)
    assert ok
    ok, text = endtoend.compare(perceptron, {"dev": [0.70, 0.7203], "test": [0.61]},
                                reference, 2)
    assert not ok and "should match to the fourth decimal" in text
    twice = {"dev": [0.70, 0.70, 0.72, 0.72], "test": [0.61]}  # printed, then kept, per epoch
    assert endtoend.compare(perceptron, twice, reference, 2)[0]
    values = [0.93, 0.932, 0.935, 0.929, 0.931]
    band = list(seeds.band(values))
    chaotic = {"valid_acc": [[v] for v in values], "test_acc": values,
               "band_dev": [band], "band_test": band}
    assert endtoend.compare(mlp, {"dev": [0.933], "test": []}, chaotic, 1)[0]
    ok, text = endtoend.compare(mlp, {"dev": [band[0] - 0.001], "test": []}, chaotic, 1)
    assert not ok and "outside the band" in text and "below the lowest of 5 seeds" in text
    ok, text = endtoend.compare(mlp, {"dev": [], "test": []}, chaotic, 1)
    assert not ok and "evaluated the dev set 0 times" in text


def test_the_course_flags_reach_a_students_parser():
    parser = argparse.ArgumentParser()
    for flag in ("-epochs", "-hidden_sizes", "-learning_rate"):
        parser.add_argument(flag)
    argv, dropped = harness._translate_argv(
        parser, ["mlp", "-epochs", "2", "-hidden_size", "200", "-l2_decay", "0",
                 "-learning_rate", "-0.5"])
    assert argv == ["mlp", "-epochs", "2", "-hidden_sizes", "200", "-learning_rate", "-0.5"]
    assert dropped == ["-l2_decay"]


def test_the_harness_records_each_evaluate_by_split_and_stops_a_hanging_main(tmp_path,
                                                                              monkeypatch):
    """The student's own main on a tiny dataset: one dev and one test accuracy per epoch (the
    skeleton's main evaluates both); a main that hangs in epoch 2 is stopped at the run's
    limit, saying how far it got."""
    data = make_tiny_dataset(tmp_path / "tiny.npz", n_dev=20, n_test=24)
    run = endtoend.BY_KEY["q1-perceptron"]
    calls, problem = endtoend.execute(run, CASES / "good" / "hw1-q1.py", data, 3)
    assert problem is None
    assert len(calls["dev"]) == len(calls["test"]) == 3
    assert all(0 <= a <= 1 for a in calls["dev"] + calls["test"])
    hangs = mutant(tmp_path, "hw1-q1.py", [
        ("        test_accs.append(model.evaluate(test_X, test_y))\n",
         "        test_accs.append(model.evaluate(test_X, test_y))\n"
         "        while i == 2:\n            pass\n")])
    monkeypatch.setattr(endtoend, "STARTUP_SECONDS", 2)
    calls, problem = endtoend.execute(dataclasses.replace(run, seconds_per_epoch=1), hangs,
                                      data, 3)
    assert problem == "timed out after 5 s while running (after 2 epochs)"
    assert len(calls["dev"]) == 2


def test_a_main_that_writes_over_the_data_leaves_the_projects_copy_alone(tmp_path):
    """The end-to-end run's data file is a copy: a student's main that overwrites it (here,
    truncates it before loading) damages only its own sandbox."""
    data = make_tiny_dataset(tmp_path / "tiny.npz")
    before = data.read_bytes()
    vandal = mutant(tmp_path, "hw1-q1.py", [
        ("    utils.configure_seed(seed=42)\n",
         "    utils.configure_seed(seed=42)\n"
         "    open('Kuzushiji-MNIST.npz', 'wb').close()\n")])
    calls, problem = endtoend.execute(endtoend.BY_KEY["q1-perceptron"], vandal, data, 1)
    assert problem is not None  # it loaded an empty file
    assert data.read_bytes() == before


def test_quick_end_to_end_run_on_the_real_data(real_data_path, tmp_path):
    """The student's main, one epoch of the perceptron, against the reference's first epoch;
    and a mutant whose unit check fails is also off the reference's number."""
    broken = mutant(tmp_path, "hw1-q1.py", [("            self.W[y_hat, :] -= x_i\n", "")])
    bands_file = bands.load()
    for path, passes in ((CASES / "good" / "hw1-q1.py", True), (broken, False)):
        verdicts = check({"hw1-q1.py": path}, full=True, epochs=1, data_path=real_data_path,
                         bands=bands_file, questions=("Q1.1a",))
        e2e = next(c for c in verdicts["Q1.1a"].checks if c.name == points.END_TO_END)
        assert (e2e.status == "passed") is passes, e2e.reason
        if passes:
            expected = bands_file["runs"]["q1-perceptron"]["valid_acc"][0][0]
            assert e2e.reason == f"dev {expected:.4f} (= reference)"


# ----------------------------------------------------------------------------- the bands


def test_the_bands_file_follows_the_rule_and_the_courses_deterministic_numbers():
    content = bands.load()
    assert seeds.BAND_RULE in content["rule"]
    assert set(content["runs"]) == set(endtoend.BY_KEY)
    finals = {"q1-perceptron": (0.7236, 0.6193), "q1-logistic_regression": (0.8251, 0.7028),
              "q2-logistic_regression-lr0.001": (0.8256, 0.7019),
              "q2-logistic_regression-lr0.01": (0.8033, 0.6806)}
    for key, entry in content["runs"].items():
        run = endtoend.BY_KEY[key]
        assert entry["deterministic"] is run.deterministic
        assert all(len(dev) == endtoend.EPOCHS for dev in entry["valid_acc"])
        if run.deterministic:
            assert entry["seeds"] == [42]
            dev, test = entry["valid_acc"][0][-1], entry["test_acc"][0]
            assert (round(dev, 4), round(test, 4)) == finals[key]
        else:
            assert entry["seeds"][0] == 42 and len(entry["seeds"]) >= seeds.MIN_SEEDS_FOR_SD
            for epoch, band in enumerate(entry["band_dev"]):
                expected = seeds.band([dev[epoch] for dev in entry["valid_acc"]])
                assert band == pytest.approx(expected, abs=2e-6)
            assert entry["band_test"] == pytest.approx(seeds.band(entry["test_acc"]), abs=2e-6)


def test_the_courses_published_chaotic_numbers_fall_inside_the_bands():
    """The course's own solution is correct: its dev / test accuracies (README's table) must
    pass the end-to-end comparison."""
    course = {"q1-mlp": (0.9373, 0.8610), "q2-logistic_regression-lr0.1": (0.7516, 0.6155),
              "q2-mlp": (0.9492, 0.8813), "q2-mlp-layers2": (0.9561, 0.8939)}
    content = bands.load()
    for key, (dev, test) in course.items():
        entry = content["runs"][key]
        calls = {"dev": [0.0] * (endtoend.EPOCHS - 1) + [dev], "test": [test]}
        passed, text = endtoend.compare(endtoend.BY_KEY[key], calls, entry, endtoend.EPOCHS)
        assert passed, (key, text)


def test_the_generator_reads_records_and_writes_the_bands(tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    for seed, shift in zip((42, 1, 2, 3, 4, 5), (0, 1, -1, 2, -2, 0.5)):
        dev = [0.80 + 0.005 * e + 0.001 * shift for e in range(endtoend.EPOCHS)]
        record = {"model": "mlp", "config": {"model": "mlp", "seed": seed, "epochs": 20,
                                             "hidden_size": 200, "layers": 1,
                                             "learning_rate": 0.001, "l2_penalty": 0.0},
                  "valid_acc": dev, "test_acc": 0.85 + 0.001 * shift}
        (records / f"q1-mlp-{seed}.json").write_text(json.dumps(record))
    other = {"model": "mlp", "config": {"model": "mlp", "seed": 7, "hidden_size": 100,
                                        "layers": 1, "learning_rate": 0.001},
             "valid_acc": [0.5] * 20, "test_acc": 0.5}
    (records / "other-width.json").write_text(json.dumps(other))
    out = tmp_path / "bands.json"
    assert bands.main(["--records", str(records), "--seeds", "5", "--output", str(out)]) == 0
    entry = json.loads(out.read_text())["runs"]["q1-mlp"]
    assert entry["seeds"] == [42, 1, 2, 3, 4]
    finals = [0.85, 0.851, 0.849, 0.852, 0.848]
    assert entry["band_test"] == pytest.approx(seeds.band(finals), abs=2e-6)
    assert entry["test_acc"] == pytest.approx(finals)


def test_the_generator_runs_this_projects_scripts_and_reads_their_records(tmp_path):
    data = make_tiny_dataset(tmp_path / "tiny.npz")
    run = endtoend.BY_KEY["q1-perceptron"]
    bands.run_seeds(3, tmp_path / "runs", data, runs=[run])
    found = bands.read_records([tmp_path / "runs"])
    assert list(found) == ["q1-perceptron"] and list(found["q1-perceptron"]) == [42]
    dev, test = found["q1-perceptron"][42]
    assert len(dev) == endtoend.EPOCHS and 0 <= test <= 1
    with pytest.raises(RuntimeError, match="hw1-q1.py perceptron .* failed: error: "):
        bands.run_seeds(1, tmp_path / "runs", tmp_path / "missing.npz", runs=[run])
