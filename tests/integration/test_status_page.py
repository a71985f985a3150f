"""The scheduler's status page in a real browser (Debian's chromium, driven by selenium
through Debian's chromium-driver), while records flow through the real broker and database.

The screenshot it takes is saved as ``status-page.png`` in the test's directory, and where
``STATUS_PAGE_SCREENSHOT`` names a file (the README's picture), there too.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from services.api.config import ApiConfig
from services.common.config import KafkaConfig

from ..helpers import TOKEN, auth, encode, eventually, manual_record, produce, product_count, unique

Client = TestClient[web.Request, web.Application]


class Page:
    """The status page, read and clicked from a thread (selenium blocks)."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    async def run(self, action: Any, *args: Any) -> Any:
        return await asyncio.to_thread(action, *args)

    async def text(self, element_id: str) -> str:
        def read() -> str:
            text: str = self.driver.find_element(By.ID, element_id).text
            return text

        return str(await self.run(read))

    async def number(self, element_id: str) -> int:
        text = await self.text(element_id)
        return int(text.replace(",", "")) if text.replace(",", "").isdigit() else -1

    async def click(self, element_id: str) -> None:
        await self.run(lambda: self.driver.find_element(By.ID, element_id).click())

    async def shows(self, element_id: str, wanted: Any, *, within: float = 30) -> None:
        async def check() -> bool:
            if isinstance(wanted, int):
                return await self.number(element_id) == wanted
            return await self.text(element_id) == str(wanted)

        await eventually(
            check,
            within=within,
            what=f"the page showing {wanted!r} in #{element_id}",
            every=0.2,
        )


def keyed(product_id: str) -> tuple[bytes, bytes]:
    """A record keyed by its product id, as producers do (so it spreads over partitions)."""
    return product_id.encode(), encode(manual_record(product_id))


async def test_the_status_page_follows_the_flow_and_pauses_and_resumes_it(
    api: Client,
    scheduler: Client,
    kafka: KafkaConfig,
    api_config: ApiConfig,
    browser: WebDriver,
    tmp_path: Path,
) -> None:
    server: TestServer = scheduler.server  # type: ignore[assignment]
    origin = str(server.make_url("")).rstrip("/")
    page = Page(browser)

    await page.run(browser.get, origin + "/")
    # The token is asked for once, and the page shows nothing before.
    assert await page.run(lambda: browser.find_element(By.ID, "login").is_displayed())
    assert not await page.run(lambda: browser.find_element(By.ID, "page").is_displayed())
    await page.run(lambda: browser.find_element(By.ID, "token").send_keys(TOKEN))
    await page.click("connect")
    await page.shows("state", "running")

    # Numbers move while records flow, and agree with /status and the database.
    run = unique("p")
    for burst in range(1, 4):
        await produce(
            kafka.topic_cadastro,
            [keyed(f"{run}-{burst}-{n}") for n in range(20)],
        )
        await page.shows("count-persisted", 20 * burst)
    status = await (await scheduler.get("/status", headers=auth())).json()
    assert status["counters"]["persisted"] == 60
    assert await product_count(api_config.database_url) == 60
    await page.shows("count-records", 60)
    await page.shows("published", 60)
    await page.shows("backlog", 0, within=15)
    # The PostgreSQL node the API writes to, from the API's /ready.
    await page.shows("api-primary", "localhost:5432")
    assert float(await page.text("rate-persisted")) > 0

    # A dead letter: counted, listed with its stage and trace id.
    await produce(kafka.topic_cadastro, [(b"poison", b"{not json")])
    await page.shows("count-dead", 1)
    row = await page.run(lambda: browser.find_element(By.ID, "dead-letters").text)
    assert "decode" in row and "not JSON" in row
    trace_id = await page.run(
        lambda: browser.find_element(By.CSS_SELECTOR, "#dead-letters code").text
    )
    assert len(trace_id) == 32 and int(trace_id, 16)

    # Pause: the lag grows by what is produced meanwhile; resume drains it.
    await page.click("pause")
    await page.shows("state", "paused")
    await produce(
        kafka.topic_cadastro,
        [keyed(f"{run}-paused-{n}") for n in range(30)],
    )
    await page.shows("lag-total", 30)
    assert await page.number("count-persisted") == 60
    await page.click("resume")
    await page.shows("state", "running")
    await page.shows("lag-total", 0)
    await page.shows("count-persisted", 90)
    assert await product_count(api_config.database_url) == 90

    # Every request of the page went to the scheduler itself.
    resources = await page.run(
        browser.execute_script,
        "return performance.getEntriesByType('resource').map((e) => e.name)",
    )
    assert resources and all(url.startswith(origin) for url in resources), resources

    # One more refresh, so the sparklines show the last burst ("updated HH:MM:SS" moves on).
    before = await page.text("updated")

    async def refreshed() -> bool:
        return await page.text("updated") != before

    await eventually(refreshed, within=10, what="the page refreshing once more", every=0.2)
    height = await page.run(browser.execute_script, "return document.documentElement.scrollHeight")
    metrics = {"width": 1280, "height": int(height), "deviceScaleFactor": 1, "mobile": False}
    await page.run(browser.execute_cdp_cmd, "Emulation.setDeviceMetricsOverride", metrics)
    shot = tmp_path / "status-page.png"
    assert await page.run(browser.save_screenshot, str(shot))
    assert shot.stat().st_size > 10_000
    if target := os.environ.get("STATUS_PAGE_SCREENSHOT"):
        shutil.copyfile(shot, target)
