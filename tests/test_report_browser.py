"""The report page in a real headless browser (the system's Chromium, driven by Playwright):
what a person sees. The cards, the status filter and the search, the thumbnails loaded, an
unreachable input URL shown as a placeholder, no script errors, the hostile prompt as text.

Skipped only when `/usr/bin/chromium` (or Playwright) is missing and `OXEDIT_REQUIRE_BROWSER`
is not set; CI sets it, so there a missing browser fails the test.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest

from benchmarks.report_load import CHROMIUM, chromium
from oxedit._cli.report.build import write_html_report

from .test_report import HOSTILE, UNREACHABLE, image_host, mixed_run

pytestmark = pytest.mark.anyio

_MISSING = (
    "no /usr/bin/chromium (apt-get install chromium)"
    if not CHROMIUM.exists()
    else "no playwright (pip install -e '.[test]')"
    if importlib.util.find_spec("playwright") is None
    else None
)


@pytest.fixture
def browser_ready() -> None:
    if _MISSING is not None:
        if os.environ.get("OXEDIT_REQUIRE_BROWSER"):
            pytest.fail(f"OXEDIT_REQUIRE_BROWSER is set but the browser is missing: {_MISSING}")
        pytest.skip(f"{_MISSING}; set OXEDIT_REQUIRE_BROWSER=1 to make this a failure")


@pytest.mark.slow
async def test_what_a_person_sees(tmp_path: Path, browser_ready: None) -> None:
    async with image_host() as url:
        out = await mixed_run(tmp_path, url)
        page_uri = write_html_report(out).as_uri()
        problems: list[str] = []
        dialogs: list[str] = []
        async with chromium() as browser:
            context = await browser.new_context(viewport={"width": 1400, "height": 2400})
            page = await context.new_page()

            def console(message: Any) -> None:
                # The one resource expected not to load: the unreachable input URL (the page
                # shows a placeholder for it). Anything else is a problem.
                expected = (
                    message.text.startswith("Failed to load resource")
                    and message.location.get("url") == UNREACHABLE
                )
                if message.type == "error" and not expected:
                    problems.append(message.text)

            page.on("console", console)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

            async def dialog(d: Any) -> None:
                dialogs.append(d.message)
                await d.dismiss()

            page.on("dialog", dialog)
            await page.goto(page_uri, wait_until="load")
            cards = page.locator("article.card")
            assert await cards.count() == 7
            # Every thumbnail loaded (decoded, with pixels); the unreachable URL's replaced.
            await page.wait_for_function(
                "document.querySelectorAll('.ph').length >= 5 && "
                "Array.from(document.images).every(i => i.complete)"
            )
            widths = await page.eval_on_selector_all(
                "article.card img", "imgs => imgs.map(i => [i.src, i.naturalWidth])"
            )
            assert len(widths) == 9  # 6 inputs (one a URL) and the 3 outputs
            assert all(width > 0 for _, width in widths), widths
            assert url in [src for src, _ in widths]
            far = cards.filter(has_text="far")
            assert await far.locator(".ph").first.inner_text() == "URL not reachable"
            # The hostile prompt is text on the page, and no script of it ran.
            hostile = cards.filter(has_text="hostile")
            assert await hostile.locator(".prompt").inner_text() == HOSTILE
            # The status filter hides and shows cards; the search narrows them.
            await page.locator("#filters input[value=failed]").uncheck()
            assert await cards.count() == 5
            assert await page.locator("article.card[data-status=failed]").count() == 0
            await page.locator("#filters input[value=failed]").check()
            assert await cards.count() == 7
            await page.locator("#search").fill("ALERT(1)")
            assert await cards.count() == 1
            assert await cards.first.locator(".name").inner_text() == "hostile"
            await page.locator("#search").fill("")
            assert await cards.count() == 7
            assert await page.locator("#shown").inner_text() == "7 of 7 shown"
            await context.close()
    assert problems == []
    assert dialogs == []
