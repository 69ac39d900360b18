"""The suite runs on every Keras backend (KERAS_BACKEND=tensorflow, jax, torch).

Two markers (registered in pyproject.toml) say what runs where:

- `tensorflow_only`: a test file (`pytestmark`) that exercises TensorFlow-only
  features (tf.data, tf.distribute, SavedModel/LiteRT/ONNX export) or that
  checks the networks' counts, which do not depend on the backend (their
  layers are tested on every backend; under eager JAX the networks alone took
  minutes). Docstring examples follow the module's `SUPPORTED_BACKENDS`;
  keras_igc.hub's, which build whole networks, run on TensorFlow.
  On the other backends these are deselected, not skipped: they are run by
  the TensorFlow pass of the same suite.
- `not_on_jax`: whole ImageNet networks trained under keras-hub (detection,
  presets); deselected on JAX, where eager building and XLA's CPU grouped
  convolutions take minutes (RetinaNet on IGC-L100M2+Ident.: 374 s for 5
  steps on JAX, 3 s on PyTorch). They run on TensorFlow and PyTorch. Also
  the MSGC hosts compared in every inference form, and the check of the
  larger hosts' forms: each host takes 8-11 s to build on JAX, which never
  gathers; its per-sample kernels are compared layer by layer there. And
  everything that builds a whole 224x224 IGCV3 or MSGC host: IGCV3's parity
  tests, the hosts' parity with the release, their checkpoints, their MAC
  counts, their torchvision weights, MSGC-ResNet18 fitting, and these
  networks' docstring examples (10-25 s to build each on JAX). On JAX their
  layers are tested (IGCV3's blocks are IGC blocks and channel shuffles; the
  MSGC layers, and a converted CNN that fits and round-trips, in
  test_msgc_layers.py).
- `slow`: subprocess runs of whole trainings (`-m "not slow"` for a quick loop).
"""

import collections
import importlib.util
import os

# Under pytest-xdist (`-n 2`) each worker gets its share of the cores, set
# before any backend loads: two workers whose math libraries each run a
# thread per core ran the PyTorch pass 2x slower than one worker did
# (OpenMP's threads busy-wait). TensorFlow's inter-op threads too: with a
# pool per core in each worker the TensorFlow pass took 1145 s, with its
# share 1089 s (one run each, 2026-12-07). Child processes inherit the shares.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _share = (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                  "TF_NUM_INTEROP_THREADS"):  # fmt: skip
        os.environ.setdefault(_name, str(max(1, _share)))

import keras  # noqa: E402
import pytest  # noqa: E402

# Scripts that regenerate the parity fixtures with the releases' frameworks
# (PyTorch, MXNet); the tests read only the files they wrote.
collect_ignore_glob = ["tests/fixtures/*"]
# keras_igc.hub needs the optional keras-hub (the `hub` extra); its doctests
# are collected where it is installed (CI installs it).
if importlib.util.find_spec("keras_hub") is None:
    collect_ignore_glob.append("keras_igc/hub/*")


# Modules whose docstring examples build whole 224x224 networks: off JAX,
# like the not_on_jax tests (15-25 s each there).
_WHOLE_NETWORK_EXAMPLES = {"applications.msgc_hosts", "applications.igcv3"}


def _runs_here(item):
    if isinstance(item, pytest.DoctestItem):
        if item.dtest.globs.get("__name__", "").startswith("keras_igc.hub."):
            # Whole networks in each example; tests/test_hub_*.py run the
            # classes on every backend.
            return keras.backend.backend() == "tensorflow"
        if (
            item.dtest.globs.get("__name__") in _WHOLE_NETWORK_EXAMPLES
            and keras.backend.backend() == "jax"
        ):
            return False
        backends = item.dtest.globs.get("SUPPORTED_BACKENDS")
        return backends is None or keras.backend.backend() in backends
    backend = keras.backend.backend()
    if item.get_closest_marker("not_on_jax") is not None and backend == "jax":
        return False
    return item.get_closest_marker("tensorflow_only") is None or backend == "tensorflow"


def pytest_collection_modifyitems(config, items):
    deselected = [item for item in items if not _runs_here(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if _runs_here(item)]
    # The files with `slow` tests first (each 120-250 s on TensorFlow; see
    # pytest_configure): a long file handed out last leaves one worker idle
    # while the other finishes it. The others by their number of tests, most
    # first, as pytest-xdist would order them.
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    count = collections.Counter(item.path for item in items)
    items.sort(key=lambda item: (item.path not in slow, -count[item.path]))


def pytest_configure(config):
    # pytest-xdist hands files out by their number of tests, most first
    # (`--loadscope-reorder`, its default), which undid the order above: the
    # slow files have few tests each, and one worker ran the last of them
    # alone for 86 s at the end of the TensorFlow pass.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False
