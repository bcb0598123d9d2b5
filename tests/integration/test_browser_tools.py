"""The browser tools reject what they exist to reject: pages served over real HTTP to the
session's headless chromium, one of them inaccessible, one too wide for a phone."""

from __future__ import annotations

import re
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from browser import (
    DESKTOP,
    HEIGHTS,
    PHONE,
    SCREENSHOTS,
    Width,
    assert_accessible,
    assert_fits,
    new_page,
    screenshot,
)
from playwright.async_api import Browser

HEAD = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
{viewport}
<title>{title}</title>
<style>
  body {{ font-family: Arial, Helvetica, sans-serif; color: #1a1a1a; background: #fff;
         margin: 0; padding: 16px; }}
  .faint {{ color: #c8c8c8; }}
  table {{ border-collapse: collapse; }}
  td, th {{ border: 1px solid #555; padding: 4px 8px; text-align: left; }}
</style>
</head>
"""
VIEWPORT = '<meta name="viewport" content="width=device-width, initial-scale=1">'
ROWS = "\n".join(
    f"<tr><td>2026-11-{day:02d}</td><td>Oil change</td><td>cust-{day:03d}</td></tr>"
    for day in range(1, 29)
)

# Everything right: alt text, a labelled input, dark text, landmarks, a wide table that
# scrolls inside its own (focusable, named) box instead of widening the page.
GOOD = (
    HEAD.format(viewport=VIEWPORT, title="Visits")
    + f"""<body>
<header><h1>Today's visits</h1></header>
<main>
  <img src="/logo.svg" alt="Garage logo" width="40" height="40">
  <form>
    <label for="phone">Customer phone</label>
    <input id="phone" name="phone" type="tel">
    <button type="submit">Find</button>
  </form>
  <div role="region" aria-label="Visits" tabindex="0" style="overflow-x: auto">
    <table style="width: 700px">
      <tr><th>Day</th><th>Service</th><th>Customer</th></tr>
      {ROWS}
    </table>
  </div>
</main>
</body></html>
"""
)

# Three faults axe rates critical or serious: an image with no alt, an input with no label,
# light grey text on white (1.7:1).
INACCESSIBLE = (
    HEAD.format(viewport=VIEWPORT, title="Sign up")
    + """<body>
<main>
  <h1>Sign up</h1>
  <img id="logo" src="/logo.svg" width="40" height="40">
  <form><input id="email" name="email" type="email"><button type="submit">Join</button></form>
  <p class="faint">We never share your address.</p>
</main>
</body></html>
"""
)

# A 900 px table straight in the page: fine on a laptop, sideways scrolling on a phone.
TOO_WIDE = (
    HEAD.format(viewport=VIEWPORT, title="Visits")
    + f"""<body>
<main>
  <h1>Visits</h1>
  <table id="visits" class="ledger" style="width: 900px">{ROWS}</table>
</main>
</body></html>
"""
)

NO_VIEWPORT = GOOD.replace(VIEWPORT, "")

# Only moderate faults: no <h1>, no <main>, text outside any landmark.
MODERATE_ONLY = (
    HEAD.format(viewport=VIEWPORT, title="Notes") + "<body><div>Notes</div></body></html>\n"
)

LOGO = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40">'
    '<circle cx="20" cy="20" r="18" fill="#1f5fa8"/></svg>'
)
PAGES: dict[str, tuple[str, str]] = {
    "/good": ("text/html; charset=utf-8", GOOD),
    "/inaccessible": ("text/html; charset=utf-8", INACCESSIBLE),
    "/too-wide": ("text/html; charset=utf-8", TOO_WIDE),
    "/no-viewport": ("text/html; charset=utf-8", NO_VIEWPORT),
    "/moderate-only": ("text/html; charset=utf-8", MODERATE_ONLY),
    "/logo.svg": ("image/svg+xml", LOGO),
}


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        found = PAGES.get(self.path)
        if found is None:
            self.send_error(404)
            return
        content_type, text = found
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the tests' output is the assertions, not an access log


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
async def test_a_good_page_passes_at_phone_and_desktop_widths(
    browser: Browser, site: str, width: Width
) -> None:
    async with new_page(browser, width, base_url=site) as page:
        await page.goto("/good")
        assert await page.evaluate("document.images[0].naturalWidth") == 40
        lesser = await assert_accessible(page, "good")
        await assert_fits(page, width)
    assert lesser == []


async def test_an_inaccessible_page_is_rejected_naming_rule_impact_and_element(
    browser: Browser, site: str
) -> None:
    async with new_page(browser, DESKTOP, base_url=site) as page:
        await page.goto("/inaccessible")
        with pytest.raises(AssertionError) as failed:
            await assert_accessible(page, "sign-up")
    message = str(failed.value)
    assert message.startswith("sign-up: 3 serious or critical accessibility violations")
    assert "image-alt (critical): Images must have alternative text at #logo" in message
    assert "label (critical): Form elements must have labels at #email" in message
    assert "color-contrast (serious): Elements must meet minimum color contrast" in message
    assert "thresholds at p [" in message
    assert "https://dequeuniversity.com/rules/axe/" in message


async def test_moderate_faults_are_returned_not_failed(browser: Browser, site: str) -> None:
    async with new_page(browser, PHONE, base_url=site) as page:
        await page.goto("/moderate-only")
        lesser = await assert_accessible(page, "notes")
    assert {v["id"] for v in lesser} == {"page-has-heading-one", "landmark-one-main", "region"}
    assert {v["impact"] for v in lesser} == {"moderate"}


async def test_a_page_too_wide_for_a_phone_is_rejected_naming_the_widest_element(
    browser: Browser, site: str
) -> None:
    async with new_page(browser, PHONE, base_url=site) as page:
        await page.goto("/too-wide")
        await assert_accessible(page, "too-wide")  # wide, not inaccessible
        with pytest.raises(AssertionError) as failed:
            await assert_fits(page, PHONE)
    first, *named = str(failed.value).splitlines()
    sideways = re.search(r"scrolls sideways at 375 px: the page is (\d+) px wide", first)
    assert sideways, first
    # 900 px of table after the body's 16 px padding (its rows are not named again)
    assert int(sideways[1]) >= 916
    assert named == ["  table#visits.ledger: 900 px wide, right edge at 916 px"]


async def test_the_same_wide_page_fits_a_desktop(browser: Browser, site: str) -> None:
    async with new_page(browser, DESKTOP, base_url=site) as page:
        await page.goto("/too-wide")
        await assert_fits(page, DESKTOP)


async def test_a_phone_page_without_a_viewport_meta_is_rejected(
    browser: Browser, site: str
) -> None:
    async with new_page(browser, PHONE, base_url=site) as page:
        await page.goto("/no-viewport")
        with pytest.raises(AssertionError, match="laid out 980 px wide, not 375 px"):
            await assert_fits(page, PHONE)


async def test_a_screenshot_is_the_whole_page_as_png(browser: Browser, site: str) -> None:
    async with new_page(browser, PHONE, base_url=site) as page:
        await page.goto("/good")
        height = await page.evaluate("document.documentElement.scrollHeight")
        path = await screenshot(page, "browser tools/good phone")
    assert path == SCREENSHOTS / "browser-tools-good-phone.png"
    png = path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    png_width, png_height = struct.unpack(">II", png[16:24])
    # the phone renders at 2 device pixels per CSS pixel; full page, not just the viewport
    assert height > HEIGHTS[PHONE]
    assert (png_width, png_height) == (2 * PHONE, 2 * height)
