"""No page name is visible before sign-in, at any moment of a cold start (Debian's Chromium).

Streamlit lists the files of a ``pages/`` folder beside the main script in the sidebar from
the first paint until ``st.navigation`` runs, and a cold server takes seconds to get there;
our page files live in ``views/`` so there is no such list. A fresh server, a fresh browser:
every state of the sidebar is recorded from the document's creation (a MutationObserver
installed before any of Streamlit's scripts) until the sign-in form shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit import REPO_ROOT
from testkit.browser_app import BROWSER_ADMIN, prepare_data_dir, running_app

TIMEOUT_MS = 120_000
# Every text the sidebar (and its navigation) shows, recorded on each change of the page.
RECORD_SIDEBAR_JS = """() => {
    window.__sidebarTexts = [];
    const record = () => {
        for (const selector of ['[data-testid="stSidebar"]', '[data-testid="stSidebarNav"]',
                                '[data-testid="stSidebarNavItems"]']) {
            for (const element of document.querySelectorAll(selector)) {
                const text = (element.innerText || element.textContent || '').trim();
                if (text && !window.__sidebarTexts.includes(text)) {
                    window.__sidebarTexts.push(text);
                }
            }
        }
    };
    new MutationObserver(record).observe(document, {childList: true, subtree: true,
                                                    characterData: true});
}"""


def page_names() -> set[str]:
    """Each page's name as Streamlit's automatic list would write it (from its file) and as
    app.py titles it, in lower case."""
    stems = [path.stem for path in (REPO_ROOT / "views").glob("*.py")]
    titles = ["Diagnose", "Worklist", "Model performance", "Model card", "Monitoring", "Users",
              "Audit trail", "Create admin account"]
    names = {stem.replace("_", " ").lower() for stem in stems} | {t.lower() for t in titles}
    return names - {"sign in"}  # the one page a stranger may see


@pytest.fixture
def cold_app(factory_run_dir, tmp_path: Path):
    """A server started for this test alone: its first session is a cold start."""
    data_dir = tmp_path / "data"
    prepare_data_dir(data_dir)
    with running_app(factory_run_dir, data_dir, tmp_path / "app.log") as url:
        yield url


def test_no_page_name_shows_from_first_paint_to_the_sign_in_form(browser, cold_app):
    context = browser.new_context()
    context.add_init_script(f"({RECORD_SIDEBAR_JS})()")
    page = context.new_page()
    page.goto(cold_app, wait_until="commit")
    page.get_by_role("button", name="Sign in").wait_for(timeout=TIMEOUT_MS)
    page.get_by_label("Username", exact=True).wait_for(timeout=TIMEOUT_MS)
    seen = page.evaluate("window.__sidebarTexts")
    context.close()
    shown = [(name, text) for text in seen for name in page_names()
             if name in text.lower()]
    assert not shown, f"page names visible before sign-in: {shown}"
    assert BROWSER_ADMIN[0] not in " ".join(seen)
