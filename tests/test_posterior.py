"""Posterior statistics, resampling, combining and the HDF5 round trip."""

import h5py
import numpy as np
import pytest

import etalumis_core as et
from etalumis_core.models import gaussian_unknown_mean, poisson_mixture_count


@pytest.fixture(scope="module")
def post():
    return et.infer(poisson_mixture_count, observe={"y": 4.0}, num_traces=3000, seed=0)


def test_weighted_statistics_match_numpy(post):
    m = post.marginal("total")
    idx, _ = post.values_of("total")
    w = post.weights[idx] / post.weights[idx].sum()
    assert m.mean == pytest.approx(np.sum(w * m.values))
    assert m.stddev == pytest.approx(np.sqrt(np.sum(w * (m.values - m.mean) ** 2)))
    assert m.quantile(0.0) == pytest.approx(m.values.min())
    q = m.quantile([0.05, 0.5, 0.95])
    assert q[0] < q[1] < q[2]
    assert np.sum(w * (m.values <= q[1])) == pytest.approx(0.5, abs=0.02)
    density, edges = m.histogram(20)
    assert np.sum(density * np.diff(edges)) == pytest.approx(1.0)
    table = post.marginal("clusters").probabilities()
    assert sum(table.values()) == pytest.approx(1.0)
    assert list(table.values()) == sorted(table.values(), reverse=True)


def test_marginal_by_address_and_missing_name(post):
    address = [a for a in post.addresses() if "Poisson" in a][0]
    assert post.marginal(address).mean == pytest.approx(post.marginal("n").mean)
    with pytest.raises(KeyError, match="clusters"):
        post.marginal("nope")


def test_variables_absent_from_some_traces_have_coverage(post):
    first_mean = [a for a in post.addresses() if a.endswith("Normal__1")][0]
    m = post.marginal(first_mean)
    p_zero = post.marginal("clusters").probabilities().get(0, 0.0)
    assert m.coverage == pytest.approx(1 - p_zero)


def test_resample_gives_equal_weights_and_preserves_the_mean(post):
    r = post.resample(20000, np.random.default_rng(1))
    assert r.num_traces == 20000
    assert np.all(r.log_weights == 0)
    m = post.marginal("total")
    assert r.marginal("total").mean == pytest.approx(m.mean, abs=4 * m.stddev / np.sqrt(post.ess))
    draws = post.sample(3, np.random.default_rng(2))
    assert len(draws) == 3 and all("total" in d and "n" in d for d in draws)


def test_concat_combines_runs(post):
    other = et.infer(poisson_mixture_count, observe={"y": 4.0}, num_traces=1000, seed=1)
    both = et.Posterior.concat([post, other])
    assert both.num_traces == 4000
    assert set(both.trace_types) == set(post.trace_types) | set(other.trace_types)
    assert np.array_equal(both.marginal("n").values[:len(post.named["n"].values)],
                          post.named["n"].values)


def test_hdf5_round_trip_without_pickles_or_vlen(tmp_path, post):
    path = tmp_path / "posterior.h5"
    post.save(path)
    loaded = et.Posterior.load(path)
    assert np.array_equal(loaded.log_weights, post.log_weights)
    assert loaded.trace_types == post.trace_types
    for key in ("n", "total", "clusters"):
        assert np.array_equal(loaded.marginal(key).values, post.marginal(key).values)
    assert loaded.summary()["variables"].keys() == post.summary()["variables"].keys()
    assert loaded.trace_type_table() == post.trace_type_table()

    def no_vlen(name, obj):
        if isinstance(obj, h5py.Dataset):
            assert h5py.check_vlen_dtype(obj.dtype) is None, name
            assert obj.dtype.kind != "O", name

    with h5py.File(path) as f:
        f.visititems(no_vlen)
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary name is gone


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = 1
    with pytest.raises(et.EtalumisError, match="not an etalumis-posterior file"):
        et.Posterior.load(path)


def test_ragged_tags_round_trip(tmp_path):
    def model():
        n = et.sample(et.Poisson(2.0), name="n")
        et.tag(np.arange(n, dtype=float), name="history")

    post = et.infer(model, num_traces=50, seed=0)
    post.save(tmp_path / "p.h5")
    loaded = et.Posterior.load(tmp_path / "p.h5")
    idx, values = loaded.values_of("history")
    n = post.named["n"].values
    assert all(len(v) == n[i] for i, v in zip(idx, values))
    with pytest.raises(ValueError, match="changes shape"):
        loaded.marginal("history")


def test_r_hat_detects_chains_that_disagree():
    def stuck():
        et.sample(et.Normal(0.0, 1.0), name="x")

    good = et.infer(gaussian_unknown_mean, observe={"obs0": 8.0, "obs1": 9.0}, engine="rmh",
                    num_traces=4000, chains=4, burn_in=200, seed=0)
    assert good.r_hat("mu") < 1.05
    # Two chains on different values of x: R-hat far above 1.
    a = et.infer(stuck, engine="rmh", num_traces=200, seed=0, scale=1e-3, prior_probability=0.0)
    b = et.infer(stuck, engine="rmh", num_traces=200, seed=9, scale=1e-3, prior_probability=0.0)
    assert et.Posterior.concat([a, b], separate_chains=True).r_hat("x") > 1.5
    acf = good.autocorrelation("mu", 10)
    assert acf[0] == pytest.approx(1.0) and acf[10] < acf[1]


def test_arviz_export_has_the_netcdf_group_layout(tmp_path):
    import h5netcdf

    mcmc = et.infer(gaussian_unknown_mean, observe={"obs0": 8.0, "obs1": 9.0}, engine="rmh",
                    num_traces=300, chains=3, seed=0)
    mcmc.to_arviz(tmp_path / "mcmc.nc")
    with h5netcdf.File(tmp_path / "mcmc.nc", "r") as f:
        mu = f.groups["posterior"].variables["mu"]
        assert mu.dimensions == ("chain", "draw")
        assert mu.shape == (3, 100)
        assert np.allclose(np.sort(mu[...].ravel()), np.sort(mcmc.marginal("mu").values))
        assert f.groups["sample_stats"].variables["log_weight"].shape == (3, 100)
    weighted = et.infer(gaussian_unknown_mean, observe={"obs0": 8.0, "obs1": 9.0},
                        num_traces=2000, seed=0)
    weighted.to_arviz(tmp_path / "is.nc")
    with h5netcdf.File(tmp_path / "is.nc", "r") as f:
        draws = f.groups["posterior"].variables["mu"][...]
    # One chain of about ESS draws: what the weighted sample is worth.
    assert draws.shape == (1, round(weighted.ess))
    m = weighted.marginal("mu")
    assert abs(draws.mean() - m.mean) < 6 * m.stddev / np.sqrt(weighted.ess)


GROUPS = {"posterior", "sample_stats", "observed_data", "log_likelihood"}


@pytest.mark.parametrize("engine", ["importance", "rmh", "smc"])
def test_to_arviz_gives_inference_data_in_memory_and_on_disk(engine, tmp_path):
    import arviz as az

    post = et.infer(gaussian_unknown_mean, observe={"obs0": 8.0, "obs1": 9.0}, engine=engine,
                    num_traces=400, seed=1, progress=False)
    data = post.to_arviz()
    assert isinstance(data, az.InferenceData)
    assert set(data.groups()) == GROUPS
    assert data.observed_data["obs0"].values.ravel().tolist() == [8.0]
    assert data.log_likelihood["total"].shape == data.posterior["mu"].shape
    written = post.to_arviz(tmp_path / "p.nc")
    assert set(az.from_netcdf(tmp_path / "p.nc").groups()) == GROUPS
    assert np.array_equal(written.posterior["mu"].values, data.posterior["mu"].values)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_arviz_claims_no_more_than_the_engines_ess(seed):
    """ArviZ measures draws by their autocorrelation and knows nothing of weights: an
    importance posterior is exported so that its ESS stays within 1.5x the engine's."""
    import arviz as az

    post = et.infer(gaussian_unknown_mean, observe={"obs0": 8.0, "obs1": 9.0},
                    num_traces=3000, seed=seed, progress=False)
    data = post.to_arviz()
    assert float(az.ess(data, var_names=["mu"])["mu"]) <= 1.5 * post.ess
