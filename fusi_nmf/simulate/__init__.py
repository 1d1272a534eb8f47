"""Simulated fUSI Power Doppler recordings with ground truth: the embedded default.

The real recording this package was built for (sub-CR022, ses-20201011, slice 03
of Nunez-Elizalde et al. 2022) is a 751-frame single-slice Power Doppler movie
that has to be downloaded. The simulator produces a recording of the same shape,
voxel size, timing and file layout from a seed, plus the ground truth that a real
recording never has (source maps and time courses, per-frame motion, the clean
signal), so every stage of the pipeline can be measured, not just looked at.

What is simulated, and why
--------------------------
Every effect below is a documented parameter of :func:`simulate_recording` and is
on by default where real mouse fUSI data have it. ``nuisance=False`` switches off
every nuisance at once (motion, drift, global fluctuation, both kinds of surge,
vasomotion, non-rigid deformation, through-slice change) and keeps the sources and
the noise: the same recording as a pipeline would ideally see it, its ceiling.

Baseline (``baseline``)
    Power Doppler is proportional to the blood volume in a voxel, so the image is
    dominated by vessels: bright pial vessels on the (curved) brain surface,
    penetrating vessels running down into cortex with a few branches, and a couple
    of larger deep vessels, drawn as random-walk centre lines and blurred by an
    anisotropic point-spread function in mm (x 0.05, y 0.035 mm). They sit over a
    cortex-like parenchyma texture (log-normal smooth noise, mild attenuation with
    depth) and a dimmer region above the brain. Values run from about 1e3 to a
    few 1e4, as in the real data.
Sources (``source_maps``, ``source_timecourses``, ``source_sign``)
    ``n_sources`` localized regions (anisotropic Gaussian footprints in mm, inside
    the brain; two of them are placed to overlap) whose blood volume changes by a
    fraction of baseline: sparse events convolved with a gamma haemodynamic
    response (peak ~2.3 s), plus a slow fluctuation. At least one source
    *decreases* below baseline (``source_sign == -1``), because the pos/neg split
    in the pipeline exists for exactly that case. ``clean = baseline * (1 +
    sum_k source_maps_k * source_timecourses_k)``. Peak changes are drawn in
    ``source_amplitude`` (default 20-35 %): stimulus-evoked CBV increases in
    rodent fUSI are typically 10-30 % in the responding region (Mace et al. 2011,
    Nat Methods 8:662; Mace et al. 2018, Neuron 100:1241); spontaneous activity
    is weaker, which is what the signal-to-noise sweep (``benchmarks/snr_sweep.py``)
    covers down to 5 %.
Vessel response (``vessel_response=True``)
    Sources change parenchyma more than large vessels, in relative terms: a
    voxel's footprint is scaled by ``1 - 0.6 * vessel fraction`` (the share of
    its baseline power that comes from drawn vessels), so a pure-vessel voxel
    changes by 40 % of what a parenchyma voxel beside it does. The relative CBV
    change of large pial and draining vessels is smaller than that of the
    capillary bed and arterioles they supply; the factor is a modelling choice,
    not a measured constant. The ground-truth maps are these effective maps.
Slow drift (``drift=True``)
    A multiplicative global trend plus a spatially varying slow trend (probe and
    coupling-gel changes over minutes).
Global fluctuation (``global_signal=True``)
    One shared band-limited multiplicative fluctuation (4 % s.d.), weighted towards
    vessels (heart rate, blood pressure, breathing).
Vasomotion (``vasomotion=True``)
    Vessels have their own slow fluctuation, around 0.1 Hz (8 % s.d. in a pure
    vessel voxel, scaled by the vessel fraction), independent in four soft
    territories: arteriolar vasomotion at ~0.1 Hz is a large, spontaneous,
    spatially patchy signal in awake mouse cortex (Mateo et al. 2017, Neuron
    96:936). It lies above any reasonable high-pass cut-off, so cleaning cannot
    simply filter it out.
Power surges at motion (``surges=True``)
    Brief (1-3 frame) broad increases of power (40-120 %) at the abrupt motion
    events: tissue motion leaks into the Doppler band when the animal moves
    (clutter-filter residue; Demene et al. 2015, IEEE Trans Med Imaging 34:2271;
    Urban et al. 2015, Nat Methods 12:873).
Free power surges (``free_surges=True``)
    The same kind of burst (20-80 %) with no image displacement, at a rate of
    one per 40 s on average (Poisson): in head-fixed animals, licking, whisking or
    a body movement can raise power without moving the brain in the image, so
    framewise-displacement censoring cannot catch them and only an intensity
    criterion (DVARS) can. The rate is a modelling choice.
Rigid motion (``motion=True``)
    In-plane translation (tx, ty in mm) and rotation (rz in degrees about the
    field-of-view centre): a slow wander plus a few abrupt jumps (steps to a new
    position and short excursions), bounded by ``max_shift_voxels`` (2 voxels per
    axis) and ``max_rotation_deg`` (1 degree). Each frame is resampled in physical
    mm space (voxels are anisotropic) with cubic splines
    (:func:`scipy.ndimage.map_coordinates`, edges filled with the nearest value,
    clipped so power stays positive). Convention as everywhere in the package:
    content at reference position p moves to R (p - c) + c + t, positive rz turns
    +x towards +y. With ``z > 1`` the motion stays in-plane (every slice moves the
    same way).
Non-rigid deformation (``nonrigid=True``)
    A smooth displacement field (correlation length ~0.7 mm, peak 0.03 mm, i.e.
    0.3 voxel in x and 0.6 in y) scaled by a slow course (minutes): brain
    swelling and pressure changes deform the tissue in a way a rigid fit cannot
    undo. The amplitude is a modelling choice, below the rigid motion.
Through-slice change (``through_slice=True``)
    At each motion jump the slice also moves in elevation (the probe images a
    ~0.4 mm thick slice), so other vessels enter it: a fine (PSF-scale),
    vessel-weighted intensity pattern changes by up to 6 % and stays until the
    next jump. In-plane registration cannot undo it.
Noise (``noise=True``, ``noise_sd``, ``correlated_noise=True``)
    Multiplicative noise of s.d. ``noise_sd`` (default 6.3 %, from a gamma shape
    of 250; the version-1 docstring said ~20 %, the code always gave 6.3 %) and an
    additive electronic floor (100 power units, ~3-7 % of parenchyma and the
    region above the brain). The multiplicative part is what is left of speckle
    after Doppler ensemble averaging: a Power Doppler frame averages a few hundred
    compound images, so a voxel's frame-to-frame s.d. is a few percent of its
    mean in tissue; the sweep covers 3-12 %. With ``correlated_noise`` it is
    log-normal with the same mean and s.d., smoothed over the point-spread
    function (speckle grains are PSF-sized; Wagner et al. 1983, IEEE Trans Sonics
    Ultrason 30:156) and correlated from frame to frame (AR(1), 0.3: consecutive
    Doppler ensembles share slow clutter), a modelling choice; without it, gamma
    noise independent per voxel and frame.

Brain-attached effects (sources, drift, global fluctuation, vasomotion, surges,
through-slice change) are applied first, then non-rigid deformation and rigid
motion, then measurement noise. Each effect draws from its own random stream
(:class:`numpy.random.SeedSequence` children of ``seed``), so switching one effect
off leaves everything else bit-identical: ``motion=False`` is "perfect motion
correction" of the same recording, ``nuisance=False`` the ceiling.

How well the pipeline recovers the sources from this simulator, with chance
levels and ceilings, is measured by ``benchmarks/measure_cleaning.py`` and
``benchmarks/snr_sweep.py`` and shipped as :func:`fusi_nmf.metrics.validation_table`.

Layout
------
``model``
    :func:`simulate_recording`, the signal model; its pieces are in ``anatomy``
    (grid, vessels, baseline, sources) and ``nuisance`` (rigid motion, correlated
    noise), its constants and presets in ``_base``.
``onsets``
    :func:`converter_timing`: the real converter's irregular frame onsets.
``bids``
    :func:`write_simulated_dataset`, :func:`load_ground_truth` and the file layout
    (:func:`recording_path`, :func:`ground_truth_path`).
``cache``
    :func:`simulated_dataset`: generated once per preset and seed, checked by a manifest.
``cli``
    ``python -m fusi_nmf simulate`` (:func:`add_parser`).
"""

# ``X as X``: names the one-file simulate.py had outside __all__, still reachable here
from fusi_nmf.simulate._base import ACQUISITION as ACQUISITION
from fusi_nmf.simulate._base import (
    FIRST_ONSET_S,
    PRESETS,
    REPETITION_TIME_S,
    SIMULATOR_VERSION,
    SOURCE_AMPLITUDE,
    SPECKLE_SD,
    VOXEL_SIZE_MM,
)
from fusi_nmf.simulate._base import SESSION as SESSION
from fusi_nmf.simulate._base import SUBJECT as SUBJECT
from fusi_nmf.simulate._base import TASK as TASK
from fusi_nmf.simulate.bids import (
    ground_truth_path,
    load_ground_truth,
    recording_path,
    write_simulated_dataset,
)
from fusi_nmf.simulate.cache import MANIFEST_NAME as MANIFEST_NAME
from fusi_nmf.simulate.cache import simulated_dataset
from fusi_nmf.simulate.cli import add_parser
from fusi_nmf.simulate.model import simulate_recording, simulate_sources
from fusi_nmf.simulate.onsets import LONG_INTERVAL_S as LONG_INTERVAL_S
from fusi_nmf.simulate.onsets import ONSET_JITTER_S as ONSET_JITTER_S
from fusi_nmf.simulate.onsets import TIMINGS as TIMINGS
from fusi_nmf.simulate.onsets import converter_timing

__all__ = [
    "FIRST_ONSET_S",
    "PRESETS",
    "REPETITION_TIME_S",
    "SIMULATOR_VERSION",
    "SOURCE_AMPLITUDE",
    "SPECKLE_SD",
    "VOXEL_SIZE_MM",
    "add_parser",
    "converter_timing",
    "ground_truth_path",
    "load_ground_truth",
    "recording_path",
    "simulate_recording",
    "simulate_sources",
    "simulated_dataset",
    "write_simulated_dataset",
]
