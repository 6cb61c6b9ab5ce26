"""The command line as a new user meets it: one clear line for ordinary mistakes, a help page
that lists every installed option, configs for names registered without YAML, and an overview
at the end of a sweep."""

import csv
import os
import subprocess
import sys

import pytest

import etalumis_core as et
from etalumis_core.app import cli
from etalumis_core.app.configs import generated_configs

ETALUMIS = [sys.executable, "-m", "etalumis_core.app.cli"]


def run(args, cwd):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run(ETALUMIS + args, cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.fixture(scope="module")
def weather_observation(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("sim")
    out = run(["simulate", "simulator=weather", "num_traces=1", "plots=false",
               "hydra.run.dir=sim"], cwd)
    assert out.returncode == 0, out.stderr
    return cwd / "sim" / "observation.h5"


MISTAKES = {
    "negative traces": ["num_traces=-5"],
    "zero traces": ["num_traces=0"],
    "seed not a number": ["seed=abc"],
    "no chains": ["engine=rmh", "engine.params.chains=0"],
    "missing observation": ["observation=missing.h5"],
    "observation of another simulator": ["observation=WEATHER"],
}


@pytest.mark.parametrize("mistake", MISTAKES, ids=list(MISTAKES))
def test_an_ordinary_mistake_prints_one_line_and_exits_2(mistake, tmp_path, weather_observation):
    args = [a.replace("WEATHER", str(weather_observation)) for a in MISTAKES[mistake]]
    out = run(["simulator=gaussian", "engine=importance", "progress=false", "plots=false",
               "hydra.run.dir=run", *args], tmp_path)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2, out.stderr
    assert len(lines) == 1 and lines[0].startswith("etalumis infer: error: "), out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    # The traceback is kept for whoever needs it: in the run's log file.
    assert "Traceback" in (tmp_path / "run" / "cli.log").read_text()


def test_a_corrupt_observation_file_is_one_line(tmp_path):
    (tmp_path / "corrupt.h5").write_bytes(b"not hdf5 at all")
    out = run(["simulator=gaussian", "observation=corrupt.h5", "progress=false",
               "hydra.run.dir=run"], tmp_path)
    assert out.returncode != 0
    assert out.stderr.strip().count("\n") == 0 and "corrupt.h5" in out.stderr, out.stderr


def test_verbose_shows_the_traceback(tmp_path):
    out = run(["--verbose", "simulator=gaussian", "num_traces=0", "progress=false",
               "hydra.run.dir=run"], tmp_path)
    assert out.returncode != 0 and "Traceback" in out.stderr
    assert "num_traces must be a positive integer" in out.stderr


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"]])
def test_help_lists_every_installed_option_and_command(args, tmp_path):
    out = run(args, tmp_path)
    assert out.returncode == 0
    text = out.stdout
    for command in cli.COMMANDS + ("plugins",):
        assert f"\n  {command} " in text
    plugins = et.load_plugins()
    for group, kind in cli.GROUPS.items():
        for name, entry in plugins.registries[kind].entries.items():
            line = next(line for line in text.splitlines() if line.strip().startswith(name + " "))
            assert f"[{entry.plugin}]" in line
    assert "toy_tau_decay" in text and "Hydra" in text


def make_nameless():
    return et.models.make_gaussian()


def test_a_name_registered_without_yaml_gets_a_generated_config(tmp_path, monkeypatch):
    plugins = et.load_plugins()
    plugins.registries["simulators"].add("nameless", make_nameless, "a_plugin")
    generated = generated_configs(plugins, cli.GROUPS)
    text = open(os.path.join(generated, "simulator", "nameless.yaml")).read()
    assert "name: nameless" in text and "a_plugin" in text
    # Every name that ships its YAML keeps it; a simulator with no engine config of its own
    # gets smc's, and toy_tau_decay keeps the one it ships.
    assert sorted(os.listdir(generated)) == ["engine", "simulator"]
    engine = open(os.path.join(generated, "engine", "nameless.yaml")).read()
    assert "defaults:\n  - smc\n  - _self_" in engine
    assert not os.path.exists(os.path.join(generated, "engine", "toy_tau_decay.yaml"))
    # And the command runs with it.
    monkeypatch.setattr(cli, "load_plugins", lambda: plugins)
    from etalumis_core.app import jobs
    monkeypatch.setattr(jobs, "load_plugins", lambda: plugins, raising=False)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["simulate", "simulator=nameless", "num_traces=2", "plots=false",
                     "hydra.run.dir=sim"])
    assert code == 0 and (tmp_path / "sim" / "observation.h5").exists()


def test_a_sweep_ends_with_an_overview(tmp_path):
    out = run(["-m", "simulator=gaussian", "engine=importance", "seed=0,1", "num_traces=64",
               "plots=false", "progress=false", "hydra.sweep.dir=sweep"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "overview" in out.stdout
    with open(tmp_path / "sweep" / "overview.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["overrides"] for r in rows] == ["seed=0", "seed=1"]   # what differs
    assert all(r["status"] == "done" and float(r["ess"]) > 1 for r in rows)
    assert rows[0]["mean mu"] != rows[1]["mean mu"]
    assert "| job |" in (tmp_path / "sweep" / "overview.md").read_text()


def test_an_observation_of_another_simulator_is_named_as_such(tmp_path, weather_observation):
    out = run(["simulator=gaussian", f"observation={weather_observation}", "progress=false",
               "hydra.run.dir=run"], tmp_path)
    assert out.returncode == 2
    assert "observation of simulator 'weather', not 'gaussian'" in out.stderr


def test_a_port_in_use_is_one_line(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run(["serve", "simulator=gaussian", f"address=tcp://127.0.0.1:{port}",
                   "hydra.run.dir=run"], tmp_path)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith("etalumis serve: error: cannot serve at tcp://127.0.0.1:")


def test_a_missing_simulator_binary_is_one_line(tmp_path):
    out = run(["simulator=ppx", 'simulator.params.command="/nonexistent/sim --address \\{address\\}"',
               "engine=importance", "num_traces=2", "executor=serial", "progress=false",
               "hydra.run.dir=run"], tmp_path)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert "cannot launch simulator" in lines[0] and "/nonexistent/sim" in lines[0]
