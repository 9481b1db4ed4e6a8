#!/usr/bin/env python3
"""The collector's status page as a person sees it, in Debian's Chromium driven by Playwright.

Usage: page_in_browser.py URL OUT_PREFIX [--sections TITLE,TITLE...] [--refresh]
       [--expect TITLE=TEXT]... [--reject TITLE=TEXT]... [--no-column HEADER]... [--once TEXT]...

Loads URL at 1280x800 and at a phone's 390x844 and fails (exit 1, one line per problem) on:
a console error or page error; a listed section (h2 title) missing or without a table row;
a sparkline with nothing drawn (its line's box has no width); an in-page anchor with no
target or a same-origin link that does not answer 200; the page wider than the viewport (a
table must scroll inside its box, not the page). With --refresh it scrolls down, waits for the
page's own refresh and checks the scroll position came back. Also fails when section TITLE's
rendered text lacks TEXT (--expect) or has it (--reject), when any table has a column headed
HEADER (--no-column), or when TEXT is not on the page exactly once (--once). Writes
OUT_PREFIX-1280.png and OUT_PREFIX-390.png and prints one JSON line of figures (bytes, load and
render times). --only-1280 skips the phone width.
"""

import json
import sys
import time

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"


def pairs(argv, flag):
    """Every `flag TITLE=TEXT` of argv as (TITLE, TEXT)."""
    out = []
    for i, a in enumerate(argv[:-1]):
        if a == flag:
            title, _, text = argv[i + 1].partition("=")
            out.append((title, text))
    return out


def values(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def contents(page, url, argv, problems):
    """What the page says, as a person reads it: section texts, column headers, the body."""
    texts = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('h2')].map(h => {
            let e = h.nextElementSibling, text = '';
            while (e && e.tagName !== 'H2') { text += e.innerText + '\\n'; e = e.nextElementSibling; }
            return [h.textContent, text];
        }))"""
    )
    for title, text in pairs(argv, "--expect"):
        if title not in texts:
            problems.append(f"section '{title}' missing for --expect {text!r}")
        elif text not in texts[title]:
            problems.append(f"section '{title}' lacks {text!r}: {texts[title][:400]!r}")
    for title, text in pairs(argv, "--reject"):
        if text in texts.get(title, ""):
            problems.append(f"section '{title}' has {text!r}: {texts[title][:400]!r}")
    headers = page.evaluate("() => [...document.querySelectorAll('th')].map(t => t.textContent.trim())")
    for h in values(argv, "--no-column"):
        if h in headers:
            problems.append(f"a table has a column '{h}'")
    body = page.evaluate("() => document.body.innerText")
    for text in values(argv, "--once"):
        if body.count(text) != 1:
            problems.append(f"{text!r} is on the page {body.count(text)} times, not once")


def check(page, url, sections, problems):
    sizes = {"bytes": 0}
    page.on("response", lambda r: sizes.__setitem__("bytes", sizes["bytes"] + len(r.body())) if r.url == url else None)
    t = time.monotonic()
    resp = page.goto(url, wait_until="load")
    load_ms = (time.monotonic() - t) * 1000
    if resp is None or resp.status != 200:
        problems.append(f"GET {url}: {resp.status if resp else 'no response'}")
        return {}
    timing = page.evaluate(
        "() => { const n = performance.getEntriesByType('navigation')[0];"
        " return {dom: n.domContentLoadedEventEnd, load: n.loadEventEnd}; }"
    )
    found = page.evaluate(
        """() => [...document.querySelectorAll('h2')].map(h => {
            let e = h.nextElementSibling, rows = 0, text = '';
            while (e && e.tagName !== 'H2') {
                rows += e.querySelectorAll('tbody tr').length;
                text += e.textContent;
                e = e.nextElementSibling;
            }
            return {title: h.textContent, rows, text: text.slice(0, 200)};
        })"""
    )
    by_title = {f["title"]: f for f in found}
    for s in sections:
        f = by_title.get(s)
        if f is None:
            problems.append(f"section '{s}' missing (have {list(by_title)})")
        elif f["rows"] == 0:
            problems.append(f"section '{s}' has no rows: {f['text']!r}")
    sparks = page.evaluate(
        """() => [...document.querySelectorAll('svg.spark')].map(s => {
            const l = s.querySelector('polyline, circle');
            if (!l) return 0;
            const b = l.getBBox();
            return l.tagName === 'circle' ? (l.r.baseVal.value > 0 ? 1 : 0) : b.width;
        })"""
    )
    if not sparks:
        problems.append("no sparklines")
    for i, w in enumerate(sparks):
        if w <= 0:
            problems.append(f"sparkline {i} draws nothing")
    anchors = page.evaluate(
        """() => [...document.querySelectorAll('a[href^="#"]')]
            .map(a => a.getAttribute('href').slice(1))
            .filter(id => !document.getElementById(id))"""
    )
    for a in anchors:
        problems.append(f"anchor #{a} has no target")
    links = page.evaluate(
        "() => [...document.querySelectorAll('a[href]')].map(a => a.href).filter(h => h.startsWith(location.origin) && !h.includes('#'))"
    )
    for link in sorted(set(links)):
        r = page.request.get(link)
        if r.status != 200:
            problems.append(f"link {link}: {r.status}")
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    if overflow > 1:
        problems.append(f"page {overflow}px wider than the {page.viewport_size['width']}px viewport")
    return {
        "bytes": sizes["bytes"],
        "load_ms": round(load_ms, 1),
        "dom_content_loaded_ms": round(timing["dom"], 1),
        "load_event_ms": round(timing["load"], 1),
        "sparklines": len(sparks),
        "links": len(set(links)),
    }


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 64
    url, out = argv[1], argv[2]
    sections = []
    if "--sections" in argv:
        sections = [s for s in argv[argv.index("--sections") + 1].split(",") if s]
    problems = []
    figures = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        sizes = [(1280, 800)] if "--only-1280" in argv else [(1280, 800), (390, 844)]
        for w, h in sizes:
            page = browser.new_page(viewport={"width": w, "height": h})
            errors = []
            page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            figures[w] = check(page, url, sections, problems)
            if w == 1280:
                contents(page, url, argv, problems)
            page.screenshot(path=f"{out}-{w}.png", full_page=False)
            if w == 1280 and "--refresh" in argv:
                page.evaluate("() => window.scrollTo(0, 300)")
                before = page.evaluate("() => window.scrollY")
                with page.expect_event("load", timeout=30000):
                    pass
                time.sleep(0.5)
                after = page.evaluate("() => window.scrollY")
                figures["refresh_scroll"] = [before, after]
                if before < 100 or abs(after - before) > 2:
                    problems.append(f"the page's refresh moved the scroll from {before} to {after}")
            for e in errors:
                problems.append(f"console at {w}px: {e}")
            page.close()
        browser.close()
    print(json.dumps(figures))
    for pr in problems:
        print(f"PROBLEM {pr}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
