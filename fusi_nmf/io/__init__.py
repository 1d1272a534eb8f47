"""Read and write fUSI Power Doppler recordings and maps (NIfTI + BIDS JSON sidecar).

Axis conventions
----------------
NIfTI stores voxels in Fortran order along the voxel axes ``(i, j, k, t, u, ...)``.
In this package the voxel axes are named ``i -> x``, ``j -> y``, ``k -> z`` and the
4th axis is ``time`` for a recording. In memory a recording is an
:class:`xarray.DataArray` named ``power_doppler`` with dims ``(time, z, y, x)``
(C order, float32): the exact reverse of the file's ``(x, y, z, time)``, so reading
and writing is a transpose, not a copy.

Maps with extra dims, e.g. NMF maps ``(component, sign, z, y, x)``, are written with
the spatial axes first and the extra dims on the 4th, 5th, ... NIfTI axes in the
order they appear in the DataArray, i.e. the file holds ``(x, y, z, component,
sign)``. Standard viewers then show one 3-D volume per component (and sign). The
names and coordinate values of the extra dims (and the DataArray's name, dtype,
attrs, exact float64 affine and x/y/z/time coords) are stored in a JSON NIfTI header
extension (code 6, "comment"), which :func:`load_nifti` and :func:`load_recording`
read to restore the DataArray exactly. The header (and the BIDS sidecar) stay the
source of truth: stored values are used only when they agree with them, so a file
edited by another tool is read from its header.

Spatial coordinates
-------------------
``x``, ``y`` and ``z`` are in mm (attrs ``units="mm"``, ``voxdim=<voxel size in
mm>``), taken from the sform when ``sform_code > 0``, else from the qform when
``qform_code > 0``, else (with a warning) from ``pixdim`` with the first voxel at 0.
When the affine is axis-aligned with positive voxel sizes (the usual case) the
coordinates are the scanner coordinates of the voxel centres,
``affine[a, 3] + index * affine[a, a]``. When the affine rotates, flips or permutes
the axes, the coordinates are the distance in mm along each voxel axis from the
first voxel (``index * voxdim``, always increasing); the orientation is not lost:
the full 4x4 affine is kept in ``attrs["affine"]`` (flat list of 16 floats,
row-major) with ``attrs["affine_source"]`` (``"sform"``, ``"qform"`` or
``"pixdim"``), and :func:`save_nifti` writes it back (shifted to the first voxel
if the data were cropped with ``isel``/``sel``).

Time
----
``time`` is in s (attrs ``units="s"``), from the JSON sidecar: ``VolumeTiming`` if
present, else ``RepetitionTime`` with ``DelayAfterTrigger`` (default 0) as the first
onset, else ``pixdim[4]`` converted to s according to ``xyzt_units``. A warning is
issued when the sidecar's ``RepetitionTime`` and ``pixdim[4]`` disagree by more than
0.1 %. The fUSI-BIDS converter of the real dataset writes irregular onsets as
``VolumeTiming`` with ``pixdim[4] = 0`` (no single repetition time) and the affine as
the qform only (``sform_code`` 0); :func:`save_recording` writes the same for such a
recording, so it round-trips. The onsets are kept as they are: making them regular is
the job of :mod:`fusi_nmf.timing`.

Sidecar keys become snake_case attrs (``RepetitionTime -> repetition_time``);
values stay JSON-like (numbers, strings, lists, dicts). The original key names
are kept in ``attrs["bids_sidecar_keys"]`` so :func:`save_recording` writes the
same CamelCase keys back.
Layout
------
``reading`` (:func:`load_recording`, :func:`load_nifti`), ``writing``
(:func:`save_nifti`, :func:`save_recording`), ``_header`` (NIfTI header and affine <->
coordinates, the JSON header extension) and ``_sidecar`` (BIDS sidecar keys and files).
"""

from fusi_nmf._xr import SPATIAL_DIMS as SPATIAL_DIMS
from fusi_nmf.io._base import RECORDING_DIMS as RECORDING_DIMS
from fusi_nmf.io._base import RECORDING_NAME as RECORDING_NAME
from fusi_nmf.io._sidecar import sidecar_path, snake_to_bids, to_snake_case
from fusi_nmf.io.reading import load_nifti, load_recording
from fusi_nmf.io.writing import save_nifti, save_recording

__all__ = [
    "load_nifti",
    "load_recording",
    "save_nifti",
    "save_recording",
    "sidecar_path",
    "snake_to_bids",
    "to_snake_case",
]
