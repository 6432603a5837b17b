"""The whole book as the tests build it: every chapter executed once in the smoke profile (into
_build/test), the HTML built from those runs and checked in a browser. Smoke verdicts are no evidence:
the tests assert what the pages show and how, never whether a claim held."""
import json
import os
import re
from pathlib import Path

import pytest

from conftest import BOOK_GROUP, PROFILE, assert_well_formed, claims_by_id, saved_figures
from curvnb.book import build_dir, chapters, executed_path
from curvnb.claims import CLAIM_KEYS, FORMAT, KINDS, read_claims
from curvnb.figures import CONTENT_WIDTH_IN
from browser import PHONE_WIDTH, find_browser, headless_chromium, page_report, phone_report

pytestmark = [pytest.mark.book, pytest.mark.slow, BOOK_GROUP]


def test_intro_claims(executed_chapter):
    records = executed_chapter("intro")
    assert set(claims_by_id(records)) == {"stable-below-2/λ", "diverges-above-2/λ", "slowest-mode-rate"}
    assert_well_formed(records, "intro")


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


RUN_KEYS = {"chapter", "profile", "seed", "device", "torch", "curvnb", "sources_sha256", "date", "wall_time_s"}


def test_every_chapter_wrote_claims_and_figures(built_book):
    for chapter in chapters():
        data = json.loads((build_dir() / "claims" / f"{chapter.id}.json").read_text())
        assert data["format"] == FORMAT and RUN_KEYS <= set(data["run"]), chapter.id
        assert data["run"]["chapter"] == chapter.id and data["run"]["profile"] == PROFILE
        records = data["claims"]
        assert records and all(tuple(r)[:len(CLAIM_KEYS)] == CLAIM_KEYS for r in records)
        assert {r["profile"] for r in records} == {PROFILE}
        assert_well_formed(records, chapter.id)
        for r in records:   # every record says what kind of claim it is and how many seeds it rests on
            assert r["kind"] in KINDS and r["seeds"] >= 1, (chapter.id, r["id"])
            # a statistic over several units has its interval, unless too few units make it
            # inconclusive by construction (the engine then gives no interval)
            assert r["interval"] is not None or r["seeds"] == 1 or r["verdict"] == "inconclusive", (chapter.id, r["id"])
        figures = build_dir() / "figures" / chapter.id
        pngs = sorted(p.stem for p in figures.glob("*.png"))
        assert pngs, f"{chapter.id} saved no figure"
        assert pngs == sorted(p.stem for p in figures.glob("*.pdf"))


def test_every_saved_figure_is_shown_inline(built_book):
    """Each ``ch.save`` cell of an executed chapter carries its image (under any matplotlib backend:
    the tests run with MPLBACKEND=Agg)."""
    for chapter in chapters():
        nb = json.loads(executed_path(chapter).read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code" and "ch.save(" in "".join(cell["source"]):
                shown = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
                assert len(shown) == "".join(cell["source"]).count("ch.save("), (chapter.id, cell["source"])


FONT_FLOOR_PX = 9.0
SMOKE_LABEL = "Smoke profile: a test run, not evidence."


def test_figures_legible_labelled_and_at_the_book_width(built_book):
    """Every saved figure is drawn at most the book's content width wide, has an x and a y label,
    and its smallest text, as shown at the book's ~680 px content width, is >= 9 px, like every
    slider frame's (read from what the chapters' executions recorded, not drawn again)."""
    smallest, wide, unlabelled = {}, {}, []
    for chapter in chapters():
        for name, facts in saved_figures(chapter.id).items():
            smallest[f"{chapter.id}/{name}"] = facts["smallest_text_px"]
            if facts["figure_width_in"] > CONTENT_WIDTH_IN + 1e-9:
                wide[f"{chapter.id}/{name}"] = facts["figure_width_in"]
            if facts["axes_without_xlabel"] == facts["axes"] or facts["axes_without_ylabel"] == facts["axes"]:
                unlabelled.append(f"{chapter.id}/{name}")
        for view, manifest in _frame_manifests(chapter).items():   # slider frames, smallest over a view
            smallest[f"{chapter.id}/frames/{view}"] = manifest["smallest_text_px"]
    assert smallest and not wide and not unlabelled, (wide, unlabelled)
    too_small = {k: v for k, v in smallest.items() if v < FONT_FLOOR_PX}
    assert not too_small, f"text below {FONT_FLOOR_PX} px at the book's width: {too_small}"


def test_scorecard_page_aggregates_every_chapter(built_book):
    html = (built_book.parent / "book" / "scorecard.html").read_text()
    records = [r for c in chapters() for r in read_claims(build_dir() / "claims" / f"{c.id}.json")]
    paper = [r for r in records if r["kind"] == "paper"]
    assert re.search(rf"{sum(r['passed'] for r in paper)}\s+of\s+{len(paper)}\s+paper claims reproduced", html)
    assert html.count("curvnb-verdict") == len(records)
    assert "not evidence" in html   # the tests' smoke runs are labelled as such, never as evidence
    for c in chapters():
        assert c.title.split(":")[0] in html


def _shown_images(chapter) -> int:
    """Images the book shows: a slider's live-only first draw is replaced there by its static frames."""
    nb = json.loads(executed_path(chapter).read_text())
    return sum("image/png" in o.get("data", {}) and o.get("metadata", {}).get("curvnb") != "live-only"
               for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))


PLUMBING = re.compile(r": ready in \d|_build/|array\(|tensor\(|\{'\w+': ")


def test_no_plumbing_in_the_html(built_book):
    """Progress and cache lines (stderr), build paths and raw Python reprs never reach the reader."""
    html_root = built_book.parent
    pages = [html_root / "book" / f"{c.path.stem}.html" for c in chapters()]
    pages += [html_root / "book" / f"{name}.html" for name in ("scorecard", "seed_robustness")]
    for page in pages:
        text = re.sub(r"<(script|style)\b.*?</\1>", "", page.read_text(), flags=re.S)   # what a reader sees
        text = re.sub(r"<[^>]+>", "", text)
        found = PLUMBING.findall(text)
        assert not found, f"{page.name}: {found[:5]}"
    performance = (html_root / "book" / "performance.html").read_text()   # developers' targets stay out
    assert "Curvature products" in performance and "Targets (met:" not in re.sub(r"<[^>]+>", "", performance)


def test_every_study_chapter_says_what_it_ran(built_book):
    """Each chapter but the introduction shows its "What we ran" section, generated from its config."""
    for c in chapters():
        if c.id == "intro":
            continue
        text = (built_book.parent / "book" / f"{c.path.stem}.html").read_text()
        assert "What we ran" in text, c.id
        assert "chapter seed" in text or "seeds" in text, c.id


@pytest.mark.skipif(os.environ.get("CURVNB_SKIP_BROWSER") == "1", reason="CURVNB_SKIP_BROWSER=1")
def test_rendered_book_in_headless_chromium(built_book, tmp_path):
    assert find_browser(), "chromium + chromedriver missing: run `make browser`"
    html_root = built_book.parent
    shots = build_dir() / "screenshots"
    shots.mkdir(exist_ok=True)
    pages = {"index": (built_book, None),
             **{c.id: (html_root / "book" / f"{c.path.stem}.html", c) for c in chapters()},
             **{name: (html_root / "book" / f"{name}.html", None) for name in ("scorecard", "performance", "changes")}}
    with headless_chromium() as driver:
        for name, (page, chapter) in pages.items():
            report = page_report(driver, page.as_uri(), shots / f"{name}.png")
            assert report["errors"] == 0, f"{name}: an error output is rendered"
            assert report["overflow"] == [], f"{name}: scrolls sideways at 1280 px: {report['overflow']}"
            assert report["raw_tex"] == [], f"{name}: raw TeX in the text: {report['raw_tex']}"
            assert (shots / f"{name}.png").stat().st_size > 10_000
            if name in ("scorecard", "performance", "changes"):   # appendix pages: tables and text
                assert report["tables"] > 0 or name == "changes"
                continue
            figures = [i for i in report["images"] if "_images/" in (i["src"] or "")]
            if chapter is not None:   # every figure of the executed chapter is on the page ...
                assert len(figures) >= _shown_images(chapter), (name, len(figures), _shown_images(chapter))
            assert figures, f"{name}: no figure on the page"
            for img in figures:       # ... and each one loaded, with a non-zero size
                assert img["complete"] and min(img["natural"]) > 0 and min(img["box"]) > 0, (name, img)
            assert report["math"] > 0, f"{name}: no math markup"
            if chapter is not None:   # a smoke run's page says it is a test run, not evidence
                assert any(SMOKE_LABEL in text for text in report["admonitions"]), (name, report["admonitions"])
            # MathJax ships with the book (no CDN): formulas must be typeset offline.
            assert report["typeset"] > 0, f"{name}: MathJax typeset no formula"
        # on a phone: nothing scrolls sideways, and no word breaks inside a cell of curvnb's tables
        driver.set_window_size(PHONE_WIDTH, 844)
        for name, (page, _) in {**pages, "seed_robustness": (html_root / "book" / "seed_robustness.html", None)}.items():
            phone = phone_report(driver, page.as_uri())
            assert phone["overflow"] <= 1, f"{name}: scrolls sideways by {phone['overflow']} px at {PHONE_WIDTH} px"
            assert phone["broken"] == [], f"{name}: words broken inside a cell at {PHONE_WIDTH} px: {phone['broken']}"


FRAME_BUDGET_BYTES = 8_000_000   # slider frames per chapter page


def _frame_manifests(chapter) -> dict[str, dict]:
    folder = build_dir() / "figures" / chapter.id / "frames"
    return {m.parent.name: json.loads(m.read_text()) for m in sorted(folder.glob("*/manifest.json"))}


@pytest.mark.skipif(os.environ.get("CURVNB_SKIP_BROWSER") == "1", reason="CURVNB_SKIP_BROWSER=1")
def test_static_sliders_work_without_kernel_or_network(built_book):
    """Every control of every slider view changes the figure to the frame of the new combination,
    in the static HTML, and no request leaves the site."""
    import itertools
    from urllib.parse import unquote, urlparse

    from browser import move_each_control, resource_urls

    html_root = built_book.parent
    with_views = [c for c in chapters() if _frame_manifests(c)]
    assert with_views, "no chapter has a precomputed slider view"
    with headless_chromium() as driver:
        for chapter in with_views:
            manifests = _frame_manifests(chapter)
            frames = build_dir() / "figures" / chapter.id / "frames"
            size = sum(f.stat().st_size for f in frames.rglob("*.webp"))
            assert size <= FRAME_BUDGET_BYTES, f"{chapter.id}: {size / 1e6:.1f} MB of slider frames"
            driver.get((html_root / "book" / f"{chapter.path.stem}.html").as_uri())
            moves = move_each_control(driver)
            views = {m["view"] for m in moves}
            assert views == {f"curvnb-{chapter.id}-{name}" for name in manifests}, (chapter.id, views)
            for move in moves:
                name = move["view"].removeprefix(f"curvnb-{chapter.id}-")
                manifest = manifests[name]
                combos = list(itertools.product(*(range(len(values)) for _, values, _ in manifest["axes"])))
                expected = manifest["files"][combos.index(tuple(move["values"]))]
                assert move["src"] != move["before"], (chapter.id, move)
                shown = Path(unquote(urlparse(move["src"]).path))
                assert shown.name == expected and shown.parent.name == name, (chapter.id, move)
                frame = build_dir() / "figures" / chapter.id / "frames" / name / expected
                assert shown.read_bytes() == frame.read_bytes()
                assert move["alt"] and "=" in move["alt"]
            outside = [u for u in resource_urls(driver) if not u.startswith("file://")]
            assert not outside, f"{chapter.id}: requests leave the site: {outside[:5]}"
