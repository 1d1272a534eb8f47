"""No silent wrong results from ``run``/:class:`Workspace` (issue 15).

Each test reproduces a case where the pipeline used to succeed with the wrong answer
(or fail late and untidily) on a real NIfTI recording written here.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from fusi_nmf import _atomic
from fusi_nmf._util import file_digest
from fusi_nmf.cli import main
from fusi_nmf.pipeline import PipelineConfig, Workspace

FAST = {"n_components": 3, "max_iter": 100, "registration": False}


def _copy_recording(src: Path, folder: Path, stem: str = "x") -> Path:
    """A copy of ``src`` whose sidecar times frames by RepetitionTime (0.3 s)."""
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / f"{stem}_pwd.nii.gz"
    shutil.copy(src, image)
    meta = json.loads(src.with_name(src.name.replace(".nii.gz", ".json")).read_text())
    meta.pop("VolumeTiming", None)
    meta |= {"RepetitionTime": 0.3, "DelayAfterTrigger": 10.608}
    (folder / f"{stem}_pwd.json").write_text(json.dumps(meta))
    return image


def _write_recording(like: Path, values: np.ndarray, path: Path, level: int = 6) -> Path:
    """A recording with ``like``'s header and sidecar and other voxel values."""
    img = nib.load(like)
    raw = nib.Nifti1Image(values.astype(np.float32), img.affine, img.header).to_bytes()
    path.write_bytes(gzip.compress(raw, compresslevel=level, mtime=0))
    meta = json.loads(like.with_name(like.name.replace(".nii.gz", ".json")).read_text())
    if "VolumeTiming" in meta:  # one onset per frame that is kept
        meta["VolumeTiming"] = meta["VolumeTiming"][: values.shape[-1]]
    path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(meta))
    return path


def _stage_files(work: Path) -> list[str]:
    return sorted(p.name for p in work.glob("*.nc"))


# ------------------------------------------------------------------- cache keys
def test_editing_the_sidecar_recomputes(tmp_path: Path, small_recording_path: Path) -> None:
    image = _copy_recording(small_recording_path, tmp_path / "in")
    first = Workspace(tmp_path / "work", dataset=str(image), progress=False, **FAST)
    np.testing.assert_allclose(first.nmf().timecourses["time"][:2], [10.608, 10.908])

    side = image.with_name("x_pwd.json")
    meta = json.loads(side.read_text())
    meta["RepetitionTime"] = 0.6  # what the loader's "fix whichever one is wrong" asks for
    side.write_text(json.dumps(meta))
    second = Workspace(tmp_path / "work", dataset=str(image), progress=False, **FAST)
    with warnings.catch_warnings():  # header and sidecar may now disagree: it says so
        warnings.simplefilter("ignore")
        result = second.nmf()
    np.testing.assert_allclose(result.timecourses["time"][:2], [10.608, 11.208])
    assert second.cache_hits == []


def test_same_size_same_mtime_replacement_recomputes(
    tmp_path: Path, small_recording_path: Path
) -> None:
    data = np.asarray(nib.load(small_recording_path).dataobj)
    image = _write_recording(small_recording_path, data, tmp_path / "x_pwd.nii.gz", level=0)
    stamp = image.stat().st_mtime_ns
    a = Workspace(tmp_path / "work", dataset=str(image), progress=False, **FAST).nmf()

    # cp -p / rsync -a: other content, same size and modification time
    _write_recording(small_recording_path, data[::-1].copy(), image, level=0)
    os.utime(image, ns=(stamp, stamp))
    assert image.stat().st_size == (tmp_path / "x_pwd.nii.gz").stat().st_size
    ws = Workspace(tmp_path / "work", dataset=str(image), progress=False, **FAST)
    b = ws.nmf()
    assert not np.allclose(a.timecourses.values, b.timecourses.values)
    assert ws.cache_hits == []


def test_fits_do_not_depend_on_the_blas_threads(tmp_path: Path, small_recording_path) -> None:
    results = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads):
            ws = Workspace(
                tmp_path / f"work{threads}",
                progress=False,
                preset="small",
                n_components=4,
                max_iter=200,
            )
            results.append(ws.nmf("spatial"))
    np.testing.assert_array_equal(results[0].maps.values, results[1].maps.values)


# --------------------------------------------------------------- degenerate data
@pytest.mark.parametrize(
    ("value", "message"), [(5.0, "does not change over time"), (0.0, "is all zero")]
)
def test_constant_recording_is_rejected_before_any_work(
    tmp_path: Path, small_recording_path: Path, value: float, message: str, capsys
) -> None:
    shape = nib.load(small_recording_path).shape
    image = _write_recording(small_recording_path, np.full(shape, value), tmp_path / "c_pwd.nii.gz")
    argv = [
        "run",
        "--data",
        str(image),
        "--no-registration",
        "--n-components",
        "3",
        "--work-dir",
        str(tmp_path / "work"),
        "--out",
        str(tmp_path / "out"),
        "--quiet",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "c_pwd.nii.gz" in err
    assert not (tmp_path / "out" / "summary.json").exists()
    assert _stage_files(tmp_path / "work") == []


@pytest.mark.parametrize(
    ("frames", "params", "message"),
    [
        (1, {}, "z-score"),
        (12, {}, "--high-pass 0"),
        (2, {"high_pass": 0, "detrend_order": 1}, "z-score"),
        (3, {"high_pass": 0, "detrend_order": 2}, "--detrend-order 0"),
    ],
)
def test_too_short_recordings_get_the_right_advice(
    tmp_path: Path, small_recording_path: Path, frames: int, params: dict, message: str
) -> None:
    data = np.asarray(nib.load(small_recording_path).dataobj)[..., :frames]
    image = _write_recording(small_recording_path, data, tmp_path / "s_pwd.nii.gz")
    ws = Workspace(
        tmp_path / "work",
        dataset=str(image),
        progress=False,
        **(FAST | {"n_components": 1} | params),
    )
    with pytest.raises(ValueError, match=message) as info:
        ws.nmf()
    assert f"has {frames} frame" in str(info.value)
    assert "censoring threshold" not in str(info.value)
    assert _stage_files(tmp_path / "work") == []


def test_too_many_components_fail_before_registration(
    tmp_path: Path, small_recording_path: Path
) -> None:
    ws = Workspace(tmp_path, progress=False, preset="small", n_components=5000)
    with pytest.raises(ValueError, match=r"n_components=5000 .*<= 300"):
        ws.run(modes=("temporal",))
    assert _stage_files(tmp_path) == [], "stages ran before the check"


def test_json_files_never_hold_nan(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"results\.temporal\.err"):
        _atomic.write_json(tmp_path / "s.json", {"results": {"temporal": {"err": float("nan")}}})
    assert not (tmp_path / "s.json").exists()
    _atomic.write_json(tmp_path / "ok.json", {"x": np.float32(1.5), "y": [np.inf]} | {"y": [1]})
    assert json.loads((tmp_path / "ok.json").read_text()) == {"x": 1.5, "y": [1]}


# ------------------------------------------------------------------------ outputs
def test_out_holds_one_run_with_a_manifest(tmp_path: Path, small_recording_path: Path) -> None:
    out = tmp_path / "out"
    Workspace(tmp_path / "work", progress=False, preset="small", n_components=4, max_iter=100).run(
        modes=("temporal", "spatial"), out_dir=out
    )
    assert {"maps_spatial.nii.gz", "motion.tsv"} <= {p.name for p in out.iterdir()}

    Workspace(tmp_path / "work", progress=False, preset="small", **FAST).run(
        modes=("temporal",), out_dir=out
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True
    expected = {"maps_temporal.nii.gz", "timecourses_temporal.tsv", "summary.json"}
    assert set(manifest["files"]) == expected
    assert {p.name for p in out.iterdir()} == expected | {"manifest.json"}
    for name, info in manifest["files"].items():
        assert file_digest(out / name) == info["sha256"]
    tcs = pd.read_csv(out / "timecourses_temporal.tsv", sep="\t", index_col="time")
    # three components, plus the column that flags frames censoring interpolated
    assert tcs.filter(like="component_").shape[1] == 3
    assert set(tcs.columns) - set(tcs.filter(like="component_").columns) <= {"censored"}


def test_unlisted_outputs_in_out_are_refused_before_work(
    tmp_path: Path, small_recording_path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "maps_spatial.nii.gz").write_bytes(b"from somewhere else")
    ws = Workspace(tmp_path / "work", progress=False, preset="small", **FAST)
    with pytest.raises(ValueError, match=r"maps_spatial\.nii\.gz"):
        ws.run(modes=("temporal",), out_dir=out)
    assert _stage_files(tmp_path / "work") == []
    (out / "maps_spatial.nii.gz").unlink()
    ws.run(modes=("temporal",), out_dir=out)  # other files are not outputs: left alone
    assert (out / "notes.txt").read_text() == "mine"
    assert "notes.txt" not in json.loads((out / "manifest.json").read_text())["files"]


@pytest.mark.parametrize("option", ["--out", "--work-dir"])
def test_an_existing_file_as_output_folder_fails_first(
    tmp_path: Path, small_recording_path: Path, option: str, capsys
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    paths = {"--out": str(tmp_path / "out"), "--work-dir": str(tmp_path / "work")} | {
        option: str(afile)
    }
    argv = ["run", "--preset", "small", "--n-components", "3", "--quiet"]
    assert main(argv + [x for kv in paths.items() for x in kv]) == 2
    err = capsys.readouterr().err
    assert str(afile) in err and "existing file" in err and "Traceback" not in err
    assert not (tmp_path / "work").exists() or _stage_files(tmp_path / "work") == []


def test_partial_files_of_a_killed_run_are_cleaned(tmp_path: Path, small_recording_path) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    dead = work / ".registration-0123.nc.k2j3.part.nc"
    dead.write_bytes(b"half")
    dead_out = out / ".maps_temporal.nii.gz.x1.part.nii.gz"
    dead_out.write_bytes(b"half")
    live = work / ".cleaned-4567.nc.zz9.part.nc"  # another process is writing it
    live.write_bytes(b"busy")
    with open(live, "rb") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        Workspace(work, progress=False, preset="small", **FAST).run(
            modes=("temporal",), out_dir=out
        )
        assert live.exists()
    assert not dead.exists() and not dead_out.exists()


def test_timings_count_stages_recomputed_after_a_bad_checksum(
    tmp_path: Path, small_recording_path: Path
) -> None:
    params = {"preset": "small", "n_components": 3, "max_iter": 100}
    Workspace(tmp_path, progress=False, **params).run(modes=("temporal",))
    entry = next(tmp_path.glob("registration-*.nc"))
    raw = bytearray(entry.read_bytes())
    raw[200] ^= 0xFF
    entry.write_bytes(bytes(raw))
    summary = Workspace(tmp_path, progress=False, **params).run(modes=("temporal",))
    assert "registration" in summary["timings_s"]
    assert "registration" not in summary["cache_hits"]
    assert "nmf_temporal" in summary["cache_hits"]


def test_ctrl_c_ends_with_one_line_and_exit_130(tmp_path: Path, small_recording_path) -> None:
    env = os.environ | {"FUSI_NMF_PROGRESS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fusi_nmf",
            "run",
            "--preset",
            "small",
            "--work-dir",
            str(tmp_path / "work"),
            "--out",
            str(tmp_path / "out"),
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        # a shell's background job ignores SIGINT, and children inherit that: restore it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines = []
    for line in proc.stderr:  # wait (no clock) until the first stage is computing
        lines.append(line)
        if "registration ..." in line:
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stderr.read().splitlines()
    assert proc.wait() == 130
    rest = [line for line in rest if line.strip() and "\r" not in line]
    assert len(rest) == 1 and "interrupted" in rest[0], rest


# --------------------------------------------------------------------------- CLI
def test_run_options_come_from_the_config_fields() -> None:
    import argparse
    import dataclasses

    from fusi_nmf.pipeline import add_config_arguments  # new in issue 14: imported here so
    # the rest of this file still runs (and fails) on the code before it

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    defaults = vars(parser.parse_args([]))
    fields = dataclasses.fields(PipelineConfig)
    assert defaults == {f.name: f.default for f in fields}
    assert PipelineConfig(**defaults) == PipelineConfig()
    args = vars(parser.parse_args(["--no-registration", "--reference", "5", "--brain-mask"]))
    assert (args["registration"], args["reference"], args["brain_mask"]) == (False, 5, True)
    text = parser.format_help()
    assert "--no-cleaning" in text and "--high-pass" in text and "Number of NMF comp" in text
    with pytest.raises(SystemExit):
        parser.parse_args(["--transform", "affine"])
