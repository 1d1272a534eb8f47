"""The public entry point: :func:`register_volumewise`, assembled from the job modules."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import xarray as xr

from fusi_nmf._progress import progress_bar
from fusi_nmf.registration._validate import (
    axis_geometry,
    bad_frames,
    check_choice,
    check_data,
    check_frames,
    check_non_negative,
    check_positive_int,
)
from fusi_nmf.registration.estimation import Estimate, Template, estimate_motion
from fusi_nmf.registration.features import (
    feature,
    frame_correlation,
    reference_volume,
    robust_scale,
)
from fusi_nmf.registration.features import smooth as smooth_images
from fusi_nmf.registration.geometry import PARAMS_2D, PARAMS_3D, Grid, angles_from_rotation
from fusi_nmf.registration.interpolation import default_threads
from fusi_nmf.registration.quality import FD_RADIUS_MM, framewise_displacement
from fusi_nmf.registration.resampling import METHODS, resample

#: motion models: ``"in-plane"`` (tx, ty, rz shared by all slices), ``"3d"`` (6 parameters)
MODELS = ("auto", "in-plane", "3d")
#: ``model="auto"`` uses the in-plane model when slices are at least this many times
#: thicker (spaced) than the largest in-plane voxel size
THICK_SLICE_RATIO = 2.0


def choose_model(data: xr.DataArray, model: str = "auto") -> str:
    """The motion model ``register_volumewise`` uses for ``data``.

    Parameters
    ----------
    data : DataArray (time, z, y, x)
        The recording.
    model : {"auto", "in-plane", "3d"}, default "auto"
        ``"auto"``: ``"in-plane"`` for one slice, and for several slices spaced at
        least ``THICK_SLICE_RATIO`` (2) times the largest in-plane voxel size (a few
        thick slices, as in multi-slice fUSI); ``"3d"`` for a finely sampled volume.

    Returns
    -------
    str
        ``"in-plane"`` or ``"3d"``.
    """
    check_choice("model", model, MODELS)
    n_z = data.sizes["z"]
    if model == "3d" and n_z < 2:
        raise ValueError("model='3d' needs a volume (z > 1); this recording has one slice. "
                         "Use model='in-plane' (or 'auto').")
    if model != "auto":
        return model
    if n_z == 1:
        return "in-plane"
    dz = abs(axis_geometry(data, "z")[1])
    in_plane = max(abs(axis_geometry(data, "y")[1]), abs(axis_geometry(data, "x")[1]))
    return "in-plane" if dz >= THICK_SLICE_RATIO * in_plane else "3d"


def _grid(data: xr.DataArray, model: str) -> Grid:
    """The registered axes: (y, x) in-plane, (z, y, x) in 3-D."""
    dims = ("z", "y", "x") if model == "3d" else ("y", "x")
    geo = [axis_geometry(data, dim) for dim in dims]
    return Grid([data.sizes[dim] for dim in dims], [g[0] for g in geo], [g[1] for g in geo])


def _as_images(feat: np.ndarray, model: str) -> np.ndarray:
    """(..., z, y, x) feature -> (..., C, *S): slices are channels in-plane, one channel in 3-D."""
    return feat if model == "in-plane" else feat[..., None, :, :, :]


def _pyramid(template: np.ndarray, grid: Grid, levels: int, rigid: bool) -> list[Template]:
    """Templates of up to ``levels`` pyramid levels, finest first."""
    pyramid = [Template.build(template, grid, rigid)]
    image = template
    for _ in range(levels - 1):
        coarser, image = pyramid[-1].downsample(image, rigid)
        if all(f == 1 for f in coarser.grid.factors):
            break
        pyramid.append(coarser)
    return pyramid


def _feature_chunks(arr: np.ndarray, scale: float, chunks: list[np.ndarray],
                    sigma_vox: list[float], model: str, progress: bool | None
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frame indices, smoothed feature images) chunk by chunk, with the progress bar.

    The feature is computed per chunk (elementwise, so the same numbers as slicing the
    whole recording's): no recording-sized feature is alive while chunks are solved.
    """
    for sel in progress_bar(chunks, total=len(chunks), desc="registering", unit="chunk",
                            progress=progress):
        yield sel, smooth_images(_as_images(feature(arr[sel], scale), model), sigma_vox)


def _parameters(est: Estimate, model: str, rigid: bool, grid: Grid,
                data: xr.DataArray) -> xr.DataArray:
    """Named parameters in the documented convention (xyz order, mm and degrees)."""
    d = grid.ndim
    n_t = len(est.trans)
    angles = (np.degrees(angles_from_rotation(est.rot, d)) if rigid
              else np.zeros((n_t, 1 if d == 2 else 3)))
    if model == "3d":
        names = list(PARAMS_3D)
        values = np.column_stack([est.trans[:, 2], est.trans[:, 1], est.trans[:, 0], angles])
    else:
        names = list(PARAMS_2D)
        values = np.column_stack([est.trans[:, 1], est.trans[:, 0], angles[:, 0]])
    return xr.DataArray(
        values, dims=("time", "parameter"),
        coords={"time": data["time"], "parameter": names}, name="parameters",
        attrs={"units": "mm (t*), degrees (r*)",
               "convention": "content at reference position p sits at R (p - c) + c + t in "
                             "the frame; c = field-of-view centre; R = Rz Ry Rx; +rz turns "
                             "+x towards +y",
               "centre_mm": [float(v) for v in grid.centre[::-1]]},
    )


def register_volumewise(
    data: xr.DataArray,
    reference: str | int | xr.DataArray = "median",
    transform: str = "rigid",
    *,
    model: str = "auto",
    progress: bool | None = None,
    max_iter: int = 50,
    tol: float = 1e-4,
    levels: int = 1,
    smooth: float = 0.05,
    window: int = 50,
    fd_radius: float = FD_RADIUS_MM,
    chunk_size: int = 128,
    interpolation: str = "cubic",
    resampling: str = "linear",
    n_threads: int | None = None,
) -> tuple[xr.DataArray, xr.Dataset]:
    """Rigid volume-wise motion correction of a Power Doppler recording.

    Parameters
    ----------
    data : DataArray (time, z, y, x)
        Power Doppler recording (non-negative power; coords in mm).
    reference : {"median"} or int or DataArray, default "median"
        Template every frame is aligned to. ``"median"``: temporal median of the
        ``window`` consecutive frames with the smallest frame-to-frame change (a robust,
        sharp template). An int: that frame. A DataArray: a (z, y, x) volume on the
        same grid.
    transform : {"rigid", "translation"}, default "rigid"
        ``"translation"`` keeps rotations at zero.
    model : {"auto", "in-plane", "3d"}, default "auto"
        ``"in-plane"``: one rigid in-plane motion (``tx, ty, rz``) shared by all
        slices. ``"3d"`` (z > 1 only): 3-D rigid motion of the volume (``tx, ty, tz,
        rx, ry, rz``). ``"auto"``: in-plane for a single slice and for a few thick
        slices (slice spacing >= 2x the largest in-plane voxel size, as in multi-slice
        fUSI), 3-D for a finely sampled volume. A free 6-parameter fit of a few thick
        slices is poorly constrained out of plane: on 4 simulated slices with purely
        in-plane motion it invented rx/ry rotations (ranges 0.6-0.7 degree) and
        inflated the median framewise displacement 6x (the in-plane model: 1.1x);
        ``benchmarks/bench_registration.py`` measures it.
    progress : bool, optional
        Show a progress bar (default: on unless ``FUSI_NMF_PROGRESS=0``).
    max_iter : int, default 50
        Maximum Gauss-Newton iterations per pyramid level and frame.
    tol : float, default 1e-4
        A frame has converged when its last update moved it by less than ``tol`` mm
        (translations plus rotations times ``fd_radius``).
    levels : int, default 1
        Pyramid levels (1 = full resolution only; 2 adds a half-resolution level first,
        for large rotations).
    smooth : float, default 0.05
        Gaussian sigma (mm) applied to the registration feature (not to the output);
        within slices only under the in-plane model.
    window : int, default 50
        Length of the low-motion stretch for ``reference="median"``.
    fd_radius : float, default 5.0
        Rotation lever arm (mm) for framewise displacement and the convergence test.
    chunk_size : int, default 128
        Frames processed together (memory vs vectorisation).
    interpolation : {"cubic", "linear"}, default "cubic"
        How frames are sampled while *estimating* the motion: Gauss-Newton runs with
        linear interpolation (fast, vectorised over frames) and, with ``"cubic"``,
        is polished with cubic B-splines, which removes the small bias of linear
        interpolation (~0.01 degree).
    resampling : {"linear", "fourier"}, default "linear"
        How the original power is resampled. ``"linear"``: bi/tri-linear, a convex
        combination of neighbours. ``"fourier"`` (in-plane model only): band-limited
        shifts along lines with the rotation as three shears; it does not smooth, but
        on the simulated recording NMF source recovery after it was lower (0.35 vs
        0.40 mean |r|, default preset), so linear is the default. Either way negative
        values are clipped to 0 (for non-negative input) and content from outside the
        field of view takes the nearest edge value.
    n_threads : int, optional
        Threads of the estimation in all (default
        :func:`~fusi_nmf.registration.interpolation.default_threads`:
        ``OMP_NUM_THREADS`` if set, else the cores): chunks of frames are estimated
        that many at once, each sampling with the threads left. Each chunk is solved on
        its own, so the result is the same for any number (tested bit for bit).

    Returns
    -------
    registered : DataArray
        Same dims, coords, name and attrs as ``data`` (float32 unless data is float64),
        plus ``attrs["registration"]`` describing what was done. Power stays
        non-negative (linear interpolation); samples from outside the field of view
        take the nearest edge value, so there is no NaN.
    motion : Dataset
        ``parameters`` (time, parameter): translations in mm, rotations in degrees
        about the field-of-view centre, content at reference position ``p`` sits at
        ``R (p - c) + c + t`` in the frame (``DEVELOPING.md``); ``tx, ty, rz`` under
        the in-plane model, ``tx, ty, tz, rx, ry, rz`` under the 3-D one;
        ``framewise_displacement`` (time, mm); ``converged`` (time, bool); ``n_iter``
        (time, total Gauss-Newton iterations); ``correlation_before`` /
        ``correlation_after`` (time): Pearson correlation of ``asinh(P / median P)`` of
        each frame with that of the reference, before and after registration.
        ``attrs["model"]`` names the model used.

    Raises
    ------
    TypeError, ValueError
        Wrong input type, missing dims, non-finite or constant frames, a reference out
        of range or of the wrong shape, bad options.

    Warns
    -----
    RuntimeWarning
        Once, naming the frames that did not converge within ``max_iter``.
    """
    data = check_data(data)
    check_choice("resampling", resampling, METHODS)
    check_choice("interpolation", interpolation, ("cubic", "linear"))
    check_choice("transform", transform, ("rigid", "translation"))
    for name, val in (("max_iter", max_iter), ("levels", levels), ("chunk_size", chunk_size)):
        check_positive_int(name, val)
    if n_threads is not None:
        check_positive_int("n_threads", n_threads)
    for name, val in (("tol", tol), ("smooth", smooth), ("fd_radius", fd_radius)):
        check_non_negative(name, val)
    model = choose_model(data, model)
    if resampling == "fourier" and model == "3d":
        raise ValueError("resampling='fourier' is implemented for the in-plane model only; "
                         "use resampling='linear' (or model='in-plane') for 3-D motion.")
    rigid = transform == "rigid"

    arr = np.asarray(data.values)
    out_dtype = np.float64 if arr.dtype == np.float64 else np.float32
    arr = arr.astype(np.float32, copy=False)
    check_frames(arr)
    n_t = arr.shape[0]
    scale = robust_scale(arr)
    ref_vol, ref_desc = reference_volume(arr, reference, data, window, scale)
    ref_feat = feature(ref_vol.astype(np.float32), scale)

    grid = _grid(data, model)
    sigma_vox = [smooth / abs(s) if n > 1 else 0.0
                 for s, n in zip(grid.step, grid.shape, strict=True)]
    template = smooth_images(_as_images(ref_feat, model), sigma_vox)
    pyramid = _pyramid(template, grid, levels, rigid)
    chunks = [np.arange(i, min(i + chunk_size, n_t)) for i in range(0, n_t, chunk_size)]
    polish = (Template.build(template, grid, rigid, spline=True)
              if interpolation == "cubic" else None)
    # n_threads in all: chunks side by side, the threads left to each chunk's sampling
    total = n_threads or default_threads()
    at_once = min(total, len(chunks))
    est = estimate_motion(_feature_chunks(arr, scale, chunks, sigma_vox, model, progress), n_t,
                          pyramid, polish, max_iter=max_iter, tol=tol, radius=fd_radius,
                          n_threads=at_once, sample_threads=max(1, total // at_once))
    # the whole feature only now (arcsinh is cheap: ~10 ms), when the estimation's
    # temporaries are gone, and freed before the resampled copy exists
    corr_before = frame_correlation(feature(arr, scale), ref_feat)
    registered_arr = resample(arr, est.rot, est.trans, grid, chunks, resampling, out_dtype)

    params = _parameters(est, model, rigid, grid, data)
    tcoord = {"time": data["time"]}
    corr_after = frame_correlation(feature(registered_arr, scale), ref_feat)
    d = grid.ndim
    motion = xr.Dataset(
        {
            "parameters": params,
            "framewise_displacement": framewise_displacement(params, radius=fd_radius),
            "converged": xr.DataArray(est.converged, dims=("time",), coords=tcoord),
            "n_iter": xr.DataArray(est.n_iter, dims=("time",), coords=tcoord),
            "correlation_before": xr.DataArray(corr_before, dims=("time",), coords=tcoord),
            "correlation_after": xr.DataArray(corr_after, dims=("time",), coords=tcoord),
        },
        attrs={"reference": ref_desc, "transform": f"{transform} ({d}-D)", "model": model,
               "fd_radius_mm": float(fd_radius), "max_iter": int(max_iter), "tol_mm": float(tol)},
    )
    if not est.converged.all():
        warnings.warn(
            f"registration did not converge within max_iter={max_iter} for "
            f"{int((~est.converged).sum())} of {n_t} frames: {bad_frames(~est.converged)}; "
            "see motion['converged'] and consider a larger max_iter or checking those frames.",
            RuntimeWarning, stacklevel=2,
        )
    registered = xr.DataArray(registered_arr, dims=data.dims, coords=data.coords,
                              name=data.name, attrs=dict(data.attrs))
    note = (f"rigid volume-wise motion correction ({transform}, {model} model) by "
            f"fusi_nmf.registration.register_volumewise to reference: {ref_desc}; "
            f"{resampling} resampling, edges filled with the nearest edge value, negative "
            "values clipped to 0")
    prev = registered.attrs.get("registration")
    registered.attrs["registration"] = f"{prev}; {note}" if prev else note
    return registered, motion
