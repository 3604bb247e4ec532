"""The run page in a real Chromium against ``saga dev`` (built as ``console-b1``) on
real Kafka and PostgreSQL: cancelling a child workflow from its parent's page (the
child releases and ends CANCELLED, the parent hears it and ends), a reset to just
before the first decision of a build, picked from the builds the run's history names,
and the mark on a pending activity that a paused activity type holds.

Screenshots go to ``.cache/console-screenshots/`` (not committed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from orchestrator.devstack import providers
from tests.integration.browser import chromium_session
from tests.integration.dev_process import DevServer, console_dev
from tests.integration.http_helpers import bearer
from tests.integration.test_console_browser import confirm, run_status, shot, wait_for, waiting
from tests.integration.test_console_operator_browser import click, open_page, start, status_of

pytestmark = pytest.mark.integration
BUILD = "console-b1"


@pytest.fixture
def dev(
    kafka: providers.KafkaHandle, database: str, topic_prefix: str, tmp_path: Path
) -> Iterator[DevServer]:
    with console_dev(
        kafka.bootstrap_servers, database, topic_prefix, tmp_path, args=("--build-id", BUILD)
    ) as server:
        yield server


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    with chromium_session(tmp_path / "chromium-profile") as driver:
        yield driver


def result_of(dev: DevServer, workflow_id: str) -> object:
    r = httpx.get(f"{dev.api_url}/v1/workflows/{workflow_id}/result?wait=30",
                  headers=bearer(dev.token), timeout=60)
    assert r.status_code == 200, r.text
    return r.json().get("result")


@pytest.mark.timeout(300)  # starts a stack and a browser on a shared 2-core machine
def test_cancel_a_child_from_its_parent_and_reset_before_a_build(
    dev: DevServer, browser: WebDriver
) -> None:
    start(dev, "console.parent", "parent-1", 10)
    start(dev, "console.hold", "hold-build", 10)

    open_page(browser, dev, "/runs/parent-1")
    wait_for(browser, "#login")
    browser.find_element(By.ID, "token").send_keys(dev.token)
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()

    # the child, listed in the parent's Children with its handle's id, is cancelled
    child = '#children tr[data-child="parent-1-child"]'
    wait_for(browser, f'{child}[data-state="STARTED"] .child-cancel')
    shot(browser, "11-run-children")
    click(browser, f"{child} .child-cancel")
    question = confirm(browser)
    assert question.startswith("Cancel child parent-1-child (console.hold) of parent-1?"), question
    waiting(browser).until(lambda d: run_status(d) == "COMPLETED")
    wait_for(browser, f'{child}[data-state="FAILED"]')
    assert not browser.find_elements(By.CSS_SELECTOR, f"{child} .child-cancel")
    assert status_of(dev, "parent-1-child") == "CANCELLED"
    assert result_of(dev, "parent-1") == "child parent-1-child was stopped"
    releases = httpx.get(f"{dev.api_url}/v1/workflows/parent-1-child/history",
                         headers=bearer(dev.token), timeout=30).json()["events"]
    assert any(e.get("activity_type") == "console.release" for e in releases)

    # reset to just before the first decision of the build, chosen among the run's builds
    open_page(browser, dev, "/runs/hold-build")
    wait_for(browser, "#timeline li[data-type=TimerStarted]")
    before = waiting(browser).until(lambda d: d.find_element(By.ID, "run-of").text)
    wait_for(browser, f'#reset-build option[value="{BUILD}"]')
    options = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#reset-build option")]
    assert options[1:] == [f"before build {BUILD} (event 2)"], options
    Select(browser.find_element(By.ID, "reset-build")).select_by_value(BUILD)
    browser.find_element(By.ID, "reset-reason").send_keys("redo what the build decided")
    browser.find_element(By.ID, "reset").click()
    question = confirm(browser)
    assert question.startswith(
        f"Reset hold-build to just before the first decision of build {BUILD} (event 2)?"
    ), question
    waiting(browser).until(lambda d: d.find_element(By.ID, "run-of").text not in ("", before))
    # the new run kept only WorkflowStarted and decided everything again
    wait_for(browser, "#timeline li[data-type=TimerStarted]")
    first = waiting(browser).until(lambda d: (d.find_element(
        By.CSS_SELECTOR, "#timeline li[data-seq='1']"
    ).get_attribute("data-type"),))[0]  # fmt: skip
    assert first == "WorkflowStarted"
    assert run_status(browser) == "RUNNING"
    shot(browser, "12-run-reset-before-build")


def pause_type(dev: DevServer, verb: str, activity_type: str) -> None:
    body = {"task_queue": "console", "activity_type": activity_type, "reason": "bank down"}
    r = httpx.post(f"{dev.api_url}/v1/activities/{verb}", json=body,
                   headers=bearer(dev.token), timeout=30)
    assert r.status_code == 200, r.text


@pytest.mark.timeout(300)
def test_a_pending_activity_held_by_a_paused_type_is_marked(
    dev: DevServer, browser: WebDriver
) -> None:
    pause_type(dev, "pause", "console.charge")
    start(dev, "console.order", "order-held", 10)
    open_page(browser, dev, "/runs/order-held")
    wait_for(browser, "#login")
    browser.find_element(By.ID, "token").send_keys(dev.token)
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()

    held = '#pending p.held[data-seq="2"]'
    wait_for(browser, held)  # once the engine worker has seen the pause
    text = waiting(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, held).text)
    assert "console.charge" in text and "HELD: type paused" in text, text
    assert run_status(browser) == "RUNNING"
    shot(browser, "13-run-held-by-pause")
    pause_type(dev, "unpause", "console.charge")
    waiting(browser).until(lambda d: run_status(d) == "COMPLETED")
    assert not browser.find_elements(By.CSS_SELECTOR, "#pending p.held")
