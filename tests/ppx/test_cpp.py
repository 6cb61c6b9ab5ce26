"""A PPX simulator written in C++ (flatc-generated C++ bindings of our schema, libzmq), driven
by the etalumis engine: wire compatibility with native front ends."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

import etalumis_core as et
from etalumis_core.ppx import PPXSimulator, wire
from etalumis_core.ppx.native import build_native_simulator, missing_build_tools
from etalumis_core.simulator import run_trace

from .served_models import simulator as local_simulator

HERE = Path(__file__).resolve().parent
OBS = {"obs0": 8.0, "obs1": 9.0}


@pytest.fixture(scope="module")
def cpp_simulator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = missing_build_tools()
    if missing:
        pytest.skip(f"cannot build the C++ PPX simulator: {missing} is not installed")
    return build_native_simulator(HERE / "cpp" / "gaussian_sim.cpp", tmp_path_factory.mktemp("cpp"))


def test_cpp_verifier_accepts_every_buffer_we_write(cpp_simulator: Path, tmp_path: Path) -> None:
    from .test_wire import MESSAGES

    binary = cpp_simulator.parent / "verify_buffers"
    if not binary.exists():
        build_native_simulator(HERE / "cpp" / "verify_buffers.cpp", cpp_simulator.parent,
                               flags=(), libraries=())
    paths = []
    for i, msg in enumerate(MESSAGES):
        path = tmp_path / f"{i}.bin"
        path.write_bytes(wire.encode(msg))
        paths.append(str(path))
    out = subprocess.run([str(binary), *paths], capture_output=True, text=True)
    assert out.stdout.split("\n")[:-1] == [f"OK {type(m).__name__}" for m in MESSAGES]
    assert out.returncode == 0


def _frames(leaf: str) -> str:
    return ("[" + leaf + "; gaussian_model::forward(ppx::Context&)+0x1f4"
            "; ppx::Simulator::run_trace(std::function<void ()> const&)+0x9c"
            "; ppx::Simulator::serve(std::__cxx11::basic_string<char> const&)+0x2e1"
            "; main+0x8d; __libc_start_call_main+0x7a; __libc_start_main+0x85; _start+0x25]")


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_engine_drives_cpp_simulator(cpp_simulator: Path, transport: str) -> None:
    with PPXSimulator(command=[str(cpp_simulator), "{address}"], transport=transport,
                      timeout=10) as sim:
        controller = et.Controller(np.random.default_rng(0), OBS)
        local = local_simulator("gaussian")
        local_controller = et.Controller(np.random.default_rng(0), OBS)
        for _ in range(50):
            trace = run_trace(sim, controller)
            expected = run_trace(local, local_controller)
            sample = _frames("ppx::sample(ppx::Normal const&, char const*)+0x3a")
            observe = _frames("ppx::observe(ppx::Normal const&, char const*)+0x41")
            tag = _frames("ppx::tag(double, char const*)+0x22")
            assert [(v.kind, v.address, v.name) for v in trace.variables] == [
                ("sample", sample + "__Normal__1", "mu"),
                ("observe", observe + "__Normal__1", "obs0"),
                ("observe", observe + "__Normal__2", "obs1"),
                ("tag", tag + "__tag__1", "mu_tag")]
            # Same random stream, same values and weights as the Python model in-process.
            assert trace.named("mu").value == expected.named("mu").value
            assert trace.named("mu_tag").value == trace.result == trace.named("mu").value
            assert trace.log_weight == expected.log_weight
        assert sim.model_name == "gaussian_cpp"
        assert sim.system_name == "ppx C++ test simulator"


def test_posterior_from_cpp_simulator(cpp_simulator: Path) -> None:
    with PPXSimulator(command=[str(cpp_simulator), "{address}"], timeout=10) as sim:
        post = et.infer(sim, observe=OBS, engine="importance", num_traces=4000, seed=2,
                        progress=False)
    mu = post.marginal("mu")
    ess = post.ess
    assert ess > 20
    assert abs(mu.mean - 7.25) < 4 * 0.912871 / math.sqrt(ess)
    assert abs(mu.stddev - 0.912871) < 4 * 0.912871 / math.sqrt(2 * ess)
