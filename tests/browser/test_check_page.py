"""The public check page in a real browser, against a real ``sekat api`` with its Kafka and Redis.

A visitor whose browser prefers Bahasa Malaysia checks a listed phone number (in a local format, keyboard
only) and a malformed one; switches to English and checks a clean account and a listed one (the bank chosen
from the list) and a malformed number. Each answer says what it means and what to do, in the page's language
only; no identifier is in an address or the API's log; every page is free of console errors and of serious
accessibility violations, and is saved as a screenshot. The page and ``GET /v1/status`` share one rate limit.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from sekat.blocklist.store import BlocklistStore
from sekat.records import Status
from tests.browser.conftest import Browser
from tests.support import file_report, own_api

pytestmark = pytest.mark.integration

LISTED_PHONE = ("+60123456789", "012-345 6789")  # as stored, as a visitor types it
LISTED_ACCOUNT = ("account:MBBEMYKL:514012345678", "Maybank", "5140 1234-5678")
CLEAN_ACCOUNT = ("CIMB Bank", "8001-2345-6789")


@pytest.fixture(scope="module")
def listed(api: Any) -> None:
    async def go() -> None:
        store = BlocklistStore.from_url(api.settings.redis_url, api.settings.redis_prefix)
        try:
            await file_report(store, f"phone:{LISTED_PHONE[0]}", Status.CONFIRMED, "PDRM", "love scam", "KL/1")
            await file_report(store, LISTED_ACCOUNT[0], Status.CONFIRMED, "PDRM", "mule account", "KL/2")
        finally:
            await store.close()
    asyncio.run(go())


def answer(browser: Browser) -> str:
    return browser.driver.find_element(By.CSS_SELECTOR, "main section").text


def check(browser: Browser, kind: str, value: str, bank: str = "") -> None:
    d = browser.driver
    d.find_element(By.ID, f"kind-{kind}").click()
    if bank:
        Select(d.find_element(By.ID, "bank")).select_by_visible_text(bank)
    field = d.find_element(By.ID, kind)
    field.clear()
    field.send_keys(value)
    before = d.find_element(By.TAG_NAME, "html")
    d.find_element(By.CSS_SELECTOR, "form.check button[type=submit]").click()
    browser.wait_gone(before)  # the answer is a new page


def test_bahasa_malaysia_by_default_listed_and_malformed(api: Any, listed: None, browser: Browser) -> None:
    d = browser.driver
    d.get(api.url + "/check")
    assert d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "ms"
    assert d.find_element(By.TAG_NAME, "h1").text == "Semak nombor telefon atau akaun bank"
    browser.settled()
    browser.accessible()
    browser.shoot("check-ms-form")

    # Keyboard only: Tab to the phone field (phone is the kind chosen at first), type, Enter.
    body = d.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    for _ in range(10):
        if d.switch_to.active_element.get_attribute("id") == "phone":
            break
        d.switch_to.active_element.send_keys(Keys.TAB)
    assert d.switch_to.active_element.get_attribute("id") == "phone"
    before = d.find_element(By.TAG_NAME, "html")
    d.switch_to.active_element.send_keys(LISTED_PHONE[1], Keys.ENTER)
    browser.wait_gone(before)

    text = answer(browser)
    assert "nombor telefon ini telah disenaraikan" in text and "997" in text and "Jangan bayar" in text
    assert "rayuan" in d.find_element(By.TAG_NAME, "main").text
    assert "PDRM" not in d.page_source and "love scam" not in d.page_source  # nothing beyond listed or not
    assert d.current_url == api.url + "/check"  # the number went in the body, not the address
    browser.settled()
    browser.accessible()
    browser.shoot("check-ms-listed-phone")

    check(browser, "phone", "12ab")
    assert "Ini bukan nombor telefon yang kami kenali" in answer(browser)
    assert d.find_element(By.ID, "phone").get_attribute("aria-invalid") == "true"
    browser.settled(422)
    browser.accessible()
    browser.shoot("check-ms-malformed")


def test_english_after_switching_clean_listed_and_malformed(api: Any, listed: None, browser: Browser) -> None:
    d = browser.driver
    d.get(api.url + "/check")
    before = d.find_element(By.TAG_NAME, "html")
    d.find_element(By.LINK_TEXT, "English").click()
    browser.wait_gone(before)
    assert d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"

    check(browser, "account", CLEAN_ACCOUNT[1], CLEAN_ACCOUNT[0])
    text = answer(browser)
    assert "This bank account is not listed" in text and "does not mean it is safe" in text
    assert "disenaraikan" not in d.find_element(By.TAG_NAME, "main").text  # one language on a page
    browser.settled()
    browser.accessible()
    browser.shoot("check-en-clean-account")

    check(browser, "account", LISTED_ACCOUNT[2], LISTED_ACCOUNT[1])
    text = answer(browser)
    assert "this bank account is listed" in text and "997" in text and "Do not pay" in text
    browser.settled()
    browser.accessible()
    browser.shoot("check-en-listed-account")

    check(browser, "phone", "not a number")
    assert "This is not a phone number we recognise" in answer(browser)
    browser.settled(422)
    browser.shoot("check-en-malformed")

    log = api.log_path.read_text(errors="replace")
    for digits in ("123456789", "514012345678", "800123456789"):
        assert digits not in log


def test_the_api_docs_render_from_shipped_files(api: Any, browser: Browser) -> None:
    d = browser.driver
    d.get(api.url + "/docs")
    d.implicitly_wait(10)
    assert "Sekat agency API" in d.find_element(By.CSS_SELECTOR, ".swagger-ui .title").text
    assert d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path[data-path='/v1/status']")
    d.implicitly_wait(0)
    scripts = [s.get_attribute("src") for s in d.find_elements(By.TAG_NAME, "script")]
    assert scripts and all(src.startswith(api.url + "/static/") for src in scripts)
    browser.settled()
    browser.shoot("docs")


def test_the_page_shares_the_status_checks_rate_limit_and_keeps_answers_private(stack: Any, logs_dir: Any) -> None:
    """Two checks a minute per address: one through the API and one through the page use it up; the page's
    next answer is 429 with Retry-After, in the visitor's language. No answer may be cached or framed."""
    with own_api(stack, logs_dir, "check-limit", SEKAT_STATUS_RATE_PER_MINUTE="2") as limited, \
            httpx.Client(base_url=limited.url, timeout=20) as http:
        assert http.get("/v1/status", params={"phone": "0123456789"}).status_code == 200
        first = http.post("/check", data={"lang": "en", "kind": "phone", "phone": "0123456789"})
        assert first.status_code == 200 and "This phone number is not listed" in first.text
        assert first.headers["cache-control"] == "no-store" and first.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in first.headers["content-security-policy"]
        refused = http.post("/check", data={"lang": "ms", "kind": "phone", "phone": "0123456789"})
        assert refused.status_code == 429 and 0 < int(refused.headers["retry-after"]) <= 60
        assert "Terlalu banyak semakan" in refused.text
        assert http.get("/v1/status", params={"phone": "0123456789"}).status_code == 429
