"""Training and models pages in Chromium: a second start is refused with the running job's id, cancel
stops a running job, and an admin activates an older model version from the models page."""

from __future__ import annotations

import io
import re

import httpx
import pytest
from PIL import Image

from tests.web.conftest import ADMIN

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_cancel_a_running_job_and_activate_another_version(live_server, browser, output_dir):
    from ml.synth import generate

    base = live_server.url
    r = httpx.post(f"{base}/api/v1/auth/token", data={"username": ADMIN[0], "password": ADMIN[1]})
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    for seed in (31, 32):
        buf = io.BytesIO()
        Image.fromarray(generate(seed, size=512, dr=True)[0]).save(buf, format="PNG")
        image_id = api.post("/api/v1/images", files={"files": (f"e{seed}.png", buf.getvalue())}).json()["id"]
        labels = [{"row": 3, "col": 3, "label": "diseased"}, {"row": 0, "col": 0, "label": "healthy"}]
        assert api.put(f"/api/v1/images/{image_id}/labels", json={"labels": labels}).status_code == 200

    errors: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: d.accept())  # "Make version N the active model?"
    page.goto(f"{base}/login")
    page.fill("#username", ADMIN[0])
    page.fill("#password", ADMIN[1])
    page.click("#login-submit")
    page.wait_for_url(re.compile(r"/images$"))

    # A long job (small preset, many epochs): start, see it run, a second start is refused, cancel it.
    page.goto(f"{base}/training")
    page.select_option("#preset", "small")
    page.fill("#epochs", "500")
    page.click("#start-job")
    status = page.locator("#job-status")
    page.wait_for_function(
        "() => document.querySelector('#job-status')?.dataset.status === 'running'", timeout=60_000
    )
    page.click("#start-job")
    refusal = page.locator("#start-message .alert.error")
    refusal.wait_for()
    assert "already" in refusal.inner_text()
    page.screenshot(path=output_dir / "training-refused-second-start.png", full_page=True)
    # Live progress without a reload: the epoch and iteration counters appear and move.
    page.wait_for_function(
        "() => /Iteration\\s*[1-9]\\d* of \\d+/.test(document.querySelector('#current-job').innerText)",
        timeout=90_000,
    )
    first = page.locator("#current-job").inner_text()
    assert re.search(r"Epoch\s*\d+ of 500", first), first
    page.wait_for_function(
        "(before) => document.querySelector('#current-job').innerText !== before", arg=first, timeout=30_000
    )
    page.screenshot(path=output_dir / "training-progress.png", full_page=True)
    page.click("#cancel-job")
    page.wait_for_function(
        "() => document.querySelector('#job-status')?.dataset.status === 'cancelled'", timeout=60_000
    )
    assert "cancelled" in page.locator("#current-job").inner_text()
    page.screenshot(path=output_dir / "training-cancelled.png", full_page=True)

    # Two quick versions, then activate the one that is not active.
    for _ in range(2):
        page.evaluate("document.querySelector('#start-message').replaceChildren()")
        page.select_option("#preset", "tiny")
        page.fill("#epochs", "")
        page.click("#start-job")
        queued = page.locator("#start-message .alert.ok")
        queued.wait_for()
        job_id = int(re.search(r"Job (\d+) queued", queued.inner_text()).group(1))
        page.wait_for_function(
            f"() => document.querySelector('#current-job h2')?.textContent === 'Job {job_id}'"
            " && ['succeeded', 'failed'].includes(document.querySelector('#job-status')?.dataset.status)",
            timeout=120_000,
        )
        assert status.get_attribute("data-status") == "succeeded", page.locator("#current-job").inner_text()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#jobs-table tbody tr .badge')].map(b => b.textContent).join()"
        " === 'succeeded,succeeded,cancelled'",
        timeout=20_000,
    )

    page.goto(f"{base}/models")
    page.locator("#models-table tbody tr[data-version]").nth(1).wait_for()
    inactive = page.locator("#models-table tbody tr[data-version]:not(.is-active)")
    assert inactive.count() == 1
    version = int(inactive.get_attribute("data-version"))
    inactive.locator("button", has_text="Activate").click()
    page.locator(f'#models-table tbody tr.is-active[data-version="{version}"]').wait_for()
    assert [m["version"] for m in api.get("/api/v1/models").json() if m["active"]] == [version]
    page.screenshot(path=output_dir / "models-activated.png", full_page=True)
    context.close()
    assert not errors, errors
