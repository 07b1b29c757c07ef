"""The docs site, as far as it can be checked without Quarto: nbdev processes the notebooks into docs sources, those render to
HTML offline with nbconvert, and headless Chromium shows the title, a function's documentation and an image."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest
from conftest import ROOT

NB_CELL_KEYS = {"cell_type", "source", "metadata", "outputs", "execution_count", "id", "attachments"}

def render_html(proc_nb: Path, out_dir: Path) -> Path:
    "Render one nbdev-processed notebook to HTML (nbdev adds cell keys the nbformat schema rejects; drop them first)."
    import nbformat
    from nbconvert import HTMLExporter
    d = json.loads(proc_nb.read_text())
    for c in d["cells"]:
        for k in set(c) - NB_CELL_KEYS: del c[k]
        c["metadata"] = {k: v for k, v in c.get("metadata", {}).items() if k in ("tags", "collapsed", "jupyter")}   # nbdev adds timings the schema rejects
        if c["cell_type"] != "code": c.pop("outputs", None); c.pop("execution_count", None)
    nb = nbformat.reads(json.dumps(d), as_version=4)      # (reads joins the split multi-line strings, as a file load does)
    html, _ = HTMLExporter(exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nb)
    out = out_dir/(proc_nb.stem.split("_", 1)[-1] if proc_nb.stem[0].isdigit() else proc_nb.stem)
    out = out.with_suffix(".html"); out.write_text(html)
    return out

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "nbdev-proc-nbs on a copy of nbs/ (so the checkout stays clean), then every processed notebook to HTML."
    work = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT, work/"repo", ignore=shutil.ignore_patterns(".venv", ".git", "_proc", "_docs", "outputs", "checkpoints", "datasets"))
    exe = Path(sys.executable).parent/"nbdev-proc-nbs"
    r = subprocess.run([str(exe), "--n-workers", "1"], cwd=work/"repo", capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"nbdev-proc-nbs failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    proc = work/"repo"/"_proc"
    nbs = sorted(proc.glob("*.ipynb"))
    assert len(nbs) >= len(list((ROOT/"nbs").glob("*.ipynb"))), "nbdev-proc-nbs skipped notebooks"
    html = work/"html"; html.mkdir()
    for nb in nbs: render_html(nb, html)
    return html

def test_every_notebook_renders(site):
    names = {p.stem for p in site.glob("*.html")}
    assert {"index", "video", "config"} <= names, names
    for p in site.glob("*.html"):
        assert "Traceback" not in p.read_text() or p.stem in {"video"}, f"{p.name} shows an error"

def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")

def _dom(page: Path) -> str:
    exe = _chromium()
    if exe is None: pytest.fail("Debian's chromium is not installed (make test installs it): the browser check cannot run")
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", f"--user-data-dir={page.parent/'.chrome'}", "--virtual-time-budget=3000",
            "--dump-dom", page.as_uri()]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout

def test_index_page_in_headless_chromium(site):
    dom = _dom(site/"index.html")
    assert "cosmos-nb" in dom and "Post-train Cosmos-Predict1-7B-Video2World" in dom
    assert "<img" in dom and "data:image/jpeg;base64" in dom      # the contact sheet is there (a photo: stored as JPEG)

def test_api_page_in_headless_chromium(site):
    dom = _dom(site/"video.html")
    assert "Video I/O" in dom
    assert "read_video" in dom and "Decode frames as uint8" in dom   # show_doc of a function, with its docstring
    assert "<img" in dom
