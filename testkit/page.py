"""Driving the playground in Chromium as a person does: typing, pasting, clicking where things
are drawn, tapping, pressing keys. Reading the page (the chart's numbers, the text) is fine;
making things happen through anything but gestures is not."""

from __future__ import annotations

import json

CHART = ".dp-main"
META = f"() => document.querySelector('{CHART}').drawn.meta"
READY = (f"() => {{ const d = document.querySelector('{CHART}'); return d && d.drawn && d.drawn.meta"
         " && !document.querySelector('.dp-app').classList.contains('dp-generating') && "
         "!(window.DP && DP.state && (DP.state.pending || DP.state.typing || DP.state.queue.length "
         "|| DP.state.drawing)); }")


class Tab:
    """One tab (one server session) in its own browser context."""

    def __init__(self, browser, url, viewport=None, phone=False, clipboard=False, query="", cookies=None,
                 ready_ms=30_000):
        from . import browser as B

        kw = dict(viewport=viewport or (B.PHONE if phone else B.LAPTOP))
        if phone:
            kw |= dict(has_touch=True, is_mobile=True, device_scale_factor=2)
        if clipboard:
            kw["permissions"] = ["clipboard-read", "clipboard-write"]
        self.context = browser.new_context(accept_downloads=True, **kw)
        if cookies:  # e.g. {"dp_worker": "w1"}: the worker nginx keeps this tab on
            self.context.add_cookies([{"name": k, "value": v, "url": url} for k, v in cookies.items()])
        self.page = self.context.new_page()
        self.requests, self.errors = [], []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.url = url
        self.page.goto(url + query)
        self.ready(ready_ms)

    def close(self):
        self.context.close()

    # ---- reading ----
    def ready(self, timeout=30_000):
        """The chart is drawn and no action is on its way."""
        self.page.wait_for_function(READY, timeout=timeout)

    def meta(self) -> dict:
        return self.page.evaluate(META)

    def wait(self, js, arg=None, timeout=30_000):
        self.page.wait_for_function(js, arg=arg, timeout=timeout)

    def wait_steps(self, n, timeout=30_000):
        self.wait("n => { const m = document.querySelector('.dp-main').drawn.meta; "
                  "return m.steps === n && m.mode === 'live' && !(DP.state && (DP.state.pending || "
                  "DP.state.queue.length || DP.state.drawing)); }", n, timeout)

    def tokens(self) -> list[int]:
        """The generated tokens the text shows, in order."""
        return self.page.evaluate("() => [...document.querySelectorAll('.dp-text .dp-tok')]"
                                  ".map(s => Number(s.dataset.step))")

    def token_count(self) -> int:
        return self.page.locator(".dp-text .dp-tok").count()

    def text(self) -> str:
        return self.page.inner_text(".dp-text")

    def box(self, selector) -> dict:
        return self.page.locator(selector).first.bounding_box()

    # ---- gestures ----
    def click(self, selector):
        self.page.locator(selector).first.click()

    def tap(self, selector):
        self.page.locator(selector).first.tap()

    def type_into(self, selector, text, clear=True):
        self.page.click(selector)
        if clear:
            self.page.keyboard.press("Control+A")
            self.page.keyboard.press("Delete")
        self.page.keyboard.type(text)

    def paste_into(self, selector, text):
        """Put text on the clipboard (as copying it elsewhere would) and press Ctrl+V."""
        self.page.click(selector)
        self.page.evaluate("t => navigator.clipboard.writeText(t)", text)
        self.page.keyboard.press("Control+A")
        self.page.keyboard.press("Control+V")

    def set_number(self, setting_id, text):
        """Type a value into a setting's number box and press Enter."""
        box = self.page.locator(f"#{setting_id} input.dp-num")
        box.click()
        self.page.keyboard.press("Control+A")
        self.page.keyboard.type(str(text))
        self.page.keyboard.press("Enter")

    def open_section(self, title, tap=False):
        """Open a closed section (a gr.Accordion) by clicking, or tapping, its title."""
        title_el = self.page.get_by_text(title, exact=True).first
        title_el.tap() if tap else title_el.click()

    def hover(self, selector, index=0):
        """Move the mouse over the middle of an element, as a person points at it."""
        target = self.page.locator(selector).nth(index)
        target.scroll_into_view_if_needed()  # as a person scrolls to what they point at
        box = target.bounding_box()
        self.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

    def click_bar(self, index, y_fraction=0.92):
        """Click inside bar `index`'s column, near the bottom of the plot, where a short bar is."""
        target = self.page.locator(".dp-hits .dp-hit").nth(index)
        target.scroll_into_view_if_needed()  # as a person scrolls back to the chart
        hit = target.bounding_box()
        self.page.mouse.click(hit["x"] + hit["width"] / 2, hit["y"] + hit["height"] * y_fraction * 0.7)

    def export(self) -> dict:
        """Press Export and read the file it saves."""
        with self.page.expect_download() as info:
            self.click(".dp-export")
        return json.loads(open(info.value.path()).read())

    def scroll_top_when_still(self, selector) -> float:
        """An element's scrollTop once it has stopped moving (unchanged for five frames: a
        wheel or a smooth scroll glides for a while)."""
        return self.page.evaluate("""sel => new Promise(done => {
            const el = document.querySelector(sel);
            let last = el.scrollTop, still = 0;
            const look = () => {
              if (el.scrollTop === last) still++; else { still = 0; last = el.scrollTop; }
              if (still >= 5) done(el.scrollTop); else requestAnimationFrame(look);
            };
            requestAnimationFrame(look);
        })""", selector)
