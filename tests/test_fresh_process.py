"""tests/fresh_process.py gives what `subprocess.run` gives: each command in
a new process with its own `__main__`, folder, arguments, output and exit
status, signals as `-N`, and a timeout that kills."""

import os
import subprocess
import sys

import fresh_process
import pytest

pytestmark = pytest.mark.tensorflow_only

ENV = {**os.environ, "KERAS_BACKEND": "tensorflow"}
PROBE = """
import os, sys
print(os.getpid(), os.getcwd(), sys.argv, "seen" in globals())
seen = True
print("to stderr", file=sys.stderr)
raise SystemExit(int(sys.argv[1]))
"""


def run(*command, cwd, timeout=120):
    return fresh_process.run(command, cwd=cwd, env=ENV, timeout=timeout)


def test_each_command_is_a_new_process_with_its_own_state(tmp_path):
    first = run(sys.executable, "-c", PROBE, "3", cwd=tmp_path)
    second = run(sys.executable, "-c", PROBE, "0", cwd=tmp_path / "..")
    assert (first.returncode, second.returncode) == (3, 0)
    pid, cwd, argv, seen = first.stdout.split(maxsplit=3)
    assert int(pid) not in (os.getpid(), int(second.stdout.split()[0]))
    assert cwd == str(tmp_path) and second.stdout.split()[1] == str(tmp_path.parent)
    assert argv == "['-c',"
    assert seen.endswith("'3'] False\n") and second.stdout.endswith("False\n")
    assert first.stderr == "to stderr\n"


def test_failures_signals_and_timeouts_are_what_subprocess_reports(tmp_path):
    failed = run(sys.executable, "-c", "1 / 0", cwd=tmp_path)
    assert failed.returncode == 1 and "ZeroDivisionError" in failed.stderr
    killed = run(sys.executable, "-c", "import os; os.kill(os.getpid(), 9)",
                 cwd=tmp_path)  # fmt: skip
    assert killed.returncode == -9
    with pytest.raises(subprocess.TimeoutExpired):
        run(sys.executable, "-c", "import time; time.sleep(60)", cwd=tmp_path,
            timeout=2)  # fmt: skip
    # The forking process still serves after a timeout.
    assert run(sys.executable, "-c", PROBE, "0", cwd=tmp_path).returncode == 0


def test_scripts_and_the_command_line(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("import sys; print(sys.argv[1:], __name__)")
    ran = run(sys.executable, script, "x", cwd=tmp_path)
    assert ran.stdout == "['x'] __main__\n"
    keras_igc = os.path.join(os.path.dirname(sys.executable), "keras-igc")
    wrong = run(keras_igc, "info", "IGCNet0", cwd=tmp_path)
    assert wrong.returncode == 2 and "IGCNet0" in wrong.stderr


def test_each_environment_is_the_one_asked_for(tmp_path):
    code = "import os; print(os.environ.get('PROBE'))"
    assert run(sys.executable, "-c", code, cwd=tmp_path).stdout == "None\n"
    ran = fresh_process.run([sys.executable, "-c", code], cwd=tmp_path,
                            env={**ENV, "PROBE": "a"}, timeout=120)  # fmt: skip
    assert ran.stdout == "a\n"


def test_shell_code_runs_keras_igc_forked_from_the_folder_it_is_in(tmp_path):
    (tmp_path / "model.onnx").write_text("not a model")
    shell = """
    command -v keras-igc
    keras-igc info RegConv-W16 --depth 8 | head -n 3
    keras-igc predict model.onnx digit.png || echo "exit $?"
    KERAS_BACKEND=jax keras-igc info RegConv-W16 || echo "exit $?"
    """
    with fresh_process.forked_commands(ENV, timeout=120) as folder:
        env = {**ENV, "PATH": f"{folder}{os.pathsep}{ENV['PATH']}"}
        ran = subprocess.run(["bash", "-c", shell], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    lines = ran.stdout.splitlines()
    assert ran.returncode == 0 and lines[0] == os.path.join(folder, "keras-igc")
    assert "RegConv-W16" in ran.stdout
    # The command ran in the shell's folder: it found the file, and refused it.
    assert lines[-2] == "exit 2" and "'model.onnx' could not be loaded" in ran.stderr
    # A variable the shell set would not reach the forked command: refused.
    assert lines[-1] == "exit 1" and "set ['KERAS_BACKEND']" in ran.stderr
