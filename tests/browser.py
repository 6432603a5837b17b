"""Headless Chromium (Debian's chromium + chromedriver) driven by Selenium, offline."""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                  "--window-size=1280,2000")


def find_browser() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@contextmanager
def headless_chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_browser()
    if found is None:
        raise RuntimeError("chromium and chromedriver are needed: `make browser` installs them (Debian packages)")
    chromium, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="curvnb-chromium-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def page_report(driver, url: str, screenshot: Path, typeset_timeout: float = 15.0) -> dict:
    """Load ``url``, wait for MathJax to typeset (up to ``typeset_timeout`` s), save a screenshot, and
    report the page's images, error outputs, math markup, typeset formulas and admonitions."""
    import time

    driver.get(url)
    driver.execute_script("return document.readyState")
    deadline = time.monotonic() + typeset_timeout
    # only a page with math markup (Sphinx's .math spans) waits: a page without would wait it all out
    while (driver.execute_script("return document.querySelectorAll('.math').length > 0 && "
                                 "!document.querySelectorAll('mjx-container').length")
           and time.monotonic() < deadline):
        time.sleep(0.25)
    driver.save_screenshot(str(screenshot))
    return driver.execute_script("""
        const imgs = Array.from(document.querySelectorAll('article img, .bd-article img, main img'));
        return {
          title: document.title,
          images: imgs.map(i => ({src: i.getAttribute('src'), complete: i.complete,
                                  natural: [i.naturalWidth, i.naturalHeight],
                                  box: [i.getBoundingClientRect().width, i.getBoundingClientRect().height]})),
          errors: document.querySelectorAll('.output.error, .cell_output .traceback, div.output_error').length,
          math: document.querySelectorAll('.math, mjx-container').length,
          typeset: document.querySelectorAll('mjx-container').length,
          tables: document.querySelectorAll('table.curvnb-claims, table').length,
          // the visible text of each admonition (notes, warnings)
          admonitions: Array.from(document.querySelectorAll('.admonition')).map(e => e.innerText),
          // elements that scroll sideways (content wider than their box)
          // (1 px of slack: scrollWidth and clientWidth are rounded separately)
          overflow: Array.from(document.querySelectorAll('article table, article .table-wrapper, .bd-article'))
            .filter(e => e.scrollWidth > e.clientWidth + 1 && !e.closest('.highlight'))
            .map(e => e.tagName + '.' + e.className + ' ' + e.scrollWidth + '>' + e.clientWidth).slice(0, 5),
          // TeX that was not typeset: text outside math and code with x_{..} / x^{..} / a backslash command
          raw_tex: (() => {
            const root = (document.querySelector('article') || document.body).cloneNode(true);
            root.querySelectorAll('pre, code, mjx-container, script, .math, .highlight').forEach(e => e.remove());
            // x_{..} / x^{..}, a subscript then a caret (λ_K^*), or a backslash command
            const found = root.textContent.match(/[_^]\\{[^}]*\\}|[A-Za-zλ]_[A-Za-z0-9]+\\^|\\\\(lambda|eta|alpha|frac|mathrm|top|nabla)\\b/g);
            return found ? found.slice(0, 5) : [];
          })(),
        };
    """)


PHONE_WIDTH = 390   # px: a phone's viewport


def phone_report(driver, url: str) -> dict:
    """At the phone width (set by the caller), load ``url`` and report how far the document scrolls
    sideways (``overflow``, px) and the words of any visible table cell of the page (curvnb's claims,
    scorecard, robustness and "What we ran" tables, and every markdown table) wider than their cell,
    which a browser would break inside (``broken``). A word may break after a hyphen, dash or slash."""
    driver.get(url)
    return driver.execute_script("""
        const out = {overflow: document.documentElement.scrollWidth - window.innerWidth, broken: []};
        const ctx = document.createElement('canvas').getContext('2d');
        const cells = Array.from(document.querySelectorAll('article td, article th, .bd-article td, .bd-article th'))
          .filter(c => c.offsetParent !== null);   // hidden header rows (the phone layout) are not read
        for (const cell of cells) {
          const st = getComputedStyle(cell);
          ctx.font = st.fontWeight + ' ' + st.fontSize + ' ' + st.fontFamily;
          const inner = cell.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight);
          for (const word of (cell.innerText || '').split(/\\s+|(?<=[-–\\/])/)) {
            if (word && ctx.measureText(word).width > inner + 0.5) { out.broken.push(word); break; }
          }
        }
        out.broken = out.broken.slice(0, 5);
        return out;
    """)


def move_each_control(driver) -> list[dict]:
    """On the loaded page, move every control of every static slider view once — range inputs with
    the arrow keys (keyboard access), selects to another option — and report, after each move, the
    view's id, every control's value index, and the image's ``src`` and ``alt``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    moves = []
    for view in driver.find_elements(By.CSS_SELECTOR, ".curvnb-static-slider"):
        img = view.find_element(By.TAG_NAME, "img")
        for control in view.find_elements(By.CSS_SELECTOR, "[data-axis]"):
            if control.get_attribute("type") == "hidden":   # a value fixed in this view: shown as text
                continue
            choices = (len(control.find_elements(By.TAG_NAME, "option")) if control.tag_name == "select"
                       else int(control.get_attribute("max")) + 1)
            if choices < 2:   # a control with one value has nothing to move to
                continue
            before = img.get_attribute("src")
            if control.tag_name == "select":
                select = Select(control)
                current = int(control.get_attribute("value"))
                select.select_by_index(0 if current != 0 else 1)
            else:
                at_max = control.get_attribute("value") == control.get_attribute("max")
                driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", control)
                driver.execute_script("arguments[0].focus()", control)   # focus without moving it
                control.send_keys(Keys.ARROW_LEFT if at_max else Keys.ARROW_RIGHT)
            moves.append({"view": view.get_attribute("id"), "before": before,
                          "values": [int(c.get_attribute("value"))
                                     for c in view.find_elements(By.CSS_SELECTOR, "[data-axis]")],
                          "src": img.get_attribute("src"), "alt": img.get_attribute("alt")})
    return moves


def resource_urls(driver) -> list[str]:
    """Every URL the page requested (the document itself included)."""
    return driver.execute_script(
        "return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name));")
