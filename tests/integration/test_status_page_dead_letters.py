"""The status page's dead letters in a real browser: listed with filters, one fixed in the
editor (checked by the dry run before anything is sent) and re-driven, the rest re-driven
all at once after a dry run that shows the count and the verdicts."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from services.api.config import ApiConfig
from services.common.config import KafkaConfig

from ..helpers import TOKEN, encode, eventually, fetchval, manual_record, produce, unique
from .test_status_page import Page

Client = TestClient[web.Request, web.Application]


async def test_a_dead_letter_is_fixed_and_redriven_from_the_page(
    api: Client,
    scheduler: Client,
    kafka: KafkaConfig,
    api_config: ApiConfig,
    browser: WebDriver,
) -> None:
    server: TestServer = scheduler.server  # type: ignore[assignment]
    page = Page(browser)
    product = unique("p")
    await produce(
        kafka.topic_cadastro,
        [
            (product.encode(), encode(manual_record(product, price=-3))),
            (b"garbage", b"{not json"),
        ],
    )
    await page.run(browser.get, str(server.make_url("/")))
    await page.run(lambda: browser.find_element(By.ID, "token").send_keys(TOKEN))
    await page.click("connect")

    async def rows() -> int:
        await page.click("dlq-search")
        return int(
            await page.run(
                browser.execute_script, "return document.querySelectorAll('#dlq-rows tr').length"
            )
        )

    await eventually(lambda: _equals(rows, 2), within=30, what="2 dead letters listed", every=0.3)
    await page.run(
        lambda: Select(browser.find_element(By.ID, "f-stage")).select_by_visible_text("validate")
    )
    await eventually(lambda: _equals(rows, 1), within=10, what="the filter applied", every=0.3)

    # Fix: the editor holds the value; the dry run's verdict comes before sending.
    await page.run(lambda: browser.find_element(By.CSS_SELECTOR, "#dlq-rows button.fix").click())
    shown = await page.run(
        lambda: browser.find_element(By.ID, "editor-value").get_attribute("value")
    )
    assert json.loads(shown)["price"] == -3
    assert not await page.run(lambda: browser.find_element(By.ID, "editor-send").is_enabled())
    await page.click("editor-check")
    verdict = await _eventually_text(page, "editor-verdict")
    assert "price" in verdict
    fixed = json.dumps(manual_record(product, price=3))
    await page.run(
        browser.execute_script,
        "const e = document.getElementById('editor-value'); e.value = arguments[0];"
        " e.dispatchEvent(new Event('input'));",
        fixed,
    )
    await page.click("editor-check")
    await page.shows("editor-verdict", "valid", within=10)
    await page.click("editor-send")
    await eventually(
        lambda: fetchval(
            api_config.database_url, "SELECT price_amount FROM products WHERE id = $1", product
        ),
        within=30,
        what="the corrected record persisted",
    )
    assert "re-driven corrected (attempt 1)" in await page.text("dlq-message")

    # Re-drive all matching: a dry run shows the count and the verdicts first.
    await page.run(
        lambda: Select(browser.find_element(By.ID, "f-stage")).select_by_visible_text("decode")
    )
    await page.click("dlq-all")
    summary = await _eventually_text(page, "dlq-bulk-summary")
    assert summary.startswith("1 matching: 0 valid as they are, 1 still invalid"), summary
    await page.click("dlq-bulk-go")
    await eventually(
        lambda: _contains(page, "dlq-message", '"refused":1'),
        within=10,
        what="the bulk re-drive's outcomes shown",
    )


async def _equals(count: Callable[[], Awaitable[int]], wanted: int) -> bool:
    return await count() == wanted


async def _contains(page: Page, element_id: str, wanted: str) -> bool:
    return wanted in await page.text(element_id)


async def _eventually_text(page: Page, element_id: str) -> str:
    async def shown() -> str:
        return await page.text(element_id)

    return await eventually(shown, within=10, what=f"#{element_id} filled", every=0.2)
