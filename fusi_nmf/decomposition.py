"""Non-negative matrix factorization of fUSI recordings, xarray in and out.

:class:`NMF` wraps :class:`sklearn.decomposition.NMF` for labelled data: every
dim other than ``time`` (``z, y, x`` and ``sign`` after
:func:`fusi_nmf.signal.split_sign`) is flattened into features, the matrix is
factorized once, and the factors come back as labelled arrays:

* ``maps_`` ``(component, <non-time dims>)``: non-negative spatial maps,
* ``timecourses_`` ``(time, component)``: non-negative time courses,

in both modes:

* ``mode="temporal"`` factorizes the ``(time, features)`` matrix ``X ~ W H``:
  the time courses are ``W`` (one row per frame), the maps are ``H``;
* ``mode="spatial"`` factorizes the ``(features, time)`` matrix
  ``X.T ~ W H``: the maps are ``W`` (one row per voxel), the time courses are
  ``H``. Both are the solver's fitted factors, never a centred projection.

Both modes model the same product ``X ~ timecourses @ maps``; they differ in the
solver's initialisation, update order and regularisation scaling, so the
two solutions differ in general.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
import scipy.optimize
import xarray as xr
from sklearn.base import BaseEstimator
from sklearn.decomposition import NMF as _SklearnNMF
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

__all__ = ["NMF"]

TIME = "time"
COMPONENT = "component"
_MODES = ("temporal", "spatial")
# Rows of X processed at a time when a pass over X needs float64 temporaries.
_CHUNK = 128


class NMF(BaseEstimator):
    """Non-negative matrix factorization of a recording with a ``time`` dim.

    Parameters
    ----------
    n_components : int, default=10
        Number of components ``k``; ``1 <= k <= min(n_time, n_features)``.
    mode : {"temporal", "spatial"}, default="temporal"
        ``"temporal"`` factorizes the ``(time, features)`` matrix (frames are
        samples), ``"spatial"`` the ``(features, time)`` matrix (voxels are
        samples). See the module docstring.
    init : {"nndsvda", "nndsvd", "nndsvdar", "random"}, default="nndsvda"
        Initialisation, passed to :class:`sklearn.decomposition.NMF`.
    solver : {"cd", "mu"}, default="cd"
        scikit-learn solver: coordinate descent or multiplicative updates.
    beta_loss : {"frobenius", "kullback-leibler", "itakura-saito"} or float, \
default="frobenius"
        Divergence minimised (anything but Frobenius needs ``solver="mu"``).
    tol : float, default=1e-4
        Stopping tolerance of the solver.
    max_iter : int, default=500
        Maximum number of solver iterations.
    random_state : int, RandomState or None, default=None
        Seed of the initialisation; the same seed gives identical numbers.
    alpha_W, alpha_H, l1_ratio : float
        Regularisation, as in :class:`sklearn.decomposition.NMF` (``W``/``H``
        are the solver's factors, so their meaning swaps with ``mode``).
        ``alpha_H="same"`` uses ``alpha_W``.
    mask : xarray.DataArray of bool or None, default=None
        Voxel mask over some or all of the non-time dims (e.g. ``(z, y, x)``;
        it is broadcast over ``sign``). Voxels outside the mask are left out of
        the factorization and are 0 in ``maps_`` and in reconstructions.

    Attributes
    ----------
    maps_ : xarray.DataArray
        Non-negative maps, dims ``(component, <non-time dims of X>)`` with the
        input's coords and attrs. Components are sorted by decreasing energy
        ``||timecourse_k|| * ||map_k||`` (ties keep solver order), so their order
        is stable.
    timecourses_ : xarray.DataArray
        Non-negative time courses ``(time, component)`` with the input's time
        coords; ``fit_transform`` returns the same array.
    reconstruction_err_ : float
        Frobenius norm ``||X - timecourses @ maps||`` (``beta_loss="frobenius"``),
        otherwise the beta divergence reported by scikit-learn, on the masked
        data.
    explained_variance_ : float
        ``1 - ||X - timecourses @ maps||_F^2 / ||X - mean_t(X)||_F^2``, where
        ``mean_t(X)`` is the temporal mean of each feature (voxel and sign
        channel): the fraction of the variance about each feature's mean that
        the model explains, over the masked features. It can be negative for a
        poor fit (NMF does not remove the mean).
    n_iter_ : int
        Iterations of the solver.
    converged_ : bool
        False when the solver stopped at ``max_iter`` (a
        :class:`~sklearn.exceptions.ConvergenceWarning` is then emitted once).
    n_samples_ : int
        Number of frames fitted.
    n_features_in_ : int
        Number of features fitted (voxels x sign channels inside the mask).
    feature_dims_ : tuple of str
        The non-time dims, in the order they are flattened.
    mask_ : numpy.ndarray of bool
        Flat feature mask of length ``prod(feature sizes)`` (all True without
        ``mask``).

    Notes
    -----
    ``fit_transform`` runs the solver once and returns its fitted time courses;
    ``fit(X).transform(X)`` would solve a second problem. ``transform`` of new
    data solves a non-negative least-squares problem per frame against the
    fixed maps (:func:`scipy.optimize.nnls` on the ``k x k`` normal equations).

    Data stay in their floating dtype (float32 from :func:`fusi_nmf.signal`);
    integer or boolean inputs are converted to float32.

    Examples
    --------
    >>> model = NMF(n_components=5, random_state=0)      # doctest: +SKIP
    >>> tc = model.fit_transform(split_sign(standardize(pd)))  # doctest: +SKIP
    >>> model.maps_.dims                                   # doctest: +SKIP
    ('component', 'sign', 'z', 'y', 'x')
    """

    _parameter_constraints: dict = {  # noqa: RUF012 - sklearn convention
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "mode": [StrOptions(set(_MODES))],
        "init": [StrOptions({"nndsvda", "nndsvd", "nndsvdar", "random"})],
        "solver": [StrOptions({"cd", "mu"})],
        "beta_loss": [
            StrOptions({"frobenius", "kullback-leibler", "itakura-saito"}),
            numbers.Real,
        ],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "alpha_W": [Interval(numbers.Real, 0, None, closed="left")],
        "alpha_H": [Interval(numbers.Real, 0, None, closed="left"), StrOptions({"same"})],
        "l1_ratio": [Interval(numbers.Real, 0, 1, closed="both")],
        "mask": [xr.DataArray, None],
    }

    def __init__(
        self,
        n_components: int = 10,
        *,
        mode: str = "temporal",
        init: str = "nndsvda",
        solver: str = "cd",
        beta_loss: str | float = "frobenius",
        tol: float = 1e-4,
        max_iter: int = 500,
        random_state: Any = None,
        alpha_W: float = 0.0,
        alpha_H: float | str = "same",
        l1_ratio: float = 0.0,
        mask: xr.DataArray | None = None,
    ) -> None:
        self.n_components = n_components
        self.mode = mode
        self.init = init
        self.solver = solver
        self.beta_loss = beta_loss
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.alpha_W = alpha_W
        self.alpha_H = alpha_H
        self.l1_ratio = l1_ratio
        self.mask = mask

    # ------------------------------------------------------------------ fit
    def fit(self, X: xr.DataArray, y: None = None) -> NMF:
        """Fit the model to ``X`` (one solve); see :meth:`fit_transform`.

        Returns
        -------
        self : NMF
        """
        self.fit_transform(X)
        return self

    def fit_transform(self, X: xr.DataArray, y: None = None) -> xr.DataArray:
        """Fit the model and return the fitted time courses (one solve).

        Parameters
        ----------
        X : xarray.DataArray
            Non-negative data with a ``time`` dim and at least one other dim,
            e.g. ``(time, sign, z, y, x)`` from :func:`fusi_nmf.signal.split_sign`.
        y : None
            Ignored.

        Returns
        -------
        xarray.DataArray
            Non-negative ``(time, component)`` time courses (``timecourses_``):
            the solver's fitted factor in both modes.

        Raises
        ------
        TypeError
            ``X`` is not a DataArray, or a parameter has the wrong type.
        ValueError
            No ``time`` dim, NaN/Inf or negative values, ``n_components`` out of
            range, an unknown ``mode``, or a ``mask`` that does not match ``X``.
        """
        self._validate_params()
        X = _check_dataarray(X, "X")
        feature_dims = tuple(d for d in X.dims if d != TIME)
        mask = _flat_mask(self.mask, X, feature_dims)
        A = _feature_matrix(X, feature_dims, mask, "X")
        n_time, n_feat = A.shape
        if self.n_components > min(n_time, n_feat):
            raise ValueError(
                f"n_components={self.n_components} is larger than min(n_time, n_features) = "
                f"min({n_time}, {n_feat}); choose n_components <= {min(n_time, n_feat)}."
            )

        solver_X = A if self.mode == "temporal" else A.T  # a view, no copy
        W, H, sk = self._solve(solver_X)
        if self.mode == "temporal":
            tc, maps = W, H.T  # tc (time, k), maps as (features, k)
        else:
            tc, maps = H.T, W
        energy = np.linalg.norm(tc, axis=0).astype(np.float64) * np.linalg.norm(maps, axis=0)
        order = np.argsort(-energy, kind="stable")
        tc = np.ascontiguousarray(tc[:, order])
        maps = np.ascontiguousarray(maps[:, order].T)  # (k, features)

        self.feature_dims_ = feature_dims
        self.mask_ = mask
        self.n_samples_ = n_time
        self.n_features_in_ = n_feat
        self.n_components_ = int(self.n_components)
        self.n_iter_ = int(sk.n_iter_)
        self.reconstruction_err_ = float(sk.reconstruction_err_)
        self._maps_masked = maps
        self._layout = _Layout.from_dataarray(X, feature_dims)
        self.explained_variance_ = _explained_variance(A, tc, maps, self._frobenius_sq(sk, A))
        self.maps_ = self._maps_dataarray(maps)
        self.timecourses_ = _timecourses_dataarray(tc, X, attrs=self._result_attrs(X))
        return self.timecourses_

    def _solve(self, solver_X: np.ndarray):
        """One scikit-learn solve; ConvergenceWarning caught and re-emitted once."""
        from sklearn import config_context

        sk = _SklearnNMF(
            n_components=int(self.n_components),
            init=self.init,
            solver=self.solver,
            beta_loss=self.beta_loss,
            tol=self.tol,
            max_iter=self.max_iter,
            random_state=self.random_state,
            alpha_W=self.alpha_W,
            alpha_H=self.alpha_H,
            l1_ratio=self.l1_ratio,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # finiteness was checked by _feature_matrix: skip sklearn's second pass
            with config_context(assume_finite=True):
                W = sk.fit_transform(solver_X)
        n_conv = 0
        for w in caught:
            if issubclass(w.category, ConvergenceWarning):
                n_conv += 1
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self.converged_ = n_conv == 0
        if not self.converged_:
            warnings.warn(
                f"NMF ({self.mode} mode, solver={self.solver!r}) stopped at max_iter="
                f"{self.max_iter} before reaching tol={self.tol}; the factors may be "
                f"inaccurate. Raise max_iter (e.g. to {2 * self.max_iter}) or loosen tol.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return W, sk.components_, sk

    def _frobenius_sq(self, sk, A: np.ndarray) -> float | None:
        beta = sk._beta_loss if hasattr(sk, "_beta_loss") else None
        if beta == 2 or self.beta_loss == "frobenius":
            return float(sk.reconstruction_err_) ** 2
        return None

    # ------------------------------------------------------------ transform
    def transform(self, X: xr.DataArray) -> xr.DataArray:
        """Project data onto the fixed maps by non-negative least squares.

        For each frame ``x_t`` (masked features) this solves
        ``min_{c >= 0} ||x_t - maps.T @ c||_2`` exactly, through the equivalent
        ``k x k`` problem on the normal equations (:func:`scipy.optimize.nnls`).

        Parameters
        ----------
        X : xarray.DataArray
            Data with a ``time`` dim and the same non-time dims, sizes and coords
            as the fitted data (any dim order).

        Returns
        -------
        xarray.DataArray
            Non-negative ``(time, component)`` coefficients with ``X``'s time
            coords.
        """
        check_is_fitted(self, "maps_")
        X = _check_dataarray(X, "X")
        self._check_same_features(X)
        A = _feature_matrix(X, self.feature_dims_, self.mask_, "X", allow_negative=True)
        coef = _nnls_project(A, self._maps_masked)
        return _timecourses_dataarray(coef, X, attrs=self._result_attrs(X))

    def inverse_transform(self, timecourses: xr.DataArray | np.ndarray) -> xr.DataArray:
        """Reconstruct data ``timecourses @ maps`` with the fitted dims and coords.

        Parameters
        ----------
        timecourses : xarray.DataArray or numpy.ndarray
            ``(time, component)`` coefficients, e.g. from :meth:`fit_transform`
            or :meth:`transform`. A plain array of shape ``(n_time, k)`` gets an
            integer ``time`` index.

        Returns
        -------
        xarray.DataArray
            ``(time, <non-time dims>)`` like the fitted data; masked-out voxels
            are 0.
        """
        check_is_fitted(self, "maps_")
        k = self.n_components_
        if isinstance(timecourses, xr.DataArray):
            if set(timecourses.dims) != {TIME, COMPONENT}:
                raise ValueError(
                    f"timecourses must have dims ('time', 'component'); got {timecourses.dims}."
                )
            tc_da = timecourses.transpose(TIME, COMPONENT)
            time_coords = {n: c for n, c in tc_da.coords.items() if c.dims == (TIME,) or n == TIME}
            values = tc_da.values
        else:
            values = np.asarray(timecourses)
            if values.ndim != 2:
                raise ValueError(
                    f"timecourses must be 2-D (time, component); got shape {values.shape}."
                )
            time_coords = {TIME: np.arange(values.shape[0])}
        if values.shape[1] != k:
            raise ValueError(f"timecourses has {values.shape[1]} components but the model has {k}.")
        dtype = self._maps_masked.dtype
        rec_masked = values.astype(dtype, copy=False) @ self._maps_masked
        if self.mask_.all():
            full = rec_masked
        else:
            full = np.zeros((values.shape[0], self.mask_.size), dtype=dtype)
            full[:, self.mask_] = rec_masked
        lay = self._layout
        data = full.reshape((values.shape[0], *lay.shape))
        coords = {**lay.coords, **time_coords}
        return xr.DataArray(
            data, dims=(TIME, *lay.dims), coords=coords, name=lay.name, attrs=dict(lay.attrs)
        )

    # -------------------------------------------------------------- helpers
    def _check_same_features(self, X: xr.DataArray) -> None:
        dims = tuple(d for d in X.dims if d != TIME)
        lay = self._layout
        if set(dims) != set(lay.dims):
            raise ValueError(f"X has non-time dims {dims} but the model was fitted on {lay.dims}.")
        for d, n in zip(lay.dims, lay.shape, strict=True):
            if X.sizes[d] != n:
                raise ValueError(f"X has {X.sizes[d]} elements along {d!r}; the model has {n}.")
            if (
                d in X.indexes
                and d in lay.coords
                and not _same_coord(X[d].values, np.asarray(lay.coords[d]))
            ):
                raise ValueError(f"X's {d!r} coords differ from those the model was fitted on.")

    def _maps_dataarray(self, maps: np.ndarray) -> xr.DataArray:
        lay = self._layout
        k = maps.shape[0]
        if self.mask_.all():
            full = maps
        else:
            full = np.zeros((k, self.mask_.size), dtype=maps.dtype)
            full[:, self.mask_] = maps
        attrs = dict(lay.attrs)
        attrs.update(self._history())
        return xr.DataArray(
            full.reshape((k, *lay.shape)),
            dims=(COMPONENT, *lay.dims),
            coords={**lay.coords, COMPONENT: np.arange(k)},
            name="maps",
            attrs=attrs,
        )

    def _history(self) -> dict:
        return {
            "nmf": (
                f"NMF mode={self.mode} n_components={self.n_components} solver={self.solver} "
                f"init={self.init} beta_loss={self.beta_loss} max_iter={self.max_iter} "
                f"tol={self.tol} random_state={self.random_state}"
            )
        }

    def _result_attrs(self, X: xr.DataArray) -> dict:
        attrs = {k: v for k, v in X.attrs.items() if k in ("source_file", "subject", "session")}
        attrs.update(self._history())
        return attrs


# ---------------------------------------------------------------------- utils
class _Layout:
    """Dims, sizes, coords and attrs of the non-time part of the fitted data."""

    def __init__(self, dims, shape, coords, attrs, name):
        self.dims, self.shape, self.coords, self.attrs, self.name = dims, shape, coords, attrs, name

    @classmethod
    def from_dataarray(cls, X: xr.DataArray, feature_dims: tuple[str, ...]) -> _Layout:
        coords = {n: c.variable.copy() for n, c in X.coords.items() if TIME not in c.dims}
        shape = tuple(X.sizes[d] for d in feature_dims)
        return cls(feature_dims, shape, coords, dict(X.attrs), X.name)


def _same_coord(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    if np.issubdtype(a.dtype, np.floating) and np.issubdtype(b.dtype, np.floating):
        return bool(np.allclose(a, b, rtol=1e-6, atol=1e-9))
    return bool(np.array_equal(a, b))


def _check_dataarray(X: Any, name: str) -> xr.DataArray:
    if not isinstance(X, xr.DataArray):
        raise TypeError(
            f"{name} must be an xarray.DataArray with a 'time' dim, got {type(X).__name__}. "
            f"Wrap arrays as xr.DataArray(values, dims=('time', 'z', 'y', 'x'))."
        )
    if TIME not in X.dims:
        raise ValueError(
            f"{name} has dims {X.dims} but no 'time' dim; NMF factorizes over time. "
            f"Rename the time axis to 'time' (e.g. X.rename({{'t': 'time'}}))."
        )
    if X.ndim < 2:
        raise ValueError(
            f"{name} has only the 'time' dim; it needs at least one spatial dim (e.g. z, y, x)."
        )
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool) or np.iscomplexobj(X):
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}.")
    return X


def _flat_mask(
    mask: xr.DataArray | None, X: xr.DataArray, feature_dims: tuple[str, ...]
) -> np.ndarray:
    """Boolean feature mask (flattened in ``feature_dims`` order) from a voxel mask."""
    shape = tuple(X.sizes[d] for d in feature_dims)
    if mask is None:
        return np.ones(int(np.prod(shape)), dtype=bool)
    if mask.dtype != bool:
        raise TypeError(
            f"mask must be a boolean DataArray, got dtype {mask.dtype}; use e.g. (mask > 0)."
        )
    extra = [d for d in mask.dims if d not in feature_dims]
    if extra:
        raise ValueError(
            f"mask has dims {mask.dims} but X's non-time dims are {feature_dims}: {extra} "
            "not in X. The mask must cover spatial dims only (no 'time')."
        )
    for d in mask.dims:
        if mask.sizes[d] != X.sizes[d]:
            raise ValueError(
                f"mask has {mask.sizes[d]} elements along {d!r} but X has {X.sizes[d]}; "
                "build the mask on the same grid as X."
            )
        if d in mask.indexes and d in X.indexes and not _same_coord(mask[d].values, X[d].values):
            raise ValueError(
                f"mask's {d!r} coords differ from X's; build the mask on the same grid as X."
            )
    m_dims = [d for d in feature_dims if d in mask.dims]
    m = mask.transpose(*m_dims).values
    m = m.reshape(tuple(X.sizes[d] if d in mask.dims else 1 for d in feature_dims))
    flat = np.broadcast_to(m, shape).ravel()
    if not flat.any():
        raise ValueError("mask selects no voxel; at least one voxel must be True.")
    return flat


def _feature_matrix(
    X: xr.DataArray,
    feature_dims: tuple[str, ...],
    mask: np.ndarray,
    name: str,
    allow_negative: bool = False,
) -> np.ndarray:
    """(time, features) matrix: a view when X is already C-ordered time-first float."""
    values = X.transpose(TIME, *feature_dims).data
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating) or values.dtype == np.float16:
        values = values.astype(np.float32)
    A = values.reshape(values.shape[0], -1)
    if not mask.all():
        A = A[:, mask]
    if not np.isfinite(A).all():
        n_bad = int(A.size - np.count_nonzero(np.isfinite(A)))
        raise ValueError(
            f"{name} has {n_bad} NaN/Inf values (inside the mask); NMF needs finite data. "
            "Fill or mask them (mask=...) first."
        )
    if not allow_negative and A.min() < 0:
        n_neg = int(np.count_nonzero(A < 0))
        raise ValueError(
            f"{name} has {n_neg} negative values (of {A.size}); NMF needs non-negative "
            "data. Split signed data into non-negative channels with "
            "fusi_nmf.signal.split_sign (after standardize)."
        )
    return A


def _timecourses_dataarray(tc: np.ndarray, X: xr.DataArray, attrs: dict) -> xr.DataArray:
    coords = {n: c.variable for n, c in X.coords.items() if c.dims == (TIME,)}
    coords[COMPONENT] = np.arange(tc.shape[1])
    return xr.DataArray(tc, dims=(TIME, COMPONENT), coords=coords, name="timecourses", attrs=attrs)


def _explained_variance(
    A: np.ndarray, tc: np.ndarray, maps: np.ndarray, resid_sq: float | None
) -> float:
    """1 - ||A - tc @ maps||^2 / ||A - mean_t(A)||^2, in float64 chunks over time."""
    n = A.shape[0]
    mean = A.mean(axis=0, dtype=np.float64)
    total = 0.0
    for start in range(0, n, _CHUNK):
        block = A[start : start + _CHUNK].astype(np.float64) - mean
        total += float(np.einsum("ij,ij->", block, block))
    if resid_sq is None:
        resid_sq = 0.0
        for start in range(0, n, _CHUNK):
            sl = slice(start, start + _CHUNK)
            block = A[sl].astype(np.float64) - tc[sl].astype(np.float64) @ maps
            resid_sq += float(np.einsum("ij,ij->", block, block))
    if total <= 0:
        return float("nan")
    return float(1.0 - resid_sq / total)


def _nnls_project(A: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """argmin_{c>=0} ||a_t - maps.T c|| per row a_t of A, via the k x k normal equations.

    ``||a - M.T c||^2 = c.T G c - 2 b.T c + const`` with ``G = M M.T`` and
    ``b = M a``. With ``G = V diag(s) V.T`` and ``R = diag(sqrt(s)) V.T`` this is
    ``||R c - d||^2 + const`` where ``d = diag(1/sqrt(s)) V.T b`` (b lies in the
    range of G, so dropping null directions loses nothing): a small NNLS problem.
    """
    M = maps.astype(np.float64)
    G = M @ M.T
    B = (A @ maps.T).astype(np.float64)  # (time, k), GEMM in the data dtype
    s, V = np.linalg.eigh(G)
    keep = s > s.max() * 1e-12
    s, V = s[keep], V[:, keep]
    R = np.sqrt(s)[:, None] * V.T
    D = (B @ V) / np.sqrt(s)
    out = np.empty((A.shape[0], maps.shape[0]), dtype=maps.dtype)
    for t in range(A.shape[0]):
        out[t], _ = scipy.optimize.nnls(R, D[t])
    return out
