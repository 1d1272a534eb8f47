"""Tests for fusi_nmf.io: real NIfTI files written with nibabel in tmp_path."""

from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pytest
import xarray as xr

from fusi_nmf.io import (
    load_nifti,
    load_recording,
    save_nifti,
    save_recording,
    sidecar_path,
    snake_to_bids,
    to_snake_case,
)

SHAPE_XYZT = (4, 5, 2, 6)  # (x, y, z, time) as stored in the file
AFFINE = np.array(
    [
        [0.1, 0.0, 0.0, 1.5],
        [0.0, 0.04832, 0.0, -2.0],
        [0.0, 0.0, 0.4, 3.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def write_nifti(
    path,
    data=None,
    *,
    affine=AFFINE,
    sform_code=1,
    qform_code=0,
    qform=None,
    pixdim_t=0.3,
    t_unit="sec",
    sidecar=None,
):
    """Write a NIfTI (and optional JSON sidecar) with nibabel the way other tools do."""
    if data is None:
        data = np.arange(np.prod(SHAPE_XYZT), dtype=np.float32).reshape(SHAPE_XYZT) + 1
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=sform_code)
    img.set_qform(affine if qform is None else qform, code=qform_code)
    img.header.set_xyzt_units("mm", t_unit)
    if data.ndim >= 4:
        zooms = list(img.header.get_zooms())
        zooms[3] = pixdim_t
        img.header.set_zooms(zooms)
    nib.save(img, path)
    if sidecar is not None:
        text = sidecar if isinstance(sidecar, str) else json.dumps(sidecar)
        sidecar_path(path).write_text(text)
    return path


def make_recording(n_time=6, nz=2, ny=5, nx=4, seed=0):
    rng = np.random.default_rng(seed)
    values = (rng.random((n_time, nz, ny, nx)) * 1e4).astype(np.float32)
    return xr.DataArray(
        values,
        dims=("time", "z", "y", "x"),
        coords={
            "time": ("time", 10.608 + np.arange(n_time) * 0.3, {"units": "s"}),
            "z": ("z", np.arange(nz) * 0.4, {"units": "mm", "voxdim": 0.4}),
            "y": ("y", np.arange(ny) * 0.04832, {"units": "mm", "voxdim": 0.04832}),
            "x": ("x", np.arange(nx) * 0.1, {"units": "mm", "voxdim": 0.1}),
        },
        name="power_doppler",
        attrs={
            "repetition_time": 0.3,
            "delay_after_trigger": 10.608,
            "task_name": "spontaneous",
            "probe_central_frequency": 15.6,
            "clutter_filters": {"type": "SVD", "cutoff": [20, 200]},
            "plane_wave_angles": [-10, -5, 0, 5, 10],
        },
    )


def without_file_attrs(da):
    da = da.copy()
    for key in ("source_file", "affine", "affine_source", "bids_sidecar_keys"):
        da.attrs.pop(key, None)
    return da


def no_part_files(folder):
    return [p.name for p in folder.iterdir() if ".part" in p.name] == []


# --------------------------------------------------------------------------- round trips


def test_recording_round_trip_is_exact(tmp_path):
    data = make_recording()
    path = save_recording(data, tmp_path / "sub-01_pwd.nii.gz")
    assert path == tmp_path / "sub-01_pwd.nii.gz"
    assert no_part_files(tmp_path)

    # on disk: (x, y, z, time) with scanner affine, mm + s, TR in pixdim[4]
    img = nib.load(path)
    assert img.shape == (4, 5, 2, 6)
    arr = np.asarray(img.dataobj)
    assert arr.dtype == np.float32
    assert arr[3, 1, 0, 5] == data.values[5, 0, 1, 3]
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    assert img.header.get_xyzt_units() == ("mm", "sec")
    assert img.header.get_zooms()[3] == pytest.approx(0.3)

    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar["RepetitionTime"] == 0.3
    assert sidecar["DelayAfterTrigger"] == 10.608
    assert sidecar["TaskName"] == "spontaneous"
    assert sidecar["ClutterFilters"] == {"type": "SVD", "cutoff": [20, 200]}
    assert not {"SourceFile", "Affine", "AffineSource", "source_file"} & set(sidecar)

    loaded = load_recording(path)
    assert loaded.dims == ("time", "z", "y", "x")
    assert loaded.dtype == np.float32
    assert loaded.values.flags["C_CONTIGUOUS"]
    xr.testing.assert_identical(without_file_attrs(loaded), data)
    assert loaded.attrs["source_file"] == str(path)
    assert loaded.attrs["affine_source"] == "sform"
    np.testing.assert_array_equal(
        np.reshape(loaded.attrs["affine"], (4, 4)), np.diag([0.1, 0.04832, 0.4, 1.0])
    )

    # second trip: everything, affine included, comes back identical
    again = load_recording(save_recording(loaded, tmp_path / "again_pwd.nii.gz"))
    assert again.attrs["affine"] == loaded.attrs["affine"]
    xr.testing.assert_identical(without_file_attrs(again), without_file_attrs(loaded))


@pytest.mark.parametrize(
    ("dims", "shape"),
    [
        (("component", "sign", "z", "y", "x"), (3, 2, 2, 5, 4)),
        (("component", "z", "y", "x"), (3, 2, 5, 4)),
        (("z", "y", "x"), (2, 5, 4)),
    ],
)
def test_map_round_trip_is_exact(tmp_path, dims, shape):
    rng = np.random.default_rng(1)
    coords = {
        "z": ("z", [0.0, 0.4], {"units": "mm", "voxdim": 0.4}),
        "y": ("y", 1.0 + np.arange(5) * 0.04832, {"units": "mm", "voxdim": 0.04832}),
        "x": ("x", -0.3 + np.arange(4) * 0.1, {"units": "mm", "voxdim": 0.1}),
    }
    if "component" in dims:
        coords["component"] = np.arange(3)
    if "sign" in dims:
        coords["sign"] = ["pos", "neg"]
    maps = xr.DataArray(
        rng.random(shape).astype(np.float32),
        dims=dims,
        coords=coords,
        name="maps",
        attrs={"mode": "temporal", "n_components": 3},
    )
    path = save_nifti(maps, tmp_path / "maps.nii.gz")

    # spatial axes first, then the extra dims in their DataArray order
    img = nib.load(path)
    n_extra = len(dims) - 3
    assert img.shape == (4, 5, 2, *shape[:n_extra])
    arr = np.asarray(img.dataobj)
    if dims[:2] == ("component", "sign"):
        assert arr[1, 2, 0, 2, 1] == maps.values[2, 1, 0, 2, 1]
    np.testing.assert_allclose(img.affine[:3, 3], [-0.3, 1.0, 0.0], atol=1e-6)

    loaded = load_nifti(path)
    assert loaded.attrs["affine_source"] == "sform"
    xr.testing.assert_identical(without_file_attrs(loaded), maps)


def test_foreign_4d_map_gets_generic_dims(tmp_path):
    path = write_nifti(tmp_path / "melodic_IC.nii.gz")
    maps = load_nifti(path)
    assert maps.dims == ("volume", "z", "y", "x")
    np.testing.assert_array_equal(maps["volume"].values, np.arange(6))
    np.testing.assert_allclose(maps["x"].values, 1.5 + np.arange(4) * 0.1)


# --------------------------------------------------------------------------- space


def test_axes_coords_and_units_from_sform(tmp_path):
    path = write_nifti(tmp_path / "rec_pwd.nii.gz", sidecar={"RepetitionTime": 0.3})
    file_values = np.asarray(nib.load(path).dataobj)
    rec = load_recording(path)
    assert rec.name == "power_doppler"
    assert rec.sizes == {"time": 6, "z": 2, "y": 5, "x": 4}
    # file (i, j, k, t) = (x, y, z, time)
    assert rec.values[5, 1, 4, 3] == file_values[3, 4, 1, 5]
    np.testing.assert_array_equal(rec.values, file_values.transpose(3, 2, 1, 0))
    np.testing.assert_allclose(rec["x"].values, 1.5 + np.arange(4) * 0.1)
    np.testing.assert_allclose(rec["y"].values, -2.0 + np.arange(5) * 0.04832)
    np.testing.assert_allclose(rec["z"].values, 3.0 + np.arange(2) * 0.4)
    for dim, size in (("x", 0.1), ("y", 0.04832), ("z", 0.4)):
        assert rec[dim].attrs["units"] == "mm"
        assert rec[dim].attrs["voxdim"] == pytest.approx(size)
    assert rec["time"].attrs["units"] == "s"
    assert rec.attrs["affine_source"] == "sform"


def test_qform_is_used_when_sform_code_is_zero(tmp_path):
    qform = np.diag([0.2, 0.1, 0.5, 1.0])
    qform[:3, 3] = [7.0, 8.0, 9.0]
    path = write_nifti(tmp_path / "q_pwd.nii.gz", sform_code=0, qform_code=1, qform=qform)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no sidecar
        rec = load_recording(path)
    assert rec.attrs["affine_source"] == "qform"
    np.testing.assert_allclose(rec["x"].values, 7.0 + np.arange(4) * 0.2)
    np.testing.assert_allclose(rec["z"].values, 9.0 + np.arange(2) * 0.5)
    assert rec["y"].attrs["voxdim"] == pytest.approx(0.1)


def test_no_affine_warns_and_uses_pixdim_from_zero(tmp_path):
    path = write_nifti(
        tmp_path / "n_pwd.nii.gz", sform_code=0, qform_code=0, sidecar={"RepetitionTime": 0.3}
    )
    with pytest.warns(UserWarning, match=r"n_pwd\.nii\.gz: sform_code and qform_code are both 0"):
        rec = load_recording(path)
    assert rec.attrs["affine_source"] == "pixdim"
    np.testing.assert_allclose(rec["x"].values, np.arange(4) * 0.1)
    np.testing.assert_allclose(rec["y"].values, np.arange(5) * 0.04832)
    np.testing.assert_allclose(rec["z"].values, np.arange(2) * 0.4)


def test_rotated_flipped_affine_is_kept_exactly(tmp_path):
    theta = np.deg2rad(20)
    affine = np.array(
        [
            [0.1 * np.cos(theta), -0.05 * np.sin(theta), 0.0, 3.0],
            [0.1 * np.sin(theta), 0.05 * np.cos(theta), 0.0, -2.0],
            [0.0, 0.0, -0.4, 1.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    path = write_nifti(tmp_path / "rot_pwd.nii.gz", affine=affine, sidecar={"RepetitionTime": 0.3})
    rec = load_recording(path)
    header_affine = nib.load(path).affine
    np.testing.assert_array_equal(np.reshape(rec.attrs["affine"], (4, 4)), header_affine)
    # coords: distance along each voxel axis, increasing, spacing = voxel size
    np.testing.assert_allclose(rec["x"].values, np.arange(4) * 0.1, rtol=1e-6)
    np.testing.assert_allclose(rec["z"].values, np.arange(2) * 0.4, rtol=1e-6)
    assert rec["y"].attrs["voxdim"] == pytest.approx(0.05)

    out = save_recording(rec, tmp_path / "rot_out_pwd.nii.gz")
    np.testing.assert_array_equal(nib.load(out).get_sform(), header_affine)
    np.testing.assert_allclose(nib.load(out).get_qform(), header_affine, atol=1e-6)
    back = load_recording(out)
    assert back.attrs["affine"] == rec.attrs["affine"]
    np.testing.assert_array_equal(back.values, rec.values)


def test_cropped_data_shift_the_affine(tmp_path):
    rec = load_recording(write_nifti(tmp_path / "c_pwd.nii.gz", sidecar={"RepetitionTime": 0.3}))
    crop = rec.isel(x=slice(1, 3), y=slice(2, None), time=slice(2, 5))
    out = load_recording(save_recording(crop, tmp_path / "crop_pwd.nii.gz"))
    np.testing.assert_array_equal(out["x"].values, crop["x"].values)
    np.testing.assert_array_equal(out["y"].values, crop["y"].values)
    np.testing.assert_array_equal(out["time"].values, crop["time"].values)
    affine = np.reshape(out.attrs["affine"], (4, 4))
    np.testing.assert_allclose(affine[:3, 3], [1.5 + 0.1, -2.0 + 2 * 0.04832, 3.0], atol=1e-6)


# --------------------------------------------------------------------------- time


def test_time_coord_with_rounding_noise_round_trips_exactly(tmp_path):
    data = make_recording(n_time=7)
    # linspace onsets differ from 10.608 + i * 0.3 in the last bits
    onsets = np.linspace(10.608, 10.608 + 6 * 0.3, 7)
    assert not np.array_equal(onsets, 10.608 + np.arange(7) * 0.3)
    data = data.assign_coords(time=("time", onsets, {"units": "s"}))
    path = save_recording(data, tmp_path / "lin_pwd.nii.gz")
    assert json.loads(sidecar_path(path).read_text())["RepetitionTime"] == 0.3
    np.testing.assert_array_equal(load_recording(path)["time"].values, onsets)


def test_edited_sidecar_wins_over_stored_coords(tmp_path):
    path = save_recording(make_recording(), tmp_path / "ed_pwd.nii.gz")
    sidecar_path(path).write_text(json.dumps({"RepetitionTime": 0.5}))
    with pytest.warns(UserWarning, match="disagree"):
        rec = load_recording(path)
    np.testing.assert_allclose(rec["time"].values, 0.5 * np.arange(6))


def test_volume_timing_wins_and_round_trips(tmp_path):
    onsets = [0.5, 0.8, 1.2, 1.5, 1.9, 2.1]
    path = write_nifti(tmp_path / "vt_pwd.nii.gz", sidecar={"VolumeTiming": onsets})
    rec = load_recording(path)
    np.testing.assert_array_equal(rec["time"].values, onsets)
    assert rec.attrs["volume_timing"] == onsets
    out = save_recording(rec, tmp_path / "vt_out_pwd.nii.gz")
    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar["VolumeTiming"] == onsets
    assert "RepetitionTime" not in sidecar


def test_repetition_time_with_delay_after_trigger(tmp_path):
    path = write_nifti(
        tmp_path / "rt_pwd.nii.gz",
        sidecar={"RepetitionTime": 0.3, "DelayAfterTrigger": 10.608},
    )
    rec = load_recording(path)
    np.testing.assert_allclose(rec["time"].values, 10.608 + 0.3 * np.arange(6))
    assert rec["time"].values[0] == 10.608


def test_repetition_time_without_delay_starts_at_zero(tmp_path):
    rec = load_recording(write_nifti(tmp_path / "r0_pwd.nii.gz", sidecar={"RepetitionTime": 0.3}))
    np.testing.assert_allclose(rec["time"].values, 0.3 * np.arange(6))


@pytest.mark.parametrize(("pixdim_t", "unit", "expected"), [(0.3, "sec", 0.3), (300, "msec", 0.3)])
def test_pixdim_timing_fallback(tmp_path, pixdim_t, unit, expected):
    path = write_nifti(tmp_path / "p_pwd.nii.gz", pixdim_t=pixdim_t, t_unit=unit)
    with pytest.warns(UserWarning, match=r"p_pwd\.nii\.gz: no JSON sidecar"):
        rec = load_recording(path)
    np.testing.assert_allclose(rec["time"].values, expected * np.arange(6))
    assert rec.attrs["bids_sidecar_keys"] == []


def test_tr_mismatch_warns(tmp_path):
    path = write_nifti(tmp_path / "m_pwd.nii.gz", pixdim_t=0.31, sidecar={"RepetitionTime": 0.3})
    with pytest.warns(UserWarning, match=r"RepetitionTime \(0\.3 s\).*pixdim\[4\] \(0\.31 s\)"):
        rec = load_recording(path)
    np.testing.assert_allclose(rec["time"].values, 0.3 * np.arange(6))  # sidecar wins


def test_tr_agreement_within_tolerance_is_quiet(tmp_path):
    # 0.05 % apart (and ms units): below the 0.1 % threshold
    path = write_nifti(
        tmp_path / "ok_pwd.nii.gz", pixdim_t=300.15, t_unit="msec", sidecar={"RepetitionTime": 0.3}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_recording(path)


def test_sidecar_argument_path_and_mapping(tmp_path):
    path = write_nifti(tmp_path / "s_pwd.nii.gz")
    other = tmp_path / "elsewhere.json"
    other.write_text(json.dumps({"RepetitionTime": 0.3, "TaskName": "rest"}))
    assert load_recording(path, sidecar=other).attrs["task_name"] == "rest"
    rec = load_recording(path, sidecar={"RepetitionTime": 0.3, "TaskName": "dict"})
    assert rec.attrs["task_name"] == "dict"


# --------------------------------------------------------------------------- attrs


def test_sidecar_keys_become_snake_case_and_back(tmp_path):
    sidecar = {
        "RepetitionTime": 0.3,
        "TaskName": "spontaneous",
        "PowerDopplerIntegrationDuration": 0.2,
        "CogPOID": "http://www.cogpo.org/ontologies/CogPOData.owl#COGPO_00001",
        "UltrasoundPulseRepetitionFrequency": 5500,
        "ClutterFilters": {"Type": "SVD", "Cutoff": [20, 200]},
        "SourceFile": "raw.mat",  # clashes with the internal attr name
    }
    path = write_nifti(tmp_path / "k_pwd.nii.gz", sidecar=sidecar)
    rec = load_recording(path)
    assert rec.attrs["repetition_time"] == 0.3
    assert rec.attrs["task_name"] == "spontaneous"
    assert rec.attrs["power_doppler_integration_duration"] == 0.2
    assert rec.attrs["cog_poid"].startswith("http")
    assert rec.attrs["ultrasound_pulse_repetition_frequency"] == 5500
    assert rec.attrs["clutter_filters"] == {"Type": "SVD", "Cutoff": [20, 200]}
    assert rec.attrs["sidecar_source_file"] == "raw.mat"
    assert rec.attrs["source_file"] == str(path)

    out = save_recording(rec, tmp_path / "k_out_pwd.nii.gz")
    assert json.loads(sidecar_path(out).read_text()) == sidecar


def test_case_conversion_helpers():
    assert to_snake_case("RepetitionTime") == "repetition_time"
    assert to_snake_case("DelayAfterTrigger") == "delay_after_trigger"
    assert to_snake_case("CogPOID") == "cog_poid"
    assert to_snake_case("HTTPServer") == "http_server"
    assert snake_to_bids("repetition_time") == "RepetitionTime"
    assert snake_to_bids("cog_poid") == "CogPOID"
    assert snake_to_bids("my_new_key") == "MyNewKey"
    assert snake_to_bids("x_key", {"x_key": "XKey"}) == "XKey"


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope_pwd\.nii\.gz: no such file"):
        load_recording(tmp_path / "nope_pwd.nii.gz")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_nifti(tmp_path / "nope.nii")


def test_not_a_nifti(tmp_path):
    fake = tmp_path / "fake_pwd.nii.gz"
    fake.write_bytes(b"this is not an image")
    with pytest.raises(ValueError, match=r"fake_pwd\.nii\.gz could not be read as NIfTI"):
        load_recording(fake)
    other = tmp_path / "rec.json"
    other.write_text("{}")
    with pytest.raises(ValueError, match=r"rec\.json is not a NIfTI file"):
        load_recording(other)


def test_truncated_file(tmp_path):
    path = write_nifti(tmp_path / "t_pwd.nii", sidecar={"RepetitionTime": 0.3})
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(ValueError, match=r"t_pwd\.nii.*(truncated|could not be read)"):
        load_recording(path)


def test_3d_image_has_no_time_axis(tmp_path):
    path = write_nifti(tmp_path / "vol_pwd.nii.gz", data=np.ones((4, 5, 2), np.float32))
    with pytest.raises(ValueError, match=r"vol_pwd\.nii\.gz is a 3-D image .* no time axis"):
        load_recording(path)


def test_map_file_is_not_a_recording(tmp_path):
    maps = xr.DataArray(np.ones((3, 1, 2, 2), np.float32), dims=("component", "z", "y", "x"))
    path = save_nifti(maps, tmp_path / "maps.nii.gz")
    with pytest.raises(ValueError, match=r"holds a map .*load_nifti"):
        load_recording(path)


def test_nan_and_inf_are_reported_with_count_and_place(tmp_path):
    data = np.ones(SHAPE_XYZT, np.float32)
    data[1, 2, 0, 3] = np.nan
    data[0, 0, 1, 3] = np.nan
    data[2, 4, 1, 5] = np.inf
    path = write_nifti(tmp_path / "nan_pwd.nii.gz", data=data, sidecar={"RepetitionTime": 0.3})
    with pytest.raises(
        ValueError,
        match=(
            r"nan_pwd\.nii\.gz: 3 non-finite voxel values \(2 NaN, 1 Inf\) in 2 of 6 frames "
            r"\(3, 5\); first at time=3, z=0, y=2, x=1"
        ),
    ):
        load_recording(path)


def test_volume_timing_length_must_match_frames(tmp_path):
    path = write_nifti(tmp_path / "vt_pwd.nii.gz", sidecar={"VolumeTiming": [0, 1, 2, 3, 4]})
    with pytest.raises(ValueError, match=r"vt_pwd\.json: VolumeTiming has 5 onsets .* 6 frames"):
        load_recording(path)


@pytest.mark.parametrize(
    ("sidecar", "message"),
    [
        ({"VolumeTiming": [0, 1, 2, 2, 3, 4]}, r"not strictly increasing \(frame 2 at 2 s"),
        ({"VolumeTiming": [0, 1, 2, 3, 5, 4]}, "not strictly increasing"),
        ({"RepetitionTime": -0.3}, "RepetitionTime must be a positive number"),
        ({"RepetitionTime": "fast"}, "RepetitionTime must be a positive number"),
    ],
)
def test_bad_timing(tmp_path, sidecar, message):
    path = write_nifti(tmp_path / "bt_pwd.nii.gz", sidecar=sidecar)
    with pytest.raises(ValueError, match=message):
        load_recording(path)


def test_no_timing_information_at_all(tmp_path):
    path = write_nifti(tmp_path / "nt_pwd.nii.gz", pixdim_t=0.0)
    with (
        pytest.warns(UserWarning, match="no JSON sidecar"),
        pytest.raises(ValueError, match=r"nt_pwd\.nii\.gz: no timing information"),
    ):
        load_recording(path)


def test_malformed_sidecar(tmp_path):
    path = write_nifti(tmp_path / "j_pwd.nii.gz", sidecar='{"RepetitionTime": 0.3,}')
    with pytest.raises(ValueError, match=r"j_pwd\.json is not valid JSON .*line 1"):
        load_recording(path)
    sidecar_path(path).write_text("[0.3]")
    with pytest.raises(ValueError, match=r"j_pwd\.json holds a JSON list, not an object"):
        load_recording(path)


def test_explicit_sidecar_must_exist(tmp_path):
    path = write_nifti(tmp_path / "e_pwd.nii.gz")
    with pytest.raises(FileNotFoundError, match=r"sidecar .*missing\.json .*does not exist"):
        load_recording(path, sidecar=tmp_path / "missing.json")


def test_save_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError, match=r"xarray\.DataArray"):
        save_nifti(np.ones((2, 2, 2)), tmp_path / "a.nii.gz")
    flat = xr.DataArray(np.ones((3, 4)), dims=("y", "x"))
    with pytest.raises(
        ValueError, match=r"a\.nii\.gz: data has dims \('y', 'x'\), missing \['z'\]"
    ):
        save_nifti(flat, tmp_path / "a.nii.gz")
    with pytest.raises(ValueError, match=r"must end in \.nii\.gz"):
        save_nifti(flat.expand_dims("z"), tmp_path / "a.npy")
    maps = xr.DataArray(np.ones((2, 1, 2, 2)), dims=("component", "z", "y", "x"))
    with pytest.raises(ValueError, match="save_recording needs dims"):
        save_recording(maps, tmp_path / "m_pwd.nii.gz")
    uneven = xr.DataArray(np.ones((1, 2, 3)), dims=("z", "y", "x"), coords={"x": [0.0, 0.1, 0.5]})
    with pytest.raises(ValueError, match="coord 'x' is not evenly spaced"):
        save_nifti(uneven, tmp_path / "u.nii.gz")
    assert no_part_files(tmp_path)


def test_failed_write_leaves_no_temp_file_and_keeps_target(tmp_path):
    # the target is an existing folder: the temp file is written, the rename fails
    target = tmp_path / "taken.nii.gz"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(OSError):
        save_nifti(make_recording(), target)
    assert no_part_files(tmp_path)
    assert (target / "keep.txt").read_text() == "old"


# --------------------------------------------------------------------------- converter conventions
def test_irregular_onsets_write_pixdim_zero_and_volume_timing(tmp_path):
    rec = make_recording(n_time=8)
    onsets = 10.608 + 0.3 * np.arange(8) + np.array([0, 2, -1, 3, 0, 87, 86, 88]) * 1e-3
    rec = rec.assign_coords(time=("time", onsets, {"units": "s"}))
    path = save_recording(rec, tmp_path / "irr_pwd.nii.gz")
    hdr = nib.load(path).header
    assert float(hdr["pixdim"][4]) == 0.0  # no single repetition time, as the converter writes
    assert int(hdr["sform_code"]) == 1  # default: sform and qform
    side = json.loads(sidecar_path(path).read_text())
    assert side["VolumeTiming"] == [float(t) for t in onsets]
    assert "RepetitionTime" not in side and "DelayAfterTrigger" not in side
    np.testing.assert_array_equal(load_recording(path).time.values, onsets)
    # a regular recording keeps its frame period in pixdim[4]
    regular = save_recording(make_recording(), tmp_path / "reg_pwd.nii.gz")
    assert float(nib.load(regular).header["pixdim"][4]) == pytest.approx(0.3)


def test_qform_only_is_written_on_request_and_kept_on_round_trip(tmp_path):
    path = save_recording(make_recording(), tmp_path / "q_pwd.nii.gz", qform_only=True)
    hdr = nib.load(path).header
    assert int(hdr["sform_code"]) == 0 and int(hdr["qform_code"]) == 1
    rec = load_recording(path)
    assert rec.attrs["affine_source"] == "qform"
    np.testing.assert_allclose(rec.x.values, np.arange(4) * 0.1, atol=1e-9)
    again = save_recording(rec, tmp_path / "q2_pwd.nii.gz")  # default: as it came
    assert int(nib.load(again).header["sform_code"]) == 0
    forced = save_recording(rec, tmp_path / "q3_pwd.nii.gz", qform_only=False)
    assert int(nib.load(forced).header["sform_code"]) == 1


def test_io_does_not_import_the_fetcher_but_adds_citation_attrs(tmp_path):
    import subprocess
    import sys

    code = ("import sys, fusi_nmf.io; "
            "assert 'fusi_nmf.datasets' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    root = tmp_path / "nunez-elizalde-2022"
    (root / "sub-X").mkdir(parents=True)
    (root / ".fusi_nmf_dataset.json").write_text(json.dumps({"license": "CC BY 4.0"}))
    path = save_recording(make_recording(), root / "sub-X" / "x_pwd.nii.gz")
    assert load_recording(path).attrs["license"] == "CC BY 4.0"
