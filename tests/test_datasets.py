"""Dataset fetcher against a real OSF-like HTTP server on 127.0.0.1 (no mocks).

Fault cases: paginated listings, 500 then 200, 404, persistent wrong md5, wrong md5
once, truncated body once (Range resume), connection reset mid-body (Range resume),
interruption that outlasts the retries then a later call that resumes the partial,
a server that ignores Range, a corrupted cached file, an upstream change + refresh,
offline use with the server stopped, a malformed/hostile index.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json

import nibabel as nib
import numpy as np
import pytest
from osf_server import BidsServer  # tests/ is on sys.path (rootdir-less test modules)

from fusi_nmf import _osf, cli, datasets
from fusi_nmf._osf import DownloadError
from fusi_nmf.datasets import fetch_nunez_elizalde_2022, recording_path, select_files

REC = "sub-CR022/ses-20201011/fusi/sub-CR022_ses-20201011_task-spontaneous_acq-slice03_pwd"


def _nifti_bytes() -> bytes:
    data = np.arange(2 * 1 * 3 * 4, dtype=np.float32).reshape(4, 1, 3, 2)
    img = nib.Nifti1Image(data, np.diag([0.1, 0.4, 0.04832, 1.0]))
    raw = img.to_bytes()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write(raw)
    return buf.getvalue()


def _blob(name: str, n: int = 3000) -> bytes:
    seed = int(hashlib.md5(name.encode()).hexdigest()[:8], 16)
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def make_files() -> dict[str, bytes]:
    files = {
        "dataset_description.json": json.dumps({"Name": "tiny", "BIDSVersion": "1.9.0",
                                                "License": "CC-BY-4.0"}).encode(),
        "participants.tsv": b"participant_id\nsub-CR020\nsub-CR022\n",
        "participants.json": b"{}",
        "README.md": b"tiny fUSI-BIDS tree for tests\n",
        "sub-CR020/sub-CR020_sessions.tsv": b"session_id\nses-20191122\n",
        "sub-CR022/sub-CR022_sessions.tsv": b"session_id\nses-20201011\nses-20201012\n",
    }
    recs = [
        ("CR020", "20191122", "spontaneous", "slice01"),
        ("CR020", "20191122", "kalatsky", "slice01"),
        ("CR022", "20201011", "spontaneous", "slice03"),
        ("CR022", "20201011", "spontaneous", "slice01"),
        ("CR022", "20201012", "kalatsky", "slice03"),
    ]
    for sub, ses, task, acq in recs:
        stem = f"sub-{sub}/ses-{ses}/fusi/sub-{sub}_ses-{ses}_task-{task}_acq-{acq}_pwd"
        files[stem + ".json"] = json.dumps({"TaskName": task}).encode()
        files[stem + ".nii.gz"] = _blob(stem, 200_000 if acq == "slice01" else 3000)
    files[REC + ".nii.gz"] = _nifti_bytes()
    for sub, ses, acq in [("CR020", "20191122", "slice01"), ("CR022", "20201011", "slice03")]:
        files[f"sub-{sub}/ses-{ses}/angio/sub-{sub}_ses-{ses}_acq-{acq}_pwd.nii.gz"] = _blob(
            sub + acq)
    return files


FILES = make_files()
TOP = {"dataset_description.json", "participants.tsv", "participants.json", "README.md"}
BIG = "sub-CR022/ses-20201011/fusi/sub-CR022_ses-20201011_task-spontaneous_acq-slice01_pwd.nii.gz"


@pytest.fixture(autouse=True)
def _quiet_fast(monkeypatch):
    monkeypatch.setenv("FUSI_NMF_PROGRESS", "0")
    monkeypatch.setenv(_osf.BACKOFF_ENV_VAR, "0.01")
    monkeypatch.delenv(_osf.API_ENV_VAR, raising=False)
    monkeypatch.delenv(_osf.DOWNLOAD_ENV_VAR, raising=False)


@pytest.fixture
def server():
    srv = BidsServer(FILES, page_size=2).start()
    yield srv
    srv.stop()


def fetch(server, tmp_path, **kw):
    kw.setdefault("progress", False)
    return fetch_nunez_elizalde_2022(tmp_path, api_url=server.api_url,
                                     download_url=server.download_url, **kw)


def on_disk(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def parts(root) -> list:
    return [p for p in root.rglob("*.part")]


# ----------------------------------------------------------------- selection
def test_selection_downloads_only_matching_files_and_follows_pages(server, tmp_path):
    root = fetch(server, tmp_path, subjects="CR022", acqs="slice03")
    assert root == tmp_path / "nunez-elizalde-2022"
    expected = TOP | {
        "sub-CR022/sub-CR022_sessions.tsv",
        REC + ".nii.gz", REC + ".json",
        "sub-CR022/ses-20201012/fusi/sub-CR022_ses-20201012_task-kalatsky_acq-slice03_pwd.nii.gz",
        "sub-CR022/ses-20201012/fusi/sub-CR022_ses-20201012_task-kalatsky_acq-slice03_pwd.json",
        "sub-CR022/ses-20201011/angio/sub-CR022_ses-20201011_acq-slice03_pwd.nii.gz",
    }
    assert on_disk(root) == expected
    for rel in expected:
        assert (root / rel).read_bytes() == FILES[rel]
    # only the selected files were downloaded, each once, plus the index
    data_paths = {server.path_of(r) for r in FILES}
    downloads = [p for p, _ in server.log if p.startswith("/download/")]
    assert sorted(d for d in downloads if d in data_paths) == sorted(
        server.path_of(r) for r in expected)
    assert len([d for d in downloads if d not in data_paths]) == 1  # dataset_index.json
    # pagination: root listing (3 entries) and the BIDS folder (4 entries) took 2 pages
    listing = [p for p, _ in server.log if p.startswith("/v2/")]
    assert any(p.endswith("?page=2") for p in listing if p.count("/") == 6)
    assert sum("?page=2" in p for p in listing) == 2
    assert nib.load(root / (REC + ".nii.gz")).shape == (4, 1, 3, 2)


def test_str_list_tuple_and_prefixed_labels_select_the_same(server):
    index = server.index
    one = select_files(index, subjects="CR022", tasks="spontaneous")
    assert select_files(index, subjects=["CR022"], tasks=["spontaneous"]) == one
    assert select_files(index, subjects=("sub-CR022",), tasks="task-spontaneous") == one
    both = select_files(index, subjects=["CR020", "CR022"], tasks="spontaneous")
    assert set(one) < set(both)
    assert all("CR020" not in p for p in one)
    assert select_files(index) == index


def test_metadata_files_always_come_and_filters_combine(server, tmp_path):
    root = fetch(server, tmp_path, subjects="CR020", datatypes="angio")
    assert on_disk(root) == TOP | {
        "sub-CR020/sub-CR020_sessions.tsv",
        "sub-CR020/ses-20191122/angio/sub-CR020_ses-20191122_acq-slice01_pwd.nii.gz",
    }
    sel = select_files(server.index, sessions="20201012")
    assert {p for p in sel if "/" in p} == {
        "sub-CR020/sub-CR020_sessions.tsv", "sub-CR022/sub-CR022_sessions.tsv",
        "sub-CR022/ses-20201012/fusi/sub-CR022_ses-20201012_task-kalatsky_acq-slice03_pwd.json",
        "sub-CR022/ses-20201012/fusi/sub-CR022_ses-20201012_task-kalatsky_acq-slice03_pwd.nii.gz",
    }


# ----------------------------------------------------------------- caching / offline / refresh
def test_second_call_makes_no_request_and_works_offline(server, tmp_path):
    root = fetch(server, tmp_path, subjects="CR022", acqs="slice03")
    n = server.total_requests
    assert fetch(server, tmp_path, subjects="CR022", acqs="slice03") == root
    assert server.total_requests == n
    # a subset of what is cached needs no request either
    fetch(server, tmp_path, subjects="CR022", sessions="20201011", acqs="slice03")
    assert server.total_requests == n
    api, dl = server.api_url, server.download_url
    server.stop()
    assert fetch_nunez_elizalde_2022(tmp_path, subjects="CR022", acqs="slice03", api_url=api,
                                     download_url=dl, retries=0, progress=False) == root
    # the index is cached: a new selection fails only on the (unreachable) download
    with pytest.raises(DownloadError, match=r"CR020.*http://127\.0\.0\.1") as err:
        fetch_nunez_elizalde_2022(tmp_path, subjects="CR020", datatypes="angio",
                                  api_url="http://127.0.0.1:9/v2",
                                  download_url="http://127.0.0.1:9/download", retries=0,
                                  progress=False)
    assert "127.0.0.1:9/download/" in str(err.value)


def test_refresh_rereads_index_and_fetches_only_changed_files(server, tmp_path):
    root = fetch(server, tmp_path, subjects="CR022", acqs="slice03")
    changed = dict(FILES)
    changed[REC + ".json"] = b'{"TaskName": "spontaneous", "Version": 2}'
    server.set_files(changed)
    before = server.counts.copy()
    fetch(server, tmp_path, subjects="CR022", acqs="slice03")  # cached index: no request
    assert server.counts == before
    assert (root / (REC + ".json")).read_bytes() == FILES[REC + ".json"]
    fetch(server, tmp_path, subjects="CR022", acqs="slice03", refresh=True)
    assert (root / (REC + ".json")).read_bytes() == changed[REC + ".json"]
    new = server.counts - before
    data_downloads = {p for p in new if p in {server.path_of(r) for r in FILES}}
    assert data_downloads == {server.path_of(REC + ".json")}
    assert any(p.startswith("/v2/") for p in new)


def test_corrupted_cached_file_is_fetched_again(server, tmp_path):
    root = fetch(server, tmp_path, subjects="CR022", acqs="slice03")
    target = root / (REC + ".nii.gz")
    target.write_bytes(b"\0" * len(FILES[REC + ".nii.gz"]))
    before = server.counts.copy()
    fetch(server, tmp_path, subjects="CR022", acqs="slice03")
    assert target.read_bytes() == FILES[REC + ".nii.gz"]
    assert set(server.counts - before) == {server.path_of(REC + ".nii.gz")}


# ----------------------------------------------------------------- faults
def test_500_then_200_is_retried(server, tmp_path):
    path = server.path_of(REC + ".nii.gz")
    server.add_fault(path, "500")
    root = fetch(server, tmp_path, subjects="CR022", acqs="slice03")
    assert (root / (REC + ".nii.gz")).read_bytes() == FILES[REC + ".nii.gz"]
    assert server.counts[path] == 2


def test_listing_503_then_200_is_retried(server, tmp_path):
    path = "/v2/nodes/43skw/files/osfstorage/"
    server.add_fault(path, "503")
    fetch(server, tmp_path, subjects="CR020", datatypes="angio")
    assert server.counts[path] == 3  # 503, page 1, page 2


@pytest.mark.parametrize("fault", ["truncate", "reset"])
def test_mid_stream_failure_once_resumes_with_range(server, tmp_path, fault):
    path = server.path_of(BIG)
    server.add_fault(path, fault)
    root = fetch(server, tmp_path, subjects="CR022", acqs="slice01")
    assert (root / BIG).read_bytes() == FILES[BIG]
    ranges = [r for p, r in server.log if p == path]
    assert len(ranges) == 2 and ranges[0] is None
    if fault == "truncate" or ranges[1] is not None:
        # a FIN delivers what was sent, so the retry resumes; after a RST the kernel may
        # drop unread bytes, and then a full restart (no Range) is also correct
        offset = int(ranges[1].removeprefix("bytes=").rstrip("-"))
        assert 0 < offset < len(FILES[BIG])
    assert parts(root) == []


def test_interrupted_download_leaves_no_final_file_and_later_call_resumes(server, tmp_path):
    path = server.path_of(BIG)
    server.add_fault(path, "truncate", times=2)
    with pytest.raises(DownloadError, match="kept failing") as err:
        fetch(server, tmp_path, subjects="CR022", acqs="slice01", retries=1)
    assert BIG in str(err.value) and path in str(err.value)
    root = tmp_path / "nunez-elizalde-2022"
    assert not (root / BIG).exists()
    (part,) = parts(root)
    assert 0 < part.stat().st_size < len(FILES[BIG])
    assert FILES[BIG].startswith(part.read_bytes())
    done = part.stat().st_size
    fetch(server, tmp_path, subjects="CR022", acqs="slice01")
    assert (root / BIG).read_bytes() == FILES[BIG]
    assert [r for p, r in server.log if p == path][-1] == f"bytes={done}-"
    assert parts(root) == []


def test_server_ignoring_range_restarts_from_zero(tmp_path):
    with BidsServer(FILES, page_size=2, honor_range=False) as srv:
        path = srv.path_of(BIG)
        srv.add_fault(path, "truncate")
        root = fetch(srv, tmp_path, subjects="CR022", acqs="slice01")
        assert (root / BIG).read_bytes() == FILES[BIG]
        assert srv.counts[path] == 2


def test_wrong_md5_once_is_downloaded_again(server, tmp_path):
    path = server.path_of(REC + ".nii.gz")
    server.add_fault(path, "corrupt")
    root = fetch(server, tmp_path, subjects="CR022", acqs="slice03")
    assert (root / (REC + ".nii.gz")).read_bytes() == FILES[REC + ".nii.gz"]
    assert server.counts[path] == 2


def test_persistent_wrong_md5_fails_naming_file_and_url(server, tmp_path):
    path = server.path_of(REC + ".nii.gz")
    server.add_fault(path, "corrupt", times=None)
    with pytest.raises(DownloadError, match="does not match the index") as err:
        fetch(server, tmp_path, subjects="CR022", acqs="slice03")
    msg = str(err.value)
    assert REC + ".nii.gz" in msg and server.url + path in msg
    assert err.value.url == server.url + path
    root = tmp_path / "nunez-elizalde-2022"
    assert not (root / (REC + ".nii.gz")).exists()
    assert parts(root) == []
    assert server.counts[path] == 2


@pytest.mark.parametrize("code", ["404", "403"])
def test_404_403_fail_at_once_naming_file_and_url(server, tmp_path, code):
    path = server.path_of(REC + ".json")
    server.add_fault(path, code, times=None)
    with pytest.raises(DownloadError, match=f"HTTP {code}") as err:
        fetch(server, tmp_path, subjects="CR022", acqs="slice03")
    assert err.value.status == int(code)
    assert REC + ".json" in str(err.value) and server.url + path in str(err.value)
    assert server.counts[path] == 1
    assert not (tmp_path / "nunez-elizalde-2022" / (REC + ".json")).exists()


def test_persistent_500_fails_after_retries(server, tmp_path):
    path = server.path_of(REC + ".json")
    server.add_fault(path, "500", times=None)
    with pytest.raises(DownloadError, match=r"HTTP 500.*after retries"):
        fetch(server, tmp_path, subjects="CR022", acqs="slice03", retries=2)
    assert server.counts[path] == 3


# ----------------------------------------------------------------- errors
def test_selection_that_matches_nothing_lists_valid_values(server, tmp_path):
    with pytest.raises(ValueError, match="No file matches") as err:
        fetch(server, tmp_path, subjects="CR020", sessions="20201011")
    msg = str(err.value)
    for word in ["subjects: CR020, CR022", "sessions: 20191122, 20201011, 20201012",
                 "tasks: kalatsky, spontaneous", "acqs: slice01, slice03"]:
        assert word in msg
    with pytest.raises(ValueError, match=r"subjects=\['CR999'\] not in the dataset.*CR022"):
        fetch(server, tmp_path, subjects=["CR022", "CR999"])
    with pytest.raises(ValueError, match="No file matches"):
        fetch(server, tmp_path, tasks="kalatsky", datatypes="angio")


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"subjects": 22}, TypeError, "subjects must be None, a string or a list"),
        ({"acqs": ["slice03", 3]}, TypeError, "acqs must contain strings"),
        ({"sessions": []}, ValueError, "sessions is empty"),
        ({"refresh": "yes"}, TypeError, "refresh must be True or False"),
        ({"progress": "no"}, TypeError, "progress must be"),
        ({"retries": -1}, ValueError, "retries must be an int"),
        ({"backoff": -1.0}, ValueError, "backoff must be"),
    ],
)
def test_bad_arguments_raise_clear_errors(server, tmp_path, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fetch(server, tmp_path, **kwargs)


def test_bad_types_fail_before_any_request(server, tmp_path):
    with pytest.raises(TypeError):
        fetch(server, tmp_path, subjects={"CR022": 1})
    assert server.total_requests == 0


@pytest.mark.parametrize("bad", [{"../evil": {"osf_path": "/x", "size": 1, "md5": "0" * 32}},
                                 {"a.txt": {"osf_path": "/x", "size": "1", "md5": "0" * 32}},
                                 {"a.txt": {"osf_path": "/x", "size": 1, "md5": "nope"}}, []])
def test_malformed_or_unsafe_index_is_rejected(tmp_path, bad):
    root = tmp_path / "nunez-elizalde-2022"
    root.mkdir()
    (root / datasets.INDEX_CACHE).write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="dataset index"):
        fetch_nunez_elizalde_2022(tmp_path, progress=False, api_url="http://127.0.0.1:9/v2")


def test_missing_folder_or_listing_404_names_the_url(tmp_path):
    with BidsServer(FILES) as srv:
        srv.add_fault("/v2/nodes/43skw/files/osfstorage/", "404", times=None)
        with pytest.raises(DownloadError, match="HTTP 404") as err:
            fetch(srv, tmp_path)
        assert srv.api_url + "/nodes/43skw/files/osfstorage/" in str(err.value)


# ----------------------------------------------------------------- progress, citation, attrs
def test_size_announcement_citation_once_and_attrs(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(datasets, "_citation_shown", False)
    root = fetch(server, tmp_path, subjects="CR022", acqs="slice03", progress=True)
    err = capsys.readouterr().err
    n = len(select_files(server.index, subjects="CR022", acqs="slice03"))
    assert f"Downloading {n} file(s)" in err and "kB" in err
    assert err.count("doi:10.1016/j.neuron.2022.02.012") == 1 and "CC BY 4.0" in err
    fetch(server, tmp_path, subjects="CR022", acqs="slice03", progress=True)
    err = capsys.readouterr().err
    assert "neuron" not in err and "cached" in err
    attrs = datasets.dataset_attrs(root / (REC + ".nii.gz"))
    assert attrs["license"] == "CC BY 4.0" and attrs["paper_doi"] == "10.1016/j.neuron.2022.02.012"
    assert attrs["dataset_url"] == "https://osf.io/43skw/"
    assert datasets.dataset_attrs(tmp_path) == {}


# ----------------------------------------------------------------- recording_path + CLI
def test_recording_path_fetches_one_recording_via_env_urls(server, tmp_path, monkeypatch):
    monkeypatch.setenv(_osf.API_ENV_VAR, server.api_url)
    monkeypatch.setenv(_osf.DOWNLOAD_ENV_VAR, server.download_url)
    path = recording_path("nunez-elizalde-2022", data_dir=tmp_path, progress=False)
    assert path == tmp_path / "nunez-elizalde-2022" / (REC + ".nii.gz")
    assert nib.load(path).get_fdata().sum() == sum(range(24))
    assert on_disk(path.parents[3]) == TOP | {"sub-CR022/sub-CR022_sessions.tsv",
                                              REC + ".nii.gz", REC + ".json"}
    assert recording_path(path) == path
    assert recording_path(str(path)) == path


def test_recording_path_errors(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown dataset 'allen'.*'simulated', "
                                         r"'nunez-elizalde-2022'"):
        recording_path("allen")
    with pytest.raises(FileNotFoundError, match="not an existing file"):
        recording_path(tmp_path / "missing_pwd.nii.gz")
    with pytest.raises(TypeError, match="dataset must be"):
        recording_path(3)


def test_recording_path_simulated(tmp_path):
    path = recording_path("simulated", preset="small", data_dir=tmp_path, progress=False)
    # named as what it is: never the real subject
    assert path.name == "sub-sim01_ses-20201011_task-spontaneous_acq-slice03_pwd.nii.gz"
    assert path.is_file() and "CR022" not in str(path)
    line = datasets.describe_recording("simulated", preset="small", seed=0)
    assert "simulated" in line and "sub-sim01" in line and "not real data" in line
    assert "real recording sub-CR022" in datasets.describe_recording("nunez-elizalde-2022")


def test_cli_fetch(server, tmp_path, capsys):
    args = ["fetch", "--subjects", "CR022", "--acqs", "slice03", "--data-dir", str(tmp_path),
            "--api-url", server.api_url, "--download-url", server.download_url, "--no-progress"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(tmp_path / "nunez-elizalde-2022")
    assert (tmp_path / "nunez-elizalde-2022" / (REC + ".nii.gz")).is_file()
    assert cli.main([*args[:2], "CR999", *args[3:]]) == 2
    assert "CR999" in capsys.readouterr().err


def test_default_cache_dir_comes_from_env(server, tmp_path, monkeypatch):
    monkeypatch.setenv("FUSI_NMF_DATA", str(tmp_path / "env-home"))
    root = fetch_nunez_elizalde_2022(subjects="CR020", datatypes="angio", progress=False,
                                     api_url=server.api_url, download_url=server.download_url)
    assert root == tmp_path / "env-home" / "nunez-elizalde-2022"
    assert (root / "dataset_description.json").is_file()


def test_index_not_matching_its_listing_md5_is_rejected(server, tmp_path):
    # corrupt the index download itself (every time): the listing md5 catches it
    fid = next(f for f, b in server.blobs.items() if b.startswith(b"{\n"))
    server.add_fault(f"/download/{fid}/", "corrupt", times=None)
    with pytest.raises(DownloadError, match="does not match the md5 in its listing"):
        fetch(server, tmp_path)
    assert not (tmp_path / "nunez-elizalde-2022" / datasets.INDEX_CACHE).exists()


def test_parallel_fetches_share_the_cache_safely(server, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        roots = list(pool.map(lambda _: fetch(server, tmp_path, subjects="CR022",
                                              acqs="slice01"), range(2)))
    assert roots[0] == roots[1]
    assert (roots[0] / BIG).read_bytes() == FILES[BIG]
    assert server.counts[server.path_of(BIG)] == 1
    assert parts(roots[0]) == []


# ----------------------------------------------------------------- the dataset as OSF serves it
def real_layout_files() -> dict[str, bytes]:
    """Stand-in with the real tree's extra folders: derivatives and sourcedata under fusi/."""
    files = make_files()
    ses = "sub-CR022/ses-20201011"
    extra = [
        f"derivatives/allenccf_align/{ses}/fusi/sub-CR022_ses-20201011_space-allen_pwd.nii.gz",
        f"derivatives/allenccf_align/{ses}/fusi/sub-CR022_ses-20201011_desc-brain_mask.nii.gz",
        f"derivatives/probe_tracks/{ses}/fusi/sub-CR022_ses-20201011_acq-slice03_probe.json",
        f"derivatives/probe_tracks/{ses}/fusi/sub-CR022_ses-20201011_task-kalatsky_acq-slice03"
        "_probe.json",
        f"sourcedata/{ses}/fusi/sub-CR022_ses-20201011_fusi.mat",
        f"sourcedata/{ses}/fusi/sub-CR022_ses-20201011_task-spontaneous_acq-slice03_raw.mat",
        "derivatives/allenccf_align/dataset_description.json",
        "sourcedata/README",
    ]
    for rel in extra:
        files[rel] = _blob(rel, 500)
    return files


REAL_FILES = real_layout_files()
REF_FILTERS = {"subjects": "CR022", "sessions": "20201011", "tasks": "spontaneous",
               "acqs": "slice03"}
# the recording, its sidecar, the top-level files, the subject-level sessions file, the
# source file labelled with the same task/acq, and the session's slice03 angio scan (not under
# fusi/, no task label: the task/acq rule is for fusi/ folders only)
REF_EXPECTED = TOP | {"sub-CR022/sub-CR022_sessions.tsv", REC + ".nii.gz", REC + ".json",
                      "sourcedata/sub-CR022/ses-20201011/fusi/"
                      "sub-CR022_ses-20201011_task-spontaneous_acq-slice03_raw.mat",
                      "sub-CR022/ses-20201011/angio/sub-CR022_ses-20201011_acq-slice03_pwd.nii.gz"}


def test_task_acq_filters_apply_under_every_fusi_folder():
    index = BidsServer(REAL_FILES).index
    sel = set(select_files(index, **REF_FILTERS))
    assert sel == REF_EXPECTED
    assert not any(p.startswith("derivatives/") for p in sel)
    # without task/acq filters the session's derivatives come along (they carry sub/ses)
    by_session = set(select_files(index, subjects="CR022", sessions="20201011"))
    assert {p for p in by_session if p.startswith("derivatives/")} == {
        p for p in REAL_FILES if p.startswith("derivatives/") and "sub-CR022" in p}
    assert "derivatives/allenccf_align/dataset_description.json" not in by_session


def test_null_md5_size_taken_from_osf_metadata_or_downloaded_unverified(tmp_path, recwarn):
    null = {REC + ".nii.gz", REC + ".json", "participants.json"}
    with BidsServer(REAL_FILES, page_size=3, null_entries=null) as srv:
        assert srv.index[REC + ".nii.gz"] == {"osf_path": srv.index[REC + ".nii.gz"]["osf_path"],
                                              "size": None, "md5": None}
        srv.hide_md5("participants.json")  # neither index nor metadata know its md5
        root = fetch(srv, tmp_path, **REF_FILTERS)
        assert on_disk(root) == REF_EXPECTED
        for rel in REF_EXPECTED:
            assert (root / rel).read_bytes() == REAL_FILES[rel]
        # metadata asked once per null entry; the others are verified from the index
        assert {p for p in srv.counts if p.startswith("/v2/files/")} == {
            srv.metadata_path(r) for r in null}
        cached = json.loads((root / datasets.INDEX_CACHE).read_text())
        assert cached[REC + ".nii.gz"]["md5"] == hashlib.md5(FILES[REC + ".nii.gz"]).hexdigest()
        assert cached["participants.json"]["md5"] is None
        msgs = [str(w.message) for w in recwarn if "unverified" in str(w.message)]
        assert msgs == ["participants.json: neither the dataset index nor the OSF metadata give "
                        "an md5; downloading it unverified."]
        # cached now: no request at all, offline works
        n = srv.total_requests
        fetch(srv, tmp_path, **REF_FILTERS)
        assert srv.total_requests == n
        # a corrupted cached file whose md5 came from the metadata is fetched again
        (root / (REC + ".nii.gz")).write_bytes(b"\0" * len(FILES[REC + ".nii.gz"]))
        fetch(srv, tmp_path, **REF_FILTERS)
        assert (root / (REC + ".nii.gz")).read_bytes() == FILES[REC + ".nii.gz"]


def test_null_md5_with_corrupt_body_fails_after_metadata_md5(tmp_path):
    with BidsServer(REAL_FILES, null_entries={REC + ".json"}) as srv:
        srv.add_fault(srv.path_of(REC + ".json"), "corrupt", times=None)
        with pytest.raises(DownloadError, match="does not match the index"):
            fetch(srv, tmp_path, **REF_FILTERS)


def test_cli_fetch_reference_selection_downloads_exactly_the_expected_files(tmp_path):
    import os
    import subprocess
    import sys

    with BidsServer(REAL_FILES, null_entries={REC + ".nii.gz", "README.md"}) as srv:
        env = dict(os.environ, FUSI_NMF_OSF_API=srv.api_url,
                   FUSI_NMF_OSF_DOWNLOAD=srv.download_url, FUSI_NMF_PROGRESS="0",
                   FUSI_NMF_DATA=str(tmp_path))
        proc = subprocess.run(
            [sys.executable, "-m", "fusi_nmf", "fetch", "--subjects", "CR022", "--sessions",
             "20201011", "--tasks", "spontaneous", "--acqs", "slice03"],
            env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        root = tmp_path / "nunez-elizalde-2022"
        assert proc.stdout.strip() == str(root)
        assert on_disk(root) == REF_EXPECTED
        downloads = {p for p, _ in srv.log if p.startswith("/download/")}
        assert {p for p in downloads if p in {srv.path_of(r) for r in REAL_FILES}} == {
            srv.path_of(r) for r in REF_EXPECTED}
