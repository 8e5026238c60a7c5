"""Headless Chromium for the browser tests: Debian's ``chromium`` driven through ``chromedriver`` by Selenium.

One browser per test module (``browser``, in the module's ``ACCEPT_LANGUAGE``), phone-sized (390 x 844), reading the page's console log. Each page
a test looks at can be checked with ``settled`` (no console error since the last check) and ``accessible``
(axe-core finds no serious or critical violation), and saved with ``shoot`` as a screenshot under
``.stack/test-artifacts/browser/`` (kept whether the tests pass or fail; ``make clean`` removes it).

axe-core is taken from the npm registry once, at the pinned ``AXE_VERSION`` (``npm pack``, which checks the
package's integrity), and cached in ``~/.cache/sekat/axe-core-<version>/`` as the Kafka jars are.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.support import own_api

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".stack" / "test-artifacts" / "browser"
AXE_VERSION = "4.11.0"
PHONE = (390, 844)


def axe_source() -> str:
    """axe.min.js of ``AXE_VERSION``, from the cache or fetched once with ``npm pack``."""
    cached = Path.home() / ".cache" / "sekat" / f"axe-core-{AXE_VERSION}" / "axe.min.js"
    if not cached.exists():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["npm", "pack", f"axe-core@{AXE_VERSION}", "--pack-destination", tmp, "--silent"],
                           check=True, capture_output=True, timeout=120)
            [packed] = Path(tmp).glob("axe-core-*.tgz")
            with tarfile.open(packed) as tar:
                member = tar.extractfile("package/axe.min.js")
                assert member is not None
                cached.parent.mkdir(parents=True, exist_ok=True)
                cached.with_suffix(".part").write_bytes(member.read())
            cached.with_suffix(".part").rename(cached)
    return cached.read_text(encoding="utf-8")


class Browser:
    """A headless Chromium and the checks every page gets."""

    def __init__(self, accept_language: str) -> None:
        chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
        if not chromium or not driver:
            pytest.fail("chromium and chromium-driver are not installed: run deploy/bootstrap.sh")
        options = Options()
        options.binary_location = chromium
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    f"--window-size={PHONE[0]},{PHONE[1]}", "--disable-extensions"):
            options.add_argument(arg)
        options.add_experimental_option("prefs", {"intl.accept_languages": accept_language})
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(executable_path=driver))
        self.driver.set_page_load_timeout(30)
        self._axe = axe_source()

    def settled(self, status: int = 200) -> None:
        """No error in the page's console since the last look (a failed load, a CSP refusal, a script error).

        A page answered with ``status`` (a 4xx the test expects, such as a form's 422) is logged by Chromium
        as a failed load of the page itself; that one entry is expected."""
        page = f"{self.driver.current_url} - Failed to load resource: the server responded with a status of {status} "
        errors = [entry for entry in self.driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")
                  and not (status >= 400 and entry["message"].startswith(page))]
        assert errors == []

    def accessible(self) -> list[dict[str, Any]]:
        """axe-core's WCAG 2.1 A/AA checks on the page as it is; asserts none is serious or critical."""
        self.driver.execute_script(self._axe)
        violations: list[dict[str, Any]] = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',"
            " 'best-practice']}, resultTypes: ['violations']})"
            ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact,"
            " nodes: v.nodes.map(n => n.target.join(' '))}))), e => done([{id: 'axe-error', impact: 'critical',"
            " nodes: [String(e)]}]));")
        assert [v for v in violations if v["impact"] in ("serious", "critical")] == []
        return violations

    def wait_gone(self, before: WebElement, timeout: float = 10) -> None:
        """Wait until ``before`` (the last page's ``<html>``) has left the document: the next page is in.

        Chromium answers a look at a node of a page being replaced either as stale or as "does not belong to
        the document", depending on the moment; both mean it is gone."""
        def gone(_: Any) -> bool:
            try:
                before.is_enabled()
            except WebDriverException:
                return True
            return False
        WebDriverWait(self.driver, timeout).until(gone)

    def shoot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def quit(self) -> None:
        self.driver.quit()


@pytest.fixture(scope="module")
def browser(request: pytest.FixtureRequest) -> Iterator[Browser]:
    """One browser for the module, preferring the module's ``ACCEPT_LANGUAGE`` (Bahasa Malaysia, else)."""
    b = Browser(getattr(request.module, "ACCEPT_LANGUAGE", "ms-MY,ms,en;q=0.5"))
    yield b
    b.quit()


@pytest.fixture(scope="module")
def api(stack: Any, logs_dir: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A ``sekat api`` of the module's own (own Redis prefix and topics)."""
    with own_api(stack, logs_dir, request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")) as served:
        yield served
