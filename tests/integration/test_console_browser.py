"""The web console in a real Chromium, against ``saga dev`` on real Kafka and PostgreSQL:
sign in, see the runs and their statuses, filter, open a compensated order and see its
steps, compensation and error, cancel and terminate running sagas, redrive a dead letter.

Screenshots of each page go to ``.cache/console-screenshots/`` (not committed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from orchestrator.devstack import providers
from orchestrator.status import WorkflowStatus
from orchestrator.testing import Replayer, history_from_json
from tests.integration import console_sagas
from tests.integration.browser import chromium
from tests.integration.dev_process import DevServer, console_dev
from tests.integration.http_helpers import bearer

pytestmark = pytest.mark.integration

SCREENSHOTS = Path(__file__).parents[2] / ".cache" / "console-screenshots"
WAIT_S = 90  # an upper bound on a loaded machine, never a performance claim


@pytest.fixture
def dev(
    kafka: providers.KafkaHandle, database: str, topic_prefix: str, tmp_path: Path
) -> Iterator[DevServer]:
    with console_dev(kafka.bootstrap_servers, database, topic_prefix, tmp_path) as server:
        yield server


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    driver = chromium(tmp_path / "chromium-profile")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    try:
        yield driver
    finally:
        driver.quit()


def start(dev: DevServer, workflow: str, workflow_id: str, amount: int, wait: float = 10) -> None:
    body = {
        "workflow": workflow,
        "id": workflow_id,
        "task_queue": "console",
        "input": {"order_id": workflow_id, "amount": amount},
        "wait": wait,
    }
    r = httpx.post(f"{dev.api_url}/v1/workflows", json=body, headers=bearer(dev.token), timeout=30)
    assert r.status_code in (201, 202), r.text


def shot(driver: WebDriver, name: str) -> None:
    """The whole page (the window grown to its height for the picture)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = driver.get_window_size()
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(size["width"], max(size["height"], int(height) + 120))
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    driver.set_window_size(size["width"], size["height"])


def waiting(driver: WebDriver) -> WebDriverWait[WebDriver]:
    """A wait that retries when the page's live refresh replaced an element under it."""
    return WebDriverWait(driver, WAIT_S, ignored_exceptions=[StaleElementReferenceException])


def wait_for(driver: WebDriver, css: str) -> None:
    waiting(driver).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def status_in_list(driver: WebDriver, workflow_id: str) -> str | None:
    rows = driver.find_elements(By.CSS_SELECTOR, f'#runs tr[data-workflow-id="{workflow_id}"]')
    if not rows:
        return None
    return rows[0].find_element(By.CSS_SELECTOR, ".badge").get_attribute("data-status")


def wait_status_in_list(driver: WebDriver, workflow_id: str, status: str) -> None:
    waiting(driver).until(lambda d: status_in_list(d, workflow_id) == status)


def run_status(driver: WebDriver) -> str | None:
    """The run page's status badge, read again if the live refresh replaced it while
    it was read (a CI run once failed on that)."""

    def read(d: WebDriver) -> tuple[str | None]:
        found = d.find_elements(By.CSS_SELECTOR, "#run-status .badge")
        return (found[0].get_attribute("data-status") if found else None,)

    return waiting(driver).until(read)[0]


def open_run(driver: WebDriver, workflow_id: str) -> None:
    def click() -> bool:
        driver.find_element(By.LINK_TEXT, workflow_id).click()
        return True

    waiting(driver).until(lambda _: click())
    waiting(driver).until(
        lambda d: (
            d.find_elements(By.ID, "run-id") and d.find_element(By.ID, "run-id").text == workflow_id
        )
    )


def confirm(driver: WebDriver) -> str:
    alert = WebDriverWait(driver, WAIT_S).until(ec.alert_is_present())
    question = alert.text
    alert.accept()
    return question


@pytest.mark.timeout(480)  # starts a stack and a browser on a shared 2-core machine
def test_console_shows_runs_and_steers_them(
    dev: DevServer, browser: WebDriver, tmp_path: Path
) -> None:
    start(dev, "console.order", "order-ok", 50)
    start(dev, "console.order", "order-big", 500)
    start(dev, "console.hold", "hold-cancel", 20)
    start(dev, "console.hold", "hold-terminate", 30)
    start(dev, "console.unknown", "nobody-runs-this", 1, wait=0)  # goes to the DLQ

    # sign in: the page holds no data until a token is given
    browser.get(dev.console_url)
    wait_for(browser, "#login")
    assert not browser.find_elements(By.ID, "runs")
    browser.find_element(By.ID, "token").send_keys(dev.token)
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()

    # the list: every run with its status (refreshed live, no reload)
    wait_for(browser, "#runs")
    wait_status_in_list(browser, "order-ok", "COMPLETED")
    wait_status_in_list(browser, "order-big", "FAILED")
    wait_status_in_list(browser, "hold-cancel", "RUNNING")
    wait_status_in_list(browser, "hold-terminate", "RUNNING")
    counts = browser.find_element(By.ID, "counts").text
    assert "COMPLETED" in counts
    assert "FAILED" in counts
    shot(browser, "1-runs")

    # filter by status
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("FAILED")
    waiting(browser).until(
        lambda d: (
            [
                r.get_attribute("data-workflow-id")
                for r in d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
            ]
            == ["order-big"]
        )
    )
    shot(browser, "2-runs-failed")

    # the compensated order: its steps, the compensation, the error and its cause
    open_run(browser, "order-big")
    assert run_status(browser) == "FAILED"
    steps = browser.find_element(By.ID, "steps")
    assert (
        steps.find_element(By.CSS_SELECTOR, '[data-activity="console.reserve"]').get_attribute(
            "data-state"
        )
        == "COMPLETED"
    )
    assert (
        steps.find_element(By.CSS_SELECTOR, '[data-activity="console.charge"]').get_attribute(
            "data-state"
        )
        == "FAILED"
    )
    compensations = browser.find_element(By.ID, "compensations")
    assert (
        compensations.find_element(
            By.CSS_SELECTOR, '[data-activity="console.release"]'
        ).get_attribute("data-state")
        == "COMPLETED"
    )
    failure = browser.find_element(By.ID, "failure").text
    assert "CardLimit" in failure
    assert "card limit is 100, asked 500" in failure
    timeline = browser.find_element(By.ID, "timeline")
    kinds = [
        e.get_attribute("data-type") for e in timeline.find_elements(By.CSS_SELECTOR, "li.event")
    ]
    assert kinds[0] == "WorkflowStarted"
    assert "CompensationStarted" in kinds
    assert kinds[-1] == "WorkflowFailed"
    # a closed run offers a reset only
    assert browser.find_elements(By.ID, "reset") and not browser.find_elements(By.ID, "cancel")
    shot(browser, "3-run-compensated")

    # its history, downloaded, replays against the code
    browser.find_element(By.ID, "download").click()
    downloaded = tmp_path / "downloads" / "order-big.history.json"
    waiting(browser).until(lambda _: downloaded.exists())
    replayed = Replayer(workflows=[console_sagas.order]).replay(
        history_from_json(downloaded.read_text())
    )
    assert replayed.status is WorkflowStatus.FAILED

    # cancel a running saga through the UI: it releases its reservation, ends CANCELLED
    browser.get(dev.console_url + "#/runs")
    wait_status_in_list(browser, "hold-cancel", "RUNNING")
    open_run(browser, "hold-cancel")
    wait_for(browser, "#timeline li[data-type=TimerStarted]")
    # paused, it holds a signal; unpaused, it applies it
    browser.find_element(By.ID, "pause-reason").send_keys("looking into it")
    browser.find_element(By.ID, "pause").click()
    assert "Pause hold-cancel?" in confirm(browser)
    wait_for(browser, "#paused-badge")
    assert "looking into it" in browser.find_element(By.ID, "paused").text
    # a signal, with its arguments, lands in the history (held while paused)
    browser.find_element(By.ID, "signal-name").send_keys("nudge")
    browser.find_element(By.ID, "signal-args").clear()
    browser.find_element(By.ID, "signal-args").send_keys('[{"by": "support"}]')
    browser.find_element(By.ID, "signal").click()
    assert "Send signal nudge to hold-cancel?" in confirm(browser)
    wait_for(browser, "#timeline li[data-type=InputDeferred]")
    assert not browser.find_elements(By.CSS_SELECTOR, "#timeline li[data-type=SignalReceived]")
    browser.find_element(By.ID, "unpause").click()
    assert "Unpause hold-cancel?" in confirm(browser)
    wait_for(browser, "#timeline li[data-type=SignalReceived]")
    assert not browser.find_elements(By.ID, "paused-badge")
    assert "support" in browser.find_element(By.ID, "signals").text
    browser.find_element(By.ID, "cancel-reason").send_keys("customer changed their mind")
    browser.find_element(By.ID, "cancel").click()
    assert "Cancel hold-cancel?" in confirm(browser)
    waiting(browser).until(lambda d: run_status(d) == "CANCELLED")
    release = browser.find_element(
        By.CSS_SELECTOR, '#compensations [data-activity="console.release"]'
    )
    assert release.get_attribute("data-state") == "COMPLETED"
    shot(browser, "4-run-cancelled")

    # terminate: needs a reason, asks first, ends TERMINATED without compensation
    browser.get(dev.console_url + "#/runs")
    wait_status_in_list(browser, "hold-terminate", "RUNNING")
    open_run(browser, "hold-terminate")
    browser.find_element(By.ID, "terminate-reason").send_keys("test cleanup")
    browser.find_element(By.ID, "terminate").click()
    assert "Terminate hold-terminate?" in confirm(browser)
    waiting(browser).until(lambda d: run_status(d) == "TERMINATED")
    assert "test cleanup" in browser.find_element(By.ID, "terminated").text
    assert not browser.find_elements(By.ID, "compensations")
    shot(browser, "5-run-terminated")

    # reset the compensated order from its page: a new run of the same id goes on
    browser.get(dev.console_url + "#/runs")
    open_run(browser, "order-big")
    before = browser.find_element(By.ID, "run-of").text
    browser.find_element(By.ID, "reset-reason").send_keys("bank fixed")
    browser.find_element(By.ID, "reset").click()
    assert "Reset order-big to its last decision?" in confirm(browser)
    waiting(browser).until(lambda d: d.find_element(By.ID, "run-of").text not in ("", before))
    # a build id no worker has: the filter leaves nothing
    browser.get(dev.console_url + "#/runs")
    wait_for(browser, "#filter-build")
    browser.find_element(By.ID, "filter-build").send_keys("no-such-build")
    browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    waiting(browser).until(
        lambda d: "build=no-such-build" in d.current_url
        and not d.find_elements(By.CSS_SELECTOR, "#runs tbody tr[data-workflow-id]")
    )

    # the start nobody could run is a dead letter; redrive sends it back
    browser.find_element(By.ID, "nav-dlq").click()
    wait_for(browser, "#dead-letters tbody tr")
    row = browser.find_element(By.CSS_SELECTOR, "#dead-letters tbody tr")
    assert row.find_element(By.CSS_SELECTOR, ".reason").text
    row.find_element(By.CSS_SELECTOR, "button.redrive").click()
    assert "Redrive dead letter" in confirm(browser)
    waiting(browser).until(
        lambda d: "1 record(s) sent back" in d.find_element(By.ID, "message").text
    )
    # the engine still knows no such workflow: the redriven start is refused again
    # (at a later offset: transaction markers take offsets too)
    waiting(browser).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")) == 2
    )
    shot(browser, "6-dead-letters")


@pytest.mark.timeout(300)  # starts a stack and a browser on a shared 2-core machine
def test_console_schedules_page_pauses_triggers_and_deletes(
    dev: DevServer, browser: WebDriver
) -> None:
    body = {
        "schedule_id": "hourly-orders",
        "spec": {"interval_s": 3600},
        "action": {"workflow_type": "console.order", "task_queue": "console",
                   "args": [{"order_id": "from-schedule", "amount": 10}]},
    }
    r = httpx.post(f"{dev.api_url}/v1/schedules", json=body, headers=bearer(dev.token), timeout=60)
    assert r.status_code == 201, r.text

    browser.get(dev.console_url + "#/schedules")
    wait_for(browser, "#login")
    browser.find_element(By.ID, "token").send_keys(dev.token)
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    card = '[data-schedule="hourly-orders"]'
    wait_for(browser, card)  # listed once the projector has the schedule's run
    assert "every 3600 s (UTC)" in browser.find_element(By.CSS_SELECTOR, card).text

    def click(css: str) -> bool:
        browser.find_element(By.CSS_SELECTOR, f"{card} {css}").click()
        return True

    waiting(browser).until(lambda _: click("button.trigger"))
    message = (By.ID, "message")
    waiting(browser).until(lambda d: "Triggered hourly-orders-" in d.find_element(*message).text)
    counts = (By.CSS_SELECTOR, f"{card} .counts-line")
    waiting(browser).until(lambda d: d.find_element(*counts).text.startswith("1 started"))
    waiting(browser).until(lambda _: click("button.pause"))
    wait_for(browser, f"{card} #paused-hourly-orders")
    assert browser.find_element(By.CSS_SELECTOR, f"{card} .next").text == "-"
    waiting(browser).until(lambda _: click("summary"))
    waiting(browser).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f'{card} [data-outcome="completed"]')
        or d.find_elements(By.CSS_SELECTOR, f'{card} [data-outcome="running"]')
    )
    shot(browser, "5-schedules")
    waiting(browser).until(lambda _: click("summary"))  # closed again: live refresh resumes
    waiting(browser).until(lambda _: click("button.unpause"))
    waiting(browser).until(lambda d: not d.find_elements(By.ID, "paused-hourly-orders"))
    waiting(browser).until(lambda _: click("button.delete"))
    assert "Delete schedule hourly-orders?" in confirm(browser)
    wait_for(browser, "#no-schedules")
