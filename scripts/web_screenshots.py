"""Screenshots of the main pages for docs/web/, taken in headless Chromium from a running
`arena web`, e.g. on the demo tournament (`arena demo`: the sample submissions on 200 synthetic
images) or the real-model study's database (data/real):

    ARENA_DATA_DIR=/tmp/demo ARENA_ORGANIZER_TOKEN=secret arena demo
    ARENA_DATA_DIR=/tmp/demo ARENA_ORGANIZER_TOKEN=secret arena web --port 8765 &
    .venv/bin/python scripts/web_screenshots.py http://127.0.0.1:8765 secret docs/web
"""

import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

PAGES = {
    "leaderboards": "/",
    "matrix": "/matrix",
    "curves": "/curves",
    "submission": "/submissions/1",
    "organizer": "/organizer",
    "results": "/results",
}


def main(url: str, token: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_context(viewport={"width": 1280, "height": 820}).new_page()
        page.goto(f"{url}/login")
        page.fill("#token", token)
        page.click("form.stack button")
        page.wait_for_url(f"{url}/")  # the session cookie is set once the login's redirect has landed
        pages = dict(PAGES)
        results = (page.request.get(f"{url}/api/results?limit=1&eps=8&offset=900").json()
                   or page.request.get(f"{url}/api/results?limit=1&eps=8").json())
        if results:
            pages["drilldown"] = f"/adversarial/{results[0]['adversarial_image_id']}"
        listed = page.request.get(f"{url}/api/submissions").json()  # a defense's page: its runs, with their logs
        if defense := next((s["id"] for s in listed if s["kind"] == "defense"), None):
            pages["submission"] = f"/submissions/{defense}"
        for name, path in pages.items():
            page.goto(url + path)
            page.wait_for_timeout(500)
            page.screenshot(path=str(out / f"{name}.png"))
            print(f"{out / name}.png")
        # A phone: the same session, 375 px wide (the navigation wraps, tables scroll in their box).
        phone = browser.new_context(viewport={"width": 375, "height": 740}, storage_state=page.context.storage_state())
        small = phone.new_page()
        small.goto(f"{url}/")
        small.wait_for_timeout(500)
        small.screenshot(path=str(out / "phone.png"))
        print(f"{out / 'phone'}.png")
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
