"""As a new user would: a core-only environment from wheels, then one plugin installed alone.

Builds a fresh virtual environment (not editable, so the configs must ship inside the wheel),
which needs the package registries; pip's cache makes repeated runs quick.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def sh(*args, cwd=None, check=True):
    out = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                         timeout=900, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed:\n{out.stdout}\n{out.stderr}")
    return out


@pytest.mark.timeout(900)
def test_core_alone_then_one_plugin(tmp_path):
    venv = tmp_path / "venv"
    sh(sys.executable, "-m", "venv", venv)
    pip, etalumis = venv / "bin" / "pip", venv / "bin" / "etalumis"
    sh(pip, "install", "-q", "torch==2.13.0")  # the CPU build, before anything asks for torch
    sh(pip, "install", "-q", ROOT)
    plugins = json.loads(sh(etalumis, "plugins", cwd=tmp_path).stdout)
    assert list(plugins) == ["etalumis_core"]
    missing = sh(etalumis, "simulate", "simulator=toy_tau_decay", cwd=tmp_path, check=False)
    assert missing.returncode == 2
    assert "pip install ./plugins/toy_tau_decay" in missing.stderr
    sh(etalumis, "simulate", "simulator=gaussian", "num_traces=3", "hydra.run.dir=g", cwd=tmp_path)

    sh(pip, "install", "-q", ROOT / "plugins" / "toy_tau_decay")
    plugins = json.loads(sh(etalumis, "plugins", cwd=tmp_path).stdout)
    assert plugins["toy_tau_decay"]["simulators"] == ["toy_tau_decay"]
    sh(etalumis, "simulate", "simulator=toy_tau_decay", "plots=false", "hydra.run.dir=tau",
       cwd=tmp_path)
    summary = json.loads((tmp_path / "tau" / "summary.json").read_text())
    assert summary["observations"] == {"calorimeter": [35, 35, 20]}
