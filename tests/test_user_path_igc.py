"""The user's path (tests/user_path.py) for an IGC CIFAR network (the README's
quick start) and a plain Keras model of the user's, trained through
`training.train`."""

import pytest
import user_path
from user_path import (  # noqa: F401 (collected here)
    test_export_carries_the_training_record,
    test_predict_reads_every_file_a_user_ships,
)

pytestmark = [pytest.mark.tensorflow_only, pytest.mark.slow]
exported = user_path.exported_families(["igc-cifar", "users-model"])
