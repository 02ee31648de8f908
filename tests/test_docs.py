"""The documentation builds with MkDocs in strict mode (a broken link, a missing page, snippet or
reference fails), every page is in its navigation, and the README links to every page. The pages'
commands run in tests/test_readme.py, which reads the README and the pages as one text."""

import re
import subprocess
import sys

from conftest import DOC_PAGES, REPO


def test_the_documentation_builds_in_strict_mode(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    built = (tmp_path / "site" / "getting-started" / "index.html").read_text()
    assert "python -m pip install -e" in built and "--8&lt;--" not in built  # the README's sections, included
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("create_model", "make_dataset", "TrainConfig", "KeywordSpotter", "Controller"):
        assert name in api, name  # generated from the docstrings


def test_every_page_is_in_the_navigation_and_linked_from_the_readme():
    pages = {p.name for p in (REPO / "docs").glob("*.md")}
    assert {p.name for p in DOC_PAGES[1:]} == pages
    readme = (REPO / "README.md").read_text()
    linked = set(re.findall(r"\]\(docs/([^)]+\.md)\)", readme))
    assert linked == pages - {"index.md"}
