"""Write the teaching notebooks of the fusi-nmf book (chapters 01-07).

The notebooks are authored here as Python so that they stay reviewable in diffs, are
committed without outputs, and carry exactly one cell tagged ``parameters``. Run

    python notebooks/_make_notebooks.py

after editing, and commit the regenerated ``*.ipynb`` together with this file.
Chapter 06 (model selection) launches a papermill sweep of chapter 04 through
:func:`fusi_nmf.selection.component_sweep`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from fusi_nmf.pipeline import PipelineConfig
from fusi_nmf.signal import CLEAN_DEFAULTS

HERE = Path(__file__).resolve().parent

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}

# --------------------------------------------------------------------------- shared cells

DATA_PARAMS = '''\
dataset: str = "simulated"  # "simulated" (with ground truth), "nunez-elizalde-2022" or a path
preset: str = "default"  # simulated size: "default" (751 x 1 x 114 x 80) or "small" (tests)
seed: int = 0  # simulator seed (simulated data only)
data_dir: str = ""  # data cache folder; "" -> $FUSI_NMF_DATA or ~/.cache/fusi-nmf
work_dir: str = "work"  # folder where the stages cache their results between notebooks'''

PREP_PARAMS = '''\
registration: bool = True  # rigid motion correction before anything else
cleaning: bool = True  # cleaning chain (censor, detrend, filter, smooth); False: none
standardize: str = "zscore"  # per-voxel scaling: "zscore" or "psc" (percent signal change)'''


# (name, type, comment) of the cleaning steps: the order of fusi_nmf.signal.clean's steps.
CLEAN_STEPS = (
    ("censor_fd", "float", "interpolate frames moving more than this, in mm (FD); 0: off"),
    ("censor_dvars", "float", "interpolate frames with DVARS above this robust z; 0: off"),
    ("detrend_order", "int", "polynomial detrending order per voxel; 0: off"),
    ("high_pass", "float", "high-pass cut-off in Hz (zero-phase Butterworth); 0: off"),
    ("global_regression", "bool", "regress out the global signal (may create anticorrelations)"),
    ("smooth_fwhm_mm", "float", "Gaussian spatial smoothing FWHM in mm; 0: off"),
    ("brain_mask", "bool", "NMF (and DVARS) only inside an intensity/variance brain mask"),
)
CLEAN_NAMES = tuple(name for name, _, _ in CLEAN_STEPS)


def _clean_params() -> str:
    """The cleaning-step parameters, defaults from :data:`fusi_nmf.signal.CLEAN_DEFAULTS`.

    Every chapter that uses the cleaned data declares them with the defaults of
    :class:`fusi_nmf.pipeline.PipelineConfig` (which takes them from ``CLEAN_DEFAULTS``);
    written as ``0`` where the package's ``None`` switches a step off.
    """
    config = PipelineConfig()
    lines = []
    for name, kind, comment in CLEAN_STEPS:
        default = CLEAN_DEFAULTS.get(name, getattr(config, name))
        if default != getattr(config, name):
            raise RuntimeError(f"{name}: CLEAN_DEFAULTS {default!r} != PipelineConfig")
        value = {"int": int, "float": float, "bool": bool}[kind](default or 0)
        lines.append(f"{name}: {kind} = {value!r}  # {comment}")
    return "\n".join(lines)


CLEAN_PARAMS = _clean_params()

NMF_PARAMS = '''\
n_components: int = 10  # number of NMF components
max_iter: int = 500  # maximum number of NMF iterations
random_state: int = 0  # seed of the NMF initialisation (used only by init "random")
init: str = "nndsvda"  # NMF initialisation: "nndsvda" (SVD-based, deterministic) or "random"'''

OUTPUT_PARAMS = '''\
output_dir: str = ""  # set by sweeps: folder for maps, time courses, summary.json; "" -> none'''


def save_cell(mode: str) -> str:
    """The cell that saves the fit when a sweep (or the reader) sets ``output_dir``."""
    return f'''\
if output_dir:
    saved = ws.run(modes=["{mode}"], out_dir=output_dir)
    print(f"saved the {mode} fit to {{output_dir}}: {{', '.join(sorted(saved['outputs']))}}")
else:
    print("output_dir is empty: nothing saved (set it to keep the maps and time courses)")'''

SETUP = '''\
%matplotlib inline
import fusi_nmf.plotting as fplot
from fusi_nmf.pipeline import Workspace'''


def workspace_cell(nmf: bool, clean: bool = True) -> str:
    """The cell that opens the cached workspace with the notebook's parameters.

    ``clean``: pass the cleaning-step parameters (:data:`CLEAN_PARAMS`); ``nmf``: pass
    the NMF ones (:data:`NMF_PARAMS`).
    """
    names = ["registration", "cleaning"]
    if clean:
        names += list(CLEAN_NAMES)
    names.append("standardize")
    if nmf:
        names += ["n_components", "max_iter", "random_state", "init"]
    args = "".join(f"\n    {name}={name}," for name in names)
    return f'''\
ws = Workspace(
    work_dir,
    dataset=dataset,
    preset=preset,
    seed=seed,
    data_dir=data_dir or None,{args}
)
ws'''


def parameters_cell(*blocks: str) -> nbformat.NotebookNode:
    source = "\n".join(blocks)
    for line in source.splitlines():
        # papermill's parameter parser silently drops a parameter whose comment holds "="
        if "=" in line.partition("#")[2]:
            raise ValueError(f"'=' in the comment of a parameter hides it from papermill: {line}")
    cell = new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip("\n"))


def code(text: str) -> nbformat.NotebookNode:
    return new_code_cell(text.strip("\n"))


PARAMS_INTRO = md('''
The next cell holds this chapter's **parameters**. Edit them here, or pass them from the
command line, e.g. `papermill {name} out.ipynb -p dataset nunez-elizalde-2022`
(`papermill --help-notebook {name}` lists them). The book passes the same parameters to
every chapter, so all chapters analyse the same recording; every stage is cached in
`work_dir`, so a chapter never recomputes what an earlier one already did.
''')


def params_intro(name: str) -> nbformat.NotebookNode:
    return md(PARAMS_INTRO.source.format(name=name))


# --------------------------------------------------------------------------- chapters


def chapter_01() -> list[nbformat.NotebookNode]:
    return [
        md('''
# 1. The data: a functional ultrasound recording

**Functional ultrasound imaging (fUSI)** sends plane ultrasound waves into the brain
thousands of times per second. Red blood cells move, tissue (almost) does not, so after
filtering out the slow tissue echo the remaining signal comes from blood. Its energy,
averaged over a short window, is the **Power Doppler** signal: roughly proportional to the
volume of moving blood in each voxel. When a brain region becomes active, its vessels
dilate and more blood flows through them (neurovascular coupling), so the Power Doppler
signal is an indirect, slow (seconds) readout of neural activity, at about 100 µm
resolution.

A recording is a movie: one image (here a single coronal slice, `z = 1`) every few hundred
milliseconds. In `fusi_nmf` it is an `xarray.DataArray` with dims `(time, z, y, x)`, the time
in seconds and the space in millimetres. Space is **anisotropic**: a voxel is 0.1 mm wide
(`x`) but only 0.048 mm deep (`y`), so all figures are drawn in mm, never in voxels.

This chapter loads the recording, looks at its metadata, its mean image, and a few voxel
time series.
'''),
        params_intro("01_data.ipynb"),
        parameters_cell(DATA_PARAMS, PREP_PARAMS),
        code(SETUP),
        md('''
## Choosing the source

`dataset="simulated"` (the default) uses a recording simulated with the size and timing of a
real one (751 frames of 114 x 80 voxels), with planted sources, drift, motion and noise. Its
ground truth is known, which is what makes the validation chapter possible.
`dataset="nunez-elizalde-2022"` downloads a real recording of the mouse brain from the
public fUSI-BIDS dataset of Nunez-Elizalde et al. (2022) on OSF (cached after the first
download).

A `Workspace` ties a recording and its processing parameters to a folder of cached results.
'''),
        code(workspace_cell(nmf=False, clean=False)),
        code('''
raw = ws.raw()
print(ws.recording_path.name)
raw
'''),
        md('''
## Metadata

The recording is stored as NIfTI (the voxels and their geometry) plus a JSON sidecar (BIDS
metadata: repetition time, probe, task...). Both end up on the `DataArray`: the geometry in
its coordinates, the sidecar in its attributes.
'''),
        code('''
fplot.metadata_table(raw)
'''),
        md('''
## The mean Power Doppler image

Averaging over time shows the vasculature: bright lines are large vessels (cortical
penetrating vessels, the big vessels at the brain surface and at the bottom of the
field of view). The colour scale is logarithmic because the signal spans orders of
magnitude between large vessels and the capillary bed.
'''),
        code('''
fig = fplot.plot_volume(raw.mean("time"), log=True, title="Temporal mean of Power Doppler")
fig
'''),
        md('''
How much does each voxel fluctuate? The temporal standard deviation relative to the mean
(coefficient of variation) highlights voxels whose blood volume changes, where activity
(or motion, or noise) lives.
'''),
        code('''
cv = raw.std("time") / raw.mean("time")
cv.name = "coefficient of variation"
cv.attrs["units"] = "std / mean"
fig = fplot.plot_volume(cv, title="Temporal coefficient of variation")
fig
'''),
        md('''
## A few voxel time series

The voxels with the largest fluctuations. Notice the slow drifts, the sharp spikes (often
motion or brief surges in the whole image) and how different the scales are between
voxels: this is why later chapters correct motion, clean and z-score the data before any
decomposition.
'''),
        code('''
fig = fplot.plot_timeseries(raw, n=4, title="Raw Power Doppler in four voxels")
fig
'''),
        md('''
## What to try next

* Re-run this chapter with `dataset="nunez-elizalde-2022"` to look at real data.
* Change `seed` to simulate another recording with different sources and noise.
* Next chapter: the brain moves during the recording; motion correction.
'''),
    ]


def chapter_02() -> list[nbformat.NotebookNode]:
    return [
        md('''
# 2. Motion correction

The probe is fixed to the skull, yet the brain still moves relative to it: breathing,
heartbeat, body movements of an awake animal. A displacement of a single voxel (0.05-0.1
mm) moves a bright vessel into its dark neighbour and creates a huge, fake "signal" there.
Decompositions such as NMF are very good at finding such large, spatially structured
fluctuations, so uncorrected motion ends up as components.

**Rigid registration** estimates, for every frame, the translation (`tx`, `ty`, in mm) and
rotation (`rz`, in degrees) that best aligns it with a reference image (the temporal median
of a quiet stretch of the recording), then resamples the frame back onto the reference.
All of it is done in millimetres, because the voxels are not square.
'''),
        params_intro("02_motion_correction.ipynb"),
        parameters_cell(DATA_PARAMS, PREP_PARAMS),
        code(SETUP + "\nfrom fusi_nmf.registration import align_to_truth"),
        code(workspace_cell(nmf=False, clean=False)),
        code('''
motion = ws.motion()
truth = ws.ground_truth()
motion
'''),
        md('''
## Motion traces

Each line is one rigid parameter over time. **Framewise displacement** (FD, bottom) sums
the frame-to-frame changes of all parameters (rotations converted to mm at a 5 mm
radius): one number per frame that says how much the brain moved since the previous
frame. Peaks in FD are the frames to distrust.

On the simulated recording the true motion is known: it is drawn dashed. The registration
measures motion relative to its reference image, not to the undisplaced brain, so the raw
estimate and the truth differ by a constant rigid transform; `align_to_truth` composes the
estimate with that (fitted) constant so the two traces can be compared directly.
'''),
        code('''
if motion is None:
    print("registration=False: no motion was estimated.")
else:
    if truth is None:
        fig = fplot.plot_motion(motion, title="Estimated rigid motion")
    else:
        aligned = align_to_truth(motion["parameters"], truth["motion"])
        fig = fplot.plot_motion(motion.assign(parameters=aligned), truth=truth["motion"],
                                title="Estimated rigid motion (aligned to the truth) and the truth")
    display(fig)
'''),
        md('''
## Before and after

The temporal **mean** image is blurred by motion (each vessel is averaged over several
positions); the temporal **std** image lights up at vessel edges, where a small shift
changes the signal a lot. After a good correction the mean is sharper, the std at edges
drops, and every frame correlates better with the reference (bottom panel).
'''),
        code('''
qc = ws.registration_qc()
fig = fplot.plot_registration_qc(qc)
fig
'''),
        code('''
print(f"mean correlation with the reference: before {qc['mean_correlation_before']:.3f}, "
      f"after {qc['mean_correlation_after']:.3f}")
'''),
        md('''
## What to try next

* Set `registration=False` and compare the components of the NMF chapters: motion
  components appear, with maps that outline vessel edges.
* On real data, look at the FD trace beside the behaviour: large movements of the animal
  show up as FD peaks.
* Next chapter: standardization, and why NMF needs two channels per voxel.
'''),
    ]


CLEANING_MEASURED = '''
## What each cleaning step buys, measured

On the simulated recording the planted sources are known, so each step can be judged by
what matters downstream: does NMF recover the sources better? The table below was
measured with `benchmarks/measure_cleaning.py` on the full-size simulated recording
(three simulator seeds; NMF with 10 components in both modes): for the raw recording,
the registered one, the registered one plus **each cleaning step alone**, and the
**default chain**, the mean over planted sources of the absolute correlation between
each source and its matched component, for the time courses and for the maps.
'''


def chapter_03() -> list[nbformat.NotebookNode]:
    return [
        md('''
# 3. Cleaning, standardization and the pos/neg split

## Cleaning

Before the voxel time series are compared, the default **cleaning chain** removes what is
not brain activity: frames with large motion (framewise displacement) or sudden
whole-image power surges are **censored** (replaced by interpolation), slow **drifts** are
removed with a polynomial **detrend**, a **high-pass filter** removes the remaining slow
fluctuations, and a light **spatial smoothing** (a fraction of a millimetre) averages
noise between neighbouring voxels. Each step keeps the temporal mean, so the result is
still a Power Doppler recording. Each step is a parameter of this chapter (and of every
later one): `censor_fd`, `censor_dvars`, `detrend_order`, `high_pass`, `smooth_fwhm_mm`,
where 0 switches the step off, plus two optional steps that are off by default,
`global_regression` and `brain_mask`. The defaults are `fusi_nmf.signal.CLEAN_DEFAULTS`,
chosen by measuring how well NMF recovers the planted sources of the simulated recording
with and without each step (next section); `cleaning=False` skips the whole chain.

## Why z-score?

Power Doppler is proportional to blood volume, so a large vessel has a signal (and
fluctuations) hundreds of times larger than the capillaries around it. A decomposition
that minimises the squared reconstruction error of the raw signal would spend all its
components on the few brightest vessels. **z-scoring** each voxel over time (subtract its
mean, divide by its standard deviation) puts every voxel on the same scale: the value says
how unusual the blood volume is *for that voxel*, in units of its own variability.

## Why split into pos and neg?

NMF factorises a **non-negative** matrix into non-negative parts: it describes data as
sums of parts that only add up, which gives sparse, interpretable maps. But z-scores are
negative half of the time, and decreases of blood volume (**deactivations**) matter as
much as increases. So each z-scored voxel becomes two non-negative channels:

* `pos = max(z, 0)`: how far above its mean the voxel is,
* `neg = max(-z, 0)`: how far below.

`z = pos - neg`, so nothing is lost, and a component can load on the `pos` channel of some
voxels and on the `neg` channel of others: an activation here, a deactivation there.
'''),
        params_intro("03_standardization.ipynb"),
        parameters_cell(DATA_PARAMS, PREP_PARAMS, CLEAN_PARAMS),
        code(SETUP),
        code(workspace_cell(nmf=False)),
        md(CLEANING_MEASURED),
        code('''
import pandas as pd

from fusi_nmf.signal import cleaning_recovery_table

measured = cleaning_recovery_table()
print(measured.attrs["note"])
steps = ["+ censor FD > 0.05 mm", "+ censor DVARS > 4 z", "+ detrend order 1",
         "+ high-pass 0.01 Hz", "+ smooth 0.2 mm", "+ global regression", "+ brain mask"]
conditions = ["raw", "registered", *steps, "default chain"]
columns = ["temporal_timecourse_r", "temporal_map_r", "spatial_timecourse_r", "spatial_map_r"]
recovery = measured.loc[conditions, columns]
recovery.columns = pd.MultiIndex.from_tuples(
    [(c.split("_")[0] + " NMF", c.split("_")[1].replace("timecourse", "time course") + " |r|")
     for c in columns], names=["mode", "recovery"])
recovery.round(2)
'''),
        md('''
The same numbers as a figure: one row per condition, one dot per NMF mode, the dotted
lines at the registered recording (the reference every step is added to). Error bars on
the time-course panel are the spread over the three simulated recordings.
'''),
        code('''
fig = fplot.plot_cleaning_effect(
    measured, rows=conditions, title="Recovery of the planted sources, step by step"
)
fig
'''),
        code('''
reg, chain = measured.loc["registered"], measured.loc["default chain"]
for mode in ("temporal", "spatial"):
    tc, mp = f"{mode}_timecourse_r", f"{mode}_map_r"
    print(f"{mode} NMF, registered -> default chain: time-course |r| {reg[tc]:.2f} -> "
          f"{chain[tc]:.2f} ({chain[tc] - reg[tc]:+.2f}), map |r| {reg[mp]:.2f} -> "
          f"{chain[mp]:.2f} ({chain[mp] - reg[mp]:+.2f})")
gains = measured.loc[steps, "temporal_timecourse_r"] - reg["temporal_timecourse_r"]
in_chain = [s for s in steps if s not in ("+ global regression", "+ brain mask")]
print(f"Best single step (temporal time courses): {gains.idxmax()!r}, {gains.max():+.2f}; "
      f"the single-step gains of the chain's steps add up to {gains[in_chain].sum():+.2f}, "
      f"the chain gains {chain['temporal_timecourse_r'] - reg['temporal_timecourse_r']:+.2f}.")
print(f"Frames censored (interpolated) by the default chain: {chain['censored_frames']:.0f} "
      "on average over the simulated recordings measured.")
'''),
        md('''
So on this simulated recording the default chain lifts what NMF recovers after
registration alone far more than any single step, in both modes and for both time
courses and maps: each step removes a different nuisance (drift, surges, speckle noise),
and the sources stand out only once all of them are gone. Two caveats:

* **It was measured on the simulated recording**, whose nuisances were designed to look
  like those of real fUSI data, not on real data (which has no ground truth). On a real
  recording the steps remove the same kinds of nuisance, but how much each one helps is
  not known; check the components with and without a step.
* The table is **not recomputed** by this notebook: it was measured once with the
  default settings (the full table, `cleaning_recovery_table()`, also has other
  settings and partial chains) and is shipped with the package. Its "default chain" also
  used the brain mask, which alone changes nothing here (row `+ brain mask`). Change the
  parameters above to see their effect on the components of the later chapters.

Why these settings and not stronger ones? A 0.03 Hz high-pass scores higher alone on
this simulator, but it also removes slow true activity (the planted events are ~14 s
apart), so the conventional 0.01 Hz is kept. Global-signal regression helps alone too,
but it also removes widespread true activity and can create anticorrelations, so it
stays off by default (`global_regression=True` turns it on).
'''),
        code('''
cleaned = ws.cleaned()
zscored = ws.standardized()
split = ws.split()
print(cleaned.attrs.get("history", ""))
split
'''),
        md('''
## Distributions before and after

Left: every value of the cleaned recording, heavily skewed with a long tail from the large
vessels. Right: the z-scores, centred on 0 with unit variance in every voxel, with the
standard normal density for comparison. Heavier tails than the normal curve are the events
worth decomposing (and a few artefacts).
'''),
        code('''
fig = fplot.plot_distributions(cleaned, zscored, labels=("cleaned Power Doppler", "z-scored"))
fig
'''),
        md('''
After z-scoring, the temporal std image is flat (1 everywhere), and the mean image no
longer shows the vessels: all voxels now have equal weight.
'''),
        code('''
fig = fplot.plot_volume(zscored.std("time"), title="Temporal std after z-scoring")
fig
'''),
        md('''
## The pos/neg split of one voxel

Top: the z-scored signal of the most variable voxel. Below: its two non-negative channels.
Every frame is in exactly one of them (or in neither when z = 0).
'''),
        code('''
fig = fplot.plot_sign_split(split)
fig
'''),
        md('''
## What to try next

* `standardize="psc"` (percent signal change) keeps the relative amplitude of voxels
  instead of equalising their variance.
* `cleaning=False` shows what the drifts and surges do to the components; switch single
  steps off with `high_pass=0`, `smooth_fwhm_mm=0`, ... to see what each one does.
* Next chapter: temporal NMF on these channels.
'''),
    ]


NMF_READING = '''
## How to read the component figure

Each row is one component. The two images are its **maps** on the `pos` and `neg`
channels: where the component raises the signal above the voxel's mean (`pos`) and where
it lowers it below (`neg`), on a shared colour scale so the two compare directly. The line
on the right is its **time course**: when, and how strongly, the component is present. A
component with a bright `pos` map in one region and a bright `neg` map in another is a
pattern in which the first region activates while the second deactivates.

Components are ordered by how much of the data they explain.
'''


SAVE_TEXT = '''
## Saving the fit

With `output_dir` set, the fit is written there: the maps as NIfTI, the time courses as a
TSV table and a `summary.json` with the parameters and fit metrics. This is how chapter 6
uses chapter 4: a papermill **sweep** runs the notebook once per `n_components` and
`random_state` (`python -m fusi_nmf sweep notebooks/04_temporal_nmf.ipynb
-p n_components 4 6 8 -p random_state 0 1`), each run saving into its own folder.
'''


def chapter_04() -> list[nbformat.NotebookNode]:
    return [
        md('''
# 4. Temporal NMF

The split data form a non-negative matrix **X** of shape *time x features*, where the
features are all voxels of both channels (2 x 114 x 80 for the full slice). NMF finds two
non-negative matrices with *k* components such that

**X ≈ W H**, W: *time x k*, H: *k x features*.

In **temporal mode** the rows of X (time points) are the samples: each frame is explained
as a non-negative mix of *k* spatial patterns. H holds the patterns (the **maps**, one per
component, over voxels and channels) and W holds how much of each pattern is present in
every frame (the **time courses**). The maps are the basis; the time courses are the
coordinates of each frame in that basis. This is the classical "parts-based"
reading of NMF: maps are sparse, additive parts of the images.
'''),
        params_intro("04_temporal_nmf.ipynb"),
        parameters_cell(DATA_PARAMS, PREP_PARAMS, CLEAN_PARAMS, NMF_PARAMS, OUTPUT_PARAMS),
        code(SETUP),
        code(workspace_cell(nmf=True)),
        code('''
result = ws.nmf("temporal")
print(f"{result.maps.sizes['component']} components, {result.n_iter} iterations, "
      f"converged: {result.converged}, explained variance {result.explained_variance:.1%}, "
      f"fit in {result.fit_seconds:.1f} s")
'''),
        md(NMF_READING),
        code('''
fig = fplot.plot_components(result.maps, result.timecourses, title="Temporal NMF components")
fig
'''),
        md('''
## How well do the components reconstruct the data?

The **reconstruction error** is the Frobenius norm of the residual X - WH; the
**explained variance** is the fraction of the variance of X that WH captures. Both improve
with every added component, so neither alone says how many components are meaningful:
chapter 6 draws them against `n_components` and discusses the choice.
'''),
        code('''
import pandas as pd

pd.Series(result.summary(), name="temporal NMF").to_frame()
'''),
        md(SAVE_TEXT),
        code(save_cell("temporal")),
        md('''
## What to try next

* Change `n_components`: with too few, distinct regions merge into one component; with too
  many, components split into fragments and noise.
* Set `init="random"` and change `random_state`: NMF has local optima, and from random
  starting points stable components reappear with every seed (with the default
  `init="nndsvda"` the start is computed from the data, so `random_state` changes nothing).
* Next chapter: the same factorisation in spatial mode.
'''),
    ]


def chapter_05() -> list[nbformat.NotebookNode]:
    return [
        md('''
# 5. Spatial NMF

The same matrix can be factorised the other way round. In **spatial mode** NMF is applied
to the transpose, *features x time*: the voxels (of both channels) are the samples, and
each voxel's time series is explained as a non-negative mix of *k* temporal patterns.
Now the *basis* is temporal (the **time courses** are the patterns), and the **maps** are
the coordinates: how much each voxel uses each time course.

Both modes produce maps and time courses, drawn the same way. What differs is which factor
the sparsity and non-negativity act on most directly, and so what the components favour:
temporal mode looks for spatially distinct parts, spatial mode for temporally distinct
patterns. When both modes find the same component, it is a robust feature of the data.
'''),
        params_intro("05_spatial_nmf.ipynb"),
        parameters_cell(DATA_PARAMS, PREP_PARAMS, CLEAN_PARAMS, NMF_PARAMS, OUTPUT_PARAMS),
        code(SETUP),
        code(workspace_cell(nmf=True)),
        code('''
spatial = ws.nmf("spatial")
print(f"{spatial.maps.sizes['component']} components, {spatial.n_iter} iterations, "
      f"converged: {spatial.converged}, explained variance {spatial.explained_variance:.1%}, "
      f"fit in {spatial.fit_seconds:.1f} s")
'''),
        md(NMF_READING),
        code('''
fig = fplot.plot_components(spatial.maps, spatial.timecourses, title="Spatial NMF components")
fig
'''),
        md('''
## Do the two modes agree?

Each spatial component is paired with one temporal component (Hungarian matching on the
correlation of their signed maps `pos - neg`). The heat map shows all correlations, with
the spatial components reordered so that matched pairs lie on the diagonal; the table lists
the pairs, with the correlation of their maps and of their time courses
(`timecourse_r`). A negative correlation means the pair is the same pattern with the roles
of `pos` and `neg` swapped.
'''),
        code('''
from fusi_nmf.metrics import correlation_matrix, match_components

temporal = ws.nmf("temporal")
fig = fplot.plot_component_match(temporal.maps, spatial.maps, labels=("temporal", "spatial"))
fig
'''),
        code('''
signed_t = temporal.maps.sel(sign="pos") - temporal.maps.sel(sign="neg")
signed_s = spatial.maps.sel(sign="pos") - spatial.maps.sel(sign="neg")
pairs = match_components(signed_t, signed_s).rename(columns={"a": "temporal", "b": "spatial"})
tc = correlation_matrix(
    temporal.timecourses.transpose("component", "time").values,
    spatial.timecourses.transpose("component", "time").values,
)
pairs["timecourse_r"] = [tc[a, b] for a, b in zip(pairs["temporal"], pairs["spatial"], strict=True)]
pairs.round(3)
'''),
        md('''
The two fits side by side: reconstruction error, explained variance, iterations and fit
time for the same number of components.
'''),
        code('''
import pandas as pd

pd.DataFrame({"temporal": temporal.summary(), "spatial": spatial.summary()})
'''),
        md(SAVE_TEXT),
        code(save_cell("spatial")),
        md('''
## What to try next

* Components matched with a high map correlation in both modes are the ones to trust
  first; unmatched ones are often noise or mode-specific splits of a larger pattern.
* Compare the explained variance of both modes for the same `n_components`.
* Chapter 6 asks how many components to keep; chapter 7 checks everything against the
  simulated ground truth.
'''),
    ]


SELECTION_PARAMS = '''\
max_iter: int = 500  # maximum number of NMF iterations of every fit
ks: list = [4, 8, 12, 16]  # numbers of components to compare (one sweep run each per seed)
seeds: list = [0, 1, 2]  # NMF seeds per k (random restarts; stability needs at least two)
sweep_jobs: int = 2  # sweep runs in parallel (one kernel and one BLAS thread each)
sweep_notebook: str = ""  # notebook the sweep runs; "" -> the repository's 04_temporal_nmf.ipynb'''


def chapter_06() -> list[nbformat.NotebookNode]:
    return [
        md('''
# 6. How many components?

NMF needs the number of components *k* up front, and nothing in the fit says whether it
was right: with too few components distinct regions merge, with too many real sources
split into fragments and noise gets components of its own. This chapter compares *k*
with four views, each answering a different question:

1. **Fit** (elbow): how much better does the reconstruction get with every added
   component?
2. **Prediction** (bi-cross-validation): does the extra component predict data it has
   not seen, or only fit noise?
3. **Reproducibility**: do the same components come back with another seed?
4. **Truth** (simulated recording only): which *k* recovers the planted sources best?

The fits come from a real **papermill sweep**: chapter 4's notebook is executed once per
`n_components` in `ks` and `random_state` in `seeds`, every run in its own kernel, saving
its maps, time courses and metrics to its own folder. The sweep fixes `init="random"`
(view 3 explains why). The command-line equivalent is

```
python -m fusi_nmf sweep notebooks/04_temporal_nmf.ipynb \\
    -p n_components 4 6 8 -p random_state 0 1 -s init random --jobs 2
```

Runs that already completed are skipped, so re-running this chapter is cheap.
'''),
        params_intro("06_model_selection.ipynb"),
        parameters_cell(DATA_PARAMS, PREP_PARAMS, CLEAN_PARAMS, SELECTION_PARAMS),
        code('''\
%matplotlib inline
import fusi_nmf.plotting as fplot
from fusi_nmf import plotting_selection as msplot
from fusi_nmf import selection
from fusi_nmf.pipeline import Workspace'''),
        code(workspace_cell(nmf=False)),
        md('''
## The sweep

`selection.component_sweep` runs chapter 4 for every (`n_components`, `random_state`)
pair with the data and cleaning parameters of this chapter and the shared `work_dir`, so
every run reuses the cached preprocessing, and with `init="random"`, so every seed
starts NMF from a different random point. Each row below is one executed notebook.
'''),
        code('''
sweep_dir = selection.component_sweep(
    work_dir,
    ks,
    seeds,
    notebook=sweep_notebook or None,
    jobs=sweep_jobs,
    dataset=dataset,
    preset=preset,
    seed=seed,
    data_dir=data_dir,
    registration=registration,
    cleaning=cleaning,
    censor_fd=censor_fd,
    censor_dvars=censor_dvars,
    detrend_order=detrend_order,
    high_pass=high_pass,
    global_regression=global_regression,
    smooth_fwhm_mm=smooth_fwhm_mm,
    brain_mask=brain_mask,
    standardize=standardize,
    max_iter=max_iter,
    init="random",  # seed-dependent starts: what makes stability across seeds informative
)
runs = selection.sweep_table(sweep_dir)
runs[["n_components", "random_state", "reconstruction_err", "explained_variance",
      "n_iter", "converged", "wall_time_s"]].round(4)
'''),
        md('''
## 1. The elbow: fit against k

The reconstruction error falls and the explained variance rises with every component,
by construction: a model with more components can always fit at least as well. What
matters is the shape: a bend (the "elbow") where adding components stops paying off
much. An elbow is a hint, not a test: it is often soft, and noise can always be fit.
'''),
        code('''
by_k = runs.groupby("n_components")[["reconstruction_err", "explained_variance"]].mean()
fig = fplot.plot_error_curve(by_k, title="Temporal NMF fit against the number of components")
fig
'''),
        md('''
## 2. Held-out error: bi-cross-validation

**Bi-cross-validation** (Owen & Perry, 2009) holds out a block of the data matrix and
asks the model to predict it. Frames and voxels are each split in two; NMF is fit on one
quarter `D`; the held-out quarter `A` is predicted from the time courses estimated on
the same frames in the other voxels (`B`) and the maps estimated on the same voxels at
other frames (`C`). Unlike the training error, the held-out error stops falling (or
rises) once extra components only fit noise. Because neighbouring frames and voxels
share noise (slow haemodynamics, spatial smoothing), whole runs of 20 frames and 0.5 mm
tiles are held out together, and both `pos`/`neg` channels of a voxel stay on the same
side.
'''),
        code('''
bicv = selection.bicv_curve(ws.split(), ks, block_frames=20, block_mm=0.5, max_iter=100)
fig = fplot.plot_error_curve(bicv.set_index("n_components")[["heldout_error"]],
                             title="Held-out error (bi-cross-validation)")
fig
'''),
        md('''
## 3. Reproducibility

NMF is a non-convex problem: where the fit ends depends on where it starts. The
default initialisation of chapters 4, 5 and 7, `nndsvda`, computes the starting point
from an SVD of the data: it is **deterministic**, `random_state` does not change it, and
two "seeds" give the same fit (a stability of 1 for every *k*, which says nothing). So
the sweep uses **random restarts** (`init="random"`): every seed starts from a different
random point, and only components that the data really pin down come back each time.

For every *k*, the maps of the runs with different seeds are matched one to one
(Hungarian algorithm on map correlations) and the matched correlations averaged over
components and seed pairs (`stability`; `stability_min` is the worst matched
component). A high value says the components do not depend on the starting point; it
does not prove they are real sources (a reproducible artefact is reproducible too).
Stability is low when *k* is wrong for the data in either direction: with too few
components each one has to mix several sources, and which mixture a fit lands on
depends on where it started; with too many, the surplus components split sources or
fit noise, differently every time (`stability_min`, the worst matched component, shows
those first). With only a few seeds the value is itself noisy: read the trend, not the
second decimal. A harder test, `selection.split_half_stability`, fits the first
and the second half of the recording separately and matches their maps; it costs two
more fits per *k*, so this chapter leaves it out of the default build.
'''),
        code('''
fits = selection.load_sweep_fits(sweep_dir)
stab = selection.stability(fits)
fig = msplot.plot_model_selection(stab, ["stability", "stability_min"],
                                  thresholds={"stability": 0.8},
                                  title="Reproducibility of the maps across seeds")
fig
'''),
        md('''
## 4. Recovery of the planted sources

On the simulated recording the true sources are known: for every *k* (averaged over
seeds), each planted source is matched to one component and the correlation of their
time courses and maps measured (a source left without a component scores 0). On real
data this check is skipped.
'''),
        code('''
truth = ws.ground_truth()
if truth is not None:
    recovery = selection.recovery_by_k(fits, truth)
    n_sources = truth.sizes["source"]
    fig = msplot.plot_model_selection(recovery, ["timecourse_r", "map_r", "timecourse_r_min"],
                                      title=f"Recovery of the {n_sources} planted sources")
    display(fig)
else:
    recovery = None
    print(f"dataset={dataset!r} has no ground truth: source recovery is skipped.")
'''),
        md('''
## The recommendation

The rule (`selection.recommend_k`): the **held-out error** picks the candidates, every *k*
within 5 % of its minimum (shaded below); among them the **smallest** *k* whose maps are
reproducible across random restarts (mean matched correlation of at least 0.8) wins, or
the smallest candidate if none is. The 5 % slack accepts a slightly worse prediction for a
simpler model: the held-out error of NMF on the pos/neg split often keeps creeping down
for many components, because each signed source needs a `pos` and a `neg` part and
small structured residuals (drift, surges) keep paying off a little. Smaller is
preferred because components that predict unseen data no better only split real
sources or fit noise. When the held-out
error is still falling at the largest *k* tried, the recommendation is the edge of the
range: extend `ks` to see where it flattens.
'''),
        code('''
table = (by_k.reset_index()
         .merge(bicv[["n_components", "heldout_error"]], on="n_components")
         .merge(stab, on="n_components"))
if recovery is not None:
    table = table.merge(recovery, on="n_components")
choice = selection.recommend_k(table, tolerance=0.05, stability_threshold=0.8)
columns = ["explained_variance", "heldout_error", "stability"]
columns += ["timecourse_r"] if recovery is not None else []
fig = msplot.plot_model_selection(table, columns, recommended=choice["n_components"],
                                  candidates=choice["candidates"],
                                  thresholds={"stability": 0.8},
                                  title="Choosing the number of components")
display(fig)
table.round(4)
'''),
        code('''
k = choice["n_components"]
print(f"Recommended n_components: {k}")
print(choice["reason"] + ".")
if recovery is not None:
    row = recovery.set_index("n_components").loc[k]
    best = recovery.loc[recovery["timecourse_r"].idxmax()]
    print(f"On this simulated recording, k={k} recovers the planted time courses with mean "
          f"|r| = {row['timecourse_r']:.2f}; the best k in the sweep for that is "
          f"{int(best['n_components'])} (|r| = {best['timecourse_r']:.2f}).")
'''),
        md('''
## What to try next

* Run chapters 4, 5 and 7 with the recommended `n_components`
  (`python -m fusi_nmf book -p n_components K`).
* Extend `ks` (e.g. up to 24) when the held-out error is still falling at the end of the
  range, or add seeds; only the new runs are computed.
* Run the sweep yourself on other data:
  `python -m fusi_nmf sweep notebooks/04_temporal_nmf.ipynb -p n_components 4 8 12
  -p random_state 0 1 -s init random -s dataset nunez-elizalde-2022 --jobs 2`, then
  `selection.sweep_table("sweep")`.
'''),
    ]


def chapter_07() -> list[nbformat.NotebookNode]:
    return [
        md('''
# 7. Validation against the ground truth

The simulated recording was made from known ingredients: source maps and time courses
(some raising, some lowering blood volume), rigid motion, drifts, surges and noise. So each
stage of the pipeline can be checked against the truth:

1. **Motion**: is the estimated motion the true motion?
2. **Sources**: does each planted source come out as one component, with the right map, the
   right time course and the right sign?
3. **Methods**: how does NMF on the pos/neg split compare with the classical alternatives,
   PCA and ICA, on the same input?

On real data there is no ground truth: this chapter then says so and skips these checks.
'''),
        params_intro("07_validation.ipynb"),
        parameters_cell(DATA_PARAMS, PREP_PARAMS, CLEAN_PARAMS, NMF_PARAMS),
        code(SETUP + "\nfrom fusi_nmf.registration import align_to_truth"),
        code(workspace_cell(nmf=True)),
        code('''
truth = ws.ground_truth()
has_truth = truth is not None
if not has_truth:
    print(f"dataset={dataset!r} has no ground truth: the checks below are skipped. "
          "Run this chapter with dataset='simulated' to validate the pipeline.")
'''),
        md('''
## 1. Motion: estimated against true

The table gives, per rigid parameter, the range of the true motion and the error of the
estimate. `rmse_offset_removed` ignores the constant offset between the registration's
reference image and the undisplaced brain: it measures how well the motion *trace* is
recovered, and should be small compared with the voxel size (0.05-0.1 mm).
'''),
        code('''
motion = ws.motion() if has_truth else None
if motion is not None:
    display(fplot.motion_error_table(motion, truth["motion"]).round(4))
    aligned = align_to_truth(motion["parameters"], truth["motion"])
    fig = fplot.plot_motion(motion.assign(parameters=aligned), truth=truth["motion"],
                            title="Estimated (aligned to the truth) and true motion")
    display(fig)
'''),
        md('''
## 2. Source recovery

Each planted source is matched one to one with an NMF component (Hungarian matching on the
mean of the absolute time-course and map correlations). `timecourse_r` and `map_r` are the
absolute correlations of the matched pair (1 = perfect), `best_*` the best over all
components (a best far above the matched value means the source was split or merged);
`sign_consistent` says whether the component's signed contribution (time course times
`pos - neg` map) rises and falls with the source's: a deactivating source should come out
on the `neg` channel.
'''),
        code('''
from fusi_nmf.metrics import source_recovery

if has_truth:
    temporal = ws.nmf("temporal")
    spatial = ws.nmf("spatial")
    recovery = {
        mode: source_recovery(result.timecourses, result.maps, truth)
        for mode, result in (("temporal", temporal), ("spatial", spatial))
    }
    display(recovery["temporal"].round(3))
'''),
        code('''
if has_truth:
    import pandas as pd

    table = pd.DataFrame(
        {f"{mode} NMF": rec["timecourse_r"] for mode, rec in recovery.items()}
    )
    display(fplot.plot_recovery(table, ylabel="|r| time course vs truth",
                                title="Recovery of each planted source"))
'''),
        md('''
The matched components beside the true time courses (dashed, scaled to the estimate):
'''),
        code('''
if has_truth:
    rec = recovery["temporal"]
    rec = rec[rec["component"] >= 0]
    maps = temporal.maps.sel(component=list(rec["component"]))
    courses = temporal.timecourses.sel(component=list(rec["component"]))
    true_courses = truth["source_timecourses"].sel(source=list(rec.index))
    true_courses = true_courses.rename(source="component")
    true_courses = true_courses.assign_coords(component=list(rec["component"]))
    true_courses = true_courses.assign_coords(time=temporal.timecourses["time"])
    labels = [f"source {s} / #{c}" for s, c in zip(rec.index, rec["component"], strict=True)]
    display(fplot.plot_components(maps, courses, truth=true_courses, row_labels=labels,
                                  title="Temporal NMF components matched to the planted sources"))
'''),
        md('''
## 3. NMF beside PCA and ICA

PCA finds orthogonal components ordered by variance; ICA (FastICA) finds statistically
independent time courses. Neither is constrained to be non-negative, so their maps mix
positive and negative loadings freely, and their sign is arbitrary. The comparison uses
the same z-scored input and the same number of components (NMF on its pos/neg split,
PCA and FastICA on the z-scores directly, frames as samples). Each planted source is
paired one to one with a component of each method on the absolute correlation of their
time courses, and the bars show that |r|: blind to the arbitrary sign of PCA and ICA.
'''),
        code('''
import fusi_nmf.metrics as metrics

if has_truth:
    comparison = metrics.compare_decompositions(
        ws.standardized(), truth, n_components=n_components, random_state=random_state
    )
    display(comparison.round(3))
    display(fplot.plot_recovery(comparison, ylabel="|r| time course vs truth",
                                title="NMF, PCA and FastICA: recovery per planted source"))
else:
    print("No ground truth: the NMF/PCA/FastICA comparison is skipped.")
'''),
        md('''
## What to try next

* `registration=False`: the motion no longer gets corrected; watch the source recovery drop
  and motion-like components appear.
* Lower or raise `n_components` around the number of planted sources.
* Change `seed` to check that the conclusions hold on other simulated recordings.
'''),
    ]


CHAPTERS = {
    "01_data.ipynb": chapter_01,
    "02_motion_correction.ipynb": chapter_02,
    "03_standardization.ipynb": chapter_03,
    "04_temporal_nmf.ipynb": chapter_04,
    "05_spatial_nmf.ipynb": chapter_05,
    "06_model_selection.ipynb": chapter_06,
    "07_validation.ipynb": chapter_07,
}


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` (no outputs, exactly one ``parameters`` cell)."""
    nb = new_notebook(cells=CHAPTERS[name]())
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    # Stable cell ids: regenerating a notebook does not change unchanged cells.
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{Path(name).stem}-{i:02d}"
    nbformat.validate(nb)
    return nb


def main(argv: list[str] | None = None) -> int:
    out_dir = Path(argv[0]) if argv else HERE
    for name in CHAPTERS:
        path = out_dir / name
        text = nbformat.writes(build(name)) + "\n"
        if not path.exists() or path.read_text() != text:
            tmp = path.with_suffix(".ipynb.part")
            tmp.write_text(text)
            tmp.replace(path)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
