"""Shared helpers of the PPX tests: served simulators in real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

HERE = Path(__file__).resolve().parent
SERVED = str(HERE / "served_models.py")
ROOT = HERE.parents[1]


def served_command(model: str) -> list[str]:
    """The command that serves ``model`` (the PPXSimulator appends the address)."""
    return [sys.executable, SERVED, model]


def served_env() -> dict[str, str]:
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return env


@pytest.fixture
def serve_process() -> Iterator:
    """Start ``served_models.py MODEL ADDRESS`` ourselves (the engine only connects)."""
    procs: list[subprocess.Popen] = []

    def start(model: str, address: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        env = dict(os.environ)
        env.update(served_env())
        env.update(extra_env or {})
        proc = subprocess.Popen([sys.executable, SERVED, model, address], env=env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # reap it if it is our child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False
