"""The public appeal pages in a real browser, against a real ``sekat api`` with its Kafka and Redis.

A person whose browser prefers Bahasa Malaysia finds their number listed on the check page, follows its link
to the appeal form, leaves out how to reach them (told which field to mend), then appeals; the page shows the
appeal id and the token once. Appealing the same number again is refused in words that say why, as is an
appeal on a number nobody listed. On the status page a wrong token finds nothing; the right one shows the
stage, and after PDRM takes it up and rejects it through the API, the rejection and the date from which the number
may be appealed again. In English, a malformed e-mail address is marked. No identifier, e-mail address or
token is in an address or the API's log; every page is free of console errors and of serious accessibility
violations, and is saved as a screenshot.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from sekat.blocklist.store import BlocklistStore
from sekat.records import Status
from tests.browser.conftest import Browser
from tests.support import file_report, sekat

pytestmark = pytest.mark.integration

LISTED = ("+60133456780", "013-345 6780")  # as stored, as a visitor types it
CLEAN = "013-999 8877"
EMAIL = "aminah.appeal@contoh.my"


@pytest.fixture(scope="module")
def listed(api: Any) -> None:
    async def go() -> None:
        store = BlocklistStore.from_url(api.settings.redis_url, api.settings.redis_prefix)
        try:
            await file_report(store, f"phone:{LISTED[0]}", Status.CONFIRMED, "PDRM", "spoofed caller", "KL/9")
        finally:
            await store.close()
    asyncio.run(go())


def submit(browser: Browser, form_action: str) -> None:
    d = browser.driver
    before = d.find_element(By.TAG_NAME, "html")
    d.find_element(By.CSS_SELECTOR, f"form[action='{form_action}'] button[type=submit]").click()
    browser.wait_gone(before)  # the answer is a new page


def fill(browser: Browser, **fields: str) -> None:
    d = browser.driver
    for name, value in fields.items():
        element = d.find_element(By.ID, name)
        if element.tag_name == "select":
            Select(element).select_by_value(value)
        else:
            element.clear()
            element.send_keys(value)


def section(browser: Browser) -> str:
    return browser.driver.find_element(By.CSS_SELECTOR, "main section").text


def test_appeal_from_the_check_page_follow_it_and_see_it_rejected(api: Any, listed: None, browser: Browser) -> None:
    d = browser.driver
    d.get(api.url + "/check")
    fill(browser, phone=LISTED[1])
    submit(browser, "/check")
    before = d.find_element(By.TAG_NAME, "html")
    d.find_element(By.LINK_TEXT, "Buat rayuan dalam talian").click()
    browser.wait_gone(before)
    assert d.current_url == api.url + "/appeal?lang=ms"
    assert d.find_element(By.TAG_NAME, "h1").text == "Rayuan terhadap penyenaraian"
    browser.settled()
    browser.accessible()
    browser.shoot("appeal-ms-form")

    # No way to reach the appellant: the contact fields are marked, what was typed is kept.
    fill(browser, phone=LISTED[1], name="Aminah binti Ali", grounds="Nombor saya dipalsukan oleh penipu.")
    submit(browser, "/appeal")
    assert "Berikan alamat e-mel atau nombor telefon" in section(browser)
    assert d.find_element(By.ID, "email").get_attribute("aria-invalid") == "true"
    assert d.find_element(By.ID, "grounds").get_attribute("value") == "Nombor saya dipalsukan oleh penipu."
    browser.settled(422)
    browser.accessible()
    browser.shoot("appeal-ms-no-contact")

    fill(browser, email=EMAIL, evidence_ref="IPD-KL/2026/1234")
    submit(browser, "/appeal")
    assert "Rayuan anda telah diterima" in section(browser)
    appeal_id = d.find_element(By.ID, "filed-id").text
    token = d.find_element(By.ID, "filed-token").text
    assert appeal_id and len(token) >= 16
    assert "PDRM" not in d.page_source and "spoofed caller" not in d.page_source
    assert d.current_url == api.url + "/appeal"  # everything went in the body
    browser.settled()
    browser.accessible()
    browser.shoot("appeal-ms-filed")

    # The same number again while the appeal is open; a number nobody listed.
    d.get(api.url + "/appeal")
    fill(browser, phone=LISTED[1], name="Aminah binti Ali", email=EMAIL, grounds="Sekali lagi.")
    submit(browser, "/appeal")
    assert "Sudah ada rayuan yang masih dibuka" in section(browser)
    browser.settled(409)
    fill(browser, phone=CLEAN)
    submit(browser, "/appeal")
    assert "tidak disenaraikan oleh mana-mana pihak berkuasa" in section(browser)
    browser.settled(409)
    browser.accessible()
    browser.shoot("appeal-ms-not-listed")

    # The status: a wrong token finds nothing, the right one the stage.
    d.get(api.url + "/appeal/status")
    fill(browser, appeal_id=appeal_id, token="x" * 32)
    submit(browser, "/appeal/status")
    assert "Tiada rayuan dengan ID ini" in section(browser)
    browser.settled(404)
    fill(browser, appeal_id=appeal_id, token=token)
    submit(browser, "/appeal/status")
    assert "Diterima" in section(browser)
    browser.settled()
    browser.accessible()
    browser.shoot("appeal-ms-status-received")

    pdrm = sekat(api.env, "apikey", "create", "--agency", "PDRM", "--scopes", "appeal").stdout.strip()
    with httpx.Client(base_url=api.url, headers={"X-API-Key": pdrm}, timeout=20) as http:
        assert http.post(f"/v1/appeals/{appeal_id}/review").status_code == 200
        fill(browser, appeal_id=appeal_id, token=token)
        submit(browser, "/appeal/status")
        assert "Sedang disemak" in section(browser)
        decided = http.post(f"/v1/appeals/{appeal_id}/decision",
                            json={"outcome": "rejected", "reason": "calls traced to the subscriber's handset"})
        assert decided.status_code == 200, decided.text
        reappeal = decided.json()["reappeal_after"]
    fill(browser, appeal_id=appeal_id, token=token)
    submit(browser, "/appeal/status")
    text = section(browser)
    assert "Ditolak" in text and reappeal[:10] in text
    assert "handset" not in d.page_source  # the agency's reason is not the appellant's to read here
    browser.settled()
    browser.accessible()
    browser.shoot("appeal-ms-status-rejected")

    log = api.log_path.read_text(errors="replace")
    for secret in ("133456780", EMAIL, token, "Aminah"):
        assert secret not in log


def test_english_after_switching_marks_a_malformed_email(api: Any, listed: None, browser: Browser) -> None:
    d = browser.driver
    d.get(api.url + "/appeal")
    before = d.find_element(By.TAG_NAME, "html")
    d.find_element(By.LINK_TEXT, "English").click()
    browser.wait_gone(before)
    assert d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    fill(browser, phone=LISTED[1], name="Aminah", email="not-an-address", grounds="My number was spoofed.")
    submit(browser, "/appeal")
    assert "This is not a valid e-mail address" in section(browser)
    assert d.find_element(By.ID, "email").get_attribute("aria-invalid") == "true"
    assert "rayuan" not in d.find_element(By.TAG_NAME, "main").text.lower()  # one language on a page
    browser.settled(422)
    browser.accessible()
    browser.shoot("appeal-en-bad-email")
