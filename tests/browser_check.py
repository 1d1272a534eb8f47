"""Check a built Jupyter Book in a real headless browser (Debian's Chromium via Playwright).

The HTML is served over http on 127.0.0.1 (``http.server`` in a thread, free port) and
every page is opened in ``/usr/bin/chromium`` driven by Playwright (no browser download).
For each page we record console errors, uncaught exceptions, failed or 4xx/5xx requests,
and the figures (``<img>``) with their ``naturalWidth``; then we click through the left
sidebar from the root page to every chapter, and save screenshots.

The machine running the checks may be offline, so requests to any host other than the
local server are blocked and recorded. Only MathJax (Sphinx loads it from its CDN on
pages with math) is a legitimate external resource; a blocked request to any other host
is reported as a problem (the book should be self-contained).

Usable as a module (``check_book``) or from the command line::

    python tests/browser_check.py _build/html [--screenshots _build/screenshots]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlparse

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: External hosts the book may legitimately use when online (blocked here, not an error).
ALLOWED_EXTERNAL_HOSTS = frozenset({"cdn.jsdelivr.net"})  # MathJax 3, Sphinx's default
#: Known harmless console messages: sphinx-thebe's script is included twice by
#: sphinx-book-theme, so the second copy re-declares a ``const``.
IGNORED_CONSOLE = (re.compile(r"THEBE_JS_URL"),)
#: Pages Sphinx generates besides the book's own (opened too, but not chapters).
VIEWPORT = {"width": 1366, "height": 900}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass


@contextlib.contextmanager
def serve(directory: str | Path) -> Iterator[str]:
    """Serve ``directory`` over http on 127.0.0.1 (free port); yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class PageReport:
    """What one page did in the browser."""

    path: str
    title: str = ""
    status: int | None = None
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    blocked_external: list[str] = field(default_factory=list)
    images: list[tuple[str, int]] = field(default_factory=list)  # (src, naturalWidth)
    article_images: int = 0
    screenshot: Path | None = None


@dataclass
class BrowserReport:
    """All pages plus the sidebar walk."""

    base_url: str
    pages: dict[str, PageReport] = field(default_factory=dict)
    nav_reached: list[str] = field(default_factory=list)
    nav_missing: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Human-readable list of everything that went wrong (empty: all good)."""
        out = []
        for path, page in self.pages.items():
            if page.status is None or page.status >= 400:
                out.append(f"{path}: HTTP status {page.status}")
            out += [f"{path}: console error: {msg}" for msg in page.console_errors]
            out += [f"{path}: request failed: {req}" for req in page.failed_requests]
            for url in page.blocked_external:
                if urlparse(url).hostname not in ALLOWED_EXTERNAL_HOSTS:
                    out.append(f"{path}: needs an external resource: {url}")
            for src, width in page.images:
                if width <= 0:
                    out.append(f"{path}: image did not load (naturalWidth 0): {src}")
        out += [f"sidebar: no link reaches {name}" for name in self.nav_missing]
        return out


def _is_local(url: str, base_url: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme in {"data", "blob", "about", "chrome", "chrome-extension"}:
        return True
    return urlparse(base_url).netloc == parsed.netloc


def _ignored(message: str) -> bool:
    return any(pattern.search(message) for pattern in IGNORED_CONSOLE)


def _slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", path.removesuffix(".html")) or "index"


_IMAGES_JS = """
() => Array.from(document.images).map(img => [img.currentSrc || img.src, img.naturalWidth])
"""
_IMAGES_DONE_JS = "() => Array.from(document.images).every(img => img.complete)"
_ARTICLE_IMAGES_JS = "() => document.querySelectorAll('article img').length"


def check_book(
    html_dir: str | Path,
    screenshot_dir: str | Path | None = None,
    *,
    chapters: list[str] | None = None,
    chromium: str = CHROMIUM,
    timeout_ms: int = 30_000,
) -> BrowserReport:
    """Open every page of a built book in headless Chromium and report what went wrong.

    Parameters
    ----------
    html_dir : path
        The ``_build/html`` folder.
    screenshot_dir : path, optional
        Where to save one full-page PNG per page (and per sidebar step).
    chapters : list of str, optional
        Page paths (relative to ``html_dir``, e.g. ``"book/01_data.html"``) the left
        sidebar must reach by clicking from the root page; default: every ``.html``
        under ``html_dir/book``.
    chromium : str
        Browser executable (Debian's package).
    timeout_ms : int
        Per-navigation timeout.

    Returns
    -------
    BrowserReport
        ``report.problems()`` is empty when every check passed.
    """
    from playwright.sync_api import sync_playwright

    html_dir = Path(html_dir)
    if not (html_dir / "index.html").is_file():
        raise FileNotFoundError(f"{html_dir / 'index.html'} does not exist: build the book first")
    shots = Path(screenshot_dir) if screenshot_dir is not None else None
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    pages = sorted(
        p.relative_to(html_dir).as_posix()
        for p in html_dir.rglob("*.html")
        if not p.relative_to(html_dir).parts[0].startswith("_")
    )
    if chapters is None:
        chapters = [p for p in pages if p.startswith("book/")]

    with serve(html_dir) as base_url, sync_playwright() as pw:
        report = BrowserReport(base_url=base_url)
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            current: dict[str, PageReport] = {}

            def on_route(route) -> None:
                url = route.request.url
                if _is_local(url, base_url):
                    route.continue_()
                else:  # offline machine: never wait on DNS; record instead
                    current["page"].blocked_external.append(url)
                    route.abort("blockedbyclient")

            context.route("**/*", on_route)
            page = context.new_page()
            page.set_default_timeout(timeout_ms)

            def on_console(msg) -> None:
                if msg.type != "error" or _ignored(msg.text):
                    return
                where = (msg.location or {}).get("url", "")
                if where and not _is_local(where, base_url):
                    return  # the blocked external request itself, reported separately
                if "ERR_BLOCKED_BY_CLIENT" in msg.text:
                    return
                current["page"].console_errors.append(msg.text)

            def on_pageerror(exc) -> None:
                text = str(exc)
                if not _ignored(text):
                    current["page"].console_errors.append(f"uncaught: {text}")

            def on_response(response) -> None:
                if response.status >= 400 and _is_local(response.url, base_url):
                    current["page"].failed_requests.append(f"{response.status} {response.url}")

            def on_failed(request) -> None:
                if _is_local(request.url, base_url):
                    current["page"].failed_requests.append(f"{request.failure} {request.url}")

            page.on("console", on_console)
            page.on("pageerror", on_pageerror)
            page.on("response", on_response)
            page.on("requestfailed", on_failed)

            for path in pages:
                current["page"] = result = PageReport(path=path)
                report.pages[path] = result
                response = page.goto(urljoin(base_url, path), wait_until="load")
                result.status = response.status if response is not None else None
                page.wait_for_function(_IMAGES_DONE_JS)
                result.title = page.title()
                result.images = [(src, int(w)) for src, w in page.evaluate(_IMAGES_JS)]
                result.article_images = int(page.evaluate(_ARTICLE_IMAGES_JS))
                if shots is not None:
                    result.screenshot = shots / f"{_slug(path)}.png"
                    page.screenshot(path=str(result.screenshot), full_page=True)

            # Sidebar walk: from the root page, click each chapter's link in the left nav.
            current["page"] = nav_page = PageReport(path="(sidebar walk)")
            report.pages[nav_page.path] = nav_page
            nav_page.status = 200
            page.goto(urljoin(base_url, "index.html"), wait_until="load")
            # index.html redirects to the root page; wait for the real page's sidebar
            page.wait_for_selector(".bd-sidebar-primary nav a.reference.internal")
            for target in chapters:
                link = page.locator(f'.bd-sidebar-primary nav a[href$="{Path(target).name}"]').first
                if link.count() == 0 or not link.is_visible():
                    report.nav_missing.append(target)
                    continue
                link.click()
                page.wait_for_load_state("load")
                if urlparse(page.url).path.endswith("/" + target):
                    report.nav_reached.append(target)
                else:
                    report.nav_missing.append(f"{target} (landed on {page.url})")
                if shots is not None:
                    page.screenshot(path=str(shots / f"nav_{_slug(target)}.png"))
            context.close()
        finally:
            browser.close()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html_dir", nargs="?", default="_build/html")
    parser.add_argument("--screenshots", default="_build/screenshots")
    args = parser.parse_args(argv)
    report = check_book(args.html_dir, args.screenshots)
    for path, page in report.pages.items():
        print(f"{path:40s} {len(page.images):3d} images  {page.title}")
    print(f"sidebar reached {len(report.nav_reached)} chapter(s)")
    problems = report.problems()
    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
