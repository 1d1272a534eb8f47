"""Rigid volume-wise motion correction: accuracy against known motion, API contract, errors."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import xarray as xr

from fusi_nmf.metrics import align_to_truth
from fusi_nmf.registration import (
    choose_model,
    estimation,
    features,
    framewise_displacement,
    geometry,
    interpolation,
    register_volumewise,
    registration_qc,
    resampling,
    volumewise,
)
from fusi_nmf.simulate import simulate_recording

DX, DY, DZ = 0.1, 0.04832, 0.4
WIDTH = (0.06, 0.2)


def _rot_xyz(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rz Ry Rx, right-handed, degrees (written out independently of the module)."""
    a, b, g = np.radians([rx, ry, rz])
    r_x = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    r_y = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    r_z = np.array([[np.cos(g), -np.sin(g), 0], [np.sin(g), np.cos(g), 0], [0, 0, 1]])
    return r_z @ r_y @ r_x


def _textured_recording(motions, shape=(1, 60, 44), spacing=(DZ, DY, DX), seed=0, noise=0.0,
                        z_psf=0.0, n_blobs=250):
    """Frames of an analytic blob texture (mm space) moved by known rigid motions.

    ``motions`` rows are (tx, ty, tz, rx, ry, rz) in mm / degrees; content at p moves
    to R (p - c) + c + t, so frame(q) = texture(R^T (q - c - t) + c), evaluated
    exactly (no interpolation). ``z_psf``: Gaussian sigma (mm) of a thick slice's
    elevation profile, widening the blobs along z. Returns the recording and the
    unmoved volume.
    """
    rng = np.random.default_rng(seed)
    z, y, x = (np.arange(n) * s for n, s in zip(shape, spacing, strict=True))
    centre = np.array([x.mean(), y.mean(), z.mean()])
    lo = np.array([x[0], y[0], z[0]]) - 0.3
    hi = np.array([x[-1], y[-1], z[-1]]) + 0.3
    blobs = rng.uniform(lo, hi, (n_blobs, 3))
    width = rng.uniform(*WIDTH, n_blobs)
    scale = np.stack([width, width, np.sqrt(width**2 + z_psf**2)], axis=-1)
    amp = rng.lognormal(0.0, 1.0, n_blobs)  # heavy-tailed, like vessels
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    q = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=-1)

    def render(tx, ty, tz, rx, ry, rz):
        p = (q - centre - np.array([tx, ty, tz])) @ _rot_xyz(rx, ry, rz) + centre
        d2 = (((p[:, None, :] - blobs[None]) / scale[None]) ** 2).sum(-1)
        return ((amp * np.exp(-d2 / 2)).sum(-1) + 0.05).reshape(shape)

    frames = np.array([render(*m) for m in motions], dtype=np.float32)
    if noise:
        frames *= rng.gamma(1 / noise**2, noise**2, frames.shape).astype(np.float32)
    coords = {
        "time": ("time", np.arange(len(motions)) * 0.4, {"units": "s"}),
        "z": ("z", z, {"units": "mm", "voxdim": spacing[0]}),
        "y": ("y", y, {"units": "mm", "voxdim": spacing[1]}),
        "x": ("x", x, {"units": "mm", "voxdim": spacing[2]}),
    }
    da = xr.DataArray(frames, dims=("time", "z", "y", "x"), coords=coords, name="power_doppler",
                      attrs={"source_file": "synthetic", "repetition_time": 0.4})
    clean = xr.DataArray(render(0, 0, 0, 0, 0, 0).astype(np.float32), dims=("z", "y", "x"),
                         coords={k: coords[k] for k in ("z", "y", "x")})
    return da, clean


def _motions_2d(tx, ty, rz):
    n = len(tx)
    return np.column_stack([tx, ty, np.zeros(n), np.zeros(n), np.zeros(n), rz])


@pytest.fixture(scope="module")
def small_sim() -> xr.Dataset:
    # rigid accuracy is measured without the simulator's non-rigid deformation and
    # through-slice change, which no rigid fit can undo (rz rmse 0.15 deg with them on)
    return simulate_recording("small", seed=0, nonrigid=False, through_slice=False)


# --------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("reference", ["median", "baseline"])
def test_accuracy_on_small_simulated_preset(small_sim, reference):
    data = small_sim["power_doppler"]
    ref = small_sim["baseline"] if reference == "baseline" else "median"
    _, motion = register_volumewise(data, reference=ref, progress=False)
    assert motion["converged"].all()
    # the estimate is relative to the template; the truth to the unmoved brain:
    # re-express the estimate by composing with the fitted constant template offset
    # (for the unmoved baseline as reference that offset is ~identity)
    est = align_to_truth(motion["parameters"], small_sim["motion"])
    truth = small_sim["motion"].sel(parameter=["tx", "ty", "rz"])
    err = (est.sel(parameter=["tx", "ty", "rz"]) - truth).values
    rmse = np.sqrt((err**2).mean(axis=0))
    dx = float(data.x[1] - data.x[0])
    dy = float(data.y[1] - data.y[0])
    assert rmse[0] / dx <= 0.05
    assert rmse[1] / dy <= 0.05
    assert rmse[2] <= 0.05
    # the motion is real (so the test can fail): the truth moves by > 1 voxel
    assert np.ptp(truth.sel(parameter="tx").values) / dx > 1
    assert motion["correlation_after"].mean() > motion["correlation_before"].mean() + 0.02


def test_threads_give_the_same_result_bit_for_bit(small_sim):
    """Chunks are solved on their own: any number of threads, the same numbers."""
    data = small_sim["power_doppler"]
    one = register_volumewise(data, progress=False, chunk_size=64, n_threads=1)
    three = register_volumewise(data, progress=False, chunk_size=64, n_threads=3)
    xr.testing.assert_identical(one[0], three[0])
    xr.testing.assert_identical(one[1], three[1])
    with pytest.raises(ValueError, match="n_threads must be a positive int"):
        register_volumewise(data, progress=False, n_threads=0)


def test_pure_translation_recovered():
    motions = _motions_2d([0.0, 0.13, -0.21, 0.05], [0.0, -0.07, 0.04, 0.11], [0, 0, 0, 0])
    data, clean = _textured_recording(motions)
    _, motion = register_volumewise(data, reference=clean, progress=False)
    p = motion["parameters"]
    assert list(p["parameter"].values) == ["tx", "ty", "rz"]
    np.testing.assert_allclose(p.sel(parameter="tx"), motions[:, 0], atol=0.02 * DX)
    np.testing.assert_allclose(p.sel(parameter="ty"), motions[:, 1], atol=0.02 * DY)
    np.testing.assert_allclose(p.sel(parameter="rz"), 0.0, atol=0.02)


def test_pure_rotation_recovered_in_mm_space():
    # anisotropic voxels: a rotation modelled in voxel units would not fit these frames
    rz = [0.0, 0.8, -1.5, 2.5]
    motions = _motions_2d([0, 0, 0, 0], [0, 0, 0, 0], rz)
    data, clean = _textured_recording(motions)
    registered, motion = register_volumewise(data, reference=clean, progress=False)
    p = motion["parameters"]
    np.testing.assert_allclose(p.sel(parameter="rz"), rz, atol=0.02)
    np.testing.assert_allclose(p.sel(parameter=["tx", "ty"]), 0.0, atol=0.02 * DY)
    # the resampled frames match the unmoved texture away from the borders
    inner = registered.isel(y=slice(6, -6), x=slice(4, -4))
    ref = clean.isel(y=slice(6, -6), x=slice(4, -4))
    rel = float(np.abs(inner - ref).max() / ref.max())
    raw_rel = float(np.abs(data.isel(y=slice(6, -6), x=slice(4, -4)) - ref).max() / ref.max())
    assert rel < 0.25 * raw_rel


def test_translation_transform_keeps_rotation_zero():
    motions = _motions_2d([0.0, 0.1], [0.0, 0.05], [0.0, 0.0])
    data, clean = _textured_recording(motions)
    _, motion = register_volumewise(data, reference=clean, transform="translation",
                                    progress=False)
    assert np.all(motion["parameters"].sel(parameter="rz").values == 0)
    np.testing.assert_allclose(motion["parameters"].sel(parameter="tx"), [0, 0.1],
                               atol=0.02 * DX)


def test_3d_rigid_path():
    rng = np.random.default_rng(3)
    motions = np.vstack([np.zeros(6)] + [
        np.concatenate([rng.uniform(-0.08, 0.08, 3), rng.uniform(-1.5, 1.5, 3)]) for _ in range(4)
    ])
    spacing = (0.1, 0.05, 0.1)
    data, clean = _textured_recording(motions, shape=(12, 36, 28), spacing=spacing, seed=1)
    registered, motion = register_volumewise(data, reference=clean, progress=False)
    p = motion["parameters"]
    assert list(p["parameter"].values) == ["tx", "ty", "tz", "rx", "ry", "rz"]
    assert motion["converged"].all()
    np.testing.assert_allclose(p.values[:, :3], motions[:, :3], atol=0.02 * min(spacing))
    np.testing.assert_allclose(p.values[:, 3:], motions[:, 3:], atol=0.15)
    assert registered.dims == data.dims


# --------------------------------------------------------------------------- references
def test_reference_options():
    motions = _motions_2d([0.0, 0.1, 0.1, -0.1, 0.0], [0.0, 0.0, 0.05, 0.0, -0.05],
                          [0.0, 0.5, 0.0, -0.5, 0.0])
    data, clean = _textured_recording(motions, seed=4)
    # int: that frame is the template, so its own motion is ~0 and the others are
    # relative to it
    _, m2 = register_volumewise(data, reference=2, progress=False)
    np.testing.assert_allclose(m2["parameters"].isel(time=2), 0.0, atol=1e-3)
    assert m2.attrs["reference"] == "frame 2"
    _, m_neg = register_volumewise(data, reference=-3, progress=False)
    np.testing.assert_allclose(m_neg["parameters"], m2["parameters"])
    # given volume (with or without a length-1 time dim, (y, x) for a single slice)
    _, mv = register_volumewise(data, reference=clean, progress=False)
    _, mv2 = register_volumewise(data, reference=clean.isel(z=0, drop=True), progress=False)
    np.testing.assert_allclose(mv["parameters"], mv2["parameters"])
    assert mv.attrs["reference"] == "given volume"
    # median of the lowest-motion stretch
    _, mm = register_volumewise(data, reference="median", window=3, progress=False)
    assert "temporal median of frames" in mm.attrs["reference"]
    assert mm["converged"].all()


def test_lowest_motion_window_is_chosen():
    # frames 0..3 jump around, frames 4..9 hold still: the template comes from 4..9
    tx = [0.0, 0.2, -0.2, 0.15, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]
    data, _ = _textured_recording(_motions_2d(tx, [0] * 10, [0] * 10), seed=5)
    _, motion = register_volumewise(data, reference="median", window=5, progress=False)
    start = int(motion.attrs["reference"].split("frames ")[1].split("..")[0])
    assert start >= 4
    np.testing.assert_allclose(motion["parameters"].sel(parameter="tx")[4:], 0.0,
                               atol=0.02 * DX)


# --------------------------------------------------------------------------- output contract
def test_output_contract(small_sim):
    data = small_sim["power_doppler"].isel(time=slice(0, 60))
    registered, motion = register_volumewise(data, progress=False)
    assert registered.dims == data.dims
    assert registered.shape == data.shape
    assert registered.dtype == np.float32
    assert registered.name == data.name
    for dim in data.dims:
        np.testing.assert_array_equal(registered[dim].values, data[dim].values)
        assert registered[dim].attrs == data[dim].attrs
    for key, value in data.attrs.items():
        assert registered.attrs[key] == value
    assert "nearest edge value" in registered.attrs["registration"]
    values = registered.values
    assert np.isfinite(values).all()
    assert values.min() >= 0
    # no new extremes: linear interpolation is a convex combination per frame
    assert values.max() <= data.values.max() + 1e-3
    assert set(motion.data_vars) >= {"parameters", "framewise_displacement", "converged",
                                     "n_iter", "correlation_before", "correlation_after"}
    assert motion["parameters"].dims == ("time", "parameter")
    assert motion["converged"].dtype == bool
    assert (motion["n_iter"] >= 1).all()
    np.testing.assert_array_equal(motion["time"].values, data["time"].values)
    # deterministic
    registered2, motion2 = register_volumewise(data, progress=False)
    np.testing.assert_array_equal(registered2.values, values)
    np.testing.assert_array_equal(motion2["parameters"].values, motion["parameters"].values)


def test_progress_bar_goes_to_stderr(capsys):
    data, clean = _textured_recording(_motions_2d([0, 0.1], [0, 0], [0, 0]))
    register_volumewise(data, reference=clean, progress=True)
    assert "registering" in capsys.readouterr().err
    register_volumewise(data, reference=clean, progress=False)
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def tiny():
    data, clean = _textured_recording(_motions_2d([0, 0.05, 0.0], [0, 0, 0.05], [0, 0, 0]))
    return data, clean


def test_bad_inputs(tiny):
    data, clean = tiny
    with pytest.raises(TypeError, match="DataArray"):
        register_volumewise(data.values)
    with pytest.raises(ValueError, match="missing"):
        register_volumewise(data.isel(z=0), progress=False)
    with pytest.raises(ValueError, match="out of range"):
        register_volumewise(data, reference=3, progress=False)
    with pytest.raises(ValueError, match="out of range"):
        register_volumewise(data, reference=-4, progress=False)
    with pytest.raises(ValueError, match="reference must be"):
        register_volumewise(data, reference="mean", progress=False)
    with pytest.raises(TypeError, match="reference"):
        register_volumewise(data, reference=1.5, progress=False)
    with pytest.raises(ValueError, match="shape"):
        register_volumewise(data, reference=clean.isel(y=slice(0, 10)), progress=False)
    with pytest.raises(ValueError, match="transform"):
        register_volumewise(data, transform="affine", progress=False)
    with pytest.raises(ValueError, match="max_iter"):
        register_volumewise(data, max_iter=0, progress=False)
    bad = data.copy()
    bad[1, 0, 3, 4] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf in frames 1\b"):
        register_volumewise(bad, progress=False)
    const = data.copy()
    const[2] = 7.0
    with pytest.raises(ValueError, match=r"frames 2 are constant"):
        register_volumewise(const, progress=False)


def test_non_convergence_is_reported(tiny):
    data, clean = tiny
    with pytest.warns(RuntimeWarning, match=r"did not converge .* frames: .*1") as rec:
        _, motion = register_volumewise(data, reference=clean, max_iter=1, tol=1e-9,
                                        interpolation="linear", progress=False)
    assert len(rec) == 1
    assert not motion["converged"].values[1:].any()
    assert (motion["n_iter"] == 1).all()


# --------------------------------------------------------------------------- FD, QC, helpers
def test_framewise_displacement_of_known_motion():
    params = xr.DataArray(
        [[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.1, -0.2, 1.0], [0.1, -0.2, 1.0]],
        dims=("time", "parameter"), coords={"time": [0.0, 0.4, 0.8, 1.2],
                                             "parameter": ["tx", "ty", "rz"]},
    )
    fd = framewise_displacement(params)
    np.testing.assert_allclose(fd.values, [0.0, 0.1, 0.2 + 5.0 * np.pi / 180, 0.0])
    assert fd.attrs["units"] == "mm"
    fd50 = framewise_displacement(params, radius=50.0)
    np.testing.assert_allclose(fd50.values[2], 0.2 + 50.0 * np.pi / 180)
    with pytest.raises(ValueError, match="unknown motion parameters"):
        framewise_displacement(params.assign_coords(parameter=["tx", "ty", "yaw"]))


def test_motion_fd_matches_parameters(tiny):
    data, clean = tiny
    _, motion = register_volumewise(data, reference=clean, progress=False, fd_radius=3.0)
    np.testing.assert_allclose(motion["framewise_displacement"],
                               framewise_displacement(motion["parameters"], radius=3.0))


def test_registration_qc_numbers_and_images(small_sim):
    data = small_sim["power_doppler"]
    registered, _ = register_volumewise(data, progress=False)
    qc = registration_qc(data, registered)
    assert qc["mean_correlation_after"] > qc["mean_correlation_before"]
    for key in ("mean_before", "mean_after", "std_before", "std_after"):
        assert qc[key].dims == ("z", "y", "x")
    # motion inflates the temporal std at tissue edges; correction lowers it
    assert float(qc["std_after"].mean()) < float(qc["std_before"].mean())
    assert qc["correlation_before"].dims == ("time",)



def test_fourier_resampling_matches_the_unmoved_texture():
    motions = _motions_2d([0.0, 0.13, 0.1], [0.0, -0.06, 0.05], [0.0, 0.0, 0.8])
    data, clean = _textured_recording(motions, seed=6)
    inner = {"y": slice(8, -8), "x": slice(6, -6)}
    raw_err = float(np.abs(data - clean).isel(**inner).max())
    for method in ("linear", "fourier"):
        registered, _ = register_volumewise(data, reference=clean, resampling=method,
                                            progress=False)
        assert method in registered.attrs["registration"]
        assert registered.values.min() >= 0 and np.isfinite(registered.values).all()
        assert float(np.abs(registered - clean).isel(**inner).max()) < 0.2 * raw_err
    with pytest.raises(ValueError, match="in-plane model only"):
        register_volumewise(data.isel(z=[0, 0]).assign_coords(z=[0.0, 0.4]), model="3d",
                            resampling="fourier", progress=False)


# --------------------------------------------------------------------------- multi-slice
def _multislice_motions(n, seed, through_plane):
    """Smooth random in-plane motion (and through-plane motion when asked)."""
    rng = np.random.default_rng(seed)
    lim = np.array([0.1, 0.08, 0.06, 0.5, 0.5, 1.0])
    if not through_plane:
        lim[2:5] = 0.0
    walk = np.cumsum(rng.normal(0, 1, (n, 6)), axis=0)
    walk -= walk[0]
    return walk / np.maximum(np.abs(walk).max(axis=0), 1e-12) * lim


def _inplane_rmse(motion, truth):
    err = (align_to_truth(motion["parameters"], truth).sel(parameter=["tx", "ty", "rz"])
           - truth.sel(parameter=["tx", "ty", "rz"])).values
    return np.sqrt((err**2).mean(axis=0))


@pytest.fixture(scope="module")
def thick_slices():
    """4 thick slices (0.4 mm apart, elevation sigma 0.15 mm), in-plane / through-plane motion."""
    out = {}
    for through in (False, True):
        motions = _multislice_motions(16, seed=7, through_plane=through)
        data, _ = _textured_recording(motions, shape=(4, 48, 36), seed=8, noise=0.05,
                                      z_psf=0.15, n_blobs=300)
        truth = xr.DataArray(motions, dims=("time", "parameter"),
                             coords={"time": data["time"],
                                     "parameter": ["tx", "ty", "tz", "rx", "ry", "rz"]})
        out[through] = (data, truth)
    return out


def test_choose_model():
    one, _ = _textured_recording(_motions_2d([0, 0], [0, 0], [0, 0]))
    assert choose_model(one) == "in-plane"
    thick = one.isel(z=[0, 0, 0]).assign_coords(z=[0.0, 0.4, 0.8])
    assert choose_model(thick) == "in-plane"
    fine = one.isel(z=[0, 0, 0]).assign_coords(z=[0.0, 0.1, 0.2])
    assert choose_model(fine) == "3d"
    assert choose_model(thick, "3d") == "3d"
    with pytest.raises(ValueError, match="needs a volume"):
        choose_model(one, "3d")
    with pytest.raises(ValueError, match="model must be one of"):
        register_volumewise(thick, model="6dof", progress=False)


def test_multislice_in_plane_motion_default_model(thick_slices):
    data, truth = thick_slices[False]
    _, motion = register_volumewise(data, progress=False)
    assert motion.attrs["model"] == "in-plane"
    assert list(motion["parameters"]["parameter"].values) == ["tx", "ty", "rz"]
    assert motion["converged"].all()
    rmse = _inplane_rmse(motion, truth)
    assert rmse[0] <= 0.05 * DX and rmse[1] <= 0.05 * DY and rmse[2] <= 0.05
    # framewise displacement follows the true motion instead of being inflated by
    # out-of-plane parameters the slices cannot pin down
    fd = float(motion["framewise_displacement"].median())
    fd_true = float(framewise_displacement(truth).median())
    assert 0.7 * fd_true <= fd <= 1.4 * fd_true
    # the free 3-D fit is still available, with all six parameters
    _, m3 = register_volumewise(data, model="3d", progress=False)
    assert list(m3["parameters"]["parameter"].values) == ["tx", "ty", "tz", "rx", "ry", "rz"]


def test_multislice_through_plane_motion(thick_slices):
    data, truth = thick_slices[True]
    # the in-plane model cannot undo tz/rx/ry but still finds the in-plane motion
    _, motion = register_volumewise(data, progress=False)
    rmse = _inplane_rmse(motion, truth)
    assert rmse[0] <= 0.1 * DX and rmse[1] <= 0.1 * DY and rmse[2] <= 0.1
    assert np.ptp(truth.sel(parameter="tx").values) / DX > 0.5  # real motion
    # the 3-D model follows the through-plane translation
    _, m3 = register_volumewise(data, model="3d", progress=False)
    aligned = align_to_truth(m3["parameters"], truth)
    tz_err = aligned.sel(parameter="tz") - truth.sel(parameter="tz")
    assert float(np.sqrt((tz_err**2).mean())) < 0.3 * float(truth.sel(parameter="tz").std())


def test_multislice_simulator_recording():
    # the simulator's motion is in-plane; its slices are smooth and noisy, where a free
    # 6-parameter fit invents out-of-plane rotations (measured: median FD 10x the truth)
    # (rigid accuracy: without the non-rigid deformation and through-slice change, as above)
    sim = simulate_recording("small", seed=3, n_frames=60, shape=(3, 48, 40), nonrigid=False,
                             through_slice=False)
    registered, motion = register_volumewise(sim["power_doppler"], progress=False)
    assert motion.attrs["model"] == "in-plane"
    assert registered.dims == sim["power_doppler"].dims
    rmse = _inplane_rmse(motion, sim["motion"])
    assert rmse[0] <= 0.1 * DX and rmse[1] <= 0.1 * DY and rmse[2] <= 0.1
    assert motion["correlation_after"].mean() > motion["correlation_before"].mean()
    fd_true = float(framewise_displacement(sim["motion"]).median())
    fd = float(motion["framewise_displacement"].median())
    assert fd <= 1.6 * fd_true
    _, m3 = register_volumewise(sim["power_doppler"], model="3d", progress=False)
    assert float(m3["framewise_displacement"].median()) > 2 * fd


# --------------------------------------------------------------------------- blocked paths
def _bilinear_reference(images: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Plain bilinear sampling of (B, C, Y, X) at (B, 2, N) voxel coordinates, clamped."""
    ny, nx = images.shape[2:]
    qy = np.clip(idx[:, 0], 0.0, ny - 1)
    qx = np.clip(idx[:, 1], 0.0, nx - 1)
    y0 = np.minimum(np.floor(qy).astype(int), ny - 2)
    x0 = np.minimum(np.floor(qx).astype(int), nx - 2)
    fy = (qy - y0).astype(images.dtype)[:, None]
    fx = (qx - x0).astype(images.dtype)[:, None]
    b = np.arange(len(images))[:, None, None]
    c = np.arange(images.shape[1])[None, :, None]
    y0, x0 = y0[:, None], x0[:, None]

    def at(dy, dx):
        return images[b, c, y0 + dy, x0 + dx]

    lower = (at(1, 0) - at(0, 0)) * fy + at(0, 0)
    upper = (at(1, 1) - at(0, 1)) * fy + at(0, 1)
    return (upper - lower) * fx + lower


def test_blocked_linear_sampling_equals_one_pass_and_a_plain_reference(monkeypatch):
    rng = np.random.default_rng(5)
    images = rng.lognormal(0.0, 1.0, (11, 2, 9, 7)).astype(np.float32)
    idx = rng.uniform(-1.5, 10.0, (11, 2, 40)).astype(np.float32)  # some outside the grid
    one_pass = interpolation._interp_linear_block(images, idx)
    np.testing.assert_array_equal(one_pass, _bilinear_reference(images, idx))
    # 3 frames (of 2 x 40 points) per block: 4 blocks, the last one short
    monkeypatch.setattr(interpolation, "LINEAR_BLOCK_POINTS", 3 * 2 * 40)
    np.testing.assert_array_equal(interpolation.interp_linear(images, idx), one_pass)


def test_blocked_resampling_and_feature_give_the_same_numbers(monkeypatch, small_sim):
    data = small_sim["power_doppler"].isel(time=slice(0, 40))
    arr = data.values
    scale = features.robust_scale(arr)
    np.testing.assert_array_equal(  # in place: the same as a fresh result
        features.feature(arr, scale),
        np.arcsinh(np.multiply(arr, np.float32(1.0 / scale), dtype=np.float32)))
    # per chunk (as the estimation computes it) = a slice of the whole recording's, also
    # for frames whose size is no multiple of a SIMD width, at an unaligned start
    odd = arr.reshape(-1)[3:3 + 9 * 13 * 11].reshape(9, 1, 13, 11)
    np.testing.assert_array_equal(features.feature(odd[2:7], scale),
                                  features.feature(odd, scale)[2:7])
    grid = volumewise._grid(data, "in-plane")
    rng = np.random.default_rng(2)
    angles = np.radians(rng.normal(0.0, 2.0, (40, 1)))
    rot = geometry.rotation_array_order(angles, 2)
    trans = rng.normal(0.0, 0.2, (40, 2))
    chunks = [np.arange(i, min(i + 16, 40)) for i in range(0, 40, 16)]

    def run(block_points: int) -> np.ndarray:
        monkeypatch.setattr(resampling, "LINEAR_BLOCK_POINTS", block_points)
        monkeypatch.setattr(interpolation, "LINEAR_BLOCK_POINTS", block_points)
        return resampling.resample(arr, rot, trans, grid, chunks, "linear", np.float32)

    whole = run(2**40)  # every chunk in one pass
    # per frame, by the plain reference: the same arithmetic
    ref = np.stack([_bilinear_reference(arr[i:i + 1], geometry.index_coords(
        rot[i:i + 1], trans[i:i + 1], grid))[0].reshape(arr.shape[1:]) for i in range(40)])
    np.testing.assert_array_equal(whole, np.maximum(ref, 0))
    frame = arr[0].size
    np.testing.assert_array_equal(run(3 * frame), whole)  # blocks of 3 frames


def test_chunks_are_drawn_at_most_n_threads_at_a_time(small_sim):
    """estimate_motion keeps no more chunks' features alive than it solves at once."""
    data = small_sim["power_doppler"]
    arr = data.values
    scale = features.robust_scale(arr)
    grid = volumewise._grid(data, "in-plane")
    tpl = estimation.Template.build(features.feature(arr[0], scale), grid, rigid=True)
    feat = features.feature(arr, scale)
    alive: list[weakref.ref] = []
    most = 0

    def chunks():
        nonlocal most
        for i in range(0, len(arr), 25):
            most = max(most, sum(r() is not None for r in alive))
            chunk = feat[i:i + 25].copy()
            alive.append(weakref.ref(chunk))
            yield np.arange(i, min(i + 25, len(arr))), chunk
            del chunk

    est = estimation.estimate_motion(chunks(), len(arr), [tpl], None, max_iter=5, tol=1e-3,
                                     radius=5.0, n_threads=2)
    assert len(alive) == 12 and 1 <= most <= 2
    assert est.n_iter.min() >= 1


def test_blocked_phase_correlation_equals_one_pass(monkeypatch):
    """Frames' FFTs in blocks of 3 give the shifts of one pass over the batch (which
    normalises by the largest cross-power of the whole batch)."""
    rng = np.random.default_rng(4)
    template = rng.lognormal(0.0, 1.0, (2, 24, 20)).astype(np.float32)
    frames = np.stack([np.roll(template, (k % 5 - 2, k % 3 - 1), axis=(1, 2)) for k in range(10)])
    frames *= rng.uniform(0.5, 1.5, frames.shape).astype(np.float32)
    monkeypatch.setattr(estimation, "FFT_BLOCK_POINTS", 2**40)
    whole = estimation.phase_correlation(frames, template)
    # the one-pass formula, written out
    axes = (-2, -1)
    win = (np.hanning(24).astype(np.float32)[:, None] * np.hanning(20).astype(np.float32))
    t = (template - template.mean(axis=axes, keepdims=True)) * win
    f = (frames - frames.mean(axis=axes, keepdims=True)) * win
    cross = (np.fft.rfftn(f, axes=axes) * np.conj(np.fft.rfftn(t, axes=axes))).sum(axis=1)
    cross /= np.abs(cross) + 1e-12 * np.abs(cross).max()
    corr = np.fft.irfftn(cross, s=(24, 20), axes=axes).reshape(10, -1)
    peaks = np.stack(np.unravel_index(corr.argmax(axis=1), (24, 20)), axis=-1)
    np.testing.assert_array_equal(np.round(whole) % [24, 20], peaks)
    monkeypatch.setattr(estimation, "FFT_BLOCK_POINTS", 3 * 2 * 24 * 20)
    np.testing.assert_array_equal(estimation.phase_correlation(frames, template), whole)


def test_index_coords_in_blocks_equals_the_plain_formula():
    """Grids above 2**16 voxels are done one frame at a time: the same float32 sums."""
    grid = geometry.Grid((300, 240), (0.0, 1.0), (0.05, -0.1))
    rng = np.random.default_rng(6)
    rot = geometry.rotation_array_order(np.radians(rng.normal(0, 3, (3, 1))), 2)
    trans = rng.normal(0, 0.5, (3, 2))
    a = (rot / grid.step[None, :, None]).astype(np.float32)
    off = ((trans + grid.centre - grid.first) / grid.step).astype(np.float32)
    pts = grid.points_f32
    plain = np.stack([a[:, i, 0, None] * pts[0] + a[:, i, 1, None] * pts[1] + off[:, i, None]
                      for i in range(2)], axis=1)
    np.testing.assert_array_equal(geometry.index_coords(rot, trans, grid), plain)
