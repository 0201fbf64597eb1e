"""The officers' feed in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``).

Real path end to end: an event goes to the embedded broker, a real ``riskflow
worker`` raises the alert, a real ``riskflow feed`` process stores it and pushes
it to the open page, where an officer acknowledges it; after a reload the state
is still there. The risk board 风险看板 (the home page), a case and its report: an
institution raised to red by its events leads the board; the officer opens its case, assigns
it, writes a note, reads the explanation and the regulation, closes it as confirmed; after a
reload all of it is still there, and a viewer's token cannot act. Screenshots are left in the
test's tmp dir (``feed-*.png``, ``board-*.png``).
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from riskflow.broker import free_port
from riskflow.replay import route
from riskflow.store import open_store
from tests.support.browser_tools import OFFICER_TOKEN, OTHER_OFFICER_TOKEN, VIEWER_TOKEN, WAIT, _api, _start_feed
from tests.support.kafka_fixtures import Stack


def _binary(*names: str) -> str:
    for n in names:
        path = shutil.which(n)
        if path:
            return path
    pytest.fail(f"{names[0]} not installed: apt-get install chromium chromium-driver (listed in .ci/apt-packages)")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = _binary("chromium", "chromium-browser")
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chrome-profile'}",
        "--window-size=1500,950",
        "--lang=zh-CN",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console: CSP violations show there
    service = Service(executable_path=_binary("chromedriver"), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _rule_row(driver: webdriver.Chrome, entity: str = "PFM-330100-0042") -> tuple[str, str] | bool:
    """(alert id, row text) of ``entity``'s guaranteed-return alert's list row, or False.

    Returns values, not elements: the list re-renders on every live update, so an
    element can go stale between two calls (the waits ignore stale elements and poll again).
    """
    for row in driver.find_elements(By.CSS_SELECTOR, "#alerts tbody tr[data-alert-id]"):
        text = row.text
        if "承诺保本保收益" in text and entity in text:
            return row.get_attribute("data-alert-id") or "", text
    return False


def _ad(entity: str, n: int) -> bytes:
    """An advertisement promising guaranteed returns -> the worker raises pf.guaranteed_return."""
    event = {
        "schema": "riskflow.event/v1",
        "event_id": f"browser-ad-{n}",
        "event_type": "advertisement.published",
        "entity_id": entity,
        "entity_kind": "private_fund_manager",
        "region": "330100",
        "event_time": "2025-04-11T10:00:00+08:00",
        "source": "advertising_monitor",
        # (a private roadshow at 10%: no public-promotion or 4xLPR rule fires alongside)
        "payload": {"channel": "roadshow", "promised_return": 0.10, "guaranteed": True, "text": "保本保息"},
    }
    return json.dumps(event).encode()


def test_alert_appears_live_is_acknowledged_and_stays_so(stack: Stack, browser: webdriver.Chrome) -> None:
    store_path = str(stack.tmp / "alerts.sqlite3")
    port = free_port()
    stack.start_worker()
    feed = _start_feed(stack, store_path, port)
    try:
        browser.get(f"http://127.0.0.1:{port}/#token={OFFICER_TOKEN}")
        # The page re-renders #detail after an action: an element found a moment ago may be gone; poll again.
        wait = WebDriverWait(browser, WAIT, poll_frequency=0.3, ignored_exceptions=[StaleElementReferenceException])
        wait.until(lambda d: "on" in d.find_element(By.ID, "conn").get_attribute("class"))
        assert "li.na · officer" in browser.find_element(By.ID, "me").text
        assert browser.find_element(By.ID, "board-view").is_displayed(), "the board is the home page"
        browser.find_element(By.CSS_SELECTOR, '#nav a[data-view="alerts"]').click()
        wait.until(lambda d: d.find_element(By.ID, "list-view").is_displayed())
        assert not browser.find_elements(By.CSS_SELECTOR, "#alerts tbody tr"), "the store starts empty"
        region_options = browser.find_element(By.CSS_SELECTOR, "#filters select[name=region]").text
        assert "杭州 Hangzhou" in region_options and "丽水 Lishui" in region_options

        stack.produce([(r.topic, r.key, r.value) for r in route([_ad("PFM-330100-0042", 1)], stack.settings)])

        found = wait.until(_rule_row)  # appears without a reload, pushed over server-sent events
        assert isinstance(found, tuple)
        alert_id, text = found
        assert "承诺保本保收益" in text and "Guaranteed-return promise" in text and "PFM-330100-0042" in text
        assert "杭州 Hangzhou" in text and "待处置 open" in text and "2025-04-11 10:00" in text

        # Pause 暂停: the list freezes while the officer reads; a new alert only counts in the badge.
        browser.find_element(By.ID, "pause").click()
        stack.produce([(r.topic, r.key, r.value) for r in route([_ad("PFM-330100-0043", 2)], stack.settings)])
        # (the rule's alert and the entity's risk.level alert: two updates)
        wait.until(lambda d: d.find_element(By.ID, "pending").text.startswith("2 new"))
        assert _rule_row(browser, "PFM-330100-0043") is False, "a paused list does not change"
        browser.find_element(By.ID, "pause").click()  # resume 继续: the waiting alert is applied
        wait.until(lambda d: _rule_row(d, "PFM-330100-0043"))
        assert not browser.find_element(By.ID, "pending").is_displayed()

        # Each interaction runs inside a wait, so that a re-render in between just means another try.
        row_cell = f'#alerts tr[data-alert-id="{alert_id}"] td'  # the first cell, not the entity link
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, row_cell).click() or True)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#detail").get_attribute("data-alert-id") == alert_id)
        note = "已电话核实 called the manager"
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#detail input[name=note]").send_keys(note) or True)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#detail input[name=note]").get_attribute("value") == note)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#detail button[data-action=ack]").click() or True)
        wait.until(lambda d: "acknowledged" in d.find_element(By.CSS_SELECTOR, "#detail [data-field=status]").text)
        audit = "li.na · ack 确认: 待处置 open → 已确认 acknowledged"  # bilingual
        wait.until(lambda d: audit in d.find_element(By.CSS_SELECTOR, "#detail ol.audit").text)
        browser.save_screenshot(str(stack.tmp / "feed-list.png"))

        browser.refresh()
        found = wait.until(_rule_row)
        assert found == (alert_id, found[1]) and "已确认 acknowledged" in found[1], "the acknowledgement persisted"  # type: ignore[index]

        # Filters: another city hides it; its own city with status "acknowledged" shows it again.
        Select(browser.find_element(By.CSS_SELECTOR, "#filters select[name=region]")).select_by_value("330300")
        wait.until(lambda d: _rule_row(d) is False)
        Select(browser.find_element(By.CSS_SELECTOR, "#filters select[name=region]")).select_by_value("330100")
        Select(browser.find_element(By.CSS_SELECTOR, "#filters select[name=status]")).select_by_value("acknowledged")
        found = wait.until(_rule_row)
        assert "已确认 acknowledged" in found[1]  # type: ignore[index]

        with open_store(store_path) as s:
            stored = s.get(alert_id)
            trail = s.audit(alert_id)
        assert stored.status == "acknowledged" and stored.alert.rule_id == "pf.guaranteed_return"
        assert [(e.action, e.actor, e.note) for e in trail] == [("ack", "li.na", note)]

        # The entity page: risk-index history chart, episodes timeline, evidence.
        wait.until(lambda d: d.find_element(By.LINK_TEXT, "PFM-330100-0042").click() or True)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#entity-view svg.chart circle"))
        page = browser.find_element(By.ID, "entity-view").text
        assert "Episodes 预警事件时间线" in page and "承诺保本保收益" in page and "guaranteed" in page
        browser.save_screenshot(str(stack.tmp / "feed-entity.png"))
        # The page fits its Content-Security-Policy: the browser refused nothing (an inline style
        # attribute or handler would be reported here).
        console = [e["message"] for e in browser.get_log("browser")]
        assert not [m for m in console if "Content Security Policy" in m or "Refused to" in m], console
    finally:
        feed.terminate()
        feed.wait(30)


def _event(n: int, entity: str, event_type: str, time: str, payload: dict[str, object]) -> bytes:
    return json.dumps(
        {
            "schema": "riskflow.event/v1",
            "event_id": f"board-{n}",
            "event_type": event_type,
            "entity_id": entity,
            "entity_kind": "private_fund_manager",
            "region": entity.split("-")[1],
            "event_time": time,
            "source": "browser-test",
            "payload": payload,
        }
    ).encode()


def _board_rows(driver: webdriver.Chrome) -> list[str]:
    return [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#board tbody tr")]


def test_board_case_and_report(stack: Stack, browser: webdriver.Chrome) -> None:
    red, other = "PFM-330100-0077", "PFM-330300-0078"
    store_path = str(stack.tmp / "alerts.sqlite3")
    port = free_port()
    stack.start_worker()
    feed = _start_feed(stack, store_path, port)
    base = f"http://127.0.0.1:{port}"
    try:
        browser.get(f"{base}/#token={OFFICER_TOKEN}")
        wait = WebDriverWait(browser, WAIT, poll_frequency=0.3, ignored_exceptions=[StaleElementReferenceException])
        wait.until(lambda d: "on" in d.find_element(By.ID, "conn").get_attribute("class"))
        assert len(browser.find_elements(By.CSS_SELECTOR, "#cities .city")) == 11, "a card per city of Zhejiang"
        events = [
            _event(
                i,
                red,
                "fund.subscription",
                f"2025-04-0{i}T10:00:00+08:00",
                {"fund_id": "F-1", "investor_id": f"inv-{i}", "investor_type": "individual", "amount": 1_000_000},
            )
            for i in (1, 2, 3)
        ]
        events.append(_event(4, other, "advertisement.published", "2025-04-10T10:00:00+08:00", _AD_PAYLOAD))
        events.append(_event(5, red, "amac.notice", "2025-04-11T10:00:00+08:00", {"notice": "lost_contact"}))
        stack.produce([(r.topic, r.key, r.value) for r in route(events, stack.settings)])

        # The board updates live: the red institution leads, with its dimensions, tags and exposure.
        wait.until(lambda d: len(_board_rows(d)) >= 2 and red in _board_rows(d)[0])
        top = _board_rows(browser)[0]
        assert "红 Red" in top and "3 人" in top and "¥3,000,000" in top and "杭州 Hangzhou" in top
        assert "待处置 open" in top, top
        bars = browser.find_elements(By.CSS_SELECTOR, "#board tbody tr:first-child .dim-bar")
        assert bars and all(b.size["width"] > 0 for b in bars), "dimension bars are drawn"
        # ... at the points each dimension adds to the index, as the alert carried them
        row = next(r for r in _api(base, "/api/board")["rows"] if r["entity_id"] == red)
        assert row["dimensions"] and not any(d["estimated"] for d in row["dimensions"]), row["dimensions"]
        assert sum(d["points"] for d in row["dimensions"]) == pytest.approx(row["risk_index"], abs=0.2)
        shown = browser.find_element(By.CSS_SELECTOR, "#board tbody tr:first-child [data-field=dimensions]").text
        for d in row["dimensions"]:
            assert d["zh"] in shown and f"{d['points']:.1f}" in shown, (d, shown)
        hz = browser.find_element(By.CSS_SELECTOR, '#cities .city[data-region="330100"]').text
        assert "杭州 Hangzhou" in hz and "¥3,000,000" in hz
        browser.save_screenshot(str(stack.tmp / "board-home.png"))

        # A click on a city filters the board; a second click clears it.
        browser.find_element(By.CSS_SELECTOR, '#cities .city[data-region="330300"]').click()
        wait.until(lambda d: len(_board_rows(d)) == 1 and other in _board_rows(d)[0])
        browser.find_element(By.CSS_SELECTOR, '#cities .city[data-region="330300"]').click()
        wait.until(lambda d: len(_board_rows(d)) >= 2)

        # Keyboard: j then k comes back to the first row; Enter opens its case.
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys("j")
        wait.until(lambda d: other in d.find_element(By.CSS_SELECTOR, "#board tr.selected").text)
        body.send_keys("k")
        wait.until(lambda d: red in d.find_element(By.CSS_SELECTOR, "#board tr.selected").text)
        body.send_keys("\ue007")  # Enter
        wait.until(
            lambda d: (
                d.find_element(By.ID, "case-view").is_displayed() and red in d.find_element(By.ID, "case-view").text
            )
        )
        page = browser.find_element(By.ID, "case-view").text
        assert "立即处置、移交" in page and "《防范和处置非法集资条例》" in page, page
        assert "协会公示失联" in page and "AMAC lost-contact notice" in page, page
        # the threshold rule's evidence as a sentence, and the index's make-up in points
        assert "AMAC notice: lost contact" in page and "中基协公示：失联" in page, page
        assert "风险指数构成" in page and row["dimensions"][0]["zh"] in page, page
        case_id = browser.current_url.rsplit("/", 1)[1]

        def act(css: str, text: str | None = None) -> None:
            if text is not None:
                wait.until(lambda d: d.find_element(By.CSS_SELECTOR, css).send_keys(text) or True)
            else:
                wait.until(lambda d: d.find_element(By.CSS_SELECTOR, css).click() or True)

        act("#case-view input[name=assignee]", "wang.wei")
        act("#case-view button[data-action=assign]")
        wait.until(lambda d: "wang.wei" in d.find_element(By.CSS_SELECTOR, "[data-field=case-status]").text)
        act("#case-view textarea[name=note]", "已电话核实 phoned the manager")
        act("#case-view button[data-action=note]")
        wait.until(lambda d: "已电话核实" in d.find_element(By.CSS_SELECTOR, "[data-field=case-log]").text)
        act("#case-view input[data-step='1']")
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#case-view input[data-step='1']").is_selected())
        # Another officer writes in the diary: the open page shows it at once (pushed on the live
        # stream), and what this officer is typing stays.
        act("#case-view input[name=reason]", "draft")
        _api(base, f"/api/cases/{case_id}/note", {"note": "现场核查 on-site visit booked"}, OTHER_OFFICER_TOKEN)
        wait.until(lambda d: "zhang.san · note" in d.find_element(By.CSS_SELECTOR, "[data-field=case-log]").text)
        assert browser.find_element(By.CSS_SELECTOR, "#case-view input[name=reason]").get_attribute("value") == "draft"
        # This officer's own action re-renders the case too: the field it sent is cleared, the
        # reason being typed stays.
        act("#case-view textarea[name=note]", "补充材料 asked for the bank statements")
        act("#case-view button[data-action=note]")
        wait.until(lambda d: "补充材料" in d.find_element(By.CSS_SELECTOR, "[data-field=case-log]").text)
        note = "#case-view textarea[name=note]"
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, note).get_attribute("value") == "")
        assert browser.find_element(By.CSS_SELECTOR, "#case-view input[name=reason]").get_attribute("value") == "draft"
        browser.find_element(By.CSS_SELECTOR, "#case-view input[name=reason]").clear()
        browser.save_screenshot(str(stack.tmp / "board-case.png"))
        Select(browser.find_element(By.CSS_SELECTOR, "#case-view select[name=outcome]")).select_by_value("confirmed")
        act("#case-view input[name=reason]", "manager unreachable, funds missing")
        act("#case-view button[data-action=close]")
        wait.until(lambda d: "已结案 closed" in d.find_element(By.CSS_SELECTOR, "[data-field=case-status]").text)

        browser.refresh()
        wait.until(lambda d: "确认风险" in d.find_element(By.ID, "case-view").text)
        log = browser.find_element(By.CSS_SELECTOR, "[data-field=case-log]").text
        for line in (
            "li.na · assign",
            "li.na · note",
            "li.na · check",
            "zhang.san · note",
            "li.na · close",
            "已电话核实",
        ):
            assert line in log, log
        assert browser.find_element(By.CSS_SELECTOR, "#case-view input[data-step='1']").is_selected()

        act("#report-link")
        wait.until(lambda d: "处置建议 Disposal recommendation" in d.find_element(By.ID, "report-view").text)
        report = browser.find_element(By.ID, "report-view").text
        assert red in report and "已电话核实" in report and "法规依据" in report
        assert f"{row['dimensions'][0]['zh']} {row['dimensions'][0]['dimension']}" in report, report
        browser.save_screenshot(str(stack.tmp / "board-report.png"))
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})  # the print stylesheet
        assert not browser.find_element(By.TAG_NAME, "header").is_displayed()
        assert browser.find_element(By.CSS_SELECTOR, "article.report").is_displayed()
        browser.save_screenshot(str(stack.tmp / "board-report-print.png"))
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys("\ue00c")  # Esc: back to the board
        wait.until(lambda d: d.find_element(By.ID, "board-view").is_displayed())

        # The rule-quality view counts the officer's outcome against the rule that opened the case.
        browser.find_element(By.CSS_SELECTOR, '#nav a[data-view="quality"]').click()
        wait.until(lambda d: "协会公示失联" in d.find_element(By.ID, "quality-view").text)
        q_row = next(
            r.text for r in browser.find_elements(By.CSS_SELECTOR, "#quality tbody tr") if "协会公示失联" in r.text
        )
        assert "100.0%" in q_row, q_row
        browser.save_screenshot(str(stack.tmp / "board-quality.png"))
        # The institution's page: header with level, index, tags, exposure and its case.
        browser.get(f"{base}/#/entity/{red}")
        wait.until(lambda d: "确认风险" in d.find_element(By.ID, "entity-view").text)
        page = browser.find_element(By.ID, "entity-view").text
        assert "红 Red" in page and "3 人" in page and "协会公示失联" in page and "2025-04-11" in page, page
        # the dimension breakdown over time: stacked bars per history point, with a legend
        assert "风险维度构成走势" in page and row["dimensions"][0]["zh"] in page, page
        assert browser.find_elements(By.CSS_SELECTOR, "svg.dim-chart rect"), "the breakdown is drawn"
        browser.save_screenshot(str(stack.tmp / "board-entity.png"))

        with open_store(store_path) as s:
            (case,) = s.list_cases(entity_id=red)
        assert (case.case_id, case.status, case.outcome, case.assignee) == (case_id, "closed", "confirmed", "wang.wei")

        # A viewer reads but cannot act.
        req = urllib.request.Request(
            f"{base}/api/cases/{case_id}/note",
            data=b'{"note": "x"}',
            headers={"Authorization": f"Bearer {VIEWER_TOKEN}", "Content-Type": "application/json"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=10)
        assert refused.value.code == 403
        with open_store(store_path) as s:
            assert s.get_case(case_id) == case
        console = [e["message"] for e in browser.get_log("browser")]
        assert not [m for m in console if "Content Security Policy" in m or "Refused to" in m], console
    finally:
        feed.terminate()
        feed.wait(30)


_AD_PAYLOAD = {"channel": "roadshow", "promised_return": 0.10, "guaranteed": True, "text": "保本保息"}
