"""The wheel maps the top-level applications/ folder to keras_igc.applications."""

import pathlib
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).parents[1]


def test_wheel_contains_the_mapped_applications_package(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("keras_igc-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "keras_igc/applications/__init__.py" in names
    assert "keras_igc/layers/igc_conv2d.py" in names
    assert not any(name.startswith(("applications/", "tests/")) for name in names)


def test_applications_is_importable_from_the_package():
    import keras_igc

    assert keras_igc.applications.__name__ == "keras_igc.applications"
