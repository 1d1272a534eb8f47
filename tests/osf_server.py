"""A small OSF-like HTTP server on 127.0.0.1 for offline tests of the dataset fetcher.

It speaks the part of the OSF API v2 the fetcher uses, over a dict of files:

- ``GET /v2/nodes/<project>/files/osfstorage/?page=N``: paginated JSON listing of
  the storage root (``data`` items with ``attributes.name``/``kind``/``size``/
  ``extra.hashes.md5``, ``relationships.files.links.related.href`` for folders,
  ``links.download`` for files; ``links.next`` to the next page, null at the end).
- ``GET /v2/nodes/<project>/files/osfstorage/<folder id>/?page=N``: a folder listing.
- ``GET /v2/files/<file id>/``: one file's entity (``attributes.size`` and
  ``extra.hashes.md5``, blanked for the ids in ``server.no_md5``), as OSF's
  "Retrieve a file" endpoint.
- ``GET /download/<file id>/``: the file bytes; honours ``Range: bytes=a-`` with
  206 + ``Content-Range`` (416 when out of range), unless ``honor_range=False``.

Requests are counted per path (``server.counts``) and logged with their ``Range``
header (``server.log``). Faults are injected per download path and consumed one
per request (``times=None``: forever):

- ``"500"``/``"503"``/``"403"``/``"404"``: answer with that status;
- ``"truncate"``: send the full ``Content-Length`` but only half the body, then close;
- ``"reset"``: send headers and a third of the body, then reset the connection;
- ``"corrupt"``: serve the body with its first byte flipped (md5 mismatch).

Use as a context manager or ``start()``/``stop()``; ``serve_bids_tree`` builds the
``dataset_index.json`` layout of the fUSI-BIDS conversion.
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def file_id(name: str) -> str:
    """Deterministic 24-hex OSF-like storage id for a name."""
    return hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:24]


class OsfLikeServer:
    """OSF-like server. ``tree``: storage root as nested dicts (folder) / bytes (file)."""

    def __init__(self, tree: dict, project: str = "43skw", page_size: int = 2,
                 honor_range: bool = True):
        self.project = project
        self.page_size = page_size
        self.honor_range = honor_range
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[str, str | None]] = []  # (path with query, Range header)
        self.faults: dict[str, list[str | None]] = {}
        self.no_md5: set[str] = set()  # file ids whose metadata has no md5 and no size
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.set_tree(tree)

    # ------------------------------------------------------------------ content
    def set_tree(self, tree: dict) -> None:
        """Replace the served content (folders: dicts, files: bytes)."""
        self.folders: dict[str, list[tuple[str, str, object]]] = {}
        self.blobs: dict[str, bytes] = {}
        self.folders[""] = self._walk(tree, "")

    def _walk(self, tree: dict, prefix: str) -> list[tuple[str, str, object]]:
        items = []
        for name, value in tree.items():
            fid = file_id(prefix + "/" + name)
            if isinstance(value, dict):
                self.folders[fid] = self._walk(value, prefix + "/" + name)
                items.append((name, "folder", fid))
            else:
                self.blobs[fid] = bytes(value)
                items.append((name, "file", fid))
        return items

    def add_fault(self, path: str, kind: str, times: int | None = 1) -> None:
        """Queue ``kind`` for the next ``times`` requests of ``path`` (None: forever)."""
        with self._lock:
            queue = self.faults.setdefault(path, [])
            if times is None:
                queue.append(None)  # marker: ``kind`` forever
                queue.append(kind)
            else:
                queue.extend([kind] * times)

    def _take_fault(self, path: str) -> str | None:
        with self._lock:
            queue = self.faults.get(path)
            if not queue:
                return None
            if queue[0] is None:
                return queue[1]
            return queue.pop(0)

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return self.url + "/v2"

    @property
    def download_url(self) -> str:
        return self.url + "/download"

    def download_path(self, osf_path: str) -> str:
        return f"/download/{osf_path.strip('/')}/"

    def start(self) -> OsfLikeServer:
        handler = type("Handler", (_Handler,), {"osf": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> OsfLikeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def total_requests(self) -> int:
        return sum(self.counts.values())

    # ------------------------------------------------------------------ JSON
    def listing_page(self, folder: str, page: int) -> dict:
        items = self.folders[folder]
        base = f"{self.api_url}/nodes/{self.project}/files/osfstorage/"
        this = base + (f"{folder}/" if folder else "")
        chunk = items[(page - 1) * self.page_size: page * self.page_size]
        data = []
        for name, kind, fid in chunk:
            entity = {"id": fid, "type": "files",
                      "attributes": {"name": name, "kind": kind, "path": f"/{fid}"
                                     + ("/" if kind == "folder" else "")},
                      "relationships": {}, "links": {}}
            if kind == "folder":
                entity["attributes"].update(size=None, extra={"hashes": {"md5": None}})
                entity["relationships"]["files"] = {
                    "links": {"related": {"href": f"{base}{fid}/", "meta": {}}}}
            else:
                blob = self.blobs[fid]
                entity["attributes"].update(
                    size=len(blob), extra={"hashes": {"md5": hashlib.md5(blob).hexdigest()}})
                entity["links"]["download"] = f"{self.download_url}/{fid}/"
            data.append(entity)
        more = page * self.page_size < len(items)
        return {"data": data,
                "links": {"first": f"{this}?page=1", "prev": None, "last": None,
                          "next": f"{this}?page={page + 1}" if more else None},
                "meta": {"total": len(items), "per_page": self.page_size}}


    def file_entity(self, fid: str) -> dict:
        """``GET /v2/files/<id>/``: the entity of one stored file."""
        blob = self.blobs[fid]
        hidden = fid in self.no_md5
        return {"data": {"id": fid, "type": "files",
                         "attributes": {"name": fid, "kind": "file", "path": f"/{fid}",
                                        "size": None if hidden else len(blob),
                                        "extra": {"hashes": {
                                            "md5": None if hidden else _md5(blob),
                                            "sha256": None if hidden else
                                            hashlib.sha256(blob).hexdigest()}}},
                         "links": {"download": f"{self.download_url}/{fid}/"}}}


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def bids_index(files: dict[str, bytes], null: frozenset[str] = frozenset()) -> dict[str, dict]:
    """The ``dataset_index.json`` content for BIDS-relative ``files``.

    Entries named in ``null`` get ``"md5": null, "size": null`` (the uploader's
    schema allows both).
    """
    return {rel: {"osf_path": f"/{file_id('bids/' + rel)}",
                  "size": None if rel in null else len(data),
                  "md5": None if rel in null else _md5(data)}
            for rel, data in sorted(files.items())}


def bids_tree(files: dict[str, bytes], folder: str = "nunez-elizalde-2022-bids",
              null: frozenset[str] = frozenset()) -> dict:
    """Storage tree: a decoy file and folder, and ``folder`` holding the index.

    The data files themselves are served by id (``/download/<id>/``) as on OSF;
    the folder listing holds a few top-level files and then the index, so the
    client has to follow ``links.next`` to find it.
    """
    index = bids_index(files, null)
    top = {rel: data for rel, data in sorted(files.items()) if "/" not in rel}
    inner = dict(list(top.items())[:3])
    inner["dataset_index.json"] = json.dumps(index, indent=1).encode()
    return {"README.md": b"decoy", "other-project-files": {"x.txt": b"x"}, folder: inner}


class BidsServer(OsfLikeServer):
    """OSF-like server for a BIDS tree laid out like the fUSI-BIDS conversion."""

    def __init__(self, files: dict[str, bytes], null_entries=(), **kwargs):
        self.null_entries = frozenset(null_entries)
        self.set_files(files, _init=True)
        super().__init__(self._tree, **kwargs)

    def set_files(self, files: dict[str, bytes], _init: bool = False) -> None:
        """Serve new content (e.g. an upstream update) with a matching index."""
        self.files = dict(files)
        self.index = bids_index(self.files, self.null_entries)
        self._tree = bids_tree(self.files, null=self.null_entries)
        if not _init:
            self.set_tree(self._tree)

    def set_tree(self, tree: dict) -> None:
        super().set_tree(tree)
        for rel, data in self.files.items():
            self.blobs[self.index[rel]["osf_path"].strip("/")] = data

    def path_of(self, rel: str) -> str:
        """Server path of the download of a BIDS-relative file."""
        return self.download_path(self.index[rel]["osf_path"])

    def metadata_path(self, rel: str) -> str:
        """Server path of the OSF metadata of a BIDS-relative file."""
        return f"/v2/files/{self.index[rel]['osf_path'].strip('/')}/"

    def hide_md5(self, rel: str) -> None:
        """Serve ``rel``'s OSF metadata without md5 (and size)."""
        self.no_md5.add(self.index[rel]["osf_path"].strip("/"))


class _Handler(BaseHTTPRequestHandler):
    osf: OsfLikeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def finish(self) -> None:
        # after an injected reset the socket is gone: nothing left to flush
        try:
            super().finish()
        except OSError:
            pass

    def _send(self, code: int, body: bytes, ctype: str = "application/json",
              headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, code: int) -> None:
        self._send(code, json.dumps({"errors": [{"detail": f"HTTP {code}"}]}).encode())

    def do_GET(self) -> None:
        osf = self.osf
        split = urlsplit(self.path)
        path = split.path
        with osf._lock:
            osf.counts[path] += 1
            osf.log.append((self.path, self.headers.get("Range")))
        fault = osf._take_fault(path)
        if fault and fault.isdigit():
            return self._error(int(fault))
        prefix = f"/v2/nodes/{osf.project}/files/osfstorage/"
        if path.startswith(prefix):
            folder = path[len(prefix):].strip("/")
            if folder not in osf.folders:
                return self._error(404)
            page = int(parse_qs(split.query).get("page", ["1"])[0])
            return self._send(200, json.dumps(osf.listing_page(folder, page)).encode(),
                              "application/vnd.api+json")
        if path.startswith("/v2/files/"):
            fid = path[len("/v2/files/"):].strip("/")
            if fid not in osf.blobs:
                return self._error(404)
            return self._send(200, json.dumps(osf.file_entity(fid)).encode(),
                              "application/vnd.api+json")
        if path.startswith("/download/"):
            fid = path[len("/download/"):].strip("/")
            if fid not in osf.blobs:
                return self._error(404)
            return self._download(osf.blobs[fid], fault)
        return self._error(404)

    def _download(self, blob: bytes, fault: str | None) -> None:
        if fault == "corrupt":
            blob = bytes([blob[0] ^ 0xFF]) + blob[1:]
        start = 0
        rng = self.headers.get("Range")
        if rng and self.osf.honor_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(blob):
                return self._send(416, b"", headers={"Content-Range": f"bytes */{len(blob)}"})
        body = blob[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(blob) - 1}/{len(blob)}")
        self.end_headers()
        if fault == "truncate":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_WR)
            return
        if fault == "reset":
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            time.sleep(0.2)  # let the client read what was sent before the RST
            # SO_LINGER 0: close() sends RST instead of FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
            return
        self.wfile.write(body)
