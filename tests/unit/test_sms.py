"""The SMS channel: sender IDs, links and domains as identifiers, the SMS decoder, its rules and commands."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sekat.blocklist.filing import file_report
from sekat.decode.sms import decode_sms
from sekat.errors import ConfigError, InvalidIdentifier, InvalidReport
from sekat.identifiers import normalise_sender_id, parse_key
from sekat.records import Action, Entry, Rejection, Sms, Status
from sekat.rules.engine import decide_sms
from sekat.rules.policy import DEFAULT_POLICY_FILE, load_policy, parse_policy
from sekat.rules.registry import Context
from sekat.senders import normalise_sender, parse_sender_registry
from sekat.settings import Settings
from sekat.urls import extract_links, normalise_domain, normalise_url

NOW = datetime(2026, 11, 28, 10, 16, tzinfo=timezone.utc)
POLICY = load_policy(DEFAULT_POLICY_FILE)
REGISTRY = {"sender:MAYBANK": frozenset({"MY-A2P-1", "MY-A2P-2"}), "sender:PDRM": frozenset()}


def sms(**fields: object) -> bytes:
    body = {"event_id": "s-1", "occurred_at": "2026-11-28T10:15:58Z", "sms_id": "MXS-1", "operator": "maxis",
            "sender": "POSLAJU", "recipient": "012-345 6789", "route": "my-agg-9"}
    body.update(fields)
    return orjson.dumps({k: v for k, v in body.items() if v is not None})


def decoded(**fields: object) -> Sms:
    result = decode_sms(sms(**fields), senders=REGISTRY)
    assert isinstance(result, Sms), result
    return result


def listed(key: str, status: Status = Status.CONFIRMED) -> dict[str, Entry]:
    return {key: Entry(key, status, "NSRC", reason="phishing", case_ref="NSRC/1")}


# -- identifiers --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["https://evil.com.my/Pay", "HTTP://WWW.EVIL.COM.MY/Pay", "evil.com.my/Pay",
                                 "https://www.evil.com.my:443/Pay#top", "http://user@Evil.com.my./Pay"])
def test_spellings_of_one_link_are_one_key(raw: str) -> None:
    assert normalise_url(raw).key == "url:evil.com.my/Pay"


def test_an_internationalised_host_is_punycode_and_the_path_keeps_its_case() -> None:
    url = normalise_url("https://www.Mäybank2u.com.my/Login?Next=A")
    assert url.key == "url:xn--mybank2u-0za.com.my/Login?Next=A"
    assert normalise_url("http://xn--mybank2u-0za.com.my/Login?Next=A").key == url.key
    assert [d.key for d in url.domains()] == ["domain:xn--mybank2u-0za.com.my"]


def test_a_link_is_looked_up_with_its_host_and_parents_down_to_the_registrable_domain() -> None:
    url = normalise_url("https://a.login.evil.com.my/x")
    assert [d.key for d in url.domains()] == ["domain:a.login.evil.com.my", "domain:login.evil.com.my",
                                              "domain:evil.com.my"]
    # a private suffix is a suffix: one site on Blogspot is not all of Blogspot
    assert [d.key for d in normalise_url("evil.blogspot.com/p").domains()] == ["domain:evil.blogspot.com"]


@pytest.mark.parametrize("raw", ["com", "com.my", "blogspot.com", "ftp://evil.com.my", ""])
def test_a_bare_public_suffix_or_another_scheme_is_refused(raw: str) -> None:
    with pytest.raises(InvalidIdentifier):
        normalise_domain(raw) if "://" not in raw else normalise_url(raw)


def test_domains_are_normalised_like_hosts() -> None:
    assert normalise_domain("WWW.PosLaju-Track.com.my").key == "domain:poslaju-track.com.my"
    assert normalise_domain("https://poslaju-track.com.my/pay").key == "domain:poslaju-track.com.my"
    assert normalise_domain("mäybank.com").key == normalise_domain("xn--mybank-bua.com").key


def test_links_are_found_in_text_and_words_that_only_look_like_hosts_are_not() -> None:
    text = ("Akaun anda disekat, e.g. bayar RM5.00 di HTTPS://WWW.Evil.COM.my/a?b=1. Atau bit.ly/x9, "
            "atau http://maybank.com@phish.example.com/ sekarang!")
    assert [u.key for u in extract_links(text)] == ["url:evil.com.my/a?b=1", "url:bit.ly/x9",
                                                    "url:phish.example.com/"]


def _links_found_by_searching_everywhere(text: str) -> list[str]:
    """What ``extract_links`` finds, the long way: the link pattern tried on the whole of every text."""
    from sekat.urls import _LINK_RE, _TRAILING

    found: dict[str, None] = {}
    for match in _LINK_RE.finditer(text):
        try:
            found.setdefault(normalise_url(match.group(0).rstrip(_TRAILING)).key)
        except InvalidIdentifier:
            continue
        if len(found) >= 10:
            break
    return list(found)


_LINKISH = st.builds("".join, st.lists(st.sampled_from(list("ab.-_/:?#@ 1\u00c4\u00e4\u0661") + [
    "www.", "https://", "com.my", "bit.ly", ". ", ".5", "RM5.00"]), max_size=40))


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(_LINKISH,
                     st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)))
def test_a_text_is_searched_for_links_only_where_one_can_be_and_finds_the_same_links(text: str) -> None:
    assert [u.key for u in extract_links(text)] == _links_found_by_searching_everywhere(text)


def test_a_second_link_to_a_host_already_seen_does_not_normalise_the_host_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import idna

    from sekat import urls

    encoded: list[str] = []
    real = idna.encode
    monkeypatch.setattr(idna, "encode", lambda host, **kw: encoded.append(host) or real(host, **kw))
    first = [u.key for u in extract_links("Jejak di https://www.Shop-Cost-Pin.example.com.my/t/1 hari ini")]
    again = [(u.key, [d.key for d in u.domains()])
             for u in extract_links("Jejak di https://www.Shop-Cost-Pin.example.com.my/t/2 dan /t/3")]
    assert first == ["url:shop-cost-pin.example.com.my/t/1"]
    assert again == [("url:shop-cost-pin.example.com.my/t/2",
                      ["domain:shop-cost-pin.example.com.my", "domain:example.com.my"])]
    assert encoded == ["www.shop-cost-pin.example.com.my"]  # once, for the first link
    assert urls.registrable("shop-cost-pin.example.com.my") == "example.com.my"


@pytest.mark.parametrize("raw", ["MAYBANK", "maybank", "May-Bank", "MAY BANK", "may.bank"])
def test_sender_ids_ignore_case_and_separators(raw: str) -> None:
    assert normalise_sender(raw).key == "sender:MAYBANK"


def test_a_numeric_sender_is_a_phone_number_and_a_short_code_that_is_not_is_a_sender_id() -> None:
    assert normalise_sender("016-234 5678").key == "phone:+60162345678"
    assert normalise_sender("66300").key.startswith(("sender:", "phone:"))
    with pytest.raises(InvalidIdentifier):
        normalise_sender_id("BANK <ALERT>")


def test_the_registry_names_each_protected_sender_with_its_routes_and_a_bad_line_by_number() -> None:
    registry = parse_sender_registry(["# banks", "May Bank: my-a2p-1, MY-A2P-2", "PDRM:"])
    assert registry == REGISTRY
    with pytest.raises(InvalidIdentifier, match="line 2"):
        parse_sender_registry(["MAYBANK: A", "maybank: B"])
    with pytest.raises(InvalidIdentifier, match="line 1"):
        parse_sender_registry(["MAYBANK A"])


def test_the_registry_setting_is_checked_at_start_up_and_its_senders_can_never_be_listed(tmp_path: Path) -> None:
    good, bad = tmp_path / "senders.txt", tmp_path / "bad.txt"
    good.write_text("MAYBANK: MY-A2P-1\n")
    bad.write_text("MAYBANK: MY A2P\n")
    settings = Settings(sender_registry_file=str(good))
    settings.validate()
    assert "sender:MAYBANK" in settings.protected_keys()
    with pytest.raises(InvalidReport, match="protected"):
        file_report("sender", "May-Bank", "reported", "NSRC", NOW, protected=settings.protected_keys())
    with pytest.raises(ConfigError, match="SEKAT_SENDER_REGISTRY_FILE"):
        Settings(sender_registry_file=str(bad)).validate()


def test_reports_on_senders_links_and_domains_are_filed_normalised() -> None:
    assert file_report("domain", "WWW.Evil.com.my", "reported", "nsrc", NOW).key == "domain:evil.com.my"
    assert file_report("url", "HTTPS://Evil.com.my/Pay", "confirmed", "NSRC", NOW).key == "url:evil.com.my/Pay"
    report = file_report("sender", "Pos Laju", "reported", "NSRC", NOW,
                         links=[{"kind": "domain", "value": "poslaju-track.com.my"}])
    assert (report.key, report.links) == ("sender:POSLAJU", ("domain:poslaju-track.com.my",))
    assert parse_key(report.key).key == report.key
    with pytest.raises(InvalidReport, match="public suffix"):
        file_report("domain", "com.my", "reported", "NSRC", NOW)
    # 475 characters as written, 607 once the host is punycode: more than the reports agent reads back
    host = ".".join(f"中文网站测试例子域名{i}" for i in range(5)) + ".com.my"
    with pytest.raises(InvalidReport, match="once normalised"):
        file_report("url", f"https://{host}/" + "x" * 400, "reported", "NSRC", NOW)


# -- decoding -------------------------------------------------------------------------------------------------------
def test_an_sms_keeps_its_links_and_not_its_text() -> None:
    record = decoded(text="Bayar di https://WWW.Evil.COM.my/pay sekarang", urls=["bit.ly/x9"])
    assert [u.key for u in record.links] == ["url:evil.com.my/pay", "url:bit.ly/x9"]
    assert (record.operator, record.route, record.recipient.e164) == ("MAXIS", "MY-AGG-9", "+60123456789")
    assert "Bayar" not in repr(record)


@pytest.mark.parametrize(("fields", "reason", "field"), [
    ({"sender": "BANK <ALERT>"}, "invalid_sender", "sender"),
    ({"sender": None}, "missing_field", "sender"),
    ({"recipient": "hello"}, "invalid_phone", "recipient"),
    ({"urls": ["ftp://x.example.com"]}, "invalid_link", "urls[0]"),
    ({"urls": "evil.com"}, "wrong_type", "urls"),
    ({"route": "MY AGG"}, "invalid_value", "route"),
    ({"text": "x" * 5000}, "invalid_value", "text"),
])
def test_a_malformed_sms_is_rejected_naming_the_field(fields: dict[str, object], reason: str, field: str) -> None:
    result = decode_sms(sms(**fields))
    assert isinstance(result, Rejection) and (result.reason, result.field) == (reason, field), result


# -- rules and commands -------------------------------------------------------------------------------------------
def test_a_listed_domain_blocks_the_sms_with_block_sms_to_its_operator() -> None:
    record = decoded(text="Bayar di https://WWW.Login.Evil.COM.my/pay")
    verdict = decide_sms(record, Context(NOW, listed("domain:evil.com.my", Status.REPORTED)), POLICY)
    [command] = verdict.decision.commands
    assert (command.action, command.institution, command.target) == (Action.BLOCK_SMS, "MAXIS", "POSLAJU")
    body = command.to_json()
    assert (body["operator"], body["sender"], body["sms_id"], body["rule"]) == ("MAXIS", "POSLAJU", "MXS-1",
                                                                                "link-on-blocklist")
    assert verdict.decision.matches[0].identifier == "domain:evil.com.my"


def test_a_reported_sender_labels_and_a_confirmed_one_blocks() -> None:
    record = decoded(sender="+60 16-234 5678")
    reported = decide_sms(record, Context(NOW, listed("phone:+60162345678", Status.REPORTED)), POLICY)
    confirmed = decide_sms(record, Context(NOW, listed("phone:+60162345678")), POLICY)
    assert [c.action for c in reported.decision.commands] == [Action.LABEL_SMS]
    assert [c.action for c in confirmed.decision.commands] == [Action.BLOCK_SMS]


@pytest.mark.parametrize(("sender", "route", "outcome"), [
    ("May-Bank", "INTL-GW-3", "BLOCK"),  # a protected sender ID over a route not its own
    ("MAYBANK", None, "LABEL"),  # with no route given: labelled (weaker evidence)
    ("PDRM", "MY-A2P-1", "BLOCK"),  # registered on no route at all
    ("maybank", "my-a2p-2", "ALLOW"),  # over a route registered for it
    ("POSLAJU", "INTL-GW-3", "ALLOW"),  # not on the registry
])
def test_an_impersonated_sender_id_is_caught_by_its_route(sender: str, route: str | None, outcome: str) -> None:
    verdict = decide_sms(decoded(sender=sender, route=route), Context(NOW, {}), POLICY)
    assert verdict.decision.outcome == outcome
    if outcome != "ALLOW":
        want = Action.BLOCK_SMS if outcome == "BLOCK" else Action.LABEL_SMS
        assert [c.action for c in verdict.decision.commands] == [want]
        assert verdict.decision.matches[0].rule == "sender_impersonation"


def test_a_clean_sms_is_allowed_with_nothing_to_say() -> None:
    verdict = decide_sms(decoded(text="Your parcel arrives today, see https://www.pos.com.my/track"),
                         Context(NOW, listed("domain:evil.com.my")), POLICY)
    assert (verdict.decision.outcome, verdict.decision.commands, verdict.decision.matches) == ("ALLOW", (), ())


def test_a_policy_without_sms_actions_gets_the_default_and_refuses_call_actions_for_sms() -> None:
    base = {"version": "v", "rules": {}, "actions": {
        "transfers": {"BLOCK": [], "HOLD": [], "LABEL": []}, "calls": {"BLOCK": [], "HOLD": [], "LABEL": []}}}
    assert parse_policy(base).actions["sms"]  # the default BLOCK_SMS / LABEL_SMS table
    base["actions"]["sms"] = {"BLOCK": ["BLOCK_CALL"], "HOLD": [], "LABEL": []}
    with pytest.raises(Exception, match="cannot be sent for sms"):
        parse_policy(base)


# -- hostile input: a record or a reason, never an exception ---------------------------------------------------------
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), _TEXT, st.lists(_TEXT, max_size=12))


@settings(max_examples=400, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(["sender", "recipient", "route", "text", "urls", "operator",
                                               "sms_id", "occurred_at"]), _VALUE, max_size=8),
       text=_TEXT)
def test_any_sms_is_a_record_or_a_reason_and_any_text_gives_links_or_none(fields: dict[str, object],
                                                                          text: str) -> None:
    from sekat.decode.fields import REASONS

    result = decode_sms(sms(**fields), senders=REGISTRY)
    assert isinstance(result, Sms) or (isinstance(result, Rejection) and result.reason in REASONS), result
    for link in extract_links(text + " https://" + text + "/" + text):
        assert link.key.startswith("url:") and link.registrable
