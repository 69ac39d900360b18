"""CoupledSGD and the releases' schedules against PyTorch's own optimizer.

`fixtures/optimizer_torch.npz` holds weights, 20 steps of gradients and the
weights after each step of `torch.optim.SGD(momentum=0.9, nesterov=True)` with
coupled weight decay 1e-4, three parameter groups as the MSGC release forms
them, and two schedules: `MultiStepLR` stepped per batch with drops at 10, 15
and 18 (the IGC recipe's 1/2, 3/4 and 7/8 of 20 steps) and the MSGC release's
per-epoch cosine (4 epochs of 5 steps). It was written by
`fixtures/generate/optimizer_torch.py` with torch 2.13.0.
"""

import os

import keras
import numpy as np
import pytest

from keras_igc.optimizers import CoupledSGD, EpochCosineDecay, StepDecay

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "optimizer_torch.npz")


def _reference():
    data = np.load(FIXTURE)
    names = [k.split(":", 1)[1] for k in data.files if k.startswith("weight:")]
    return data, names


def _variables(data, names):
    # Keras variable names cannot hold "/": the path rules below match "_".
    return [
        keras.Variable(data[f"weight:{n}"], name=n.replace("/", "_")) for n in names
    ]


def _schedule(kind, data):
    rate, _, _, epochs, steps_per_epoch = data["schedule"]
    if kind == "step":
        return StepDecay(float(rate), [int(b) for b in data["boundaries"]])
    return EpochCosineDecay(float(rate), int(epochs), int(steps_per_epoch))


def _msgc_groups(optimizer_class=CoupledSGD, **kwargs):
    return optimizer_class(
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
        no_decay=["mask_generator", "_gamma$"],
        learning_rate_multipliers={"mask_generator": 5.0},
        **kwargs,
    )


def _relative_error(got, expected):
    return float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))


@pytest.mark.parametrize("kind", ["step", "cosine"])
def test_every_step_equals_pytorch_coupled_nesterov_sgd(kind):
    data, names = _reference()
    variables = _variables(data, names)
    optimizer = _msgc_groups(learning_rate=_schedule(kind, data))
    steps = data[f"grads:{names[0]}"].shape[0]
    for step in range(steps):
        grads = [keras.ops.convert_to_tensor(data[f"grads:{n}"][step]) for n in names]
        optimizer.apply(grads, variables)
        for name, variable in zip(names, variables, strict=True):
            expected = data[f"{kind}:{name}"][step]
            error = _relative_error(keras.ops.convert_to_numpy(variable), expected)
            assert error < 1e-6, (kind, step, name, error)


def test_keras_sgd_weight_decay_is_not_the_releases_rule():
    # The control: Keras' decoupled decay and lr-scaled velocity drift from
    # PyTorch across the drops, so the parity test above can fail.
    data, names = _reference()
    (conv,) = _variables(data, names[:1])
    optimizer = keras.optimizers.SGD(
        keras.optimizers.schedules.PiecewiseConstantDecay(
            [int(b) for b in data["boundaries"]], [0.1, 0.01, 1e-3, 1e-4]
        ),
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
    )
    for grad in data[f"grads:{names[0]}"]:
        optimizer.apply([keras.ops.convert_to_tensor(grad)], [conv])
    expected = data[f"step:{names[0]}"][-1]
    assert _relative_error(keras.ops.convert_to_numpy(conv), expected) > 1e-3


def test_groups_come_from_variable_paths():
    data, names = _reference()
    variables = _variables(data, names)
    optimizer = _msgc_groups(learning_rate=0.1)
    optimizer.build(variables)
    decays = [optimizer.decay_of(v) for v in variables]
    rates = [optimizer.learning_rate_multiplier_of(v) for v in variables]
    assert dict(zip(names, decays, strict=True)) == {
        "conv/kernel": 1e-4,
        "mask_generator/expand/kernel": 0.0,
        "bn/gamma": 0.0,
    }
    assert rates == [1.0, 5.0, 1.0]


def test_step_decay_lowers_the_rate_at_the_boundary_not_after_it():
    schedule = StepDecay(0.1, [3, 3, 5])  # a repeated boundary drops twice
    rates = [float(schedule(step)) for step in range(7)]
    assert rates == pytest.approx([0.1, 0.1, 0.1, 1e-3, 1e-3, 1e-4, 1e-4])
    keras_rates = keras.optimizers.schedules.PiecewiseConstantDecay([3], [0.1, 0.01])
    assert float(keras_rates(3)) == pytest.approx(0.1)  # one step later


def test_epoch_cosine_holds_each_epoch_and_warms_up():
    schedule = EpochCosineDecay(1.0, epochs=4, steps_per_epoch=2, warmup_epochs=2)
    rates = [float(schedule(step)) for step in range(10)]
    expected = [0.5, 0.5, 1.0, 1.0, 0.5, 0.5, 0.5 * (1 + np.cos(0.75 * np.pi))]
    assert rates[:7] == pytest.approx(expected)
    assert rates[8:] == pytest.approx([rates[7]] * 2)  # past the end: the last rate


def test_config_round_trip_keeps_groups_and_schedule(tmp_path):
    optimizer = _msgc_groups(learning_rate=StepDecay(0.1, [10, 20]), clipnorm=1.0)
    restored = CoupledSGD.from_config(optimizer.get_config())
    assert restored.get_config() == optimizer.get_config()
    assert restored.coupled_weight_decay == 1e-4 and restored.weight_decay is None

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))
    model.compile(optimizer=optimizer, loss="mse")
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    model.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, CoupledSGD)
    assert loaded.optimizer.no_decay == ["mask_generator", "_gamma$"]
    model.fit(x, y, epochs=1, verbose=0)
    loaded.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-6
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(momentum=1.0), "momentum.*\\[0, 1\\).*1.0"),
        (dict(momentum=-0.1), "momentum.*non-negative.*-0.1"),
        (dict(weight_decay=-1e-4), "weight_decay.*-0.0001"),
        (dict(weight_decay=float("nan")), "weight_decay.*nan"),
        (dict(no_decay=["bn("]), "'bn\\(' is not a regular expression"),
        (dict(no_decay=[3]), "regular expressions.*3"),
        (dict(learning_rate_multipliers={"mask": -2}), "multipliers.*-2"),
    ],
)
def test_bad_optimizer_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CoupledSGD(**kwargs)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: StepDecay(0.1, [5, 3]), "non-decreasing.*\\[5, 3\\]"),
        (lambda: StepDecay(0.1, [0, 3]), "positive integers.*\\[0, 3\\]"),
        (lambda: StepDecay(float("inf"), [3]), "initial_learning_rate.*inf"),
        (lambda: StepDecay(-0.1, [3]), "initial_learning_rate.*-0.1"),
        (lambda: EpochCosineDecay(0.1, 0, 5), "epochs.*0"),
        (lambda: EpochCosineDecay(0.1, 3, 5, warmup_epochs=-1), "warmup.*-1"),
    ],
)
def test_bad_schedule_arguments_name_the_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()
