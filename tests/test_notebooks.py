"""Chapter sources: stored without outputs, the same opening cells, Colab cell agrees with _config.yml."""
import importlib
import json
import re

import pytest
import yaml

from curvnb.book import CHAPTER_FILE, chapters, colab_install_source, notebook_has_outputs, repository_url
from curvnb.paths import project_root
from curvnb.studies import CHAPTERS

NOTEBOOKS = chapters()


def test_every_notebook_is_a_known_chapter():
    names = [p.name for p in (project_root() / "book").glob("*.ipynb")]
    assert names, "no chapters found"
    for name in names:
        m = CHAPTER_FILE.match(name)
        assert m and m.group("id") in CHAPTERS, f"{name} is not named NN_<chapter id>.ipynb"
    ids = [c.id for c in NOTEBOOKS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("chapter", NOTEBOOKS, ids=lambda c: c.id)
def test_stored_without_outputs(chapter):
    assert not notebook_has_outputs(chapter.path), f"strip the outputs of {chapter.path}"


@pytest.mark.parametrize("chapter", NOTEBOOKS, ids=lambda c: c.id)
def test_opening_cells(chapter):
    nb = json.loads(chapter.path.read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    tags = [c.get("metadata", {}).get("tags", []) for c in nb["cells"] if c["cell_type"] == "code"]
    # 1. the Colab install cell, with the repository URL of _config.yml
    url = yaml.safe_load((project_root() / "_config.yml").read_text())["repository"]["url"]
    assert code[0] == colab_install_source(url.rstrip("/"))
    assert f"git+{url.rstrip('/')}" in code[0]
    # 2. the papermill parameters cell
    assert "parameters" in tags[1]
    params = {}
    exec(code[1], {}, params)
    assert params == {"profile": "quick", "device": "auto", "seed": 0}
    # 3. the chapter object for this very chapter, validating the parameters
    assert re.search(rf'Chapter\(\s*"{chapter.id}",\s*profile=profile,\s*device=device,\s*seed=seed', code[2])
    # a claims table at the end
    assert any("ch.report(" in c for c in code)


@pytest.mark.parametrize("chapter", NOTEBOOKS, ids=lambda c: c.id)
def test_study_module_contract(chapter):
    study = importlib.import_module(f"curvnb.studies.{chapter.id}")
    assert set(study.PROFILES) == {"quick", "full", "smoke"}
    assert isinstance(study.TITLE, str) and study.TITLE
    assert set(study.COST) == {"quick", "full", "smoke"}
    for fn in ("run", "claims"):
        assert callable(getattr(study, fn))
    hash(study.PROFILES["quick"])  # frozen dataclass: usable in cache keys


def test_config_has_colab_launch_button_and_repository():
    cfg = yaml.safe_load((project_root() / "_config.yml").read_text())
    assert cfg["launch_buttons"]["colab_url"].startswith("https://colab.research.google.com")
    assert repository_url() == cfg["repository"]["url"].rstrip("/")
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert "sphinxcontrib.bibtex" in cfg["sphinx"]["extra_extensions"]
