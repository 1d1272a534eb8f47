"""Figures for the fusi-nmf book: volumes in mm, NMF components, motion, QC, errors.

Every function builds a :class:`matplotlib.figure.Figure` with the object-oriented API
(no pyplot state: nothing is shown or kept alive behind your back) and returns it. In a
notebook, end the cell with the figure (``fig = plot_volume(...); fig``) or call
``display(fig)``; in a script, ``fig.savefig("out.png")``.

Conventions
    * Physical axes: images are drawn with ``x`` (mm) horizontal and ``y`` (mm, depth)
      vertical, increasing downwards, with equal aspect *in mm* (fUSI voxels are
      anisotropic: x 0.1 mm, y 0.04832 mm, so equal aspect in voxels would distort).
    * Explicit white face colour and dark text, so figures read the same on light and
      dark book themes.
    * Deterministic: the same inputs give the same PNG bytes
      (``fig.savefig(buf, format="png", metadata={"Software": None})``).
    * Components are numbered from 1 in labels (the ``component`` coordinate stays
      0-based), legends sit outside the data, and a figure's text form (``repr``, the
      ``text/plain`` a notebook stores beside the image) is its title, which the book
      uses as the image's alt text.

Besides figures, a few small helpers turn pipeline results into tables for the book
(:func:`metadata_table`).

The figures live in modules by topic (``volumes``, ``components``, ``motion``,
``timeseries``, ``recovery``, ``selection``; shared look and image helpers in
``_style``); import them from here.
"""

# the table lives in the evaluation layer; re-exported for the chapters that import it here
from fusi_nmf.metrics import motion_error_table as motion_error_table
from fusi_nmf.plotting._style import TitledFigure
from fusi_nmf.plotting.components import (
    plot_component_match,
    plot_components,
    plot_map_columns,
    plot_similarity,
)
from fusi_nmf.plotting.motion import plot_before_after, plot_motion, plot_registration_qc
from fusi_nmf.plotting.recovery import plot_cleaning_effect, plot_recovery, plot_snr_sweep
from fusi_nmf.plotting.selection import plot_error_curve, plot_model_selection
from fusi_nmf.plotting.timeseries import plot_distributions, plot_sign_split, plot_timeseries
from fusi_nmf.plotting.volumes import metadata_table, plot_volume

__all__ = [
    "TitledFigure",
    "metadata_table",
    "motion_error_table",
    "plot_before_after",
    "plot_cleaning_effect",
    "plot_component_match",
    "plot_components",
    "plot_distributions",
    "plot_error_curve",
    "plot_map_columns",
    "plot_model_selection",
    "plot_motion",
    "plot_recovery",
    "plot_registration_qc",
    "plot_sign_split",
    "plot_similarity",
    "plot_snr_sweep",
    "plot_timeseries",
    "plot_volume",
]
