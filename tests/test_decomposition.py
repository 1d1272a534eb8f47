"""Tests for fusi_nmf.decomposition.NMF on real factorizations of small data."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import sklearn
import xarray as xr
from sklearn.decomposition import NMF as SkNMF
from sklearn.exceptions import ConvergenceWarning

import fusi_nmf.decomposition as dec
from fusi_nmf.decomposition import NMF
from fusi_nmf.metrics import source_recovery
from fusi_nmf.signal import split_sign, standardize
from fusi_nmf.simulate import simulate_recording

MODES = ["temporal", "spatial"]


def _planted(n_time=80, ny=10, nx=8, k=3, seed=0, noise=0.0, sign=True):
    """Exact (or noisy) non-negative low-rank data with labelled dims and coords."""
    rng = np.random.default_rng(seed)
    n_sign = 2 if sign else 1
    W = rng.random((n_time, k)).astype(np.float32)
    H = (rng.random((k, n_sign * ny * nx)) * (rng.random((k, n_sign * ny * nx)) < 0.5)).astype(
        np.float32
    )
    data = W @ H
    if noise:
        data += noise * rng.random(data.shape).astype(np.float32)
    coords = {
        "time": ("time", 10.608 + 0.3 * np.arange(n_time), {"units": "s"}),
        "z": ("z", [0.0], {"units": "mm"}),
        "y": ("y", 0.04832 * np.arange(ny), {"units": "mm"}),
        "x": ("x", 0.1 * np.arange(nx), {"units": "mm"}),
    }
    if sign:
        coords["sign"] = ("sign", ["pos", "neg"])
        dims = ("time", "sign", "z", "y", "x")
        shape = (n_time, 2, 1, ny, nx)
    else:
        dims = ("time", "z", "y", "x")
        shape = (n_time, 1, ny, nx)
    X = xr.DataArray(
        data.reshape(shape), dims=dims, coords=coords, name="power_doppler", attrs={"tr": 0.3}
    )
    return X, W, H


@pytest.fixture(scope="module")
def planted():
    return _planted(noise=0.01)


@pytest.fixture
def solve_counter(monkeypatch):
    """Count runs of our "hals" solver (the spy calls the real one)."""
    calls = {"n": 0}
    original_hals = dec._fused_cd

    def spy_hals(*args, **kwargs):
        calls["n"] += 1
        return original_hals(*args, **kwargs)

    monkeypatch.setattr(dec, "_fused_cd", spy_hals)
    return calls


def _energy_order(tc: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """The component order NMF reports: decreasing ||timecourse|| * ||map||, stable."""
    energy = np.linalg.norm(tc, axis=0).astype(np.float64) * np.linalg.norm(maps, axis=1)
    return np.argsort(-energy, kind="stable")


def _frobenius(A, W, H):
    r = A - W @ H
    return float(np.sqrt(np.einsum("ij,ij->", r, r, dtype=np.float64)))


@pytest.mark.parametrize("mode", MODES)
def test_fit_transform_nonnegative_dims_coords(planted, mode):
    X, _, _ = planted
    model = NMF(3, mode=mode, random_state=0, max_iter=1000)
    tc = model.fit_transform(X)
    assert tc.dims == ("time", "component")
    assert tc.dtype == np.float32
    np.testing.assert_array_equal(tc["time"].values, X["time"].values)
    np.testing.assert_array_equal(tc["component"].values, np.arange(3))
    assert float(tc.min()) >= 0
    maps = model.maps_
    assert maps.dims == ("component", "sign", "z", "y", "x")
    assert maps.dtype == np.float32
    assert float(maps.min()) >= 0
    for d in ("sign", "z", "y", "x"):
        np.testing.assert_array_equal(maps[d].values, X[d].values)
    assert maps["y"].attrs["units"] == "mm"
    assert maps.attrs["tr"] == 0.3
    xr.testing.assert_identical(tc, model.timecourses_)
    assert model.n_samples_ == 80
    assert model.n_features_in_ == 2 * 10 * 8
    assert model.converged_
    # the product of the fitted factors reconstructs the data closely
    assert model.explained_variance_ > 0.99
    rec = tc.values @ maps.values.reshape(3, -1)
    assert np.linalg.norm(rec - X.values.reshape(80, -1)) == pytest.approx(
        model.reconstruction_err_, rel=1e-3
    )


def test_no_sign_dim_and_any_dim_order():
    X, _, _ = _planted(sign=False, noise=0.01)
    Xt = X.transpose("y", "time", "x", "z")
    model = NMF(3, random_state=0).fit(Xt)
    assert model.maps_.dims == ("component", "y", "x", "z")
    ref = NMF(3, random_state=0).fit(X)
    np.testing.assert_allclose(
        model.maps_.transpose(*ref.maps_.dims).values, ref.maps_.values, rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("mode", MODES)
def test_one_solve_only(planted, solve_counter, mode):
    X, _, _ = planted
    model = NMF(3, mode=mode, random_state=0)
    model.fit_transform(X)
    assert solve_counter["n"] == 1
    model.fit(X)
    assert solve_counter["n"] == 2


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("mode", MODES)
def test_cd_solver_is_one_sklearn_solve(planted, mode):
    # solver="cd" returns scikit-learn's fit_transform factors themselves (one solve),
    # reordered by energy; fit followed by transform (a second solve) gives other numbers
    X, _, _ = planted
    A = np.ascontiguousarray(X.values.reshape(X.sizes["time"], -1))
    M = A if mode == "temporal" else A.T
    model = NMF(3, mode=mode, random_state=0, solver="cd", max_iter=50)
    tc = model.fit_transform(X).values
    sk = SkNMF(3, init="nndsvda", random_state=0, max_iter=50)
    W = sk.fit_transform(M)
    ref_tc, ref_maps = (W, sk.components_) if mode == "temporal" else (sk.components_.T, W.T)
    order = _energy_order(ref_tc, ref_maps)
    np.testing.assert_array_equal(tc, ref_tc[:, order])
    np.testing.assert_array_equal(model.maps_.values.reshape(3, -1), ref_maps[order])
    assert model.reconstruction_err_ == sk.reconstruction_err_
    if mode == "temporal":
        assert not np.array_equal(sk.transform(M), W)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("mode", MODES)
def test_error_falls_with_k(mode):
    X, _, _ = _planted(k=5, noise=0.05, seed=1)
    errs = [NMF(k, mode=mode, random_state=0).fit(X).reconstruction_err_ for k in (1, 2, 4, 6)]
    assert all(b < a for a, b in itertools.pairwise(errs)), errs


@pytest.mark.parametrize("mode", MODES)
def test_deterministic_and_ordered(planted, mode):
    X, _, _ = planted
    a = NMF(3, mode=mode, random_state=3).fit(X)
    b = NMF(3, mode=mode, random_state=3).fit(X)
    xr.testing.assert_identical(a.maps_, b.maps_)
    xr.testing.assert_identical(a.timecourses_, b.timecourses_)
    energy = np.linalg.norm(a.timecourses_.values, axis=0) * np.linalg.norm(
        a.maps_.values.reshape(3, -1), axis=1
    )
    assert np.all(np.diff(energy) <= 0)


@pytest.mark.parametrize("mode", MODES)
def test_transform_is_nnls(mode):
    # exact data: the time courses are recovered exactly from the true maps
    X, W, H = _planted(seed=2)
    model = NMF(3, mode=mode, random_state=0).fit(X)
    maps = model._maps_masked.copy()
    model._maps_masked = H.copy()  # project onto the known maps
    coef = model.transform(X)
    np.testing.assert_allclose(coef.values, W, rtol=1e-3, atol=1e-4)
    model._maps_masked = maps
    # on new data with negative entries, coefficients stay >= 0 and match scipy's nnls
    from scipy.optimize import nnls

    rng = np.random.default_rng(5)
    new = X.isel(time=slice(0, 7)).copy(data=rng.standard_normal((7, *X.shape[1:])).astype("f4"))
    coef = model.transform(new)
    assert coef.dims == ("time", "component")
    assert float(coef.min()) >= 0
    np.testing.assert_array_equal(coef["time"].values, new["time"].values)
    for t in range(7):
        ref, _ = nnls(maps.T.astype(float), new.values[t].ravel().astype(float))
        np.testing.assert_allclose(coef.values[t], ref, rtol=1e-3, atol=1e-4)


def test_transform_rejects_other_grid(planted):
    X, _, _ = planted
    model = NMF(3, random_state=0).fit(X)
    with pytest.raises(ValueError, match="'y' coords differ"):
        model.transform(X.assign_coords(y=X["y"].values + 1))
    with pytest.raises(ValueError, match="non-time dims"):
        model.transform(X.isel(sign=0, drop=True))


@pytest.mark.parametrize("mode", MODES)
def test_inverse_transform(planted, mode):
    X, _, _ = planted
    model = NMF(3, mode=mode, random_state=0, max_iter=1000)
    tc = model.fit_transform(X)
    rec = model.inverse_transform(tc)
    assert rec.dims == X.dims
    for d in X.dims:
        np.testing.assert_array_equal(rec[d].values, X[d].values)
    assert float(abs(rec - X).max()) < 0.05 * float(X.max())
    rec_np = model.inverse_transform(tc.values[:5])
    assert rec_np.sizes["time"] == 5
    with pytest.raises(ValueError, match="components"):
        model.inverse_transform(tc.values[:, :2])


@pytest.mark.parametrize("mode", MODES)
def test_mask(planted, mode):
    X, _, _ = planted
    inside = (X["y"] < 0.2) & (X["x"] >= 0.2)  # (y, x) boolean, broadcast over sign and z
    mask = inside.expand_dims(z=X["z"].values).transpose("z", "y", "x")
    model = NMF(2, mode=mode, random_state=0, mask=mask)
    tc = model.fit_transform(X)
    n_in = int(mask.sum())
    assert model.n_features_in_ == 2 * n_in
    maps = model.maps_
    assert maps.dims == ("component", "sign", "z", "y", "x")
    outside = ~mask.values.astype(bool)
    assert np.all(maps.values[:, :, outside] == 0)
    assert np.any(maps.values[:, :, ~outside] > 0)
    rec = model.inverse_transform(tc)
    assert np.all(rec.values[:, :, outside] == 0)
    # NaN outside the mask is fine: those voxels are not used
    Xn = X.where(xr.DataArray(~outside, dims=("z", "y", "x")) | True)
    Xn.values[:, :, outside] = np.nan
    NMF(2, mode=mode, random_state=0, mask=mask).fit(Xn)


def test_mask_errors(planted):
    X, _, _ = planted
    good = xr.ones_like(X.isel(time=0, sign=0, drop=True), dtype=bool)
    with pytest.raises(ValueError, match="along 'y'"):
        NMF(2, mask=good.isel(y=slice(0, 5))).fit(X)
    with pytest.raises(ValueError, match="'x' coords differ"):
        NMF(2, mask=good.assign_coords(x=good["x"].values + 5)).fit(X)
    with pytest.raises(ValueError, match="not in X"):
        NMF(2, mask=good.expand_dims(q=2)).fit(X)
    with pytest.raises(TypeError, match="boolean"):
        NMF(2, mask=good.astype(int)).fit(X)
    with pytest.raises(ValueError, match="no voxel"):
        NMF(2, mask=~good).fit(X)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("solver", ["hals", "cd"])
def test_convergence_warning_once(planted, mode, solver):
    X, _, _ = planted
    model = NMF(3, mode=mode, random_state=0, max_iter=2, solver=solver)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X)
    conv = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(conv) == 1
    assert "max_iter" in str(conv[0].message) and "Raise" in str(conv[0].message)
    assert model.converged_ is False
    assert model.n_iter_ == 2


def test_bad_inputs(planted):
    X, _, _ = planted
    with pytest.raises(TypeError, match="DataArray"):
        NMF(2).fit(X.values)
    with pytest.raises(ValueError, match="no 'time' dim"):
        NMF(2).fit(X.rename(time="t"))
    neg = X.copy()
    neg.values[0, 0, 0, 0, :3] = -1.0
    with pytest.raises(ValueError, match=r"3 negative values.*split_sign"):
        NMF(2).fit(neg)
    for bad in (np.nan, np.inf):
        Xb = X.copy()
        Xb.values[1, 0, 0, 1, 1] = bad
        with pytest.raises(ValueError, match="1 NaN/Inf"):
            NMF(2).fit(Xb)
    with pytest.raises(ValueError, match="n_components"):
        NMF(0).fit(X)
    with pytest.raises(ValueError, match=r"min\(n_time, n_features\)"):
        NMF(81).fit(X)
    with pytest.raises(ValueError, match="mode"):
        NMF(2, mode="voxel").fit(X)
    with pytest.raises(ValueError, match="only the 'time' dim"):
        NMF(1).fit(X.isel(sign=0, z=0, y=0, x=0))
    with pytest.raises(TypeError, match="real numbers"):
        NMF(1).fit(X.astype(complex))


def test_sklearn_estimator_api():
    from sklearn.base import clone

    model = NMF(4, mode="spatial", random_state=1)
    params = model.get_params()
    assert params["n_components"] == 4 and params["mode"] == "spatial"
    assert clone(model).get_params()["random_state"] == 1
    assert "NMF(" in repr(model)


@pytest.mark.parametrize("mode", MODES)
def test_planted_source_recovery_simulated(mode):
    """Every planted source of a motion-free simulation is found (time course |r| >= 0.8).

    The simulator's noise is off: with it on, the small preset's sources are buried
    (see the report of this module's author); z-scoring flattens the Gaussian
    footprints, so the maps correlate less with the Gaussian truth than the time courses.
    """
    sim = simulate_recording("small", seed=0, nuisance=False, noise=False)
    X = split_sign(standardize(sim.power_doppler, method="zscore"))
    model = NMF(10, mode=mode, random_state=0)
    tc = model.fit_transform(X)
    table = source_recovery(tc, model.maps_, sim, match_on="timecourse")
    assert len(table) == sim.sizes["source"]
    assert (table["timecourse_r"] >= 0.8).all(), table
    assert (table["map_r"] >= 0.5).all(), table
    assert table["sign_consistent"].all(), table
    # decreases live in the neg channel
    for src, row in table.iterrows():
        comp = model.maps_.sel(component=row["component"])
        pos, neg = float(comp.sel(sign="pos").sum()), float(comp.sel(sign="neg").sum())
        if int(sim["source_sign"].sel(source=src)) < 0:
            assert neg > pos
        else:
            assert pos > neg


# ----------------------------------------------------------- the "hals" solver
def _matrix(seed=0, n=60, m=150, k=4, noise=0.1):
    rng = np.random.default_rng(seed)
    A = rng.random((n, k)) @ rng.random((k, m)) + noise * rng.random((n, m))
    return A.astype(np.float32)


def _init(A, k, temporal, seed=0, init="nndsvda"):
    W0, H0 = dec._initialize(A if temporal else A.T, k, init, seed)
    C, St = (W0, H0.T) if temporal else (H0.T, W0)
    return np.array(C, dtype=A.dtype, order="C"), np.array(St, dtype=A.dtype, order="C")


@pytest.mark.parametrize("temporal", [True, False])
def test_hals_error_non_increasing(temporal, monkeypatch):
    # small blocks so the fused pass really runs block by block
    monkeypatch.setattr(dec, "_BLOCK_BYTES", 60 * 4 * 32)
    A = _matrix(seed=3)
    errs = []
    for n_iter in range(1, 13):
        C, St = _init(A, 4, temporal)
        # iterates are prefixes of one another: warm-up 1 sweep, then 3 sweeps
        dec._fused_cd(A, C, St, temporal=temporal, tol=0, max_iter=n_iter, warmup=4, polish=False)
        assert C.min() >= 0 and St.min() >= 0
        errs.append(_frobenius(A, C, St.T))
    assert all(b <= a * (1 + 1e-6) for a, b in itertools.pairwise(errs)), errs
    assert errs[-1] < 0.9 * errs[0]
    # polishing only lowers the error further
    C, St = _init(A, 4, temporal)
    dec._fused_cd(A, C, St, temporal=temporal, tol=0, max_iter=12, warmup=4)
    assert _frobenius(A, C, St.T) <= errs[-1] * (1 + 1e-6)


@pytest.mark.parametrize("init", ["nndsvda", "nndsvd", "nndsvdar", "random"])
@pytest.mark.parametrize("temporal", [True, False])
def test_own_init_and_warmup_follow_sklearn_cd(temporal, init, monkeypatch):
    # our initialisation and, with one sweep per update, the fused solver iterate exactly
    # what scikit-learn's NMF(solver="cd") does (public API, same init name and seed)
    monkeypatch.setattr(dec, "_BLOCK_BYTES", 60 * 4 * 32)
    A = _matrix(seed=4)
    M = A if temporal else A.T
    for max_iter in (1, 15):
        C, St = _init(A, 4, temporal, seed=3, init=init)
        dec._fused_cd(A, C, St, temporal=temporal, tol=0, max_iter=max_iter, warmup=15,
                      polish=False)
        sk = SkNMF(4, init=init, solver="cd", tol=0, max_iter=max_iter, random_state=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            W = sk.fit_transform(M)
        assert sk.n_iter_ == max_iter
        ref_C, ref_St = (W, sk.components_.T) if temporal else (sk.components_.T, W)
        np.testing.assert_allclose(C, ref_C, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(St, ref_St, rtol=1e-4, atol=1e-5)


def test_compiled_kernel_is_there_in_the_tested_scikit_learn():
    # pyproject.toml bounds scikit-learn to the tested minor range, where the private
    # kernel exists; without it the solver silently runs the (slower) numpy fallback
    assert sklearn.__version__.startswith("1.9."), sklearn.__version__
    assert dec._cd_kernel() is not None


def test_compiled_kernel_matches_numpy_fallback():
    kernel = dec._cd_kernel()
    assert kernel is not None
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        H = rng.random((5, 40)).astype(dtype)
        X = rng.random((30, 40)).astype(dtype)
        W1 = rng.random((30, 5)).astype(dtype)
        W1[:, 2] = 0  # zeros take the projected gradient branch
        W1[3, 0] = 0
        W2 = W1.copy()
        HHt, XHt = H @ H.T, X @ H.T - 3.0  # a negative gradient part: some entries clip to 0
        v1 = dec._cd_sweep(W1, HHt, XHt, kernel)
        v2 = dec._cd_sweep(W2, HHt, XHt, None)
        rtol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(W2, W1, rtol=rtol, atol=rtol)
        assert v2 == pytest.approx(v1, rel=rtol)
        assert W1.min() >= 0 and (W1 == 0).any()


@pytest.mark.parametrize("temporal", [True, False])
def test_whole_solve_with_the_numpy_fallback_matches_the_kernel(temporal, monkeypatch):
    # the fallback runs a whole fused solve (warm-up, inner sweeps, polish) to the same factors
    monkeypatch.setattr(dec, "_BLOCK_BYTES", 60 * 4 * 32)
    A = _matrix(seed=5)
    results = []
    for kernel in (dec._cd_kernel(), None):
        C, St = _init(A, 4, temporal)
        n_iter, converged = dec._fused_cd(A, C, St, temporal=temporal, tol=1e-4, max_iter=200,
                                          warmup=5, kernel=kernel)
        results.append((C, St, n_iter, converged))
    (C1, S1, n1, ok1), (C2, S2, n2, ok2) = results
    assert ok1 and ok2 and n1 == n2 and n1 > 5
    np.testing.assert_allclose(C2, C1, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(S2, S1, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("mode", MODES)
def test_hals_error_at_or_below_sklearn_fit_transform(mode):
    """On the noisy small simulation, one "hals" solve ends at or below the error of
    scikit-learn's fit + transform (the reference, two solves), for several seeds."""
    sim = simulate_recording("small", seed=0)
    X = split_sign(standardize(sim.power_doppler, method="zscore"))
    A = np.ascontiguousarray(X.values.reshape(X.sizes["time"], -1))
    M = A if mode == "temporal" else A.T
    for seed, init in [(0, "nndsvda"), (1, "random"), (2, "random")]:
        model = NMF(5, mode=mode, random_state=seed, init=init)
        tc = model.fit_transform(X)
        assert model.converged_
        ours = _frobenius(A, tc.values, model.maps_.values.reshape(5, -1))
        assert model.reconstruction_err_ == pytest.approx(ours, rel=1e-6)
        sk = SkNMF(5, init=init, random_state=seed, max_iter=500).fit(M)
        ref = _frobenius(M, sk.transform(M), sk.components_)
        assert ours <= ref * (1 + 1e-7), (seed, ours, ref)


def test_hals_rejects_other_divergences(planted):
    X, _, _ = planted
    with pytest.raises(ValueError, match="solver='mu'"):
        NMF(2, beta_loss="kullback-leibler").fit(X)
    model = NMF(2, beta_loss="kullback-leibler", solver="mu", random_state=0, max_iter=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert float(model.fit_transform(X).min()) >= 0


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("mode", MODES)
def test_hals_l1_regularisation_sparsifies(planted, mode):
    X, _, _ = planted
    plain = NMF(3, mode=mode, random_state=0).fit(X)
    sparse = NMF(3, mode=mode, random_state=0, alpha_W=0.05, l1_ratio=1.0).fit(X)
    n0 = lambda m: int((m.maps_.values == 0).sum()) + int((m.timecourses_.values == 0).sum())  # noqa: E731
    assert n0(sparse) > n0(plain)
    assert sparse.reconstruction_err_ > plain.reconstruction_err_


@pytest.mark.parametrize(
    ("params", "exc", "match"),
    [
        ({"n_components": 2.0}, TypeError, "n_components must be an integer"),
        ({"n_components": True}, TypeError, "n_components must be an integer"),
        ({"init": "svd"}, ValueError, "init must be one of"),
        ({"solver": "als"}, ValueError, "solver must be one of"),
        ({"beta_loss": "l1"}, ValueError, "beta_loss must be one of"),
        ({"tol": -1.0}, ValueError, r"tol must be >= 0"),
        ({"max_iter": 0}, ValueError, r"max_iter must be >= 1"),
        ({"random_state": "seed"}, ValueError, "RandomState"),
        ({"alpha_W": -0.1}, ValueError, "alpha_W"),
        ({"alpha_H": "other"}, ValueError, "alpha_H must be a number >= 0 or 'same'"),
        ({"l1_ratio": 1.5}, ValueError, r"l1_ratio must be in \[0, 1\]"),
        ({"mask": np.ones(3, bool)}, TypeError, "mask must be a boolean xarray.DataArray"),
    ],
)
def test_parameters_are_checked_at_fit_with_a_clear_message(planted, params, exc, match):
    X, _, _ = planted
    with pytest.raises(exc, match=match):
        NMF(**{"n_components": 2, **params}).fit(X)


def test_accepted_parameter_forms(planted):
    X, _, _ = planted
    rs = np.random.RandomState(0)
    for params in ({"beta_loss": 2, "solver": "cd"}, {"alpha_H": 0.0, "random_state": rs}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            NMF(2, max_iter=5, **params).fit(X)


def test_polish_stops_when_float32_rounding_stalls_it():
    # tol=0 is never met: the polish used to sweep to max_sweeps, moving only last bits
    A = _matrix(seed=5)
    C, St = _init(A, 4, temporal=False)
    dec._fused_cd(A, C, St, temporal=False, tol=1e-4, max_iter=200, polish=False)
    G, B = C.T @ C, A.T @ C
    kernel = dec._cd_kernel()

    def polish(patience: int) -> tuple[np.ndarray, list[float]]:
        S, violations = St.copy(), []

        def sweep() -> float:
            violations.append(dec._cd_sweep(S, G, B, kernel))
            return violations[-1]

        dec._polish(sweep, tol=0.0, max_sweeps=500, patience=patience)
        return S, violations

    stopped, v_stopped = polish(dec._POLISH_PATIENCE)
    full, v_full = polish(10**6)
    assert len(v_full) == 500
    assert len(v_stopped) < 100, len(v_stopped)
    assert min(v_stopped) <= 2 * min(v_full), (min(v_stopped), min(v_full))
    np.testing.assert_allclose(stopped, full, rtol=0, atol=1e-5 * np.abs(full).max())
