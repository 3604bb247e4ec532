"""The operator's tools in the web console, in a real Chromium against ``saga dev`` on
real Kafka and PostgreSQL: where a running saga waits (its stack, with file:line), a
reset to an event picked in the timeline, the repair of a failed compensation, and a
batch started from the Runs page's filter (dry run, then the real one) whose progress
reaches its end.

Screenshots go to ``.cache/console-screenshots/`` (not committed).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from orchestrator.devstack import providers
from tests.integration import console_sagas
from tests.integration.browser import chromium_session
from tests.integration.dev_process import DevServer, console_dev
from tests.integration.http_helpers import READ_TOKEN, bearer
from tests.integration.test_console_browser import (
    confirm,
    run_status,
    shot,
    wait_for,
    waiting,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def refund_down(tmp_path: Path) -> Path:
    flag = tmp_path / "refund-down"
    flag.touch()
    return flag


@pytest.fixture
def dev(
    kafka: providers.KafkaHandle,
    database: str,
    topic_prefix: str,
    tmp_path: Path,
    refund_down: Path,
) -> Iterator[DevServer]:
    env = {
        console_sagas.REFUND_DOWN_ENV: str(refund_down),
        "SAGA_HTTP_READ_TOKENS": READ_TOKEN,  # saga http takes it beside its admin token
    }
    with console_dev(kafka.bootstrap_servers, database, topic_prefix, tmp_path, env=env) as server:
        yield server


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    with chromium_session(tmp_path / "chromium-profile") as driver:
        yield driver


def start(dev: DevServer, workflow: str, workflow_id: str, amount: int, **extra: Any) -> None:
    body = {
        "workflow": workflow,
        "id": workflow_id,
        "task_queue": "console",
        "input": {"order_id": workflow_id, "amount": amount},
        "wait": 10,
        **extra,
    }
    r = httpx.post(f"{dev.api_url}/v1/workflows", json=body, headers=bearer(dev.token), timeout=30)
    assert r.status_code in (201, 202), r.text


def status_of(dev: DevServer, workflow_id: str) -> str:
    r = httpx.get(
        f"{dev.api_url}/v1/workflows/{workflow_id}", headers=bearer(dev.token), timeout=30
    )
    assert r.status_code == 200, r.text
    return str(r.json()["workflow"]["status"])


def sleep_line() -> int:
    """The line of ``console.hold``'s durable sleep, where its stack must point."""
    lines, first = inspect.getsourcelines(console_sagas.hold)
    return first + next(i for i, text in enumerate(lines) if "ctx.sleep(" in text)


def open_page(driver: WebDriver, dev: DevServer, hash_path: str) -> None:
    driver.get(f"{dev.console_url}#{hash_path}")


def click(driver: WebDriver, css: str) -> None:
    """Click once the element is there (the live refresh may replace it meanwhile)."""

    def attempt(d: WebDriver) -> bool:
        d.find_element(By.CSS_SELECTOR, css).click()
        return True

    waiting(driver).until(attempt)


@pytest.mark.timeout(300)  # starts a stack and a browser on a shared 2-core machine
def test_console_operator_tools_stack_reset_repair_and_batch(
    dev: DevServer, browser: WebDriver, refund_down: Path
) -> None:
    start(dev, "console.hold", "hold-stack", 10)
    start(dev, "console.fragile", "fragile-1", 500)
    for i in range(3):
        start(dev, "console.hold", f"hold-b{i}", 10, search_attributes={"group": "b1"})
    start(dev, "console.hold", "hold-other", 10, search_attributes={"group": "b2"})

    open_page(browser, dev, "/runs/hold-stack")
    wait_for(browser, "#login")
    browser.find_element(By.ID, "token").send_keys(dev.token)
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()

    # where is it stuck: the main task awaits its durable timer, at the sleep's line
    wait_for(browser, "#timeline li[data-type=TimerStarted]")
    expected = f"console_sagas.py:{sleep_line()}"
    main_task = '#stack .stack-task[data-task="main"]'

    def at_the_sleep(d: WebDriver) -> bool:
        found = d.find_elements(By.CSS_SELECTOR, f"{main_task} .where")
        if found and found[0].text.endswith(expected):
            return True
        d.find_element(By.ID, "stack-refresh").click()  # asked before the timer started
        return False

    waiting(browser).until(at_the_sleep)
    task = browser.find_element(By.CSS_SELECTOR, main_task)
    assert "timer" in task.find_element(By.CSS_SELECTOR, ".awaiting").text
    assert "in hold" in task.text
    shot(browser, "7-run-stack")

    # reset to an event picked in the timeline: the reserve step's completion
    # (the live refresh redraws the page every second: read and click through retries)
    before = waiting(browser).until(lambda d: d.find_element(By.ID, "run-of").text)
    completed = "#timeline li[data-type=ActivityCompleted]"
    seq = waiting(browser).until(
        lambda d: d.find_element(By.CSS_SELECTOR, completed).get_attribute("data-seq")
    )
    click(browser, f'#timeline li[data-seq="{seq}"] > .seq')
    assert browser.find_element(By.ID, "reset-event").get_attribute("value") == seq
    browser.find_element(By.ID, "reset-reason").send_keys("redo the wait")
    browser.find_element(By.ID, "reset").click()
    question = confirm(browser)
    assert f"Reset hold-stack to event {seq} (ActivityCompleted)?" in question, question
    assert "signals received after that point are sent to it again" in question
    waiting(browser).until(lambda d: d.find_element(By.ID, "run-of").text not in ("", before))
    # the new run replayed up to the point, then decided again: its own timer
    wait_for(browser, "#timeline li[data-type=TimerStarted]")
    assert run_status(browser) == "RUNNING"

    # repair: the refund failed its policy while the bank was down; the bank is back
    open_page(browser, dev, "/runs/fragile-1")
    waiting(browser).until(lambda d: run_status(d) == "COMPENSATION_FAILED")
    refund_down.unlink()
    wait_for(browser, "#repair")
    assert not browser.find_elements(By.ID, "cancel")
    assert not browser.find_elements(By.ID, "stack")  # a closed run has no stack
    # (a closed run is not refreshed: the repair form stays as it is)
    options = [
        o.get_attribute("value")
        for o in browser.find_elements(By.CSS_SELECTOR, "#repair-action option")
    ]
    assert options == ["", "console.refund"]  # retry, or skip the one that failed
    browser.find_element(By.ID, "repair-reason").send_keys("bank is back")
    browser.find_element(By.ID, "repair-run").click()
    question = confirm(browser)
    assert "Retry the failed compensations of fragile-1 (console.refund)?" in question, question
    waiting(browser).until(lambda d: run_status(d) == "FAILED")  # compensated: the charge's error
    wait_for(browser, "#timeline li[data-type=CompensationRepaired]")
    refunds = '#compensations [data-activity="console.refund"]'
    waiting(browser).until(
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, refunds)[-1].get_attribute("data-state") == "COMPLETED"
        )
    )
    saga_state = "#compensations p[data-state]"
    waiting(browser).until(
        lambda d: (
            d.find_element(By.CSS_SELECTOR, saga_state).get_attribute("data-state") == "COMPLETED"
        )
    )
    repaired = "#timeline li[data-type=CompensationRepaired]"
    line = waiting(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, repaired).text)
    assert "retry by http " in line and "bank is back" in line, line
    shot(browser, "8-run-repaired")

    # a batch from the Runs page's filter: a dry run lists the three, then it cancels them
    open_page(browser, dev, "/runs?type=console.hold&status=RUNNING&search=group%3Ab1")
    waiting(browser).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs tbody tr[data-workflow-id]")) == 3
    )
    click(browser, "#batch-these")
    wait_for(browser, "#batch-start-form")
    assert browser.find_element(By.ID, "batch-type").get_attribute("value") == "console.hold"
    assert browser.find_element(By.ID, "batch-search").get_attribute("value") == "group:b1"
    assert browser.find_element(By.ID, "batch-op").get_attribute("value") == "cancel"
    assert not browser.find_element(By.ID, "batch-signal-name").is_displayed()  # signal only
    browser.find_element(By.ID, "batch-reason").send_keys("INC-7")
    browser.find_element(By.ID, "batch-id").send_keys("cancel-b1")
    assert not browser.find_element(By.ID, "batch-start").is_enabled()  # dry run first
    browser.find_element(By.ID, "batch-dry-run").click()
    wait_for(browser, "#batch-would")
    assert "would touch 3 run(s)" in browser.find_element(By.ID, "batch-would").text
    listed = browser.find_element(By.CSS_SELECTOR, "#batch-preview .preview-runs").text
    assert all(f"hold-b{i}" in listed for i in range(3)) and "hold-other" not in listed
    shot(browser, "9-batch-dry-run")
    browser.find_element(By.ID, "batch-start").click()
    question = confirm(browser)
    assert (
        "Start a cancel batch on the 3 run(s) matching type console.hold, status RUNNING, "
        in question
    )
    assert 'group:"b1" (reason: INC-7)?' in question, question
    row = '#batches tr[data-batch="cancel-b1"]'
    waiting(browser).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f'{row}[data-state="completed"]')
    )
    text = waiting(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, row).text)
    assert "3 / 3" in text and "3 done, 0 skipped, 0 failed" in text, text
    shot(browser, "10-batches")
    waiting(browser).until(
        lambda _: all(status_of(dev, f"hold-b{i}") == "CANCELLED" for i in range(3))
    )
    assert status_of(dev, "hold-other") == "RUNNING"

    # a slow batch (pages of two runs, one run per 10 s) is cancelled from its row during
    # its first page: it stops after that page
    body = {
        "batch_id": "slow-nudge",
        "operation": {"op": "signal", "signal_name": "nudge", "reason": "test"},
        "filter": {"workflow_type": "console.hold"},
        "rate": 0.1,
        "page_size": 2,
    }
    r = httpx.post(f"{dev.api_url}/v1/batches", json=body, headers=bearer(dev.token), timeout=60)
    assert r.status_code == 201, r.text
    slow = '#batches tr[data-batch="slow-nudge"]'
    click(browser, f'{slow}[data-state="running"] .batch-cancel')
    prompt = WebDriverWait(browser, 30).until(ec.alert_is_present())
    assert "Cancel batch slow-nudge? It stops after the page under way" in prompt.text
    prompt.send_keys("wrong filter")
    prompt.accept()
    wait_for(browser, f'{slow}[data-state="cancelled"]')
    click(browser, f"{slow} summary")
    assert "wrong filter" in browser.find_element(By.CSS_SELECTOR, f"{slow} details").text
    click(browser, f"{slow} summary")

    # a read-only token sees the stack and the batches, and is offered no action
    browser.find_element(By.ID, "logout").click()
    wait_for(browser, "#login")
    browser.find_element(By.ID, "token").send_keys(READ_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait_for(browser, '#batches tr[data-batch="cancel-b1"]')
    assert browser.find_elements(By.CSS_SELECTOR, "#read-only")
    assert not browser.find_elements(By.ID, "batch-start-form")
    open_page(browser, dev, "/runs/hold-other")
    wait_for(browser, '#stack .stack-task[data-task="main"]')
    wait_for(browser, "#read-only")
    assert not browser.find_elements(By.ID, "reset") and not browser.find_elements(By.ID, "cancel")
    open_page(browser, dev, "/runs?type=console.hold")
    wait_for(browser, "#runs")
    assert not browser.find_elements(By.ID, "batch-these")
