"""A real headless Chromium for the staff console's tests: phone and desktop pages, axe-core
accessibility checks, horizontal-scroll checks and full-page screenshots.

The browser is Debian's chromium (`make test` installs it: tests/ensure-chromium.sh), driven
by Playwright's async API so the tests share pytest-asyncio's session loop with the rest of
the integration tests. Playwright's own browser downloads are never used.

    async def test_visits_page(browser: Browser, running: System) -> None:
        async with new_page(browser, width=PHONE, base_url=url) as page:
            await page.goto("/console/visits")
            await assert_accessible(page, "visits")
            await assert_fits(page, PHONE)
            await screenshot(page, "visits-phone")
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import pytest_asyncio
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright

if TYPE_CHECKING:  # Playwright exports the cookie shape only from its implementation module
    from playwright._impl._api_structures import SetCookieParam

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".artifacts" / "screenshots"

PHONE: Literal[375] = 375
DESKTOP: Literal[1280] = 1280
Width = Literal[375, 1280]
#: the viewport heights that go with the widths: a small phone, a laptop
HEIGHTS: dict[int, int] = {PHONE: 667, DESKTOP: 800}
#: axe impacts that fail a page; moderate and minor ones are returned for a look, not failed
FAILING_IMPACTS = frozenset({"serious", "critical"})
TARGETS_SHOWN = 3
WIDEST_SHOWN = 5


@pytest_asyncio.fixture(scope="session", loop_scope="session", name="browser")
async def browser_fixture() -> AsyncIterator[Browser]:
    """One headless chromium for the whole run; every test gets its own context (new_page)."""
    async with async_playwright() as playwright:
        # --no-sandbox: CI runs as root in a container, where chromium's sandbox cannot start.
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@asynccontextmanager
async def new_page(
    browser: Browser,
    width: Width = PHONE,
    *,
    base_url: str | None = None,
    cookies: Sequence[SetCookieParam] = (),
    extra_http_headers: Mapping[str, str] | None = None,
) -> AsyncIterator[Page]:
    """A page in a fresh context (no cookies or storage from other tests), closed on exit.

    PHONE is a touch phone that honours <meta name="viewport"> (as a real one does);
    DESKTOP is a laptop window. Locale, time zone and colour scheme are fixed so that
    screenshots and text compare across machines.
    """
    phone = width == PHONE
    context = await browser.new_context(
        viewport={"width": width, "height": HEIGHTS[width]},
        device_scale_factor=2 if phone else 1,
        is_mobile=phone,
        has_touch=phone,
        locale="en-US",
        timezone_id="UTC",
        color_scheme="light",
        base_url=base_url,
        extra_http_headers=dict(extra_http_headers) if extra_http_headers else None,
    )
    try:
        if cookies:
            await context.add_cookies(cookies)
        yield await context.new_page()
    finally:
        await context.close()


class AxeNode(TypedDict):
    target: list[Any]  # a selector, or a list of them for a node inside an iframe/shadow root
    html: str


class AxeViolation(TypedDict):
    id: str
    impact: str | None
    help: str
    helpUrl: str
    nodes: list[AxeNode]


def _selector(target: Any) -> str:
    if isinstance(target, list):
        return " >>> ".join(_selector(part) for part in target)
    return str(target)


def _violation_line(violation: AxeViolation) -> str:
    nodes = violation["nodes"]
    targets = [_selector(node["target"]) for node in nodes[:TARGETS_SHOWN]]
    more = f" and {len(nodes) - TARGETS_SHOWN} more" if len(nodes) > TARGETS_SHOWN else ""
    return (
        f"  {violation['id']} ({violation['impact']}): {violation['help']}"
        f" at {', '.join(targets)}{more} [{violation['helpUrl']}]"
    )


async def assert_accessible(page: Page, name: str) -> list[AxeViolation]:
    """Run axe-core on the page as it is now; fail on any serious or critical violation.

    Returns the lesser (moderate, minor) violations, which do not fail the page.
    """
    results = await Axe().run(page)
    violations: list[AxeViolation] = results.response["violations"]
    failing = [v for v in violations if v["impact"] in FAILING_IMPACTS]
    if failing:
        lines = "\n".join(_violation_line(v) for v in failing)
        raise AssertionError(
            f"{name}: {len(failing)} serious or critical accessibility violations "
            f"(axe-core) at {page.url}:\n{lines}"
        )
    return [v for v in violations if v["impact"] not in FAILING_IMPACTS]


# The layout viewport's width and the page's, and the outermost elements whose right edge
# lies past the viewport, widest first; ones inside a container that clips or scrolls its own
# overflow are left out (they do not widen the page). The viewport is
# documentElement.clientWidth, not window.innerWidth: on a phone innerWidth grows to the
# content's width (the phone zooms out), so a too-wide page would never look too wide.
_OVERFLOW_JS = """
() => {
  const viewport = document.documentElement.clientWidth;
  const scroller = document.scrollingElement || document.documentElement;
  const clipped = (el) => {
    for (let p = el.parentElement; p && p !== document.body && p !== document.documentElement;
         p = p.parentElement) {
      if (getComputedStyle(p).overflowX !== "visible") return true;
    }
    return false;
  };
  const describe = (el) => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += "#" + el.id;
    for (const c of el.classList) s += "." + c;
    return s;
  };
  const flagged = new Set();
  const insideFlagged = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) if (flagged.has(p)) return true;
    return false;
  };
  const wide = [];
  // document order: an element comes before its descendants, which are left out once it is
  // named (a too-wide table is one culprit, not one per row)
  for (const el of document.body ? document.body.querySelectorAll("*") : []) {
    const box = el.getBoundingClientRect();
    const right = box.right + window.scrollX;
    if (right > viewport + 0.5 && !clipped(el) && !insideFlagged(el)) {
      flagged.add(el);
      wide.push({selector: describe(el), right: Math.round(right), width: Math.round(box.width)});
    }
  }
  wide.sort((a, b) => b.width - a.width || b.right - a.right);
  return {viewport, scrollWidth: scroller.scrollWidth, wide};
}
"""


async def assert_fits(page: Page, width: int) -> None:
    """Fail when the page scrolls sideways at this width, naming the elements that stick out.

    Also fails when the page is not laid out at the device width at all (a phone page without
    <meta name="viewport" content="width=device-width">: the phone shrinks a 980 px layout).
    """
    found: dict[str, Any] = await page.evaluate(_OVERFLOW_JS)
    viewport: int = found["viewport"]
    scroll_width: int = found["scrollWidth"]
    if viewport > width:  # (narrower is a desktop's vertical scrollbar)
        raise AssertionError(
            f"{page.url} is laid out {viewport} px wide, not {width} px: "
            f'a phone page needs <meta name="viewport" content="width=device-width">'
        )
    if scroll_width > viewport:
        wide: list[dict[str, Any]] = found["wide"][:WIDEST_SHOWN]
        named = "\n".join(
            f"  {w['selector']}: {w['width']} px wide, right edge at {w['right']} px" for w in wide
        )
        raise AssertionError(
            f"{page.url} scrolls sideways at {width} px: the page is {scroll_width} px wide; "
            f"widest elements past the edge:\n{named or '  (none found outside clipping boxes)'}"
        )


async def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG in .artifacts/screenshots/<name>.png (git ignores .artifacts/)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9._-]+', '-', name)}.png"
    await page.screenshot(path=path, full_page=True)
    return path
