"""fusi_nmf._util: checksums (and the record of them a Workspace reuses) and temporary
environment variables."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from fusi_nmf._util import file_digest, recorded_digests, temporary_environ


def test_recorded_digests_keep_the_last_sha256_of_each_file(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"old")
    file_digest(f)  # outside a block: nothing recorded anywhere
    with recorded_digests() as seen:
        assert file_digest(f) == hashlib.sha256(b"old").hexdigest()
        f.write_bytes(b"new")  # rewritten and hashed again: the record follows the bytes
        file_digest(f)
        file_digest(f, "md5")  # other algorithms are not recorded
        with recorded_digests() as inner:
            file_digest(f)
    assert seen == {os.path.abspath(f): hashlib.sha256(b"new").hexdigest()}
    assert inner == seen
    with recorded_digests() as fresh:
        pass
    assert fresh == {}


def test_temporary_environ_sets_unsets_and_restores(monkeypatch) -> None:
    monkeypatch.setenv("FUSI_NMF_T_SET", "before")
    monkeypatch.delenv("FUSI_NMF_T_UNSET", raising=False)
    with pytest.raises(RuntimeError), temporary_environ(
        FUSI_NMF_T_SET=None, FUSI_NMF_T_UNSET="inside"
    ):
        assert "FUSI_NMF_T_SET" not in os.environ
        assert os.environ["FUSI_NMF_T_UNSET"] == "inside"
        raise RuntimeError  # restored on the way out of an error too
    assert os.environ["FUSI_NMF_T_SET"] == "before"
    assert "FUSI_NMF_T_UNSET" not in os.environ
