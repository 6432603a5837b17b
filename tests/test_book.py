"""The whole book: every chapter executed in the quick profile, the HTML built and checked in a browser."""
import json
import os
import re

import pytest

from conftest import claims_by_id
from curvnb.book import build_dir, chapters, executed_path
from curvnb.claims import CLAIM_KEYS
from browser import find_browser, headless_chromium, page_report

pytestmark = [pytest.mark.book, pytest.mark.slow]


def test_intro_claims(executed_chapter):
    claims = claims_by_id(executed_chapter("intro"))
    assert set(claims) == {"stable-below-2/λ", "diverges-above-2/λ", "slowest-mode-rate"}
    assert all(c["passed"] for c in claims.values()), claims


def test_every_chapter_executed_without_errors(built_book):
    for chapter in chapters():
        nb = json.loads(executed_path(chapter).read_text())
        errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, f"{chapter.id}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
        images = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
                  if "image/png" in o.get("data", {})]
        assert images, f"{chapter.id} shows no figure"
        for cell in nb["cells"]:   # progress prints are coalesced: one stdout box per cell in the book
            streams = [o.get("name") for o in cell.get("outputs", []) if o.get("output_type") == "stream"]
            assert len(streams) == len(set(streams)), f"{chapter.id}: uncoalesced stream outputs"


def test_every_chapter_wrote_claims_and_figures(built_book):
    for chapter in chapters():
        records = json.loads((build_dir() / "claims" / f"{chapter.id}.json").read_text())
        assert records and all(tuple(r) == CLAIM_KEYS for r in records)
        assert {r["profile"] for r in records} == {"quick"}
        figures = build_dir() / "figures" / chapter.id
        pngs = sorted(p.stem for p in figures.glob("*.png"))
        assert pngs, f"{chapter.id} saved no figure"
        assert pngs == sorted(p.stem for p in figures.glob("*.pdf"))


def test_scorecard_page_aggregates_every_chapter(built_book):
    html = (built_book.parent / "book" / "scorecard.html").read_text()
    total = sum(len(json.loads((build_dir() / "claims" / f"{c.id}.json").read_text())) for c in chapters())
    passed = sum(sum(r["passed"] for r in json.loads((build_dir() / "claims" / f"{c.id}.json").read_text()))
                 for c in chapters())
    assert re.search(rf"{passed}\s+of\s+{total}\s+claims reproduced", html)
    for c in chapters():
        assert c.title.split(":")[0] in html


@pytest.mark.skipif(os.environ.get("CURVNB_SKIP_BROWSER") == "1", reason="CURVNB_SKIP_BROWSER=1")
def test_rendered_book_in_headless_chromium(built_book, tmp_path):
    assert find_browser(), "chromium + chromedriver missing: run `make browser`"
    html_root = built_book.parent
    shots = build_dir() / "screenshots"
    shots.mkdir(exist_ok=True)
    pages = {"index": built_book, **{c.id: html_root / "book" / f"{c.path.stem}.html" for c in chapters()}}
    with headless_chromium() as driver:
        for name, page in pages.items():
            report = page_report(driver, page.as_uri(), shots / f"{name}.png")
            assert report["errors"] == 0, f"{name}: an error output is rendered"
            figures = [i for i in report["images"] if "_images/" in (i["src"] or "")]
            assert figures, f"{name}: no figure on the page"
            for img in figures:
                assert img["complete"] and min(img["natural"]) > 0 and min(img["box"]) > 0, (name, img)
            assert report["math"] > 0, f"{name}: no math markup"
            # MathJax ships with the book (no CDN): formulas must be typeset offline.
            assert report["typeset"] > 0, f"{name}: MathJax typeset no formula"
            assert (shots / f"{name}.png").stat().st_size > 10_000
