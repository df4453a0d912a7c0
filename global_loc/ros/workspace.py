"""Build the package in a colcon workspace and run its launch files as a user would, from
Python: the end-to-end tests, the stream benchmark and ``make demo-live`` share this.

No rclpy here: everything goes through the ``colcon`` and ``ros2`` commands.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..errors import GlobalLocError

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class WorkspaceError(GlobalLocError):
    """``colcon build`` failed, or a launched process did not behave."""


def _tool(name: str) -> str:
    """``name`` from the running interpreter's environment, else from PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        raise WorkspaceError(f"'{name}' is not installed: pip install colcon-common-extensions, and the ROS 2 "
                             "runtime (see the README, 'Install')")
    return found


def colcon_build(workspace: str | os.PathLike, source: str | os.PathLike = PACKAGE_ROOT,
                 timeout: float = 300.0) -> dict[str, str]:
    """Build the package at ``source`` in ``workspace`` with ``colcon build`` and return the
    environment of a shell that sourced ``install/setup.bash``.

    Raises:
        WorkspaceError: colcon is missing or the build failed (its output is in the message).
    """
    ws = Path(workspace)
    (ws / "src").mkdir(parents=True, exist_ok=True)
    link = ws / "src" / Path(source).resolve().name
    if not link.exists():
        link.symlink_to(Path(source).resolve(), target_is_directory=True)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    out = subprocess.run([_tool("colcon"), "build", "--event-handlers", "console_direct-"], cwd=ws, env=env,
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise WorkspaceError(f"colcon build failed in {ws}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    dump = subprocess.run(["bash", "-c", "set +u; source install/setup.bash && env -0"], cwd=ws, env=env,
                          capture_output=True, timeout=60)
    if dump.returncode != 0:
        raise WorkspaceError(f"cannot source {ws}/install/setup.bash: {dump.stderr.decode()[-2000:]}")
    return dict(line.split("=", 1) for line in dump.stdout.decode().split("\0") if "=" in line)


class LaunchedProcess:
    """A command (``ros2 launch ...``) in a process group of its own, as a terminal runs it, with
    its output collected line by line.

    :meth:`interrupt` sends SIGINT to the whole group, as Ctrl-C in a terminal does (the launch
    process and its nodes all get it, then launch forwards another to each node).
    """

    def __init__(self, args: list[str], env: dict[str, str] | None = None, cwd=None, echo: bool = False):
        self.args = args
        self.lines: list[str] = []
        self._cv = threading.Condition()
        self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1, start_new_session=True)
        self._echo = echo
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()
            if self._echo:
                print(line, end="", flush=True)

    @property
    def output(self) -> str:
        with self._cv:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        """Wait until a line matches ``pattern`` (a regular expression).

        Raises:
            WorkspaceError: the process ended or ``timeout`` passed first (with its output).
        """
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cv:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise WorkspaceError(f"'{pattern}' not seen from {' '.join(self.args[:4])} within {timeout:g} s "
                                         f"(exit status {self.proc.poll()}); its output:\n" + "\n".join(self.lines[-60:]))
                self._cv.wait(min(left, 0.2))

    def interrupt(self, times: int = 1, interval: float = 0.05) -> None:
        """Ctrl-C: SIGINT to the process group, ``times`` times."""
        for i in range(times):
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGINT)
            if i + 1 < times:
                time.sleep(interval)

    def wait(self, timeout: float) -> int:
        """The exit status; kills the group (and raises) when it does not end in time.

        Raises:
            WorkspaceError: still running after ``timeout``.
        """
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            raise WorkspaceError(f"{' '.join(self.args[:4])} did not end within {timeout:g} s; its output:\n"
                                 + "\n".join(self.lines[-60:])) from None
        self._reader.join(5)
        return rc

    def stop(self, timeout: float = 60.0) -> int:
        """Ctrl-C, then wait for the exit status."""
        self.interrupt()
        return self.wait(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            try:
                self.stop(30.0)
            except WorkspaceError:
                pass


def ros2_launch(env: dict[str, str], launch_file: str, arguments: dict[str, str], echo: bool = False) -> LaunchedProcess:
    """``ros2 launch global_loc <launch_file> key:=value ...`` in a process group of its own."""
    ros2 = shutil.which("ros2", path=env.get("PATH")) or _tool("ros2")
    args = [ros2, "launch", "global_loc", launch_file] + [f"{k}:={v}" for k, v in arguments.items()]
    return LaunchedProcess(args, env=env, echo=echo)


def ros_env(base: dict[str, str], domain_id: int) -> dict[str, str]:
    """``base`` with a ROS domain of its own, discovery kept on this host (tests and benchmarks
    must not talk to other graphs)."""
    return {**base, "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "PYTHONUNBUFFERED": "1", "RCUTILS_LOGGING_BUFFERED_STREAM": "0"}


def ctrl_c_trials(env: dict[str, str], launch_file: str, arguments: dict[str, str], trials: int,
                  ready: str = r"active: localizing", seed: int = 0, log=None) -> list[dict]:
    """Start ``ros2 launch`` ``trials`` times and stop it as a terminal's Ctrl-C does (SIGINT
    to the whole process group, once or twice), at a random moment 0.2-1.5 s after ``ready``
    appears in its output.

    Returns:
        One dict per trial: ``exit_status`` of ``ros2 launch``, ``clean`` (exit 0, every node
        "finished cleanly", none "died", no traceback), ``signals``, ``delay_s``, ``tail``
        (the last output lines).
    """
    import random

    rng = random.Random(seed)
    out = []
    for i in range(trials):
        delay, times = rng.uniform(0.2, 1.5), rng.choice([1, 2])
        with ros2_launch(env, launch_file, arguments) as launch:
            launch.wait_for(ready, 120)
            time.sleep(delay)
            launch.interrupt(times=times)
            rc = launch.wait(60)
        text = launch.output
        clean = (rc == 0 and "process has finished cleanly" in text and "process has died" not in text
                 and "Traceback" not in text)
        out.append({"exit_status": rc, "clean": clean, "signals": times, "delay_s": round(delay, 2),
                    "tail": launch.lines[-12:] if clean else list(launch.lines)})
        if log is not None:
            log(f"trial {i + 1}/{trials}: {times} SIGINT after {delay:.2f} s -> exit {rc}, "
                f"{'clean' if clean else 'NOT CLEAN'}")
    return out
