"""The report's plan: runs and their labels, the seeds, the flags as the scripts read them
(their own parsers' defaults), the course's numbers matched to configurations, and the rough
guess of a run's length."""
import pytest

from reporting import plan
from reporting.plan import COURSE, Run, q1, q2


def test_the_2022_23_plan_and_the_extras():
    sweeps = plan.plan(extras=False)
    assert [s.key for s in sweeps] == ["q1", "q2.1", "q2.2", "q2.3"]
    assert [len(s.runs) for s in sweeps[:3]] == [3, 3, 6]
    q23 = sweeps[3]
    assert q23.after == "q2.2" and [r.description for r in q23.build(q2("mlp"))] == [
        "mlp", "mlp -layers 2", "mlp -layers 3"]
    extras = plan.plan(extras=True)
    assert [s.key for s in extras[4:]] == ["x-l2", "x-batch", "x-momentum", "x-l2-dropout",
                                          "x-adam"]


def test_seeds_are_42_then_a_fixed_list_and_a_seed_42_run_keeps_its_name():
    assert plan.seed_list(1) == [42]
    assert plan.seed_list(5) == [42, 1, 2, 3, 4]
    assert plan.seed_list(50) == [42, *range(1, 42), *range(43, 51)]
    run = q2("mlp", hidden_size=200)
    assert run.with_seed(42) == run and run.label == "q2-mlp-hidden_size=200"
    seeded = run.with_seed(7)
    assert seeded.args == ("mlp", "-hidden_size", "200", "-seed", "7") and seeded.seed == 7
    assert seeded.label == "q2-mlp-hidden_size=200-seed=7"
    assert seeded.with_seed(42) == run and seeded.config == run.config


def test_settings_come_from_each_script_s_own_parser():
    import utils
    for script in plan.SCRIPTS:
        parser = utils.load_script(script).build_parser()
        model = "mlp"
        values = plan.settings(Run(script, (model,)))
        for action in parser._actions:
            if action.dest in ("help", "model") or action.default is None:
                continue
            assert values[action.dest] == parser.parse_args([model]).__dict__[action.dest]
    # a default that depends on the model: hw1-q2.py's DEFAULT_BATCH_SIZE
    batch = utils.load_script("hw1-q2.py").DEFAULT_BATCH_SIZE
    assert plan.settings(q2("mlp"))["batch_size"] == batch["mlp"]
    assert plan.settings(q2("logistic_regression"))["batch_size"] == batch["logistic_regression"]
    assert plan.settings(q1("mlp", learning_rate="x")) is None  # refused, quietly


def test_a_configuration_matches_the_course_s_however_its_defaults_are_spelled():
    assert plan.course_entry(q1("mlp"))[2:] == (0.9373, 0.8610)  # defaults left implicit
    assert plan.course_entry(q1("logistic_regression"))[2:] == (0.8251, 0.7028)
    assert plan.course_entry(q2("mlp", hidden_size=200, dropout="0.30"))[2:] == (0.9492, 0.8813)
    assert plan.course_entry(q2("mlp", hidden_size=200).with_seed(3))[2:] == (0.9492, 0.8813)
    assert plan.course_entry(q2("logistic_regression", learning_rate="0.001"))[2:] == (
        0.8256, 0.7019)  # batch size 1 is the model's default
    assert plan.course_entry(q2("mlp")) is None
    assert plan.course_entry(q2("mlp", hidden_size=200, batch_size=64)) is None
    for _, run, _, _ in COURSE:
        assert plan.settings(run) is not None, run  # every course run is a valid invocation


def test_rough_seconds_scale_with_epochs_width_depth_and_batches():
    mlp = q1("mlp")
    assert plan.rough_seconds(q1("mlp", epochs=40)) == pytest.approx(2 * plan.rough_seconds(mlp))
    ffn = q2("mlp")
    assert plan.rough_seconds(ffn.with_flags(layers=3)) > plan.rough_seconds(
        ffn.with_flags(layers=2)) > plan.rough_seconds(ffn)
    assert plan.rough_seconds(ffn.with_flags(batch_size=32)) == pytest.approx(
        plan.rough_seconds(ffn) / 2)  # the default batch is 16
    assert plan.rough_seconds(q1("mlp", hidden_size="x")) > 0  # refused flags: still a guess


def test_the_best_configuration_is_chosen_on_the_mean_dev_accuracy_over_the_seeds():
    a, b = q2("mlp"), q2("mlp", layers=2)
    record = lambda dev: {"valid_acc": [0.1, dev]}
    records = {a: record(0.9), a.with_seed(1): record(0.5), b: record(0.8),
               b.with_seed(1): record(0.8)}
    assert plan.best_run([a, b], records, seeds=[42]) == a
    assert plan.best_run([a, b], records, seeds=[42, 1]) == b
    assert plan.best_run([a, b], {a: record(0.7), b: record(0.7)}) == a  # the first on ties
    assert plan.best_run([a, b], {}) is None
