"""The user's path (tests/user_path.py) for an IGC CIFAR network (the README's
quick start) and a plain Keras model of the user's, trained through
`training.train`."""

import pytest
import user_path

pytestmark = [pytest.mark.tensorflow_only, pytest.mark.slow]


@pytest.fixture(scope="module", params=["igc-cifar", "users-model"])
def exported(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    return user_path.export_family(request.param, folder)


def test_export_carries_the_training_record(exported):
    user_path.check_the_export_carries_the_training_record(exported)


def test_predict_reads_every_file_a_user_ships(exported):
    user_path.check_predict_reads_every_file_a_user_ships(exported)
