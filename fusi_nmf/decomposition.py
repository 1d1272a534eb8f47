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

The default solver (``solver="hals"``) is scikit-learn's coordinate descent
(the same initialisation, update order, arithmetic kernel and stopping rule as
``sklearn.decomposition.NMF(solver="cd")``) reorganised so that each iteration
reads the data matrix once instead of twice; see :class:`NMF`.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np
import scipy.optimize
import xarray as xr
from sklearn import config_context
from sklearn.base import BaseEstimator
from sklearn.decomposition import NMF as _SklearnNMF
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.extmath import randomized_svd
from sklearn.utils.validation import check_is_fitted

__all__ = ["NMF"]

TIME = "time"
COMPONENT = "component"
_MODES = ("temporal", "spatial")
_INITS = ("nndsvda", "nndsvd", "nndsvdar", "random")
_SOLVERS = ("hals", "cd", "mu")
_BETA_LOSSES = ("frobenius", "kullback-leibler", "itakura-saito")
# Rows of X processed at a time when a pass over X needs float64 temporaries.
_CHUNK = 128
# Bytes of the data matrix handled per block in the fused solver: a block stays in
# cache between its two products (L2 is 1 MiB/core, L3 32 MiB on the reference box).
# Measured per iteration on the default recording (k 4/10/16, both modes, 1 thread):
# 512 KiB and 768 KiB 7 % faster than 3 MiB (1-1.5 MiB between); the whole model
# selection of chapter 6 5-6 % faster on 2 threads, with the same iteration counts.
_BLOCK_BYTES = 768 * 2**10
# "hals": iterations that follow scikit-learn's path exactly (one sweep per factor),
# then sweeps per factor update (Gillis & Glineur 2012: extra sweeps cost a small
# fraction of the products with the data, which they reuse).
_WARMUP_ITER = 30
_INNER_SWEEPS = 3
# sweeps in a row without a lower violation that end the final polish (see _polish)
_POLISH_PATIENCE = 10


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
    solver : {"hals", "cd", "mu"}, default="hals"
        ``"hals"``: cyclic coordinate descent, i.e. hierarchical alternating
        least squares (HALS, Cichocki & Phan 2009), with one pass over the data
        per iteration (see Notes); ``"cd"`` and ``"mu"``: scikit-learn's
        coordinate descent and multiplicative-update solvers, run as
        :class:`sklearn.decomposition.NMF` runs them.
    beta_loss : {"frobenius", "kullback-leibler", "itakura-saito"} or float, \
default="frobenius"
        Divergence minimised (anything but Frobenius needs ``solver="mu"``).
    tol : float, default=1e-4
        Stopping tolerance of the solver. For ``"hals"`` and ``"cd"``: stop when
        the L1 norm of the projected gradient met during an iteration's updates
        falls to ``tol`` times that of the first iteration.
    max_iter : int, default=500
        Maximum number of solver iterations (one update of each factor).
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
    timecourses : {"factor", "projection"}, default="factor"
        What spatial mode returns as time courses. ``"factor"``: the solver's
        fitted non-negative time factor. ``"projection"``: as the reference
        example (ConfUSIus "NMF on a single fUSI recording"), the maps are
        re-solved with the time factor fixed (scikit-learn's ``transform`` of
        the ``(features, time)`` matrix; the fitted maps for ``solver="hals"``,
        whose maps are already polished to that solution) and the time courses
        are the centred data projected onto them,
        ``(X - mean_t(X)) @ maps.T``: signed, zero-mean, in data units times
        map units, not a factor of a non-negative model. Temporal mode ignores
        it. ``explained_variance_`` and ``reconstruction_err_`` always describe
        the fitted non-negative model.

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
        True when the stopping rule (``tol``) was met; False when the solver
        stopped at ``max_iter`` instead (a
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

    **The "hals" solver.** Coordinate descent on ``||X - W H||_F^2`` updates one
    column of ``W`` at a time in closed form,
    ``w_t <- max(0, w_t - (W (H H^T)_t - (X H^T)_t) / (H H^T)_tt)``, then the rows
    of ``H`` the same way (Cichocki & Phan 2009; Hsieh & Dhillon 2011). This is
    exactly what ``sklearn.decomposition.NMF(solver="cd")`` iterates (same
    ``init``, same cyclic order, same update kernel, same stopping rule and
    regularisation), so it follows the same path to the same solution. The
    initialisation is this module's own (the same arithmetic, on scikit-learn's
    public ``randomized_svd``); the column update uses scikit-learn's compiled
    kernel when this scikit-learn has it, else an equivalent numpy loop. Its
    cost is dominated by the two products ``X H^T`` and ``W^T X``, each a full
    read of the (time x voxels) data, which is memory bound for small ``k``.
    Because the update of the voxel factor separates over voxels, this solver
    walks the voxels in cache-sized blocks and, for each block, computes the
    block's product with the time factor, updates the block's voxel factor and
    immediately adds the block's share of the other product while the block
    is still in cache: one read of the data per iteration instead of two.
    After the stopping rule is met, the factor scikit-learn's ``transform``
    would re-solve (the time courses in temporal mode, the maps in spatial
    mode) gets further coordinate-descent sweeps with the other factor fixed,
    to the same relative tolerance, so the result is at least as converged as
    ``fit`` followed by ``transform`` while solving only once.

    References
    ----------
    .. [1] A. Cichocki and A.-H. Phan, "Fast local algorithms for large scale
       nonnegative matrix and tensor factorizations", IEICE Trans. Fundamentals
       E92-A(3), 708-721, 2009.
    .. [2] C.-J. Hsieh and I. S. Dhillon, "Fast coordinate descent methods with
       variable selection for non-negative matrix factorization", KDD 2011.
    .. [3] N. Gillis and F. Glineur, "Accelerated multiplicative updates and
       hierarchical ALS algorithms for nonnegative matrix factorization",
       Neural Computation 24(4), 1085-1105, 2012 (the cost argument: the
       products with the data dominate, the k x k work is cheap).

    Examples
    --------
    >>> model = NMF(n_components=5, random_state=0)      # doctest: +SKIP
    >>> tc = model.fit_transform(split_sign(standardize(pd)))  # doctest: +SKIP
    >>> model.maps_.dims                                   # doctest: +SKIP
    ('component', 'sign', 'z', 'y', 'x')
    """

    def __init__(
        self,
        n_components: int = 10,
        *,
        mode: str = "temporal",
        init: str = "nndsvda",
        solver: str = "hals",
        beta_loss: str | float = "frobenius",
        tol: float = 1e-4,
        max_iter: int = 500,
        random_state: Any = None,
        alpha_W: float = 0.0,
        alpha_H: float | str = "same",
        l1_ratio: float = 0.0,
        mask: xr.DataArray | None = None,
        timecourses: str = "factor",
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
        self.timecourses = timecourses

    # ------------------------------------------------------------ validation
    def _check_params(self) -> None:
        """Check the constructor parameters (scikit-learn convention: at fit time).

        Raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one
        out of range, naming the parameter and what it accepts.
        """

        def number(name: str, lo: float, hi: float | None = None, integral: bool = False):
            value = getattr(self, name)
            kind = numbers.Integral if integral else numbers.Real
            if isinstance(value, bool) or not isinstance(value, kind):
                what = "an integer" if integral else "a real number"
                raise TypeError(f"{name} must be {what}, got {value!r}.")
            if not lo <= value or (hi is not None and value > hi):
                bounds = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
                raise ValueError(f"{name} must be {bounds}, got {value!r}.")

        def choice(name: str, options: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if not isinstance(value, str) or value not in options:
                raise ValueError(f"{name} must be one of {options}, got {value!r}.")

        number("n_components", 1, integral=True)
        choice("mode", _MODES)
        choice("init", _INITS)
        choice("solver", _SOLVERS)
        if isinstance(self.beta_loss, str | bool):
            choice("beta_loss", _BETA_LOSSES)
        else:
            number("beta_loss", -np.inf)
        number("tol", 0)
        number("max_iter", 1, integral=True)
        check_random_state(self.random_state)  # None, an int or a RandomState
        number("alpha_W", 0)
        if not (isinstance(self.alpha_H, str) and self.alpha_H == "same"):
            if isinstance(self.alpha_H, str):
                raise ValueError(f"alpha_H must be a number >= 0 or 'same', got {self.alpha_H!r}.")
            number("alpha_H", 0)
        number("l1_ratio", 0, 1)
        choice("timecourses", ("factor", "projection"))
        if self.mask is not None and not isinstance(self.mask, xr.DataArray):
            raise TypeError(
                f"mask must be a boolean xarray.DataArray or None, got {type(self.mask).__name__}."
            )

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
        self._check_params()
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

        if self.solver == "hals":
            tc, maps, n_iter, converged = self._solve_hals(A)
            err_sq = None  # computed exactly below, in float64
        else:
            solver_X = A if self.mode == "temporal" else A.T  # a view, no copy
            W, H, sk = self._solve(solver_X)
            if self.mode == "temporal":
                tc, maps = W, H.T  # tc (time, k), maps as (features, k)
            else:
                tc, maps = H.T, W
            n_iter, converged = int(sk.n_iter_), self.converged_
            err_sq = self._frobenius_sq(sk, A)
            if self.mode == "spatial" and self.timecourses == "projection":
                with warnings.catch_warnings():  # same solver, already reported once
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    maps = sk.transform(solver_X)
        self.converged_ = bool(converged)
        if not self.converged_:
            warnings.warn(
                f"NMF ({self.mode} mode, solver={self.solver!r}) stopped at max_iter="
                f"{self.max_iter} before reaching tol={self.tol}; the factors may be "
                f"inaccurate. Raise max_iter (e.g. to {2 * self.max_iter}) or loosen tol.",
                ConvergenceWarning,
                stacklevel=2,
            )
        energy = np.linalg.norm(tc, axis=0).astype(np.float64) * np.linalg.norm(maps, axis=0)
        order = np.argsort(-energy, kind="stable")
        tc = np.ascontiguousarray(tc[:, order])
        maps = np.ascontiguousarray(maps[:, order].T)  # (k, features)

        self.feature_dims_ = feature_dims
        self.mask_ = mask
        self.n_samples_ = n_time
        self.n_features_in_ = n_feat
        self.n_components_ = int(self.n_components)
        self.n_iter_ = int(n_iter)
        self._maps_masked = maps
        self._layout = _Layout.from_dataarray(X, feature_dims)
        self.explained_variance_, resid_sq = _explained_variance(A, tc, maps, err_sq)
        if self.mode == "spatial" and self.timecourses == "projection":
            tc = _centred_projection(A, maps)
        if self.solver == "hals":
            self.reconstruction_err_ = float(np.sqrt(resid_sq))
        else:
            self.reconstruction_err_ = float(sk.reconstruction_err_)
        self.maps_ = self._maps_dataarray(maps)
        self.timecourses_ = _timecourses_dataarray(tc, X, attrs=self._result_attrs(X))
        return self.timecourses_

    def _solve_hals(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, bool]:
        """Fused coordinate-descent solve; returns (timecourses, maps as (features, k))."""
        if not _is_frobenius(self.beta_loss):
            raise ValueError(
                f"solver='hals' minimises the Frobenius norm only; got beta_loss="
                f"{self.beta_loss!r}. Use solver='mu' for other divergences."
            )
        k = int(self.n_components)
        n_time, n_feat = A.shape
        alpha_H = self.alpha_W if self.alpha_H == "same" else self.alpha_H
        # sklearn scales W's penalty by n_features and H's by n_samples of its X;
        # the time factor is W in temporal mode and H in spatial mode.
        if self.mode == "temporal":
            alpha_C, alpha_S = self.alpha_W, alpha_H
        else:
            alpha_C, alpha_S = alpha_H, self.alpha_W
        reg = {
            "l1_C": n_feat * alpha_C * self.l1_ratio,
            "l2_C": n_feat * alpha_C * (1.0 - self.l1_ratio),
            "l1_S": n_time * alpha_S * self.l1_ratio,
            "l2_S": n_time * alpha_S * (1.0 - self.l1_ratio),
        }
        solver_X = A if self.mode == "temporal" else A.T
        # the same initialisation as sklearn.decomposition.NMF(init=...)
        W0, H0 = _initialize(solver_X, k, self.init, self.random_state)
        C, St = (W0, H0.T) if self.mode == "temporal" else (H0.T, W0)
        C = np.ascontiguousarray(C, dtype=A.dtype)
        St = np.ascontiguousarray(St, dtype=A.dtype)
        n_iter, converged = _fused_cd(
            A,
            C,
            St,
            temporal=self.mode == "temporal",
            tol=self.tol,
            max_iter=self.max_iter,
            **reg,
        )
        return C, St, n_iter, converged

    def _solve(self, solver_X: np.ndarray):
        """One scikit-learn solve; its ConvergenceWarnings are caught (the caller warns once)."""
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
        return W, sk.components_, sk

    def _frobenius_sq(self, sk, A: np.ndarray) -> float | None:
        # scikit-learn reports the Frobenius norm only for beta_loss "frobenius" / 2
        if _is_frobenius(self.beta_loss):
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


def _is_frobenius(beta_loss: Any) -> bool:
    return beta_loss == "frobenius" or (
        not isinstance(beta_loss, str | bool) and float(beta_loss) == 2.0
    )


def _initialize(
    X: np.ndarray, k: int, init: str, random_state: Any, eps: float = 1e-6
) -> tuple[np.ndarray, np.ndarray]:
    """Starting factors ``W (n, k)``, ``H (k, m)`` for ``X ~ W H``, as scikit-learn makes them.

    ``"random"``: ``|N(0, 1)| * sqrt(mean(X) / k)``. ``"nndsvd"`` (Boutsidis & Gallopoulos
    2008): from the rank-``k`` truncated SVD, the leading triplet as is (its vectors
    are of one sign) and, for every other triplet, whichever of its positive or
    negative parts carries more of the singular value; entries below ``eps`` become 0.
    ``"nndsvda"`` fills those zeros with ``mean(X)``, ``"nndsvdar"`` with small random
    values. The same arithmetic and random draws as ``sklearn.decomposition.NMF(init=...)``
    (tested against it), built on scikit-learn's public ``randomized_svd``.
    """
    rng = check_random_state(random_state)
    if init == "random":
        avg = np.sqrt(X.mean() / k)
        H = avg * rng.standard_normal(size=(k, X.shape[1])).astype(X.dtype, copy=False)
        W = avg * rng.standard_normal(size=(X.shape[0], k)).astype(X.dtype, copy=False)
        return np.abs(W), np.abs(H)
    with config_context(assume_finite=True):  # checked by _feature_matrix
        U, S, V = randomized_svd(X, k, random_state=random_state)
    W, H = np.zeros_like(U), np.zeros_like(V)
    W[:, 0] = np.sqrt(S[0]) * np.abs(U[:, 0])
    H[0, :] = np.sqrt(S[0]) * np.abs(V[0, :])
    for j in range(1, k):
        x, y = U[:, j], V[j, :]
        x_p, y_p = np.maximum(x, 0), np.maximum(y, 0)
        x_n, y_n = np.abs(np.minimum(x, 0)), np.abs(np.minimum(y, 0))
        # norms as Python floats (float64 sqrt), as scikit-learn computes them
        x_p_nrm, y_p_nrm = math.sqrt(x_p @ x_p), math.sqrt(y_p @ y_p)
        x_n_nrm, y_n_nrm = math.sqrt(x_n @ x_n), math.sqrt(y_n @ y_n)
        m_p, m_n = x_p_nrm * y_p_nrm, x_n_nrm * y_n_nrm
        if m_p > m_n:
            u, v, sigma = x_p / x_p_nrm, y_p / y_p_nrm, m_p
        else:
            u, v, sigma = x_n / x_n_nrm, y_n / y_n_nrm, m_n
        lbd = np.sqrt(S[j] * sigma)
        W[:, j] = lbd * u
        H[j, :] = lbd * v
    W[W < eps] = 0
    H[H < eps] = 0
    if init == "nndsvda":
        avg = X.mean()
        W[W == 0] = avg
        H[H == 0] = avg
    elif init == "nndsvdar":
        avg = X.mean()
        W[W == 0] = abs(avg * rng.standard_normal(size=len(W[W == 0])) / 100)
        H[H == 0] = abs(avg * rng.standard_normal(size=len(H[H == 0])) / 100)
    return W, H


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


def _centred_projection(A: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """``(A - mean_t(A)) @ maps.T``: the reference example's spatial-mode time courses."""
    centred = A.astype(np.float64) - A.mean(axis=0, dtype=np.float64)
    return (centred @ maps.T.astype(np.float64)).astype(A.dtype, copy=False)


def _explained_variance(
    A: np.ndarray, tc: np.ndarray, maps: np.ndarray, resid_sq: float | None
) -> tuple[float, float]:
    """Explained variance and ``||A - tc @ maps||^2``, in float64 chunks over time.

    ``1 - ||A - tc @ maps||^2 / ||A - mean_t(A)||^2``; the residual is computed
    here (float64 sums) when ``resid_sq`` is None.
    """
    n = A.shape[0]
    mean = A.mean(axis=0, dtype=np.float64)
    own = resid_sq is None
    resid = sq = 0.0
    for start in range(0, n, _CHUNK):
        block = A[start : start + _CHUNK]
        if own:
            # product in the data dtype, squares accumulated in float64
            r = block - (tc[start : start + _CHUNK] @ maps).astype(block.dtype, copy=False)
            resid += float(np.einsum("ij,ij->", r, r, dtype=np.float64))
        sq += float(np.einsum("ij,ij->", block, block, dtype=np.float64))
    if own:
        resid_sq = resid
    total = sq - n * float(mean @ mean)  # ||A - mean_t(A)||^2
    if total <= 0:
        return float("nan"), float(resid_sq)
    return float(1.0 - resid_sq / total), float(resid_sq)


def _cd_sweep_numpy(W: np.ndarray, HHt: np.ndarray, XHt: np.ndarray) -> float:
    """One cyclic coordinate-descent sweep over the columns of ``W`` (numpy).

    Same update and projected-gradient violation as scikit-learn's compiled
    ``_update_cdnmf_fast`` (used when it imports), column by column over all rows:
    the fallback of :func:`_cd_kernel`.
    """
    violation = 0.0
    for t in range(W.shape[1]):
        hess = HHt[t, t]
        grad = W @ HHt[t] - XHt[:, t]
        col = W[:, t]
        pg = np.where(col == 0, np.minimum(grad, 0), grad)
        violation += float(np.abs(pg).sum())
        if hess != 0:
            W[:, t] = np.maximum(col - grad / hess, 0)
    return violation


def _cd_kernel() -> Any:
    """scikit-learn's compiled CD sweep, or None when this scikit-learn lacks it.

    ``_update_cdnmf_fast`` is private (the arithmetic of ``NMF(solver="cd")``), so it
    is imported here, on first use, never at import time: a scikit-learn release
    without it (or with another signature) falls back to :func:`_cd_sweep_numpy`,
    which computes the same sweep (``tests/test_decomposition.py`` compares them;
    ``benchmarks/bench_nmf.py`` measures what the kernel buys).
    """
    try:
        from sklearn.decomposition._cdnmf_fast import _update_cdnmf_fast
    except ImportError:
        return None
    return _update_cdnmf_fast


def _cd_sweep(W: np.ndarray, HHt: np.ndarray, XHt: np.ndarray, kernel: Any = None) -> float:
    """One coordinate-descent sweep on ``W`` (C-contiguous) for ``min ||X - W H||``.

    ``HHt = H H^T`` and ``XHt = X H^T`` (regularisation folded in). Returns the L1
    norm of the projected gradient met on the way (scikit-learn's ``violation``).
    ``kernel`` is :func:`_cd_kernel`'s compiled sweep, or None for the numpy one.
    """
    if kernel is None:
        return _cd_sweep_numpy(W, HHt, XHt)
    perm = np.arange(W.shape[1], dtype=np.intp)
    return float(kernel(W, HHt.astype(W.dtype, copy=False), XHt.astype(W.dtype, copy=False), perm))


def _blocks(n_feat: int, n_time: int, itemsize: int) -> list[slice]:
    width = max(64, _BLOCK_BYTES // max(1, n_time * itemsize))
    return [slice(j, min(j + width, n_feat)) for j in range(0, n_feat, width)]


def _fused_cd(
    A: np.ndarray,
    C: np.ndarray,
    St: np.ndarray,
    *,
    temporal: bool,
    tol: float,
    max_iter: int,
    l1_C: float = 0.0,
    l2_C: float = 0.0,
    l1_S: float = 0.0,
    l2_S: float = 0.0,
    inner: int = _INNER_SWEEPS,
    warmup: int = _WARMUP_ITER,
    polish: bool = True,
    kernel: Any = "auto",
) -> tuple[int, bool]:
    """Coordinate-descent NMF ``A ~ C @ St.T`` reading ``A`` once per iteration.

    ``A`` is (time, features); ``C`` (time, k) and ``St`` (features, k) are
    C-contiguous and updated in place. ``temporal=True`` updates ``C`` then ``St``
    in each iteration (scikit-learn's order for ``fit(A)``), ``False`` updates
    ``St`` then ``C`` (its order for ``fit(A.T)``). The first ``warmup`` iterations
    make one sweep per factor update, as scikit-learn does; later ones make
    ``inner`` sweeps on the same products (accelerated HALS). The ``St`` update runs per
    block of features, and each block's share of ``A @ St`` (needed by the next
    ``C`` update) is added while the block is in cache. Stops when the sum of the
    two updates' projected-gradient violations falls to ``tol`` times the first
    iteration's (scikit-learn's rule); then sweeps the factor scikit-learn's
    ``transform`` would re-solve (``C`` if ``temporal``, else ``St``) with the
    other fixed until its violation falls by ``tol`` (``polish=False`` skips
    that). ``kernel``: ``"auto"`` uses scikit-learn's compiled sweep when it imports
    (:func:`_cd_kernel`), ``None`` the numpy one. Returns ``(n_iter, converged)``.
    """
    if kernel == "auto":
        kernel = _cd_kernel()
    n_time, n_feat = A.shape
    k = C.shape[1]
    dt = A.dtype
    eye = np.eye(k, dtype=dt)
    blocks = _blocks(n_feat, n_time, dt.itemsize)

    def gram_C(SSt: np.ndarray) -> np.ndarray:
        return SSt + dt.type(l2_C) * eye if l2_C else SSt

    def gram_S(CtC: np.ndarray) -> np.ndarray:
        return CtC + dt.type(l2_S) * eye if l2_S else CtC

    def update_C(SSt: np.ndarray, ASt: np.ndarray, n_sweeps: int = 1) -> float:
        G, B = gram_C(SSt), ASt - dt.type(l1_C) if l1_C else ASt
        violation = _cd_sweep(C, G, B, kernel)
        for _ in range(n_sweeps - 1):
            _cd_sweep(C, G, B, kernel)
        return violation

    def update_S(CtC: np.ndarray, n_sweeps: int = 1) -> tuple[float, np.ndarray]:
        # one read of A: per block, the S_j update from A_j^T C, then A_j @ S_j
        G = gram_S(CtC)
        ASt = np.zeros((n_time, k), dtype=dt)
        violation = 0.0
        for sl in blocks:
            Aj = A[:, sl]
            B = Aj.T @ C
            if l1_S:
                B -= dt.type(l1_S)
            violation += _cd_sweep(St[sl], G, B, kernel)
            for _ in range(n_sweeps - 1):
                _cd_sweep(St[sl], G, B, kernel)
            ASt += Aj @ St[sl]
        return violation, ASt

    converged = False
    violation_init = None
    if temporal:
        ASt = A @ St
        SSt = St.T @ St
    else:
        CtC = C.T @ C
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        ns = 1 if n_iter <= warmup else inner
        if temporal:
            violation = update_C(SSt, ASt, ns)
            violation_S, ASt = update_S(C.T @ C, ns)
            SSt = St.T @ St
            violation += violation_S
        else:
            violation, ASt = update_S(CtC, ns)
            SSt = St.T @ St
            violation += update_C(SSt, ASt, ns)
            CtC = C.T @ C
        if violation_init is None:
            violation_init = violation
        if violation_init == 0 or violation / violation_init <= tol:
            converged = True
            break

    # Polish the factor fit-then-transform would re-solve, to the same relative
    # tolerance: the products it needs are at hand (temporal) or one pass away.
    if not polish:
        pass
    elif temporal:
        _polish(lambda: update_C(SSt, ASt), tol, max_iter)
    else:
        G = gram_S(CtC)
        for sl in blocks:
            B = A[:, sl].T @ C
            if l1_S:
                B -= dt.type(l1_S)
            St_j = St[sl]
            _polish(lambda St_j=St_j, B=B: _cd_sweep(St_j, G, B, kernel), tol, max_iter)
    return n_iter, converged


def _polish(sweep: Any, tol: float, max_sweeps: int, patience: int = _POLISH_PATIENCE) -> None:
    """Repeat ``sweep()`` until its violation falls to ``tol`` times the first, or stalls.

    Stalls: ``patience`` sweeps in a row without a new lowest violation. In float32 the
    projected gradient has a rounding floor; on the default recording the spatial-mode
    polish met it at ~1.5e-4 of the first violation after ~20 sweeps, short of
    ``tol=1e-4``, and then swept every block to ``max_sweeps`` (500) moving only the last
    bits: 9000 sweeps, a fifth of the spatial fit's time.
    """
    first = best = sweep()
    stalled = 0
    for _ in range(max_sweeps - 1):
        violation = sweep()
        if first == 0 or violation <= tol * first:
            break
        if violation < best:
            best, stalled = violation, 0
        else:
            stalled += 1
            if stalled >= patience:
                break


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
