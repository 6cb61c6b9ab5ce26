"""As a new user would: a core-only environment from wheels, then each plugin installed alone.

Builds one fresh virtual environment with the core (not editable, so the configs must ship
inside the wheel) and its ``test`` extra, then installs each plugin alone on it (the four of
``plugins/`` and the one that docs/plugin-simulator.md shows), runs its conformance suite from a
copy of its tests (so nothing is imported from the source tree) and uninstalls it before the
next. Needs the package registries; pip's cache makes repeated runs quick.
"""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from etalumis_core.ppx.native import missing_build_tools

ROOT = Path(__file__).resolve().parents[1]
DOCS_PAGE = ROOT / "docs" / "plugin-simulator.md"

# plugin -> (entry-point name, distribution, importable package)
PLUGINS = {
    "toy_tau_decay": ("toy_tau_decay", "etalumis-toy-tau-decay", "etalumis_toy_tau_decay"),
    "composite_cure": ("composite_cure", "etalumis-composite-cure", "etalumis_composite_cure"),
    "sherpa_adapter": ("sherpa", "etalumis-sherpa-adapter", "etalumis_sherpa_adapter"),
    "cnn3d_lstm": ("cnn3d_lstm", "etalumis-cnn3d-lstm", "etalumis_cnn3d_lstm"),
    "docs_epidemic": ("epidemic", "etalumis-epidemic", "mypkg"),
}

# The cnn3d_lstm plugin has no simulator: its registered embedding builds a tiny network.
TINY_EMBEDDING = """
import torch
import etalumis_core as et
factory = et.load_plugins().proposals.get("cnn3d_lstm").factory
embedding = factory(observation_shapes={"grid": (6, 6, 4)}, embedding_dim=5, channels=[[2]])
print(tuple(embedding({"grid": torch.rand(3, 6, 6, 4)}).shape))
"""

# Where the toy_tau_decay wheel put its trained network, and what lies beside it.
SHIPPED_NETWORK = """
import os
from etalumis_core.engines.ic import network_file
path = network_file("pkg://etalumis_toy_tau_decay/network/network.pt")
print(path, *sorted(os.listdir(os.path.dirname(path))))
"""

# The fresh environment sees only what is installed in it, not a development checkout.
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
       "PIP_DISABLE_PIP_VERSION_CHECK": "1", "OMP_NUM_THREADS": "1"}


def sh(*args, cwd=None, check=True):
    out = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                         timeout=900, env=ENV)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed:\n{out.stdout}\n{out.stderr}")
    return out


def lay_out(page: Path, where: Path) -> Path:
    """The plugin a docs page shows: each code block whose first line is ``# PATH`` written to
    ``where/PATH``, and the empty ``__init__.py`` files of its layout."""
    text = page.read_text()
    for code, path in re.findall(r"```\w*\n(# (\S+)\n.*?)```", text, re.S):
        (where / path).parent.mkdir(parents=True, exist_ok=True)
        (where / path).write_text(code)
    for path in re.findall(r"^\s+(\S+/__init__\.py)\s+# empty", text, re.M):
        (where / path).write_text("")
    return where


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a test module imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.partition(".")[0])
    return names


@pytest.mark.timeout(1200)
def test_core_alone_then_each_plugin_alone(tmp_path):
    venv = tmp_path / "venv"
    sh(sys.executable, "-m", "venv", venv)
    pip, python, etalumis = (venv / "bin" / name for name in ("pip", "python", "etalumis"))
    sh(pip, "install", "-q", "torch==2.13.0")  # the CPU build, before anything asks for torch
    sh(pip, "install", "-q", f"{ROOT}[test]")  # the conformance suite needs the test extra
    plugins = json.loads(sh(etalumis, "plugins", cwd=tmp_path).stdout)
    assert list(plugins) == ["etalumis_core"]
    missing = sh(etalumis, "simulate", "simulator=toy_tau_decay", cwd=tmp_path, check=False)
    assert missing.returncode == 2
    assert "pip install ./plugins/toy_tau_decay" in missing.stderr
    sh(etalumis, "simulate", "simulator=gaussian", "num_traces=3", "hydra.run.dir=g", cwd=tmp_path)

    for folder, (entry_point, distribution, package) in PLUGINS.items():
        source = (lay_out(DOCS_PAGE, tmp_path / folder) if folder == "docs_epidemic"
                  else ROOT / "plugins" / folder)
        sh(pip, "install", "-q", source)
        plugins = json.loads(sh(etalumis, "plugins", cwd=tmp_path).stdout)
        assert set(plugins) == {"etalumis_core", entry_point}, folder
        assert "error" not in plugins[entry_point], plugins[entry_point]
        if folder == "cnn3d_lstm":
            assert plugins[entry_point]["proposals"] == ["cnn3d_lstm", "calorimeter_projections"]
            assert plugins[entry_point]["trainers"] == ["distributed"]
            assert sh(python, "-c", TINY_EMBEDDING, cwd=tmp_path).stdout.split() == ["(3,", "5)"]
        else:
            assert plugins[entry_point]["simulators"] == [entry_point]
            # The plugin's own tests, copied out of the source tree: only what is installed
            # can be imported.
            tests = tmp_path / f"{folder}_tests"
            shutil.copytree(source / "tests", tests, ignore=shutil.ignore_patterns("__pycache__"))
            conformance = tests / "test_conformance.py"
            assert imported_packages(conformance) <= {"__future__", "pytest", "etalumis_core",
                                                      package}, folder
            run = sh(python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                     "--import-mode=importlib", conformance, cwd=tmp_path)
            summary = run.stdout.strip().splitlines()[-1]
            if folder == "sherpa_adapter" and missing_build_tools():
                assert "skipped" in summary, run.stdout   # no g++/flatc: no Sherpa-like binary
            else:
                assert " passed" in summary and "skipped" not in summary, run.stdout
        if folder == "toy_tau_decay":
            sh(etalumis, "simulate", "simulator=toy_tau_decay", "plots=false",
               "hydra.run.dir=tau", cwd=tmp_path)
            summary = json.loads((tmp_path / "tau" / "summary.json").read_text())
            assert summary["observations"] == {"calorimeter": [35, 35, 20]}
            # the trained network ships inside the wheel, with its training record
            shipped = sh(python, "-c", SHIPPED_NETWORK, cwd=tmp_path).stdout.split()
            assert shipped[0].endswith("network.pt") and "site-packages" in shipped[0]
            assert set(shipped[1:]) >= {"summary.json", "training_config.yaml"}
            # and so does its engine config: the default job infers with the network
            job = sh(etalumis, "--cfg", "job", "--resolve", cwd=tmp_path).stdout
            assert "name: ic_smc" in job and "num_traces: 100" in job and "populations: 2" in job
            assert "network: pkg://etalumis_toy_tau_decay/network/network.pt" in job
        if folder == "docs_epidemic":   # its YAML shipped in the wheel: Hydra composes it
            sh(etalumis, "simulate", "simulator=epidemic", "simulator.params.days=12",
               "num_traces=2", "plots=false", "hydra.run.dir=epidemic", cwd=tmp_path)
            summary = json.loads((tmp_path / "epidemic" / "summary.json").read_text())
            assert summary["observations"] == {"cases": [12]}
            job = sh(etalumis, "simulator=epidemic", "--cfg", "job", "--resolve",
                     cwd=tmp_path).stdout   # and its own engine is the default one
            assert "name: smc" in job and "ess_fraction: 0.8" in job and "num_traces: 200" in job
        sh(pip, "uninstall", "-q", "-y", distribution)

    plugins = json.loads(sh(etalumis, "plugins", cwd=tmp_path).stdout)
    assert list(plugins) == ["etalumis_core"]
