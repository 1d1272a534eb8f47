"""Rigid volume-wise motion correction of Power Doppler recordings.

Every frame (volume) of a ``(time, z, y, x)`` recording is aligned to one
reference volume by a rigid transform estimated in physical space (mm):

* in-plane model (one slice, or a few thick slices moving together): ``tx, ty, rz``
  shared by all slices;
* 3-D model (a finely sampled volume, or ``model="3d"``): ``tx, ty, tz, rx, ry, rz``.

Translations are in mm, rotations in degrees about the field-of-view centre
``c`` (the midpoint of the coordinate range of each axis). Sign convention
(the one in ``DEVELOPING.md``, shared with the simulator's ground truth): the
parameters of frame ``t`` say where the reference content went, i.e. content at
reference position ``p`` sits at ``R (p - c) + c + t`` in frame ``t``; a
positive ``rz`` turns ``+x`` towards ``+y``. In 3-D, ``R = Rz(rz) Ry(ry) Rx(rx)``.

Method (numpy/scipy only, all frames batched), one module per job:

* :mod:`~fusi_nmf.registration.features`: the registration works on
  ``asinh(P / s)`` (``s`` the median power; log-like for vessels, linear near
  zero), lightly smoothed; the reference volume (median of the lowest-motion
  stretch, a frame, or a given volume). The ORIGINAL power is resampled.
* :mod:`~fusi_nmf.registration.estimation`: translation start by phase
  correlation, then inverse-compositional Gauss-Newton (Lucas-Kanade) with an
  additive intensity offset, linear interpolation first, polished with cubic
  B-splines; frames stop individually when the update is below ``tol``.
* :mod:`~fusi_nmf.registration.resampling`: (bi/tri)linear resampling of the
  original data (a convex combination of neighbours, so power stays non-negative;
  samples from outside the field of view take the nearest edge value), or Fourier.
* :mod:`~fusi_nmf.registration.quality`: framewise displacement and before/after
  correlation and images.
* :mod:`~fusi_nmf.registration.geometry`, :mod:`~fusi_nmf.registration.interpolation`:
  rotations, the voxel grid and sampling, shared by the above.

Comparing an estimate with a simulated ground truth is evaluation, not registration:
see :func:`fusi_nmf.metrics.align_to_truth`.
"""

from fusi_nmf.registration.geometry import PARAMS_2D, PARAMS_3D
from fusi_nmf.registration.quality import FD_RADIUS_MM, framewise_displacement, registration_qc
from fusi_nmf.registration.volumewise import MODELS, choose_model, register_volumewise

__all__ = [
    "FD_RADIUS_MM",
    "MODELS",
    "PARAMS_2D",
    "PARAMS_3D",
    "choose_model",
    "framewise_displacement",
    "register_volumewise",
    "registration_qc",
]
