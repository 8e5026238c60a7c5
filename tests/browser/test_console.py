"""The analyst console in a real browser, against a real ``sekat api`` with its Kafka and Redis.

An NSRC analyst signs in with their API key (the session cookie is HttpOnly and SameSite=Strict), looks a
listed number up with a purpose (its history, sources, the telco sent a command about it and what the telco
said it did; the read is on the audit topic, without the number), and re-arms a target the safety brake tripped, with a reason:
the re-arm is audited exactly as through the API (its record on the decisions topic, the brake's log). A
re-arm posted with the session's cookie but without the form's CSRF token is refused and changes nothing.
Over HTTPS the cookie is also Secure. A person appeals a listed number through the public API; the police
analyst whose report listed it sees it among the open appeals, reads the grounds and contact details on its
page, acknowledges and upholds it there: the appeal's steps are on its topic, the entry is revoked by the
worker and the telco that blocked the number gets UNBLOCK_NUMBER. A key without the appeal scope sees no
appeals. Every page is free of console errors and serious accessibility violations, and saved as a screenshot.
"""

from __future__ import annotations

import asyncio
import html
import re
import ssl
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from selenium.webdriver.common.by import By

from sekat.blocklist.store import BlocklistStore
from sekat.blocklist.feedback import FeedbackStore
from sekat.brake.store import BrakeStore, Trip
from sekat.localstack.secured import make_tls_files
from sekat.records import Status
from sekat.release.acted import ActedStore
from tests.browser.conftest import Browser
from tests.support import Collector, WorkerProcess, file_report, own_api, sekat

pytestmark = pytest.mark.integration
ACCEPT_LANGUAGE = "en-GB,en"  # the browser fixture's preference (tests/browser/conftest.py)

PHONE = "+60198765432"
TARGET = "rule:mule_inflow"
APPEALED = "+60134567890"
EMAIL = "aminah.yusof@mail.example.my"


@pytest.fixture(scope="module")
def desk(api: Any) -> dict[str, str]:
    """A listed number with two reports, a tripped brake target, and an NSRC key with read and rearm."""
    s = api.settings

    async def go() -> None:
        store = BlocklistStore.from_url(s.redis_url, s.redis_prefix)
        brakes = BrakeStore.from_url(s.redis_url, s.redis_prefix)
        acted = ActedStore.from_url(s.redis_url, s.redis_prefix)
        feedback = FeedbackStore.from_url(s.redis_url, s.redis_prefix)
        try:
            await file_report(store, f"phone:{PHONE}", Status.REPORTED, "MCMC", "reported by callers", "MC/7")
            await file_report(store, f"phone:{PHONE}", Status.CONFIRMED, "PDRM", "macau scam", "KL/2026/44")
            await acted.record([(f"phone:{PHONE}", "UNBLOCK_NUMBER|CELCOM")], now=100.0)  # a worker blocked calls
            await feedback.add({"command_id": "c-console-1", "institution": "CELCOM", "outcome": "executed",
                                "note": "number barred", "case_ref": "CEL/2026/17", "action": "BLOCK_CALL",
                                "issued_at": "2026-12-05T02:59:00.000Z", "received_at": "2026-12-05T03:01:00.000Z",
                                "entries": [f"phone:{PHONE}"], "via": "api", "by": "CELCOM"}, [f"phone:{PHONE}"])
            await brakes.trip(Trip(TARGET, 240, 200, 60, "2026-12-05T03:00:00Z", "worker-1"))
        finally:
            await store.close()
            await brakes.close()
            await acted.close()
            await feedback.close()
    asyncio.run(go())
    created = sekat(api.env, "apikey", "create", "--agency", "NSRC", "--scopes", "read,rearm")
    assert created.returncode == 0, created.stderr
    return {"key": created.stdout.strip()}


def submit(browser: Browser, selector: str) -> None:
    before = browser.driver.find_element(By.TAG_NAME, "html")
    browser.driver.find_element(By.CSS_SELECTOR, selector).click()
    browser.wait_gone(before)


def test_sign_in_look_up_and_rearm(api: Any, desk: dict[str, str], browser: Browser) -> None:
    d = browser.driver
    audit = Collector(api.settings, [api.settings.topic_decisions])
    reads = Collector(api.settings, [api.settings.topic_audit])
    try:
        d.get(api.url + "/console")
        browser.settled()
        browser.accessible()
        browser.shoot("console-sign-in")
        d.find_element(By.ID, "api_key").send_keys(desk["key"])
        submit(browser, "form[action='/console/login'] button")
        [session] = [c for c in d.get_cookies() if c["name"] == "sekat_session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/console"
        assert "NSRC" in d.find_element(By.TAG_NAME, "header").text
        assert TARGET in d.find_element(By.ID, "panel-brake").text
        browser.settled()
        browser.accessible()
        browser.shoot("console-home")

        d.find_element(By.ID, "phone").send_keys("019-876 5432")
        d.find_element(By.ID, "purpose").send_keys("NSRC/2026/881")
        submit(browser, "#panel-search button[type=submit]")
        assert PHONE in d.find_element(By.TAG_NAME, "h1").text
        history = d.find_element(By.ID, "panel-history").text
        assert "MCMC" in history and "PDRM" in history and "macau scam" in history and "KL/2026/44" in history
        assert "confirmed" in d.find_element(By.ID, "panel-state").text
        assert "CELCOM, telco: blocked or labelled calls" in d.find_element(By.ID, "panel-commands").text
        said = d.find_element(By.ID, "panel-feedback").text
        assert "CELCOM" in said and "executed" in said and "CEL/2026/17" in said
        assert d.current_url == api.url + "/console/search"
        [read] = reads.wait_for(lambda r: orjson.loads(r.value).get("purpose") == "NSRC/2026/881", timeout=20)
        assert orjson.loads(read.value)["by"].startswith("api:NSRC:") and PHONE not in read.value.decode()
        browser.settled()
        browser.accessible()
        browser.shoot("console-entry")

        d.get(api.url + "/console")
        d.find_element(By.CSS_SELECTOR, "#panel-brake textarea[name=reason]").send_keys("rule fixed in policy 12")
        submit(browser, "#panel-brake form[action='/console/brake/rearm'] button")
        assert f"Re-armed {TARGET}" in d.find_element(By.CSS_SELECTOR, "[role=status]").text
        assert "not engaged on anything" in d.find_element(By.ID, "panel-brake").text
        browser.settled()
        browser.accessible()
        browser.shoot("console-rearmed")

        [record] = audit.wait_for(lambda r: orjson.loads(r.value).get("action") == "rearm", timeout=20)
        body = orjson.loads(record.value)
        assert body["target"] == TARGET and body["reason"] == "rule fixed in policy 12"
        assert body["by"].startswith("NSRC (api:")
    finally:
        audit.close()
        reads.close()


def test_a_rearm_without_the_forms_token_is_refused(api: Any, desk: dict[str, str]) -> None:
    async def trip() -> None:
        brakes = BrakeStore.from_url(api.settings.redis_url, api.settings.redis_prefix)
        try:
            await brakes.trip(Trip("source:FAKEBANK", 90, 50, 60, "2026-12-05T03:05:00Z", "worker-2"))
        finally:
            await brakes.close()
    asyncio.run(trip())
    with httpx.Client(base_url=api.url, cookies={"sekat_session": desk["key"]}) as http:
        forged = http.post("/console/brake/rearm", data={"target": "source:FAKEBANK", "reason": "x", "csrf": "guess"})
        assert forged.status_code == 403
        assert "source:FAKEBANK" in http.get("/console").text  # still tripped
        signed_out = httpx.post(api.url + "/console/brake/rearm", data={"target": "source:FAKEBANK", "reason": "x"})
        assert signed_out.status_code == 401


def test_a_key_without_the_read_scope_cannot_sign_in(api: Any) -> None:
    created = sekat(api.env, "apikey", "create", "--agency", "MCMC", "--scopes", "report")
    assert created.returncode == 0, created.stderr
    with httpx.Client(base_url=api.url) as http:
        form = http.get("/console")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None and http.cookies.get("sekat_login_csrf") == csrf.group(1)
        refused = http.post("/console/login", data={"api_key": created.stdout.strip(), "csrf": csrf.group(1)})
        assert refused.status_code == 403 and "lacks the 'read' scope" in html.unescape(refused.text)
        assert "sekat_session" not in http.cookies
        no_token = http.post("/console/login", data={"api_key": created.stdout.strip()})
        assert no_token.status_code == 403 and "sekat_session" not in http.cookies


def test_over_https_the_session_cookie_is_secure(stack: Any, logs_dir: Path, tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    with own_api(stack, logs_dir, "console-tls", str(tls.ca), SEKAT_API_TLS_CERTFILE=str(tls.cert),
                 SEKAT_API_TLS_KEYFILE=str(tls.key)) as served, \
            httpx.Client(base_url=served.url, verify=ssl.create_default_context(cafile=tls.ca)) as http:
        token = sekat(served.env, "apikey", "create", "--agency", "NSRC", "--scopes", "read").stdout.strip()
        form = http.get("/console")
        assert "secure" in form.headers["set-cookie"].lower().split("; ")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        signed_in = http.post("/console/login", data={"api_key": token, "csrf": csrf.group(1)})
        assert signed_in.status_code == 303
        [session] = [c for c in signed_in.headers.get_list("set-cookie") if c.startswith("sekat_session=")]
        assert {"secure", "httponly", "samesite=strict", "path=/console"} <= set(session.lower().split("; "))


def test_an_appeal_is_acknowledged_and_upheld_in_the_console(api: Any, logs_dir: Path, browser: Browser) -> None:
    s, d = api.settings, browser.driver
    ident = f"phone:{APPEALED}"

    async def listed() -> None:
        store = BlocklistStore.from_url(s.redis_url, s.redis_prefix)
        acted = ActedStore.from_url(s.redis_url, s.redis_prefix)
        try:
            await file_report(store, ident, Status.CONFIRMED, "PDRM", "impersonation scam", "PJ/2026/118")
            await acted.record([(ident, "UNBLOCK_NUMBER|MAXIS")], now=100.0)  # Maxis blocked its calls
        finally:
            await store.close()
            await acted.close()
    asyncio.run(listed())
    worker = WorkerProcess(api.env, logs_dir / f"{s.app_id}-worker.log").launch()  # applies the revocation
    out = Collector(s, [s.topic_block, s.topic_appeals])
    try:
        filed = httpx.post(api.url + "/v1/appeals", json={
            "kind": "phone", "value": APPEALED, "appellant": "person",
            "contact": {"name": "Aminah Yusof", "email": EMAIL}, "grounds": "my number was spoofed by the caller",
            "evidence_ref": "Maxis ticket 88123"})
        assert filed.status_code == 202, filed.text
        appeal_id = filed.json()["appeal_id"]
        created = sekat(api.env, "apikey", "create", "--agency", "PDRM", "--scopes", "read,appeal")
        assert created.returncode == 0, created.stderr

        d.delete_all_cookies()
        d.get(api.url + "/console")
        d.find_element(By.ID, "api_key").send_keys(created.stdout.strip())
        submit(browser, "form[action='/console/login'] button")
        listing = d.find_element(By.ID, "panel-appeals").text
        assert appeal_id in listing and ident in listing and "received" in listing and EMAIL not in listing
        browser.settled()
        browser.accessible()
        browser.shoot("console-appeals")

        d.find_element(By.LINK_TEXT, appeal_id).click()
        assert d.current_url == f"{api.url}/console/appeals/{appeal_id}"
        appellant = d.find_element(By.ID, "panel-appellant").text
        assert EMAIL in appellant and "spoofed" in appellant and "Maxis ticket 88123" in appellant
        submit(browser, "form[action$='/review'] button")
        assert "under review" in d.find_element(By.CSS_SELECTOR, "[role=status]").text
        assert "under_review" in d.find_element(By.ID, "panel-appeal").text
        browser.settled()
        browser.accessible()
        browser.shoot("console-appeal")

        d.find_element(By.CSS_SELECTOR, "label[for=outcome-upheld]").click()
        d.find_element(By.ID, "reason").send_keys("the number was spoofed; the subscriber is a victim")
        submit(browser, "form[action$='/decision'] button")
        notice = d.find_element(By.CSS_SELECTOR, "[role=status]").text
        assert notice.startswith("Upheld: the entry is revoked by report")
        assert "nothing is left to do" in d.find_element(By.ID, "panel-act").text
        browser.settled()
        browser.accessible()
        browser.shoot("console-appeal-upheld")

        # A step the API refuses comes back as the appeal's page with the API's status and message.
        pdrm = created.stdout.strip()
        with httpx.Client(base_url=api.url, cookies={"sekat_session": pdrm}) as http:
            csrf = re.search(r'name="csrf" value="([^"]+)"', http.get(f"/console/appeals/{appeal_id}").text)
            assert csrf is not None
            again = http.post(f"/console/appeals/{appeal_id}/review", data={"csrf": csrf.group(1)})
            assert again.status_code == 409 and "is upheld, not received" in again.text
            unreasoned = http.post(f"/console/appeals/{appeal_id}/decision",
                                   data={"csrf": csrf.group(1), "outcome": "rejected"})
            assert unreasoned.status_code == 422 and "Give the decision&#39;s reason" in unreasoned.text

        # The steps are the API's: on the appeals topic, and the worker revokes the entry and releases the block.
        steps = out.wait_for(lambda r: r.topic == s.topic_appeals and r.key == appeal_id.encode(), 3)
        assert [r.json["status"] for r in steps] == ["received", "under_review", "upheld"]
        assert [(e["action"], e["by"]) for e in steps[-1].json["events"]] == [
            ("filed", "person"), ("review", "PDRM"), ("upheld", "PDRM")]
        worker.wait_ready()
        [release] = out.wait_for(lambda r: r.topic == s.topic_block and r.json.get("identifier") == ident
                                 and r.json.get("action") == "UNBLOCK_NUMBER", timeout=30)
        assert release.json["report_id"] == steps[-1].json["revocation_id"]
        assert appeal_id in release.json["reasons"][0]

        # The entry's page shows the appeal by its stage; the contact details stay on the appeal's page.
        d.get(api.url + "/console")
        d.find_element(By.ID, "phone").send_keys(APPEALED)
        d.find_element(By.ID, "purpose").send_keys(f"appeal {appeal_id}")
        submit(browser, "#panel-search button[type=submit]")
        assert "upheld" in d.find_element(By.ID, "panel-appeal").text
        assert EMAIL not in d.find_element(By.TAG_NAME, "main").text
        browser.settled()
        browser.accessible()
        assert EMAIL not in api.log_path.read_text(errors="replace")
    finally:
        out.close()
        worker.stop()


def test_a_key_without_the_appeal_scope_sees_no_appeals(api: Any) -> None:
    token = sekat(api.env, "apikey", "create", "--agency", "PDRM", "--scopes", "read").stdout.strip()
    with httpx.Client(base_url=api.url, cookies={"sekat_session": token}) as http:
        home = http.get("/console")
        assert home.status_code == 200 and "panel-search" in home.text and "panel-appeals" not in home.text
        refused = http.get("/console/appeals/ap-0123456789abcdef")
        assert refused.status_code == 403 and "lacks the 'appeal' scope" in html.unescape(refused.text)
        forged = http.post("/console/appeals/ap-0123456789abcdef/review", data={"csrf": "guess"})
        assert forged.status_code == 403
