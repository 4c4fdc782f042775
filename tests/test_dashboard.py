"""The dashboard in a real browser: headless Chromium (Debian's) driven by Playwright.

The browser test is skipped where Chromium is not installed (`make test` installs it from
Debian's packages when it can). The test drives load, opens
/dashboard, waits until the charts have data, checks that the node/shard table lists every
shard, and saves a screenshot.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from tests.conftest import RunningSwitch
from tests.switch.test_api import account, transfer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-quic"]

needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")


def drive_load(switch: RunningSwitch, stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        batch = [transfer(f"d{n}-{i}", "bank", f"w{i % 8}", 3) for i in range(20)]
        switch.post("/v1/transfers", batch)
        switch.post("/v1/transfers", transfer(f"bad{n}", "w1", "w1", 1))  # a rejection
        n += 1


@needs_browser
def test_dashboard_shows_live_data_for_every_shard(switch: RunningSwitch, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    switch.post("/v1/accounts", [account("bank")] + [account(f"w{i}") for i in range(8)])
    for participant in ("psp-a", "psp-b"):  # the switch layer's table: a position, a cap
        switch.post("/v1/participants", {"id": participant, "name": participant,
                                         "ledgers": ["USD"]})
    switch.post("/v1/participants/psp-a/funds", {"id": "f", "ledger": "USD", "direction": "in",
                                                 "amount": 1_000})
    switch.client.put(switch.url + "/v1/participants/psp-a/ledgers/USD/net-debit-cap",
                      json={"net_debit_cap": 1_000})
    stop = threading.Event()
    load = threading.Thread(target=drive_load, args=(switch, stop))
    load.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            # As a person would: the browser asks (Basic), the key is the password.
            page = browser.new_page(viewport={"width": 1400, "height": 1100},
                                    http_credentials={"username": "operator",
                                                      "password": switch.operator_key})
            page.goto(switch.url + "/dashboard")
            page.wait_for_function("(window.payswitchDashboard || {}).updates >= 4",
                                   timeout=30_000)
            page.wait_for_function(
                "document.querySelector('#chart-throughput canvas') !== null", timeout=10_000)
            shard_cells = page.locator("#shards tbody tr td:nth-child(2)").all_inner_texts()
            assert sorted(shard_cells) == [str(i) for i in range(len(switch.shards))]
            data = page.evaluate("fetch('/dashboard/data').then((r) => r.json())")
            assert max(data["series"]["transfers_per_s"]) > 0, "the chart never saw a transfer"
            assert any(name.startswith("w") for name, _ in data["hottest"])
            assert data["rejections"].get("accounts_must_be_different", 0) > 0
            assert page.locator("#ledgers tbody tr").count() >= 1
            assert page.locator("#positions tbody tr").count() == 2  # psp-a and psp-b
            assert page.locator("#windows tbody tr").count() == 1  # USD's open window
            assert page.locator("canvas").count() >= 5  # one per chart
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            assert (tmp_path / "dashboard.png").stat().st_size > 10_000
            browser.close()
    finally:
        stop.set()
        load.join()


def test_dashboard_cannot_change_state(switch: RunningSwitch) -> None:
    for path in ("/dashboard", "/dashboard/data", "/metrics"):
        assert switch.client.post(switch.url + path, json={}).status_code == 405
