"""Fresh processes that start in a second instead of five: `run` is
`subprocess.run` for a `python -c CODE`, `python SCRIPT` or `keras-igc ...`
command, run in a child forked from a process that has imported keras_igc
(and so TensorFlow and Keras) and nothing else. The child is a new process:
its own `__main__`, working folder, arguments, output files and exit status
(a signal as `-N`, as `subprocess.run` gives it); only the import is shared.

Why: importing TensorFlow takes ~4.7 s of the ~5 s each command of the
user's path, the docs' blocks and the tutorials spent starting, about 300
of the TensorFlow pass's worker-seconds. The fork comes before TensorFlow
starts any thread (the parent runs no op; under the suite's one math thread
per worker, conftest.py, it has no thread but its main one), so the child is
as safe as one from `subprocess`.

Shell code reaches the forking process too: `forked_commands` gives a folder
whose `keras-igc` hands its arguments and folder to `run`, for the front of a
shell's PATH (tests/test_docs.py does so for the blocks of docs/).

What this does not test, and where the real path is taken: the console
script and the first import. tests/test_docs.py runs the README's shell
blocks, `keras-igc` commands included, as real processes;
test_bad_inputs.py runs the console script, and test_packaging.py imports
keras_igc in a new interpreter.
"""

import atexit
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading

# The forking process: reads one JSON request per line on stdin, forks, and
# answers the child's pid, then its exit status. The child returns from
# `serve` and runs the command as the process's main program, so it ends
# the way that program would (atexit handlers, interpreter shutdown).
_SERVER = r"""
import json, os, runpy, sys, types
import keras_igc, keras_igc.cli  # the import every child shares

def serve():
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush(); sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            return request
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"status": os.waitstatus_to_exitcode(status)}), flush=True)
    sys.exit(0)

request = serve()
os.chdir(request["cwd"])
for fd, name in ((0, os.devnull), (1, request["stdout"]), (2, request["stderr"])):
    os.dup2(os.open(name, os.O_RDWR if fd == 0 else os.O_WRONLY), fd)
kind, target, args = request["kind"], request["target"], request["args"]
if kind == "code":
    sys.argv, sys.path[0] = ["-c", *args], ""
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    exec(compile(target, "<string>", "exec"), main.__dict__)
elif kind == "script":
    sys.argv, sys.path[0] = [target, *args], os.path.dirname(os.path.abspath(target))
    runpy.run_path(target, run_name="__main__")
else:
    sys.argv, sys.path[0] = [target, *args], os.path.dirname(target)
    sys.exit(keras_igc.cli.main(args))
"""

# One forking process at a time, for one environment (a child's environment
# is its parent's): each holds ~770 MB, and a test file uses one.
# `(environment, process)`, or None before the first command.
_current = None


def _server(env):
    global _current
    key = tuple(sorted(env.items()))
    if _current is None or _current[0] != key:
        if _current is not None:
            _current[1].kill()
            _current[1].wait()
        # Its own start-up logs in a file, shown if it ends.
        log = tempfile.TemporaryFile()
        server = subprocess.Popen(
            [sys.executable, "-c", _SERVER], env=env, text=True, stderr=log,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=tempfile.gettempdir(),
        )  # fmt: skip
        server.log = log
        atexit.register(server.kill)
        _current = (key, server)
    return _current[1]


def _answer(server, timeout=None):
    """The forking process's next answer; None where `timeout` passes first.
    (Only for the first answer of a request: Python's buffer of the pipe
    is empty then, so `select` on the pipe says whether a line is there.)"""
    if timeout is not None:
        ready, _, _ = select.select([server.stdout], [], [], timeout)
        if not ready:
            return None
    line = server.stdout.readline()
    if not line:
        server.log.seek(0)
        log = server.log.read().decode(errors="replace")[-3000:]
        raise RuntimeError(f"the forking process ended (exit {server.wait()}):\n{log}")
    return json.loads(line)


def _request(command):
    """`(kind, target, args)` of a command, or None where it is not one the
    forking process runs (anything but this Python or keras-igc)."""
    program, *rest = command
    if program == sys.executable and rest[:1] == ["-c"]:
        return "code", rest[1], rest[2:]
    if program == sys.executable and rest and not rest[0].startswith("-"):
        return "script", str(rest[0]), rest[1:]
    if os.path.basename(program) == "keras-igc":
        return "keras-igc", program, rest
    return None


def run(command, *, cwd, env, timeout):
    """`subprocess.run(command, cwd=cwd, env=env, timeout=timeout,
    capture_output=True, text=True)`, forked where the command is Python or
    keras-igc (see the module docstring)."""
    command = [str(part) for part in command]
    request = _request(command)
    if request is None:
        return subprocess.run(
            command, cwd=cwd, env=env, timeout=timeout, capture_output=True, text=True
        )
    kind, target, args = request
    server = _server(dict(env))
    with tempfile.TemporaryDirectory() as folder:
        out, err = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
        for path in (out, err):
            open(path, "w").close()
        server.stdin.write(json.dumps({
            "cwd": str(cwd), "stdout": out, "stderr": err,
            "kind": kind, "target": target, "args": args,
        }) + "\n")  # fmt: skip
        server.stdin.flush()
        # The first answer waits for the import (seconds; more on a busy machine).
        started = _answer(server, 600)
        if started is None:
            raise RuntimeError("the forking process did not start a child in 600 s")
        killed = threading.Event()

        def kill():
            killed.set()
            with contextlib.suppress(ProcessLookupError):  # it ended just now
                os.kill(started["pid"], signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            status = _answer(server)["status"]
        finally:
            timer.cancel()
        if killed.is_set():
            raise subprocess.TimeoutExpired(command, timeout)
        with open(out) as f, open(err) as g:
            stdout, stderr = f.read(), g.read()
    return subprocess.CompletedProcess(command, status, stdout, stderr)


# The `keras-igc` of `forked_commands`: its arguments and folder to the test's
# process, which runs them with `run`; the command's output and exit status
# back (a signal as a shell reports it, 128 + N). Stdlib only, so no `site`.
_SHIM = """#!{python} -S
import json, os, socket, sys
with socket.socket(socket.AF_UNIX) as s:
    s.connect({address!r})
    request = {{"args": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}
    s.sendall(json.dumps(request).encode() + b"\\n")
    answer = json.loads(s.makefile("rb").readline())
sys.stdout.write(answer["stdout"])
sys.stderr.write(answer["stderr"])
sys.exit(answer["status"] if answer["status"] >= 0 else 128 - answer["status"])
"""


@contextlib.contextmanager
def forked_commands(env, timeout):
    """A folder with a `keras-igc` that runs each command as `run` does
    (forked, in `env`, at most `timeout` seconds), for the front of a shell's
    PATH. Its output comes when the command ends, not as it goes. A command
    whose shell changed the environment (`export`, `VAR=... keras-igc`) fails
    and says so, rather than running without the change."""
    script = os.path.join(os.path.dirname(sys.executable), "keras-igc")
    stop = threading.Event()

    def serve(listener):
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection, connection.makefile("rwb") as stream:
                request = json.loads(stream.readline())
                answer = _answer_shell(request, script, env, timeout)
                stream.write(json.dumps(dict(zip(
                    ("status", "stdout", "stderr"), answer, strict=True
                ))).encode() + b"\n")  # fmt: skip

    with (
        tempfile.TemporaryDirectory() as folder,
        socket.socket(socket.AF_UNIX) as listener,
    ):
        address = os.path.join(folder, "socket")
        listener.bind(address)
        listener.listen()
        listener.settimeout(0.2)  # so that `serve` sees `stop`
        shim = os.path.join(folder, "keras-igc")
        with open(shim, "w") as f:
            f.write(_SHIM.format(python=sys.executable, address=address))
        os.chmod(shim, 0o755)
        thread = threading.Thread(target=serve, args=(listener,), daemon=True)
        thread.start()
        try:
            yield folder
        finally:
            stop.set()
            thread.join()


def _answer_shell(request, script, env, timeout):
    """`[status, stdout, stderr]` of a request of the shim."""
    changed = _changed(env, request["env"])
    if changed:
        return [1, "", f"forked_commands: the shell set {changed}: run it for real\n"]
    try:
        result = run([script, *request["args"]], cwd=request["cwd"], env=env,
                     timeout=timeout)  # fmt: skip
    except Exception as error:  # a timeout, a forking process gone
        return [1, "", f"forked_commands: {error!r}\n"]
    return [result.returncode, result.stdout, result.stderr]


# What a shell sets on its own (a non-interactive bash drops the prompts), and
# the PATH that leads to the shim.
_SHELL_VARIABLES = {"PWD", "OLDPWD", "SHLVL", "_", "PS1", "PS2", "PATH"}


def _changed(env, shell_env):
    """The variables a shell's environment has other than `env`, sorted."""
    names = (set(env) | set(shell_env)) - _SHELL_VARIABLES
    return sorted(n for n in names if env.get(n) != shell_env.get(n))
