"""Addresses are identical on every Python version the project supports (3.10-3.13).

Each interpreter found on this machine loads ``etalumis_core/runtime.py`` on its own (it needs
nothing else) and reports the base addresses of ``address_models.model``; all must agree.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RUNTIME = HERE.parent / "etalumis_core" / "runtime.py"

REPORT = f"""
import importlib.util, json, sys
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
runtime = load("runtime", {str(RUNTIME)!r})
models = load("address_models", {str(HERE / "address_models.py")!r})
class Record:
    def __init__(self):
        self.bases = []
    def sample(self, base, distribution, name, control):
        self.bases.append(base)
        return 0
record = Record()
runtime.run_with_handler(record, models.model, (runtime.sample,))
print(json.dumps(record.bases))
"""


def interpreters():
    """Python 3.10-3.13 interpreters on this machine, one per version."""
    found = {}
    candidates = [shutil.which(f"python3.{m}") for m in range(10, 14)]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[0-3]*/bin/python")))
    candidates += sorted(glob.glob("/usr/bin/python3.1[0-3]"))
    for exe in filter(None, candidates):
        out = subprocess.run([exe, "-c", "import sys; print(sys.version_info[1])"],
                             capture_output=True, text=True)
        if out.returncode == 0:
            found.setdefault(int(out.stdout), exe)
    return found


def addresses(exe):
    out = subprocess.run([exe, "-c", REPORT], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_same_addresses_on_every_python_version():
    found = interpreters()
    found.setdefault(sys.version_info[1], sys.executable)
    if len(found) < 2:
        pytest.skip(f"only Python 3.{sorted(found)} found here; nothing to compare")
    results = {minor: addresses(exe) for minor, exe in sorted(found.items())}
    reference = results[sys.version_info[1]]
    assert reference == [
        "model+1", "model+1", "model+3", "model+3", "model+4/helper+1", "model+5/helper+1",
        "model+6", "model+6", "model+7", "model+9", "model+10/<lambda>+0",
    ]
    for minor, bases in results.items():
        assert bases == reference, f"Python 3.{minor} derives other addresses"
