"""The clinician's path through PatchScreen in a real Chromium against the real server and worker.

Sign in; upload three synthetic fundus photographs; open one; label five patches by clicking and
three with the keyboard; reload and find all eight (in the page and in the database); train a model
on the CPU "tiny" preset and watch the job reach "succeeded" without reloading; see a heatmap that is
not blank; find the new version on the models page. Every page is screenshotted at 1280x800 (and
the labeling view at 1920x1080) under test-output/web/.
"""

from __future__ import annotations

import base64
import re
import sqlite3
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.web.conftest import ADMIN

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# (row, col) -> label: five set by clicking (one click = diseased, two = healthy), three by keys.
CLICKED = {(0, 0): "diseased", (0, 1): "diseased", (3, 3): "diseased", (1, 1): "healthy", (1, 2): "healthy"}
# From the last clicked cell (1, 2): Down -> (2, 2) H, Down -> (3, 2) D, Left -> (3, 1) H.
KEYED = {(2, 2): "healthy", (3, 2): "diseased", (3, 1): "healthy"}
EXPECTED = {**CLICKED, **KEYED}


def synthetic_fundus(tmp_path: Path) -> list[Path]:
    from ml.synth import generate

    paths = []
    for seed, dr in ((11, True), (12, False), (13, True)):
        rgb, _ = generate(seed, size=1024, dr=dr)
        path = tmp_path / f"fundus_{seed}.jpg"
        Image.fromarray(rgb).save(path, quality=92)
        paths.append(path)
    return paths


def cell(page, row: int, col: int):
    return page.locator(f'#patch-grid .cell[data-row="{row}"][data-col="{col}"]')


def wait_saved(page) -> None:
    page.wait_for_function(
        "() => !document.querySelector('#patch-grid .pending')"
        " && document.querySelector('#save-status').classList.contains('ok')",
        timeout=20_000,
    )


def bearer(base: str, who: tuple[str, str]) -> dict[str, str]:
    r = httpx.post(f"{base}/api/v1/auth/token", data={"username": who[0], "password": who[1]})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def image_ids_in_db(database_url: str) -> list[int]:
    with sqlite3.connect(database_url.removeprefix("sqlite:///")) as con:
        return [i for (i,) in con.execute("SELECT id FROM images ORDER BY id")]


def current_labels_in_db(database_url: str, image_id: int, username: str) -> dict[tuple[int, int], int]:
    """Latest label per patch of this annotator, straight from the append-only history table."""
    path = database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as con:
        rows = con.execute(
            "SELECT pl.row, pl.col, pl.label FROM patch_labels pl JOIN users u ON u.id = pl.user_id "
            "WHERE pl.image_id = ? AND u.username = ? ORDER BY pl.id",
            (image_id, username),
        ).fetchall()
    out: dict[tuple[int, int], int | None] = {}
    for r, c, lab in rows:
        out[(r, c)] = lab
    return {k: v for k, v in out.items() if v is not None}


STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def tighten_csp(route) -> None:
    if route.request.resource_type != "document":
        route.fallback()
        return
    # max_redirects=0: the browser follows redirects (e.g. to /login) itself. max_retries: this proxy
    # fetch reuses a pooled keep-alive socket, which uvicorn closes after 5 idle seconds (while a
    # training job runs, say); a request sent as it closes fails with ECONNRESET before the server
    # saw it (Node's known keep-alive race), and Playwright retries only that error.
    response = route.fetch(max_redirects=0, max_retries=2)
    route.fulfill(response=response, headers={**response.headers, "content-security-policy": STRICT_CSP})


def drop_files(page, selector: str, files: list[tuple[str, bytes]]) -> None:
    """Drag-and-drop real files onto an element (a DataTransfer built in the page, then a drop event)."""
    payload = [{"name": n, "b64": base64.b64encode(data).decode()} for n, data in files]
    page.eval_on_selector(
        selector,
        """(zone, files) => {
            const dt = new DataTransfer();
            for (const f of files) {
              const bytes = Uint8Array.from(atob(f.b64), (ch) => ch.charCodeAt(0));
              dt.items.add(new File([bytes], f.name, {type: "image/jpeg"}));
            }
            zone.dispatchEvent(new DragEvent("dragenter", {dataTransfer: dt, bubbles: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
        }""",
        payload,
    )


def heatmap_pixel_stats(page, selector: str) -> dict:
    """Draw the loaded <img> into a canvas (same origin, so readable) and summarise its pixels."""
    return page.eval_on_selector(
        selector,
        """img => {
            const c = document.createElement('canvas');
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            const g = c.getContext('2d');
            g.drawImage(img, 0, 0);
            const d = g.getImageData(0, 0, c.width, c.height).data;
            let n = 0, sum = 0, sum2 = 0, opaque = 0, lo = 255, hi = 0;
            for (let i = 0; i < d.length; i += 4 * 7) {
              const v = (d[i] + d[i + 1] + d[i + 2]) / 3;
              n++; sum += v; sum2 += v * v; if (d[i + 3] > 0) opaque++;
              lo = Math.min(lo, v); hi = Math.max(hi, v);
            }
            const mean = sum / n;
            const std = Math.sqrt(sum2 / n - mean * mean);
            return {w: c.width, h: c.height, mean, std, opaque: opaque / n, lo, hi};
        }""",
    )


def test_label_train_predict_in_chromium(live_server, browser, output_dir, tmp_path):
    files = synthetic_fundus(tmp_path)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    console_errors: list[str] = []
    # HTTP errors the flow provokes on purpose (wrong password, no model yet) are logged by the browser
    # as "Failed to load resource"; anything else on the console is a bug in the pages.
    page.on(
        "console",
        lambda m: (
            console_errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    base = live_server.url
    # Stricter than the server on purpose: no inline style either, so the pages provably need neither
    # inline scripts nor inline styles (a violation is a console error, which fails the test).
    context.route("**/*", tighten_csp)

    # --- sign in ---
    page.goto(f"{base}/images")
    page.wait_for_url(re.compile(r"/login"))
    page.screenshot(path=output_dir / "00-login.png")
    page.fill("#username", ADMIN[0])
    page.fill("#password", "wrong-password")
    page.click("#login-submit")
    page.locator("#login-error .alert").wait_for()
    page.fill("#password", ADMIN[1])
    page.click("#login-submit")
    page.wait_for_url(re.compile(r"/images$"))

    # --- upload: two images with the file picker, one plus a broken file by drag-and-drop ---
    page.set_input_files("#file-input", [str(p) for p in files[:2]])
    dropped = [(files[2].name, files[2].read_bytes()), ("broken.jpg", b"not an image" * 50)]
    drop_files(page, "#dropzone", dropped)
    page.locator(".upload-item.upload-ok").nth(2).wait_for(timeout=90_000)
    page.locator(".upload-item.upload-error").wait_for(timeout=30_000)
    assert page.locator(".upload-item.upload-ok").count() == 3
    bad = page.locator(".upload-item.upload-error")
    assert bad.count() == 1 and "broken.jpg" in bad.inner_text()
    assert "image" in bad.locator(".status").inner_text()  # the server's sentence, e.g. "not a JPEG..."
    page.locator("#image-grid .thumb").nth(2).wait_for(timeout=20_000)
    assert page.locator("#image-grid .thumb").count() == 3
    page.wait_for_function(
        "() => [...document.querySelectorAll('#image-grid img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    page.screenshot(path=output_dir / "01-images.png", full_page=True)
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.screenshot(path=output_dir / "01-images-1920x1080.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})

    # --- open one image and label: five by clicking, three by keyboard ---
    page.locator("#image-grid .thumb a.open").first.click()
    page.wait_for_url(re.compile(r"/images/\d+/label"))
    image_id = int(re.search(r"/images/(\d+)/label", page.url).group(1))
    page.locator('#label-app[data-loaded="true"]').wait_for()
    for (r, c), lab in CLICKED.items():
        for _ in range(1 if lab == "diseased" else 2):
            cell(page, r, c).click()
    for key, (r, c) in zip(["ArrowDown", "ArrowDown", "ArrowLeft"], KEYED, strict=True):
        page.keyboard.press(key)
        page.keyboard.press("h" if KEYED[(r, c)] == "healthy" else "d")
    wait_saved(page)

    # A save that fails stays visible with a Retry button, and Retry saves it (no silent loss).
    failures = []

    def fail_first_put(route):
        if route.request.method == "PUT" and not failures:
            failures.append(route.request.url)
            route.fulfill(
                status=503,
                content_type="application/json",
                body='{"detail": "The database is busy; try again."}',
            )
        else:
            route.continue_()

    page.route("**/api/v1/images/*/labels/*/*", fail_first_put)
    cell(page, 6, 6).click()
    page.locator("#retry-save").wait_for(timeout=10_000)
    assert "not saved" in page.locator("#save-status").inner_text()
    assert "database is busy" in page.locator("#save-status").inner_text()
    assert "failed" in cell(page, 6, 6).get_attribute("class")
    page.screenshot(path=output_dir / "02-label-save-failed.png")
    page.click("#retry-save")
    wait_saved(page)
    assert failures and "failed" not in cell(page, 6, 6).get_attribute("class")
    page.unroute("**/api/v1/images/*/labels/*/*")
    page.keyboard.press("u")  # the cursor is on (6, 6): clear it again, leaving the eight labels
    wait_saved(page)
    assert page.locator("#count-diseased").inner_text() == "4"
    assert page.locator("#count-healthy").inner_text() == "4"
    page.screenshot(path=output_dir / "02-label-1280x800.png")
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.wait_for_timeout(300)
    page.screenshot(path=output_dir / "02-label-1920x1080.png")
    page.set_viewport_size({"width": 1280, "height": 800})

    # --- reload: all eight kept, in the page and in the database ---
    page.reload()
    page.locator('#label-app[data-loaded="true"]').wait_for()
    shown = {(r, c): cell(page, r, c).get_attribute("data-label") for r in range(8) for c in range(8)}
    assert {k: v for k, v in shown.items() if v} == EXPECTED
    in_db = current_labels_in_db(live_server.database_url, image_id, ADMIN[0])
    assert in_db == {k: (1 if v == "diseased" else 0) for k, v in EXPECTED.items()}

    # N / P walk through the library (newest first) without the mouse.
    page.keyboard.press("n")
    page.wait_for_url(re.compile(rf"/images/(?!{image_id}/)\d+/label"))
    page.locator('#label-app[data-loaded="true"]').wait_for()
    page.keyboard.press("p")
    page.wait_for_url(re.compile(rf"/images/{image_id}/label"))
    page.locator('#label-app[data-loaded="true"]').wait_for()
    # With the images page's filter "labeled", N stays: this is the only labeled image so far.
    page.goto(f"{base}/images/{image_id}/label?status=labeled")
    page.locator('#label-app[data-loaded="true"]').wait_for()
    page.wait_for_function("() => document.querySelector('#next-image').classList.contains('disabled')")
    page.keyboard.press("n")
    page.locator(".toast", has_text="last image").wait_for()
    assert re.search(rf"/images/{image_id}/label\?status=labeled$", page.url)
    footer = page.locator(".site-footer").inner_text()
    assert "IDRiD" in footer and "CC BY 4.0" in footer

    # A second labeled image (through the REST API, as another tool would) gives the job a
    # validation image, hence a validation AUC and an ROC curve for the models page.
    other_id = next(i for i in image_ids_in_db(live_server.database_url) if i != image_id)
    api = httpx.Client(base_url=base, headers=bearer(base, ADMIN))
    r = api.put(
        f"/api/v1/images/{other_id}/labels",
        json={
            "labels": [
                {"row": 1, "col": 1, "label": "diseased"},
                {"row": 2, "col": 2, "label": "diseased"},
                {"row": 5, "col": 5, "label": "healthy"},
                {"row": 6, "col": 6, "label": "healthy"},
            ]
        },
    )
    assert r.status_code == 200, r.text

    # --- train on the CPU tiny preset and follow the job live (no reload) ---
    page.click('a[href="/training"]')
    page.wait_for_url(re.compile(r"/training$"))
    page.select_option("#preset", "tiny")
    page.fill("#epochs", "3")
    page.click("#start-job")
    status = page.locator("#job-status")
    status.wait_for(timeout=20_000)
    seen = set()
    for _ in range(600):
        st = status.get_attribute("data-status")
        seen.add(st)
        if st == "running" and "running-shot" not in seen:
            seen.add("running-shot")
            page.screenshot(path=output_dir / "03-training-running.png", full_page=True)
        if st in ("succeeded", "failed", "cancelled"):
            break
        page.wait_for_timeout(500)
    page.screenshot(path=output_dir / "03-training-done.png", full_page=True)
    assert status.get_attribute("data-status") == "succeeded", page.locator("#current-job").inner_text()
    assert seen & {"queued", "running"}, "the page never showed the job before it finished"
    assert page.locator("#jobs-table tbody tr").count() >= 1

    # --- prediction view: a heatmap that is not blank ---
    page.goto(f"{base}/predict?image_id={image_id}")
    page.locator("#predict-result:not(.hidden)").wait_for(timeout=60_000)
    page.wait_for_function(
        "() => ['#heat-image', '#base-image'].every(s => {"
        " const i = document.querySelector(s); return i.complete && i.naturalWidth > 0; })",
        timeout=30_000,
    )
    stats = heatmap_pixel_stats(page, "#heat-image")
    assert stats["w"] >= 256 and stats["h"] >= 256
    assert stats["opaque"] > 0.5 and stats["std"] > 2.0 and stats["hi"] - stats["lo"] > 10, stats
    base_stats = heatmap_pixel_stats(page, "#base-image")  # the fundus under the heatmap
    assert base_stats["std"] > 10, base_stats
    assert re.fullmatch(r"v\d+", page.locator("#model-version").inner_text())
    score = float(page.locator("#score").inner_text().split()[0])
    assert 0.0 <= score <= 64.0
    page.screenshot(path=output_dir / "04-predict.png")
    page.check("#raw-toggle")
    assert page.locator("#prob-grid > div").count() == 64
    assert page.locator("#heat-image").is_hidden()
    page.screenshot(path=output_dir / "04-predict-raw.png")

    # --- upload-and-predict a new image without storing it ---
    page.set_input_files("#predict-file", str(files[1]))
    page.click("#predict-upload-btn")
    page.wait_for_function(
        "() => document.querySelector('#source-name').textContent.includes('not stored')", timeout=60_000
    )
    assert page.locator("#decision").inner_text()
    with sqlite3.connect(live_server.database_url.removeprefix("sqlite:///")) as con:
        assert con.execute("SELECT count(*) FROM images").fetchone()[0] == 3
        assert con.execute("SELECT count(*) FROM predictions WHERE image_id IS NULL").fetchone()[0] == 1

    # --- models page lists the new version ---
    page.goto(f"{base}/models")
    page.locator("#models-table tbody tr[data-version]").first.wait_for(timeout=20_000)
    rows = page.locator("#models-table tbody tr[data-version]")
    assert rows.count() == 1
    assert "active" in rows.first.inner_text()
    page.locator("#roc svg polyline.curve").wait_for(timeout=10_000)  # the validation ROC curve
    assert "32×32 patches, colours standardised per image" in page.locator("#model-detail").inner_text()
    assert len(page.locator("#roc svg polyline.curve").get_attribute("points").split()) >= 2
    page.screenshot(path=output_dir / "05-models.png", full_page=True)

    # --- suggestions page answers from the active model ---
    page.goto(f"{base}/suggestions")
    page.locator("#suggest-grid .suggest").first.wait_for(timeout=60_000)
    page.screenshot(path=output_dir / "06-suggestions.png", full_page=True)

    assert not console_errors, console_errors
    context.close()


def test_pages_send_csp_without_inline_script(live_server):
    import httpx

    r = httpx.get(f"{live_server.url}/login")
    assert r.status_code == 200
    csp = r.headers.get("content-security-policy", "")
    script_src = next((d for d in csp.split(";") if d.strip().startswith(("script-src", "default-src"))), "")
    assert "script-src" in csp or "default-src" in csp, csp
    assert "'unsafe-inline'" not in script_src, csp
    assert "<script>" not in r.text and " style=" not in r.text
    assert all(s in r.text for s in ("/static/js/login.js", "/static/css/app.css"))
