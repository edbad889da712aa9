"""What each role sees: other annotators' labels in the labeling view, and a viewer who cannot label."""

from __future__ import annotations

import io
import re

import httpx
import pytest
from PIL import Image

from tests.web.conftest import ADMIN, ANNOTATOR, VIEWER

pytestmark = [pytest.mark.browser]


def token(base: str, who: tuple[str, str]) -> dict[str, str]:
    r = httpx.post(f"{base}/api/v1/auth/token", data={"username": who[0], "password": who[1]})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def sign_in(browser, base: str, who: tuple[str, str], errors: list[str]):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/login")
    page.fill("#username", who[0])
    page.fill("#password", who[1])
    page.press("#password", "Enter")  # keyboard only
    page.wait_for_url(re.compile(r"/images$"))
    return context, page


def test_other_annotators_labels_and_viewer_rights(live_server, browser, output_dir):
    from ml.synth import generate

    base = live_server.url
    rgb, _ = generate(21, size=512, dr=True)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    admin_h, anna_h = token(base, ADMIN), token(base, ANNOTATOR)
    image_id = httpx.post(
        f"{base}/api/v1/images", headers=admin_h, files={"files": ("eye.png", buf.getvalue(), "image/png")}
    ).json()["id"]
    # Anna labels two patches; the admin labels one of them the other way.
    for r, c, lab in ((2, 5, "diseased"), (6, 1, "healthy")):
        assert (
            httpx.put(
                f"{base}/api/v1/images/{image_id}/labels/{r}/{c}", headers=anna_h, json={"label": lab}
            ).status_code
            == 200
        )
    assert (
        httpx.put(
            f"{base}/api/v1/images/{image_id}/labels/6/1", headers=admin_h, json={"label": "diseased"}
        ).status_code
        == 200
    )

    errors: list[str] = []
    context, page = sign_in(browser, base, ADMIN, errors)
    page.goto(f"{base}/images/{image_id}/label?row=2&col=5")
    page.locator('#label-app[data-loaded="true"]').wait_for()
    cell = page.locator('#patch-grid .cell[data-row="2"][data-col="5"]')
    assert cell.get_attribute("data-label") == ""  # not the admin's label...
    assert cell.locator(".others i.diseased").count() == 1  # ...but Anna's is shown
    assert "anna diseased" in cell.get_attribute("aria-label")
    assert "anna: diseased" in page.locator("#cell-others").inner_text()
    mixed = page.locator('#patch-grid .cell[data-row="6"][data-col="1"]')
    assert mixed.get_attribute("data-label") == "diseased"
    assert mixed.locator(".others i.healthy").count() == 1
    page.keyboard.press("ArrowDown")  # (3, 5): the side panel follows the keyboard cursor
    assert page.locator("#cell-title").inner_text() == "Patch row 4, column 6"
    page.screenshot(path=output_dir / "label-with-other-annotator.png")
    context.close()

    # A file name that is HTML is shown as text, never run.
    nasty = '<img src=x onerror="window.__pwned=1">.png'
    other = io.BytesIO()
    Image.fromarray(generate(22, size=512, dr=False)[0]).save(other, format="PNG")
    r = httpx.post(f"{base}/api/v1/images", headers=admin_h, files={"files": (nasty, other.getvalue())})
    assert r.status_code in (200, 201), r.text

    context, page = sign_in(browser, base, VIEWER, errors)
    assert page.locator("#dropzone").count() == 0  # a viewer cannot upload
    page.locator("#image-grid .thumb").nth(1).wait_for()
    shown = page.locator("#image-grid .thumb .fname").first.inner_text()
    assert "onerror" in shown and page.locator("#image-grid .thumb .fname img").count() == 0
    assert page.evaluate("window.__pwned") is None
    page.goto(f"{base}/images/{image_id}/label")
    page.locator('#label-app[data-loaded="true"]').wait_for()
    page.locator('#patch-grid .cell[data-row="0"][data-col="0"]').click()
    page.keyboard.press("d")
    # The viewer sees the consensus (Anna's diseased; the admin's diseased outvotes Anna's healthy).
    assert page.locator('#patch-grid .cell:not([data-label=""])').count() == 2
    assert page.locator('#patch-grid .cell[data-row="0"][data-col="0"]').get_attribute("data-label") == ""
    assert page.locator("#patch-grid .cell .others i").count() == 3  # everyone else's labels are shown
    assert "cannot change labels" in page.locator("#toasts").inner_text()
    page.screenshot(path=output_dir / "label-as-viewer.png")
    context.close()

    history = httpx.get(f"{base}/api/v1/images/{image_id}/labels/history", headers=admin_h).json()
    assert [h["user"] for h in history] == ["anna", "anna", "admin"]  # the viewer wrote nothing

    # Drag-to-paint: press on (7, 0), move to (7, 3) with the button held, release.
    context, page = sign_in(browser, base, ANNOTATOR, errors)
    page.goto(f"{base}/images/{image_id}/label")
    page.locator('#label-app[data-loaded="true"]').wait_for()

    def centre(r: int, c: int) -> tuple[float, float]:
        box = page.locator(f'#patch-grid .cell[data-row="{r}"][data-col="{c}"]').bounding_box()
        return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    page.mouse.move(*centre(7, 0))
    page.mouse.down()
    page.mouse.move(*centre(7, 3), steps=12)
    page.mouse.up()
    page.wait_for_function(
        "() => !document.querySelector('#patch-grid .pending')"
        " && document.querySelector('#save-status').classList.contains('ok')"
    )
    painted = page.locator('#patch-grid .cell[data-row="7"][data-label="diseased"]')
    assert painted.count() == 4
    grid = httpx.get(f"{base}/api/v1/images/{image_id}/labels", headers=anna_h).json()
    assert [c["mine"] for c in grid["cells"] if c["row"] == 7][:5] == ["diseased"] * 4 + [None]

    # Sign out ends the session: the pages send the browser back to sign-in.
    page.click("#sign-out")
    page.wait_for_url(re.compile(r"/login$"))
    page.goto(f"{base}/images")
    page.wait_for_url(re.compile(r"/login\?next="))
    context.close()
    assert not errors, errors
