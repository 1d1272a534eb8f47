"""Transfer layer for OSF-hosted data: listings, the dataset index, verified downloads.

What was checked against OSF's public API material (with the ``search`` tool, 2026):

- The OSF API v2 (JSON-API 1.0, ``https://api.osf.io/v2/``; OpenAPI description
  "OSF APIv2 Documentation", developer.osf.io) lists a project's storage at
  ``/v2/nodes/<node>/files/osfstorage/``. A listing is paginated: the body holds
  ``data`` (a page of file entities) and ``links`` with ``next`` (``null`` on the
  last page); clients follow ``links.next`` until it is null (osfclient's
  ``_follow_next`` does exactly this).
- Each entity has ``attributes.name`` and ``attributes.kind`` (``"file"`` or
  ``"folder"``), files also ``attributes.size`` and ``attributes.extra.hashes.md5``.
  A folder's contents are listed at ``relationships.files.links.related.href``
  (osfclient's storage model reads this key); a file's ``links.download`` is the
  anonymous download link, which for OSF storage looks like
  ``https://osf.io/download/<file id>/`` (id: the 24-hex storage id or a 5-char
  guid; trailing slash). That URL redirects to the storage backend; ``requests``
  follows the redirect and keeps the ``Range`` header.
- The index is checked against ``attributes.extra.hashes.md5`` of its listing entry.
- A single file's entity (same attributes) is at ``GET /v2/files/<file id>/``
  ("Retrieve a file" in the OSF APIv2 OpenAPI description); the fetcher reads the md5
  and size there for index entries that have ``"md5": null`` / ``"size": null`` (the
  uploader's schema allows both).
- Not found in the public docs, so not relied upon: whether the backend honours
  ``Range``. The downloader resumes with ``Range`` and falls back to a full restart
  when the server answers 200 instead of 206.
- The ``dataset_index.json`` mapping (BIDS path -> ``{osf_path, size, md5}``) is a
  property of the fUSI-BIDS conversion, not of the OSF API; ``osf_path`` is the OSF
  storage path ``/<file id>``.

Retries: request-level transient failures (connection refused/reset before a
response, 429/5xx answers) are retried by urllib3's ``Retry`` mounted on the
``requests`` session; body-level failures (connection reset or truncated body
mid-stream) are retried here, resuming the partial file with ``Range``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from fusi_nmf._util import file_digest

OSF_API_URL = "https://api.osf.io/v2"
OSF_DOWNLOAD_URL = "https://osf.io/download"
API_ENV_VAR = "FUSI_NMF_OSF_API"
DOWNLOAD_ENV_VAR = "FUSI_NMF_OSF_DOWNLOAD"
BACKOFF_ENV_VAR = "FUSI_NMF_OSF_BACKOFF"

DEFAULT_RETRIES = 5
DEFAULT_BACKOFF = 0.5  # seconds; urllib3 sleeps backoff * 2**(n-1) between tries
CHUNK = 1 << 16
TIMEOUT = (15.0, 60.0)  # connect, read (s)
TRANSIENT_STATUS = (429, 500, 502, 503, 504)
USER_AGENT = "fusi-nmf (https://github.com/; dataset fetcher)"


class DownloadError(RuntimeError):
    """A remote file could not be fetched or did not verify.

    Attributes
    ----------
    path : str
        The dataset-relative path of the file (or a description of the resource).
    url : str
        The URL that failed.
    status : int or None
        The HTTP status, when the server answered.
    """

    def __init__(self, message: str, *, path: str, url: str, status: int | None = None):
        super().__init__(message)
        self.path = path
        self.url = url
        self.status = status


def api_url(value: str | None = None) -> str:
    """Resolve the OSF API base URL: argument > ``$FUSI_NMF_OSF_API`` > api.osf.io/v2."""
    return (value or os.environ.get(API_ENV_VAR) or OSF_API_URL).rstrip("/")


def download_url(value: str | None = None) -> str:
    """Resolve the download base: argument > ``$FUSI_NMF_OSF_DOWNLOAD`` > osf.io/download."""
    return (value or os.environ.get(DOWNLOAD_ENV_VAR) or OSF_DOWNLOAD_URL).rstrip("/")


def resolve_backoff(value: float | None = None) -> float:
    """Resolve the retry backoff factor (s): argument > ``$FUSI_NMF_OSF_BACKOFF`` > 0.5."""
    if value is None:
        env = os.environ.get(BACKOFF_ENV_VAR)
        if env:
            try:
                value = float(env)
            except ValueError as exc:
                raise ValueError(
                    f"${BACKOFF_ENV_VAR}={env!r} is not a number of seconds; unset it "
                    "or set e.g. 0.5."
                ) from exc
        else:
            value = DEFAULT_BACKOFF
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"backoff must be a number of seconds >= 0, got {value!r}.")
    return float(value)


def file_url(osf_path: str, base: str | None = None) -> str:
    """Download URL of an OSF storage file: ``<base>/<file id>/``."""
    file_id = osf_path.strip("/")
    if not file_id or "/" in file_id:
        raise ValueError(f"osf_path {osf_path!r} is not an OSF storage path like '/<file id>'.")
    return f"{download_url(base)}/{file_id}/"


def make_session(retries: int = DEFAULT_RETRIES, backoff: float | None = None) -> requests.Session:
    """A ``requests`` session that retries transient request-level failures.

    Connection errors and 429/5xx answers are retried ``retries`` times with
    exponential backoff (urllib3 ``Retry``); after that the last answer is
    returned (not raised) so callers can name the file and URL in the error.
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, got {retries!r}.")
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        backoff_factor=resolve_backoff(backoff),
        backoff_max=30.0,
        status_forcelist=TRANSIENT_STATUS,
        allowed_methods=frozenset({"GET", "HEAD"}),
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def _get_json(session: requests.Session, url: str, what: str, md5: str | None = None) -> Any:
    """GET ``url`` and parse JSON; check the body's md5 when the listing gave one."""
    try:
        response = session.get(url, timeout=TIMEOUT)
        with response:
            status, reason, body = response.status_code, response.reason, response.content
    except requests.RequestException as exc:
        raise DownloadError(
            f"Could not reach {url} to read {what}: {exc}. Check the network (or "
            f"${API_ENV_VAR}), then retry; cached data stays usable offline.",
            path=what,
            url=url,
        ) from exc
    if status != 200:
        raise DownloadError(
            f"Reading {what} from {url} failed with HTTP {status} {reason}.",
            path=what,
            url=url,
            status=status,
        )
    if md5 and hashlib.md5(body, usedforsecurity=False).hexdigest() != md5.lower():
        raise DownloadError(
            f"{what} from {url} does not match the md5 in its listing ({md5}); retry later.",
            path=what,
            url=url,
        )
    try:
        return json.loads(body)
    except ValueError as exc:
        raise DownloadError(f"{url} ({what}) did not return JSON.", path=what, url=url) from exc


def iter_listing(session: requests.Session, url: str, what: str) -> Iterator[dict]:
    """Yield the entities of an OSF listing, following ``links.next`` page by page."""
    seen: set[str] = set()
    while url:
        if url in seen:  # a server bug must not loop forever
            raise DownloadError(f"Listing {what} loops back to {url}.", path=what, url=url)
        seen.add(url)
        page = _get_json(session, url, what)
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise DownloadError(
                f"{url} ({what}) is not an OSF listing page (no 'data' list).", path=what, url=url
            )
        yield from page["data"]
        url = (page.get("links") or {}).get("next")


def find_entry(
    session: requests.Session, url: str, name: str, kind: str, what: str
) -> dict:
    """Return the entity called ``name`` of ``kind`` (``"file"``/``"folder"``) in a listing."""
    names = []
    for item in iter_listing(session, url, what):
        attrs = item.get("attributes") or {}
        names.append(f"{attrs.get('name')} ({attrs.get('kind')})")
        if attrs.get("name") == name and attrs.get("kind") == kind:
            return item
    raise DownloadError(
        f"No {kind} named {name!r} in {what} ({url}); found: {', '.join(names) or 'nothing'}.",
        path=what,
        url=url,
    )


def fetch_index(
    session: requests.Session, project: str, folder: str, index_name: str, api: str | None = None
) -> dict:
    """Find ``<folder>/<index_name>`` in an OSF project's storage and return its JSON."""
    root = f"{api_url(api)}/nodes/{project}/files/osfstorage/"
    entry = find_entry(session, root, folder, "folder", f"OSF project {project} storage")
    try:
        folder_url = entry["relationships"]["files"]["links"]["related"]["href"]
    except (KeyError, TypeError) as exc:
        raise DownloadError(
            f"Folder {folder!r} in {root} has no relationships.files.links.related.href.",
            path=folder,
            url=root,
        ) from exc
    entry = find_entry(session, folder_url, index_name, "file", f"folder {folder!r}")
    link = (entry.get("links") or {}).get("download")
    if not link:
        raise DownloadError(
            f"{index_name} in {folder_url} has no links.download.", path=index_name, url=folder_url
        )
    hashes = ((entry.get("attributes") or {}).get("extra") or {}).get("hashes") or {}
    md5 = hashes.get("md5") if isinstance(hashes.get("md5"), str) else None
    return _get_json(session, link, f"{folder}/{index_name}", md5=md5)


def file_metadata(
    session: requests.Session, osf_path: str, rel: str, api: str | None = None
) -> tuple[int | None, str | None]:
    """``(size, md5)`` of an OSF storage file from ``GET <api>/files/<file id>/``.

    The file entity's ``attributes.size`` and ``attributes.extra.hashes.md5`` (either may
    be None). A failed lookup (network, HTTP error, not a file entity) gives
    ``(None, None)``: the caller then downloads unverified and says so.
    """
    file_id = osf_path.strip("/")
    url = f"{api_url(api)}/files/{file_id}/"
    try:
        body = _get_json(session, url, f"OSF metadata of {rel}")
    except DownloadError:
        return None, None
    attrs = ((body or {}).get("data") or {}).get("attributes") or {} if isinstance(
        body, dict) else {}
    size = attrs.get("size")
    md5 = ((attrs.get("extra") or {}).get("hashes") or {}).get("md5")
    size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
    md5 = md5.lower() if isinstance(md5, str) and len(md5) == 32 else None
    return size, md5


def md5sum(path: str | os.PathLike) -> str:
    """Hex md5 of a file (OSF's checksum)."""
    return file_digest(path, "md5")


def part_path(dest: Path, md5: str | None) -> Path:
    """Where the partial download of ``dest`` lives (hidden, beside it, tied to its md5).

    The name is deterministic so a later call resumes it; the md5 in the name keeps
    a partial of an older upstream version from being resumed into a new one.
    """
    return dest.with_name(f".{dest.name}.{(md5 or 'unverified')[:12]}.part")


def download(
    session: requests.Session,
    url: str,
    dest: Path,
    *,
    size: int | None,
    md5: str | None,
    rel: str,
    retries: int = DEFAULT_RETRIES,
    backoff: float | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest``: resumable, md5-verified, renamed into place atomically.

    Bytes go to :func:`part_path`; a partial from an earlier interrupted call is
    resumed with ``Range: bytes=<n>-``. A reset or truncated body is retried up to
    ``retries`` times (resuming). The whole file's md5 is checked before the rename;
    a mismatch discards the partial and downloads once more, a second mismatch
    raises. 403/404/410 raise at once. ``dest`` is never a partial file. With
    ``md5=None`` (unknown) the md5 check is skipped; with ``size=None`` the transfer is
    complete when the server's body ends without error.

    Raises
    ------
    DownloadError
        Naming ``rel`` and ``url``.
    """
    backoff = resolve_backoff(backoff)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest, md5)
    on_bytes = on_bytes or (lambda n: None)
    body_failures = 0
    md5_failures = 0
    last_error: BaseException | None = None
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if size is not None and offset > size:  # cannot be ours: start over
            part.unlink()
            on_bytes(-offset)
            offset = 0
        if size is None or offset < size:
            try:
                offset = _stream_into(session, url, part, offset, rel, on_bytes)
            except _BodyError as exc:
                last_error = exc.__cause__ or exc
                body_failures += 1
                if body_failures > retries:
                    raise DownloadError(
                        f"Downloading {rel} from {url} kept failing mid-transfer "
                        f"({body_failures} tries; last: {last_error}). The partial file "
                        f"{part.name} is kept: run the fetch again to resume.",
                        path=rel,
                        url=url,
                    ) from last_error
                time.sleep(backoff * 2 ** (body_failures - 1))
                continue
        if size is not None and offset < size:  # closed cleanly but short: truncated
            body_failures += 1
            if body_failures > retries:
                raise DownloadError(
                    f"Downloading {rel} from {url}: the server sent {offset} of {size} bytes "
                    f"{body_failures} times. Run the fetch again to resume.",
                    path=rel,
                    url=url,
                )
            time.sleep(backoff * 2 ** (body_failures - 1))
            continue
        if md5 is None:  # nothing to verify against (the caller warned)
            os.replace(part, dest)
            return dest
        got = md5sum(part) if offset == size else None
        if got == md5:
            os.replace(part, dest)
            return dest
        md5_failures += 1
        part.unlink()
        on_bytes(-offset)
        if md5_failures >= 2:
            raise DownloadError(
                f"{rel} downloaded from {url} does not match the index: md5 {got} "
                f"({offset} bytes), expected {md5} ({size} bytes), twice in a row. The "
                "upstream file or the index changed: retry later or use refresh=True.",
                path=rel,
                url=url,
            )


class _BodyError(Exception):
    """Transient failure while reading a response body (retry and resume)."""


def _stream_into(
    session: requests.Session,
    url: str,
    part: Path,
    offset: int,
    rel: str,
    on_bytes: Callable[[int], None],
) -> int:
    """One GET appending to ``part`` from ``offset``; return the new size of ``part``."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = session.get(url, headers=headers, stream=True, timeout=TIMEOUT)
    except requests.RequestException as exc:
        # urllib3 already retried the connection; this is final.
        raise DownloadError(
            f"Could not download {rel} from {url}: {exc}. Check the network and retry.",
            path=rel,
            url=url,
        ) from exc
    with response:
        status = response.status_code
        if status in (401, 403, 404, 410):
            raise DownloadError(
                f"Downloading {rel} from {url} failed with HTTP {status} {response.reason}: "
                "the file is not (or no longer) available there. Try refresh=True to "
                "re-read the dataset index.",
                path=rel,
                url=url,
                status=status,
            )
        if status == 416:  # our partial does not fit the remote file: restart
            part.unlink(missing_ok=True)
            on_bytes(-offset)
            raise _BodyError(f"HTTP 416 for Range bytes={offset}-")
        if status not in (200, 206):
            raise DownloadError(
                f"Downloading {rel} from {url} failed with HTTP {status} {response.reason}"
                + (" after retries." if status in TRANSIENT_STATUS else "."),
                path=rel,
                url=url,
                status=status,
            )
        mode = "ab"
        if offset and (
            status == 200
            or not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-")
        ):
            # The server ignored (or mangled) Range: take the full body from 0.
            on_bytes(-offset)
            offset, mode = 0, "wb"
        try:
            with open(part, mode) as fh:
                for chunk in response.iter_content(CHUNK):
                    fh.write(chunk)
                    on_bytes(len(chunk))
        except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError,
                requests.Timeout) as exc:
            raise _BodyError(str(exc)) from exc
    with contextlib.suppress(FileNotFoundError):
        return part.stat().st_size
    return 0
