"""The README's screenshots: the playground on the default model, drawn in headless Chromium
at a laptop's size (docs/screenshot.png) and a phone's (docs/screenshot-phone.png).

    python -m benchmarks.screenshot

The only thing in the project that writes into docs/; the tests never do.
"""

from __future__ import annotations

import time

from testkit import browser as B
from testkit.page import Tab
from testkit.server import ROOT, launch

QUERY = "?prompt=ROMEO%3A%0AO%20gentle&temperature=0.9&top_p=0.9&seed=7"


def main() -> None:
    from playwright.sync_api import sync_playwright

    import app

    demo = app.build_demo([str(ROOT / "checkpoints" / "shakespeare")])
    url = launch(demo)
    try:
        with sync_playwright() as p:
            browser = B.launch(p)
            for name, phone in (("screenshot.png", False), ("screenshot-phone.png", True)):
                tab = Tab(browser, url, phone=phone, query=QUERY)
                for n in range(1, 9):
                    tab.click(".dp-step")
                    tab.wait_steps(n)
                if not phone:
                    tab.page.hover(".dp-text .dp-tok >> nth=2")
                time.sleep(0.4)
                out = ROOT / "docs" / name
                tab.page.screenshot(path=str(out), full_page=phone)
                print(f"wrote {out} ({out.stat().st_size:,} bytes)")
                tab.close()
            browser.close()
    finally:
        demo.close()


if __name__ == "__main__":
    main()
