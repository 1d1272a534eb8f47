"""Check a built Jupyter Book in a real headless browser (Debian's Chromium via Playwright).

The HTML is served over http on 127.0.0.1 (``http.server`` in a thread, free port) and
every page is opened in ``/usr/bin/chromium`` driven by Playwright (no browser download),
at a desktop width (1280 px) and a phone width (390 px). For each page and width we record
console errors (all of them: there is no ignore list), uncaught exceptions, failed or
4xx/5xx requests, the figures (``<img>``) with their ``naturalWidth`` and alt text, and
every wide table that would stick out of the page instead of scrolling in its own box.
Then, at desktop width, we click through the left sidebar from the root page to every
chapter; at phone width we press the menu button and check that the sidebar appears.

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
import tempfile
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
#: Desktop and phone viewports every page is opened at.
VIEWPORTS = {
    "desktop": {"width": 1280, "height": 900},
    "phone": {"width": 390, "height": 844},
}
#: The theme's button that opens the primary sidebar on narrow screens.
MENU_BUTTON = "button.primary-toggle"
SIDEBAR = ".bd-sidebar-primary, #pst-primary-sidebar-modal"


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
    """What one page did in the browser at one width."""

    path: str
    width: str = "desktop"
    title: str = ""
    status: int | None = None
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    blocked_external: list[str] = field(default_factory=list)
    images: list[tuple[str, int, str]] = field(default_factory=list)  # (src, naturalWidth, alt)
    article_images: int = 0
    overflowing: list[str] = field(default_factory=list)  # wide elements that do not scroll
    page_overflow_px: int = 0  # how far the page itself is wider than the viewport
    screenshot: Path | None = None


@dataclass
class BrowserReport:
    """All pages at every width, the sidebar walk and the phone menu."""

    base_url: str
    pages: dict[str, PageReport] = field(default_factory=dict)
    nav_reached: list[str] = field(default_factory=list)
    nav_missing: list[str] = field(default_factory=list)
    menu_checked: bool = False
    menu_problems: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Human-readable list of everything that went wrong (empty: all good)."""
        out = []
        for key, page in self.pages.items():
            if page.status is None or page.status >= 400:
                out.append(f"{key}: HTTP status {page.status}")
            out += [f"{key}: console error: {msg}" for msg in page.console_errors]
            out += [f"{key}: request failed: {req}" for req in page.failed_requests]
            for url in page.blocked_external:
                if urlparse(url).hostname not in ALLOWED_EXTERNAL_HOSTS:
                    out.append(f"{key}: needs an external resource: {url}")
            for src, width, alt in page.images:
                if width <= 0:
                    out.append(f"{key}: image did not load (naturalWidth 0): {src}")
                if _alt_is_path(alt, src):
                    out.append(f"{key}: image alt text is a file name, not a description: {alt}")
            out += [f"{key}: wide content overflows instead of scrolling: {what}"
                    for what in page.overflowing]
            if page.page_overflow_px > 0:
                out.append(f"{key}: the page is {page.page_overflow_px} px wider than the "
                           "screen (horizontal scrolling of the whole page)")
        out += [f"sidebar: no link reaches {name}" for name in self.nav_missing]
        out += [f"phone menu: {problem}" for problem in self.menu_problems]
        return out


def _alt_is_path(alt: str, src: str) -> bool:
    """An alt text that is the image's own file name (what Sphinx writes when none is set)."""
    alt = (alt or "").strip()
    if not alt:
        return False
    name = src.rsplit("/", 1)[-1]
    return alt.endswith(name) or bool(re.fullmatch(r"[\w./-]+\.(png|jpe?g|svg|gif)", alt))


def _is_local(url: str, base_url: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme in {"data", "blob", "about", "chrome", "chrome-extension"}:
        return True
    return urlparse(base_url).netloc == parsed.netloc


def _slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", path.removesuffix(".html")) or "index"


_IMAGES_JS = """
() => Array.from(document.images).map(
    img => [img.currentSrc || img.src, img.naturalWidth, img.getAttribute('alt') || ''])
"""
_IMAGES_DONE_JS = "() => Array.from(document.images).every(img => img.complete)"
_ARTICLE_IMAGES_JS = "() => document.querySelectorAll('article img').length"
# A table (or code/output block) wider than the article must sit in a box that scrolls
# horizontally (overflow-x auto/scroll); otherwise it is cut off or widens the page.
_OVERFLOW_JS = """
() => {
  const article = document.querySelector('article') || document.body;
  if (!article) return [];
  const limit = article.getBoundingClientRect().right + 1;
  const bad = [];
  for (const el of article.querySelectorAll('table, pre, img')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.right <= limit) continue;
    let node = el.parentElement, scrolls = false;
    while (node && node !== article.parentElement) {
      const ox = getComputedStyle(node).overflowX;
      if ((ox === 'auto' || ox === 'scroll') &&
          node.getBoundingClientRect().right <= limit) { scrolls = true; break; }
      node = node.parentElement;
    }
    if (!scrolls) {
      const text = (el.innerText || el.getAttribute('alt') || '').trim().slice(0, 40);
      bad.push(`<${el.tagName.toLowerCase()}> ${Math.round(r.width)} px: ${text}`);
    }
  }
  return bad;
}
"""
_PAGE_OVERFLOW_JS = (
    "() => Math.max(0, document.documentElement.scrollWidth - "
    "document.documentElement.clientWidth)"
)
_SIDEBAR_VISIBLE_JS = """
(selector) => Array.from(document.querySelectorAll(selector)).some(el => {
  const r = el.getBoundingClientRect();
  const style = getComputedStyle(el);
  return style.visibility !== 'hidden' && style.display !== 'none' && r.width > 0 &&
         r.right > 0 && r.left < window.innerWidth;
})
"""


def check_book(
    html_dir: str | Path,
    screenshot_dir: str | Path | None = None,
    *,
    chapters: list[str] | None = None,
    chromium: str = CHROMIUM,
    timeout_ms: int = 30_000,
    widths: tuple[str, ...] = ("desktop", "phone"),
) -> BrowserReport:
    """Open every page of a built book in headless Chromium and report what went wrong.

    Parameters
    ----------
    html_dir : path
        The ``_build/html`` folder.
    screenshot_dir : path, optional
        Where to save one full-page PNG per page and width (and per sidebar step);
        keep it outside the repository (e.g. a temporary folder).
    chapters : list of str, optional
        Page paths (relative to ``html_dir``, e.g. ``"book/01_data.html"``) the left
        sidebar must reach by clicking from the root page; default: every ``.html``
        under ``html_dir/book``.
    chromium : str
        Browser executable (Debian's package).
    timeout_ms : int
        Per-navigation timeout.
    widths : tuple of str
        Keys of :data:`VIEWPORTS` to check every page at.

    Returns
    -------
    BrowserReport
        ``report.problems()`` is empty when every check passed. Pages are keyed
        ``"<path> @<width>"``.
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
            for width in widths:
                context = browser.new_context(viewport=VIEWPORTS[width])
                page = _open_context(context, base_url, timeout_ms)
                current = page.current  # type: ignore[attr-defined]
                for path in pages:
                    current["page"] = result = PageReport(path=path, width=width)
                    report.pages[f"{path} @{width}"] = result
                    response = page.goto(urljoin(base_url, path), wait_until="load")
                    result.status = response.status if response is not None else None
                    page.wait_for_function(_IMAGES_DONE_JS)
                    # every request of the page finished (fonts, deferred scripts): leaving
                    # earlier would abort them and report them as failed
                    page.wait_for_load_state("networkidle")
                    result.title = page.title()
                    result.images = [(src, int(w), alt)
                                     for src, w, alt in page.evaluate(_IMAGES_JS)]
                    result.article_images = int(page.evaluate(_ARTICLE_IMAGES_JS))
                    result.overflowing = list(page.evaluate(_OVERFLOW_JS))
                    result.page_overflow_px = int(page.evaluate(_PAGE_OVERFLOW_JS))
                    if shots is not None:
                        result.screenshot = shots / f"{width}_{_slug(path)}.png"
                        page.screenshot(path=str(result.screenshot), full_page=True)
                if width == "desktop":
                    _walk_sidebar(page, base_url, chapters, report, shots)
                if width == "phone":
                    _check_phone_menu(page, base_url, chapters, report, shots)
                context.close()
        finally:
            browser.close()
    return report


def _open_context(context, base_url: str, timeout_ms: int):
    """A page that records errors, failed and external requests into ``page.current``."""
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
        if msg.type != "error":
            return
        where = (msg.location or {}).get("url", "")
        if where and not _is_local(where, base_url):
            return  # the blocked external request itself, reported separately
        if "ERR_BLOCKED_BY_CLIENT" in msg.text:
            return
        current["page"].console_errors.append(msg.text)

    def on_pageerror(exc) -> None:
        current["page"].console_errors.append(f"uncaught: {exc}")

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
    page.current = current  # type: ignore[attr-defined]
    return page


def _walk_sidebar(page, base_url, chapters, report, shots) -> None:
    """From the root page, click each chapter's link in the left sidebar."""
    current = page.current
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


def _check_phone_menu(page, base_url, chapters, report, shots) -> None:
    """At phone width the sidebar starts hidden; the menu button must open it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    current = page.current
    current["page"] = menu_page = PageReport(path="(phone menu)", width="phone")
    report.pages[menu_page.path] = menu_page
    menu_page.status = 200
    target = chapters[0] if chapters else "index.html"
    page.goto(urljoin(base_url, target), wait_until="load")
    report.menu_checked = True
    if page.evaluate(_SIDEBAR_VISIBLE_JS, SIDEBAR):
        report.menu_problems.append(f"{target}: the sidebar is already open at phone width")
        return
    # the theme has two such buttons (navbar and article header); one shows at a time
    buttons = page.locator(MENU_BUTTON)
    visible = [buttons.nth(i) for i in range(buttons.count()) if buttons.nth(i).is_visible()]
    if not visible:
        report.menu_problems.append(f"{target}: no visible menu button ({MENU_BUTTON})")
        return
    button = visible[0]
    button.click()
    try:
        page.wait_for_function(_SIDEBAR_VISIBLE_JS, arg=SIDEBAR, timeout=5000)
    except PlaywrightTimeout:  # report it, do not crash the whole check
        report.menu_problems.append(f"{target}: the menu button did not open the sidebar")
    if shots is not None:
        page.screenshot(path=str(shots / "phone_menu_open.png"))
    if chapters[1:]:
        # the theme shows the sidebar's content in a dialog on phones: any visible nav link
        links = page.locator(f'nav a[href$="{Path(chapters[1]).name}"]')
        shown = [links.nth(i) for i in range(links.count()) if links.nth(i).is_visible()]
        if not shown:
            report.menu_problems.append(f"the open menu shows no link to {chapters[1]}")
        else:
            link = shown[0]
            link.click()
            page.wait_for_load_state("load")
            if not urlparse(page.url).path.endswith("/" + chapters[1]):
                report.menu_problems.append(f"the menu link to {chapters[1]} led to {page.url}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html_dir", nargs="?", default="_build/html")
    parser.add_argument("--screenshots", default=None,
                        help="folder for PNGs (default: a new temporary folder)")
    args = parser.parse_args(argv)
    shots = args.screenshots or tempfile.mkdtemp(prefix="fusi-nmf-screens-")
    report = check_book(args.html_dir, shots)
    for key, page in report.pages.items():
        print(f"{key:48s} {len(page.images):3d} images  {page.title}")
    print(f"sidebar reached {len(report.nav_reached)} chapter(s); phone menu checked: "
          f"{report.menu_checked}; screenshots in {shots}")
    problems = report.problems()
    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
