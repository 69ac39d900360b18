"""keras_igc.tuning: valid (L, M) enumeration, the hypermodel, sweeps and reports."""

import csv
import json
import os

import keras
import keras_tuner
import pytest

from keras_igc import applications, cli, quick, tuning
from keras_igc.complexity import model_complexity

pytestmark = pytest.mark.tensorflow_only

TINY = dict(epochs=1, steps_per_epoch=2, batch_size=64, seed=0, verbose=0)


def test_fixed_width_gives_exactly_the_divisor_pairs():
    pairs = tuning.fixed_width_pairs(48)
    assert pairs == [
        (48, 1), (24, 2), (16, 3), (12, 4), (8, 6),
        (6, 8), (4, 12), (3, 16), (2, 24), (1, 48),
    ]  # fmt: skip
    assert tuning.fixed_width_pairs(7) == [(7, 1), (1, 7)]


@pytest.mark.parametrize(
    "L, M, depth, residual",
    [(24, 2, 8, False), (4, 8, 20, False), (24, 2, 20, True), (3, 5, 8, True)],
)
def test_conv_weights_match_the_built_network(L, M, depth, residual):
    model = applications.igc_cifar_network(depth, residual, L, M)
    assert (
        applications.cifar.igc_conv_weights(L, M, depth, residual)
        == (model_complexity(model)["conv_params"])
    )


@pytest.mark.parametrize("depth, residual", [(8, False), (20, False), (20, True)])
def test_budget_pairs_stay_within_the_budget_and_are_the_widest(depth, residual):
    budget = tuning.reference_budget("RegConv-W16", depth, residual)
    pairs = tuning.fixed_budget_pairs(budget, depth, residual)
    assert pairs, "RegConv-W16's budget fits IGC networks"
    for L, M in pairs:
        assert applications.cifar.igc_conv_weights(L, M, depth, residual) <= budget
        assert applications.cifar.igc_conv_weights(L + 1, M, depth, residual) > budget
    left_out = set(tuning.BUDGET_SECONDARY_PARTITIONS) - {M for _, M in pairs}
    for M in left_out:
        assert applications.cifar.igc_conv_weights(1, M, depth, residual) > budget
    # The paper's finding at this budget: M = 2 is the widest split.
    widths = {M: L * M for L, M in pairs}
    assert max(widths, key=widths.get) == 2


def test_reference_budget_counts_the_reference_network():
    model = applications.regconv_cifar_network(8, width=16)
    assert (
        tuning.reference_budget("RegConv-W16", 8)
        == (model_complexity(model)["conv_params"])
    )


def test_width_without_pairs_is_an_error():
    with pytest.raises(ValueError, match="width.*positive integer"):
        tuning.fixed_width_pairs(0)


def test_budget_below_the_smallest_network_is_an_error():
    smallest = applications.cifar.igc_conv_weights(1, 1, 8)
    with pytest.raises(ValueError, match=f"smallest candidate.*{smallest:,}"):
        tuning.fixed_budget_pairs(smallest - 1, 8)


def test_impossible_depth_is_an_error():
    with pytest.raises(ValueError, match="3k\\+2"):
        tuning.fixed_budget_pairs(10**6, 9)


def test_unknown_tuner_and_mode_are_errors(tmp_path):
    hypermodel = tuning.IGCHyperModel([(4, 2, 8)], "digits", 10)
    with pytest.raises(ValueError, match="Unknown tuner 'optuna'.*hyperband"):
        tuning.make_tuner(hypermodel, "optuna", str(tmp_path))
    with pytest.raises(ValueError, match="mode"):
        tuning.sweep("depth", "digits", str(tmp_path))


@pytest.mark.parametrize("name", list(tuning.TUNERS))
def test_every_tuner_can_be_chosen(name, tmp_path):
    hypermodel = tuning.IGCHyperModel([(4, 2, 8), (2, 4, 8)], "digits", 10, epochs=2)
    tuner = tuning.make_tuner(hypermodel, name, str(tmp_path))
    assert isinstance(tuner, tuning.TUNERS[name])
    if name != "hyperband":
        assert tuner.oracle.max_trials == 2


def test_hypermodel_is_one_choice_over_valid_configs():
    hypermodel = tuning.IGCHyperModel(
        [(24, 2, 8), (12, 4, 8)], "digits", 10, learning_rates=[0.1, 0.05]
    )
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    assert hp.values == {"config": "L24M2-D8", "learning_rate": 0.1}
    assert hp._hps["config"][0].values == ["L24M2-D8", "L12M4-D8"]
    assert model.input_shape == (None, 32, 32, 1) and model.output_shape == (None, 10)
    assert hypermodel.complexity["L24M2-D8"] == model_complexity(model)


def test_a_config_outside_the_sweep_fails_the_trial():
    hypermodel = tuning.IGCHyperModel([(24, 2, 8)], "digits", 10)
    hp = keras_tuner.HyperParameters()
    hp.values["config"] = "L5M5-D8"
    with pytest.raises(keras_tuner.errors.FailedTrialError, match="L5M5-D8"):
        hypermodel.build(hp)


def test_builds_start_from_a_clear_session():
    hypermodel = tuning.IGCHyperModel([(4, 2, 8)], "digits", 10)
    hypermodel.build(keras_tuner.HyperParameters())
    keras.layers.Dense(1)  # a stale name, as a previous trial would leave
    model = hypermodel.build(keras_tuner.HyperParameters())
    assert model.get_layer("predictions") is not None
    assert keras.backend.get_uid("dense") == 1


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_budget_sweep_writes_the_report(tmp_path):
    rows = tuning.sweep(
        "budget", "digits", str(tmp_path), secondary_partitions=(8, 12), **TINY
    )
    assert [(r["M"], r["status"]) for r in rows] == [
        (8, "COMPLETED"),
        (12, "COMPLETED"),
    ]
    budget = tuning.reference_budget("RegConv-W16", 8, input_shape=(32, 32, 1))
    for row in rows:
        assert 0 < row["conv_params"] <= budget
        assert row["params"] > row["conv_params"] and row["macs"] > 0
        assert 0 <= row["best_val_accuracy"] <= 1 and row["epochs"] == 1
        assert row["wall_time_s"] > 0
        assert row["widths"] == "/".join(
            str(row["L"] * row["M"] * k) for k in (1, 2, 4)
        )
    table = read_csv(tmp_path / "report.csv")
    assert [int(r["L"]) for r in table] == [r["L"] for r in rows]
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.count("\n") == 2 + len(rows) and "best_val_accuracy" in markdown
    for png in ("accuracy_vs_m.png", "accuracy_vs_params.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


class InterruptSecondTrial(keras.callbacks.Callback):
    """Stops the whole sweep (as Ctrl-C would) when the second trial trains."""

    trials_started = 0  # class attribute: KerasTuner deep-copies callbacks

    def on_train_begin(self, logs=None):
        type(self).trials_started += 1
        if type(self).trials_started == 2:
            raise KeyboardInterrupt


def test_interrupted_sweep_resumes_keeping_finished_trials(tmp_path):
    args = dict(mode="width", dataset="digits", directory=str(tmp_path), width=4)
    with pytest.raises(KeyboardInterrupt):
        tuning.sweep(**args, max_trials=2, callbacks=[InterruptSecondTrial()], **TINY)
    record = tmp_path / "igc_sweep" / "trial_0" / "igc_record.json"
    first = json.loads(record.read_text())

    rows = tuning.sweep(**args, max_trials=2, **TINY)
    assert [(r["trial"], r["status"]) for r in rows] == [
        ("0", "COMPLETED"),
        ("1", "COMPLETED"),
    ]
    assert json.loads(record.read_text()) == first  # not trained again


def test_cli_tune(tmp_path, capsys):
    directory = str(tmp_path / "sweep")
    argv = ["tune", "--mode", "width", "--width", "4", "--dataset", "digits"]
    argv += ["--epochs", "1", "--max-trials", "1", "--steps-per-epoch", "2"]
    assert cli.main([*argv, "--directory", directory]) == 0
    assert "| trial | status | L | M |" in capsys.readouterr().out
    assert os.path.exists(os.path.join(directory, "report.md"))
    with pytest.raises(SystemExit):
        cli.main([*argv, "--directory", directory, "--tuner", "optuna"])


def test_quick_caps_a_sweep_at_two_trials(tmp_path, monkeypatch):
    # --mode width --width 4 has three configurations: (1, 4), (2, 2), (4, 1).
    monkeypatch.setenv("KERAS_IGC_QUICK", "1")
    rows = tuning.sweep(
        "width", "digits", str(tmp_path / "sweep"), width=4, epochs=5, verbose=0,
    )  # fmt: skip
    assert len(rows) == quick.TRIALS == 2
