"""End to end on files in the real dataset's converter conventions (not written by fusi_nmf).

The writer here is independent of the package (plain nibabel + json): NIfTI-1 float32,
array axes (x, y, z, t), qform = diag(0.1, 0.04832, 0.4) mm with origin (-3.95, 2.73008,
1.0) and qform_code 1, sform_code 0, xyzt units mm and s, pixdim[4] = 0, and a sidecar
with ``VolumeTiming`` (irregular onsets: jitter, one long interval, a dropped frame) and
the converter's other keys, no ``RepetitionTime``. The recording is loaded, written back,
and run through ``python -m fusi_nmf run`` as a subprocess; a local OSF-like server
serves it as the real dataset for ``run --dataset`` and ``book --dataset``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from osf_server import BidsServer  # tests/ is on sys.path
from scipy import ndimage

from fusi_nmf import _osf
from fusi_nmf.io import load_recording, save_recording

REPO = Path(__file__).resolve().parents[1]
STEM = "sub-CR022_ses-20201011_task-spontaneous_acq-slice03_pwd"
REL = f"sub-CR022/ses-20201011/fusi/{STEM}"
QFORM = np.array([[0.1, 0, 0, -3.95], [0, 0.04832, 0, 2.73008], [0, 0, 0.4, 1.0], [0, 0, 0, 1]])
DROPPED = 150  # index (in the regular acquisition) of the frame the scanner dropped
LONG_AT = 200  # from this frame on, onsets come 87 ms later (the real recording's long interval)

SIDECAR_KEYS = {
    "Manufacturer": "Verasonics",
    "ManufacturersModelName": "Vantage 128",
    "SoftwareVersion": "Alan Urban Technology & Consulting (AUTC)",
    "ProbeManufacturer": "Vermon",
    "ProbeType": "linear",
    "ProbeModel": "L22-XTech",
    "ProbeCentralFrequency": 15000000.0,
    "ProbeNumberOfElements": 128,
    "ProbePitch": 0.1,
    "ProbeFocalWidth": 0.4,
    "ProbeFocalDepth": 8.0,
    "FrameAcquisitionDuration": 0.3,
    "PowerDopplerIntegrationDuration": 0.3,
    "PowerDopplerIntegrationStride": 0.3,
    "ClutterFilterWindowDuration": 0.4,
    "ClutterFilterWindowStride": 0.3,
    "ClutterFilters": ["highpass:15Hz", "svd:remove_first_15_components"],
    "TaskName": "spontaneous",
    "TaskDescription": "Spontaneous activity without explicit visual stimulation.",
    "Depth": [0.0, 5.46016],
    "UltrasoundTransmitFrequency": 15625000.0,
    "CompoundSamplingFrequency": 500.0,
    "PlaneWaveAngles": [-10.0, -7.9, -5.8, -3.7, -1.6, 0.5, 2.6, 4.7, 6.8, 8.9],
    "ProbeVoltage": 25.0,
}


def converter_onsets(n_acquired: int = 301, seed: int = 0) -> np.ndarray:
    """0.3 s frames from 10.608 s, 2 ms jitter, one 87 ms long interval, one dropped frame."""
    rng = np.random.default_rng(seed)
    t = 10.608 + 0.3 * np.arange(n_acquired) + rng.normal(0, 0.002, n_acquired)
    t[0] = 10.608
    t[LONG_AT:] += 0.087
    return np.delete(np.round(t, 3), DROPPED)  # the converter writes ms


def write_converter_recording(nii: Path, onsets: np.ndarray, shape=(40, 48, 1), seed=0) -> None:
    """A Power Doppler movie (vessels, two slow sources, noise) in the converter's conventions."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    base = np.exp(ndimage.gaussian_filter(rng.normal(0, 1, (nx, ny)), 2.0) * 3) * 2000 + 1000
    xx, yy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    blobs = [np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 4.0**2)) for cx, cy in
             [(12, 15), (28, 32)]]
    courses = [0.2 * np.sin(2 * np.pi * 0.05 * onsets), 0.15 * np.cos(2 * np.pi * 0.02 * onsets)]
    gain = 1 + sum(b[..., None] * c[None, None, :] for b, c in zip(blobs, courses, strict=True))
    movie = base[..., None] * gain * rng.gamma(50, 1 / 50, (nx, ny, onsets.size))
    data = movie[:, :, None, :].astype(np.float32)  # (x, y, z=1, t)
    assert data.shape == (nx, ny, nz, onsets.size)

    img = nib.Nifti1Image(data, affine=None)
    img.set_qform(QFORM, code=1)
    img.set_sform(None, code=0)
    hdr = img.header
    hdr.set_data_dtype(np.float32)
    hdr.set_xyzt_units("mm", "sec")
    hdr["pixdim"][4] = 0.0  # no single repetition time
    nib.save(img, nii)
    side = {**SIDECAR_KEYS, "VolumeTiming": [float(t) for t in onsets]}
    nii.with_name(nii.name.replace(".nii.gz", ".json")).write_text(json.dumps(side, indent=1))


@pytest.fixture(scope="module")
def converter_file(tmp_path_factory) -> tuple[Path, np.ndarray]:
    folder = tmp_path_factory.mktemp("converter") / "sub-CR022" / "ses-20201011" / "fusi"
    folder.mkdir(parents=True)
    onsets = converter_onsets()
    nii = folder / f"{STEM}.nii.gz"
    write_converter_recording(nii, onsets)
    return nii, onsets


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, FUSI_NMF_PROGRESS="1", FUSI_NMF_DATA=str(tmp_path / "data"),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    env.pop("FUSI_NMF_DEBUG", None)
    return env | extra


def _run(args: list[str], tmp_path: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fusi_nmf", *args], cwd=tmp_path,
                          env=_env(tmp_path, **extra), capture_output=True, text=True,
                          timeout=1200)


def test_independent_file_has_the_converter_conventions(converter_file):
    nii, onsets = converter_file
    hdr = nib.load(nii).header
    assert int(hdr["sform_code"]) == 0 and int(hdr["qform_code"]) == 1
    assert float(hdr["pixdim"][4]) == 0.0 and hdr.get_data_dtype() == np.float32
    assert hdr.get_xyzt_units() == ("mm", "sec")
    steps = np.diff(onsets)
    assert steps.max() > 0.55 and (np.abs(steps - 0.3) > 0.05).sum() == 2  # drop + long


def test_loader_reads_and_round_trips_converter_files(converter_file, tmp_path):
    nii, onsets = converter_file
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the converter's files load without any warning
        rec = load_recording(nii)
    assert rec.dims == ("time", "z", "y", "x") and rec.dtype == np.float32
    assert rec.shape == (onsets.size, 1, 48, 40)
    np.testing.assert_array_equal(rec.time.values, onsets)
    assert rec.attrs["affine_source"] == "qform"
    np.testing.assert_allclose(rec.x.values[[0, -1]], [-3.95, -3.95 + 39 * 0.1], atol=1e-6)
    np.testing.assert_allclose(rec.y.values[0], 2.73008, atol=1e-5)
    np.testing.assert_allclose(rec.z.values, [1.0], atol=1e-6)
    assert rec.attrs["power_doppler_integration_stride"] == 0.3
    assert rec.attrs["clutter_filters"] == SIDECAR_KEYS["ClutterFilters"]
    raw = np.asarray(nib.load(nii).dataobj)
    np.testing.assert_array_equal(rec.values, raw.transpose(3, 2, 1, 0))

    out = tmp_path / "again" / f"{STEM}.nii.gz"
    save_recording(rec, out)
    hdr = nib.load(out).header
    assert int(hdr["sform_code"]) == 0 and int(hdr["qform_code"]) == 1
    assert float(hdr["pixdim"][4]) == 0.0
    np.testing.assert_allclose(hdr.get_qform(), QFORM, atol=1e-6)
    original = json.loads(nii.with_name(f"{STEM}.json").read_text())
    written = json.loads(out.with_name(f"{STEM}.json").read_text())
    assert written == original  # every key, same names, same values, the onsets exactly
    again = load_recording(out)
    np.testing.assert_array_equal(again.time.values, onsets)
    np.testing.assert_array_equal(again.values, rec.values)


def test_run_on_converter_file_end_to_end_with_defaults(converter_file, tmp_path):
    nii, onsets = converter_file
    proc = _run(["run", "--data", str(nii), "--work-dir", "work", "--out", "results"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # one report line from the timing stage, and the CLI's own summary line
    timing_lines = [ln for ln in proc.stderr.splitlines() if "frame timing:" in ln]
    assert len(timing_lines) == 1 and "resampled (linear) to 301 frames every 0.3 s" in (
        timing_lines[0])
    assert "~1 dropped" in timing_lines[0]
    assert "frame timing: 300 onsets 10.608-" in proc.stdout and "resampled to 301" in proc.stdout
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    ft = summary["frame_timing"]
    assert ft["resampled"] and ft["n_frames_out"] == 301 and ft["dropped_frames"] == 1
    assert ft["onsets_s"] == [float(t) for t in onsets]  # original onsets reported
    assert summary["shape"]["time"] == 301
    tcs = np.genfromtxt(tmp_path / "results" / "timecourses_temporal.tsv", delimiter="\t",
                        names=True)
    t = tcs["time"]
    assert t.size == 301 and t[0] == pytest.approx(10.608)
    np.testing.assert_allclose(np.diff(t), 0.3, atol=2e-5)  # TSV keeps 6 significant digits
    maps = nib.load(tmp_path / "results" / "maps_temporal.nii.gz")
    assert maps.shape[:3] == (40, 48, 1)


def test_switching_resampling_off_fails_naming_the_switch(converter_file, tmp_path):
    nii, _ = converter_file
    proc = _run(["run", "--data", str(nii), "--no-resample-time", "--no-registration",
                 "--work-dir", "work", "--out", "results", "--quiet"], tmp_path)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("error: the 'time' coordinate is not regularly sampled")
    assert "--no-resample-time" in err and "censor" not in err.lower()


# ----------------------------------------------------------------- as the real dataset on OSF
def _dataset_files(nii: Path) -> dict[str, bytes]:
    sidecar = nii.with_name(f"{STEM}.json")
    ses = "sub-CR022/ses-20201011"
    return {
        "dataset_description.json": json.dumps({"Name": "stand-in", "BIDSVersion": "1.10.0",
                                                "License": "CC-BY-4.0"}).encode(),
        "participants.tsv": b"participant_id\nsub-CR022\n",
        "README.md": b"stand-in of the Nunez-Elizalde 2022 fUSI-BIDS dataset\n",
        "sub-CR022/sub-CR022_sessions.tsv": b"session_id\nses-20201011\n",
        f"{REL}.nii.gz": nii.read_bytes(),
        f"{REL}.json": sidecar.read_bytes(),
        f"{ses}/fusi/sub-CR022_ses-20201011_task-spontaneous_acq-slice01_pwd.json": b"{}",
        f"derivatives/allenccf_align/{ses}/fusi/sub-CR022_ses-20201011_space-allen_pwd.nii.gz":
            b"atlas-aligned" * 50,
        f"derivatives/segmentation/{ses}/fusi/sub-CR022_ses-20201011_desc-brain_mask.nii.gz":
            b"mask" * 50,
        f"sourcedata/{ses}/fusi/sub-CR022_ses-20201011_probe_track.mat": b"probe" * 50,
    }


EXPECTED = {"dataset_description.json", "participants.tsv", "README.md",
            "sub-CR022/sub-CR022_sessions.tsv", f"{REL}.nii.gz", f"{REL}.json"}


@pytest.fixture
def osf(converter_file):
    nii, _ = converter_file
    null = {f"{REL}.nii.gz", f"{REL}.json", "README.md"}  # "md5": null, "size": null
    with BidsServer(_dataset_files(nii), page_size=3, null_entries=null) as srv:
        yield srv


def _osf_env(srv) -> dict[str, str]:
    return {_osf.API_ENV_VAR: srv.api_url, _osf.DOWNLOAD_ENV_VAR: srv.download_url,
            _osf.BACKOFF_ENV_VAR: "0.01"}


def _on_disk(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def test_fetch_reference_selection_downloads_exactly_the_expected_files(osf, tmp_path):
    proc = _run(["fetch", "--subjects", "CR022", "--sessions", "20201011", "--tasks",
                 "spontaneous", "--acqs", "slice03", "--no-progress"], tmp_path, **_osf_env(osf))
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "data" / "nunez-elizalde-2022"
    assert proc.stdout.strip() == str(root)
    assert _on_disk(root) == EXPECTED
    for rel in EXPECTED:
        assert (root / rel).read_bytes() == osf.files[rel]
    assert osf.counts[osf.metadata_path(f"{REL}.nii.gz")] == 1  # md5 from the OSF metadata


def test_run_dataset_nunez_elizalde_2022_on_the_stand_in(osf, tmp_path):
    proc = _run(["run", "--dataset", "nunez-elizalde-2022", "--work-dir", "work", "--out",
                 "results", "--mode", "both"], tmp_path, **_osf_env(osf))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "doi:10.1016/j.neuron.2022.02.012" in proc.stderr  # the citation, once
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert summary["recording"].endswith(f"nunez-elizalde-2022/{REL}.nii.gz")
    assert summary["frame_timing"]["resampled"] and summary["shape"]["time"] == 301
    assert set(summary["results"]) == {"temporal", "spatial"}
    assert _on_disk(tmp_path / "data" / "nunez-elizalde-2022") == EXPECTED


@pytest.mark.slow
def test_book_chapters_on_the_real_dataset_stand_in(osf, tmp_path):
    """``book --dataset nunez-elizalde-2022 --notebooks 01 04``: executed pages say real data."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("_config.yml", "_toc.yml", "intro.md"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    proc = _run(["book", "--root", str(root), "--dataset", "nunez-elizalde-2022", "--notebooks",
                 "01", "04", "--work-dir", str(tmp_path / "work"), "--no-build"], tmp_path,
                **_osf_env(osf))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    for chapter in ("01_data", "04_temporal_nmf"):
        executed = json.loads((root / "book" / f"{chapter}.ipynb").read_text())
        text = "".join("".join(out.get("text", "")) for cell in executed["cells"]
                       for out in cell.get("outputs", []))
        # the describe_recording line of the real dataset (the "book" helper adds the cell)
        assert "Data: the real recording sub-CR022 ses-20201011" in text, chapter
        assert "simulated recording" not in text, chapter
