"""Child processes of the local stack: free ports, pid files, and stopping a process by its PID.

``ServerProcess`` is what every local server shares: a data directory holding its pid file, a port
that answers once it runs, and a detached launch (its own session, so a Ctrl-C in the terminal that
started it does not reach it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, IO, Protocol


class StackError(RuntimeError):
    """A local server could not be started or stopped; the message says which and why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _running_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def stop_pid(pid_file: Path, timeout: float = 20.0) -> bool:
    """Stop the process named in ``pid_file`` (SIGTERM, then SIGKILL). True if one was running."""
    pid = _running_pid(pid_file)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.05)
    pid_file.unlink(missing_ok=True)
    return pid is not None


def stop_process(proc: "subprocess.Popen[bytes] | None", sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Stop a child process we hold by its PID: ``sig``, then SIGKILL after ``timeout``; reaped either way."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class LocalServer(Protocol):
    """What ``sekat up``/``down`` need of a local server or cluster: its directory, and start, stop, running."""

    data_dir: Path

    def running(self) -> bool: ...

    def start(self, timeout: float = ...) -> None: ...

    def stop(self) -> bool: ...


@dataclass
class ServerProcess:
    """A server run as a detached child: ``{name}.pid`` in ``data_dir``, running while ``port`` answers."""

    data_dir: Path
    port: int
    name: ClassVar[str]

    @property
    def pid_file(self) -> Path:
        return self.data_dir / f"{self.name}.pid"

    def running(self) -> bool:
        return _running_pid(self.pid_file) is not None and port_open(self.port)

    def launch(self, cmd: list[str], output: IO[bytes] | int = subprocess.DEVNULL) -> "subprocess.Popen[bytes]":
        """Start ``cmd`` in its own session, its output to ``output``, and record its PID."""
        proc = subprocess.Popen(cmd, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        return proc

    def stop(self) -> bool:
        return stop_pid(self.pid_file)
