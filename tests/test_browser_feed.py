"""The officers' feed in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``).

Real path end to end: an event goes to the embedded broker, a real ``riskflow
worker`` raises the alert, a real ``riskflow feed`` process stores it and pushes
it to the open page, where an officer acknowledges it; after a reload the state
is still there. Screenshots are left in the test's tmp dir (``feed-*.png``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
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
from tests.kafka_fixtures import Stack

OFFICER_TOKEN = "br0wser-0fficer-token"
WAIT = 120.0  # generous: the machine is shared; nothing here is a timing assertion


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


def _start_feed(stack: Stack, store: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        **stack.env,
        RISKFLOW_STORE_URL=store,
        RISKFLOW_FEED_PORT=str(port),
        RISKFLOW_FEED_TOKENS=f"{OFFICER_TOKEN}:officer:li.na",
        RISKFLOW_DATA_DIR=str(stack.tmp / "feed-data"),
    )
    with open(stack.tmp / "feed.log", "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "riskflow", "feed"], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.3)
    pytest.fail("the feed did not come up:\n" + (stack.tmp / "feed.log").read_text(errors="replace")[-3000:])


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
        assert not browser.find_elements(By.CSS_SELECTOR, "#alerts tbody tr"), "the store starts empty"
        region_options = browser.find_element(By.CSS_SELECTOR, "select[name=region]").text
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
        Select(browser.find_element(By.CSS_SELECTOR, "select[name=region]")).select_by_value("330300")
        wait.until(lambda d: _rule_row(d) is False)
        Select(browser.find_element(By.CSS_SELECTOR, "select[name=region]")).select_by_value("330100")
        Select(browser.find_element(By.CSS_SELECTOR, "select[name=status]")).select_by_value("acknowledged")
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
