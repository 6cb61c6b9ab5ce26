"""Trace datasets: shards, index, reader, prior inflation, and resuming a killed generation."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import etalumis_core as et
from etalumis_core import models
from etalumis_core.data import TraceDataset, generate_dataset, inflate
from etalumis_core.errors import ConfigError


def _all_values(ds: TraceDataset) -> tuple[np.ndarray, np.ndarray]:
    recs = ds.records(np.arange(len(ds)))
    ids = np.array([r.trace_id for r in recs])
    mu = np.array([r.samples[0].value[0] for r in recs])
    return ids, mu


def test_generate_and_read_back(tmp_path):
    ds = generate_dataset(models.make_poisson_mixture(), tmp_path / "d", 230, seed=5,
                          chunk_size=100, progress=False)
    assert len(ds) == 230
    assert sorted(p.name for p in (tmp_path / "d").glob("shard-*.h5")) == [
        "shard-000000.h5", "shard-000001.h5", "shard-000002.h5"]
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["num_traces"] == 230 and manifest["seed"] == 5
    assert manifest["chunk_size"] == 100 and manifest["simulator"] == "poisson_mixture"
    assert ds.observation_shapes == {"y": ()}
    # The index by trace type: n clusters -> n+1 controlled addresses.
    assert sum(ds.trace_type_counts().values()) == 230
    lengths = {len(t) for t in ds.trace_types}
    assert lengths <= {1, 2, 3, 4, 5} and 1 in lengths
    for t, ids in ds.type_buckets().items():
        assert all(r.trace_type == ds.trace_types[t] for r in ds.records(ids[:5]))
    # A record equals what a trace drawn with the shard's generator gives.
    from etalumis_core.data import make_generation_controller
    from etalumis_core.seeding import chunk_rng

    controller = make_generation_controller(chunk_rng(5, 1), None)
    sim = models.make_poisson_mixture()
    traces = [et.run_trace(sim, controller) for _ in range(3)]
    recs = ds.records([100, 101, 102])
    for trace, rec in zip(traces, recs):
        values = [v.value for v in trace.samples(controlled_only=True)]
        assert [float(s.value[0]) for s in rec.samples] == pytest.approx(values)
        assert rec.observations["y"] == pytest.approx(trace.named("y").value, rel=1e-6)
    # Only plain numeric datasets: no variable-length types, no object dtype.
    with h5py.File(tmp_path / "d" / "shard-000000.h5") as f:
        def check(name, obj):
            if isinstance(obj, h5py.Dataset):
                assert obj.dtype.kind in "iuf", name
                assert h5py.check_vlen_dtype(obj.dtype) is None, name
        f.visititems(check)


def test_batches_cover_an_epoch_grouped_by_trace_type(tmp_path):
    ds = generate_dataset(models.make_poisson_mixture(), tmp_path / "d", 150, seed=1,
                          chunk_size=40, progress=False)
    seen = []
    for batch in ds.batches(16, np.random.default_rng(0), group_by_type=True):
        assert len(batch.sub_batches) == 1 and batch.size <= 16
        sb = batch.sub_batches[0]
        assert sb.values[0].shape == (sb.size, 1) and sb.observations["y"].shape == (sb.size,)
        seen += sb.trace_ids.tolist()
    assert sorted(seen) == list(range(150))
    mixed = next(ds.batches(64, np.random.default_rng(0)))
    assert mixed.size == 64 and len(mixed.sub_batches) > 1


def test_process_pool_gives_the_same_shards(tmp_path):
    spec = et.SimulatorSpec(models.make_gaussian, name="gaussian")
    serial = generate_dataset(spec, tmp_path / "s", 120, seed=2, chunk_size=50, progress=False)
    with et.ProcessPoolExecutor(2) as pool:
        pooled = generate_dataset(spec, tmp_path / "p", 120, seed=2, chunk_size=50,
                                  executor=pool, progress=False)
    a, b = _all_values(serial), _all_values(pooled)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_prior_inflation_widens_and_records_the_proposal(tmp_path):
    ds = generate_dataset(models.make_gaussian(), tmp_path / "d", 400, seed=0, chunk_size=400,
                          prior_inflation=3.0, progress=False)
    recs = ds.records(np.arange(400))
    mu = np.array([r.samples[0].value[0] for r in recs])
    assert mu.std() == pytest.approx(3 * 5 ** 0.5, rel=0.15)
    log_q = np.array([r.samples[0].log_proposal for r in recs])
    expected = [et.Normal(1.0, 3 * 5 ** 0.5).log_prob(float(m)) for m in mu]
    np.testing.assert_allclose(log_q, expected, rtol=1e-9)
    assert isinstance(inflate(et.Categorical([0.9, 0.1]), 1e9), et.Categorical)
    assert inflate(et.Categorical([0.9, 0.1]), 1e9).probs == pytest.approx([0.5, 0.5], abs=1e-6)
    assert inflate(et.Uniform(0, 1), 3.0) is None


def test_different_arguments_in_the_same_directory_are_refused(tmp_path):
    generate_dataset(models.make_gaussian(), tmp_path / "d", 20, seed=0, chunk_size=10,
                     progress=False)
    with pytest.raises(ConfigError, match="different dataset"):
        generate_dataset(models.make_gaussian(), tmp_path / "d", 20, seed=1, chunk_size=10,
                         progress=False)


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    import etalumis_core as et
    from etalumis_core import models
    from etalumis_core.data import generate_dataset

    count = 0

    def gaussian_unknown_mean():
        global count
        count += 1
        if count == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)   # no cleanup, as a crash or an OOM kill
        return models.gaussian_unknown_mean()

    sim = et.PythonSimulator(gaussian_unknown_mean, name="gaussian")
    generate_dataset(sim, sys.argv[1], 500, seed=11, chunk_size=60, progress=False)
""")


def test_killed_generation_resumes_without_duplicates_or_losses(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN)
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, str(script), str(out), "250"], capture_output=True)
    assert proc.returncode == -9
    shards = sorted(p.name for p in out.glob("shard-*.h5"))
    assert shards == [f"shard-00000{k}.h5" for k in range(4)]   # 4 x 60 traces done, 5th killed
    assert not (out / "index.h5").exists()
    with pytest.raises(Exception, match="incomplete"):
        TraceDataset(out)
    # Resume in this process with the undisturbed simulator.
    resumed = generate_dataset(models.make_gaussian(), out, 500, seed=11, chunk_size=60,
                               progress=False)
    assert not list(out.glob(".*tmp*"))
    ids, mu = _all_values(resumed)
    assert len(resumed) == 500
    np.testing.assert_array_equal(ids, np.arange(500))
    assert len(np.unique(mu)) == 500
    straight = generate_dataset(models.make_gaussian(), tmp_path / "straight", 500, seed=11,
                                chunk_size=60, progress=False)
    np.testing.assert_array_equal(mu, _all_values(straight)[1])


def test_interrupted_by_an_exception_resumes(tmp_path):
    calls = {"n": 0}

    def gaussian_unknown_mean():
        calls["n"] += 1
        if calls["n"] == 45:
            raise RuntimeError("interrupted")
        return models.gaussian_unknown_mean()

    sim = et.PythonSimulator(gaussian_unknown_mean, name="gaussian")
    with pytest.raises(RuntimeError):
        generate_dataset(sim, tmp_path / "d", 100, seed=3, chunk_size=20, progress=False)
    assert len(list((tmp_path / "d").glob("shard-*.h5"))) == 2
    ds = generate_dataset(sim, tmp_path / "d", 100, seed=3, chunk_size=20, progress=False)
    ids, mu = _all_values(ds)
    np.testing.assert_array_equal(ids, np.arange(100))
    assert len(np.unique(mu)) == 100
