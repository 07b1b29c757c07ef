"A user's clone is all they have: nothing in the project may name a path outside the checkout or a machine's disk."
import json, re, subprocess
from pathlib import Path
import pytest
from conftest import ROOT

OUTSIDE = re.compile(r"\.\./shared|shared/(data|spec)|/work/")                     # the developers' reference folder beside the repo
MACHINE = re.compile(r"(?<![\w.])/(home|root|work|Users)/[\w.-]+")               # an absolute path on somebody's disk
SPEC_NOTES = re.compile(r"(network|tokenizer|diffusion_training|ecosystem)\.md\b|\bspec §|\(spec\b|\bspec's\b|spec gotcha", re.I)

def tracked_text_files():
    names = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for n in names:
        p = ROOT/n
        if p.suffix in {'.py', '.ipynb', '.md', '.ini', '.toml', '.sh', '.txt', '.yml', '.cfg', ''} and p.is_file() and n != 'tests/test_standalone.py':
            try: yield n, p.read_text()
            except UnicodeDecodeError: pass

def test_no_file_names_a_path_outside_the_checkout():
    hits = [f'{n}:{i}: {l.strip()[:120]}' for n, t in tracked_text_files() for i, l in enumerate(t.splitlines(), 1) if OUTSIDE.search(l)]
    assert not hits, 'paths outside the checkout:\n' + '\n'.join(hits)

def notebooks(): return sorted(ROOT.glob('nbs/**/*.ipynb'))

@pytest.mark.parametrize('nb', notebooks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_stored_outputs_show_no_machine_paths(nb):
    hits = []
    for c in json.loads(nb.read_text())['cells']:
        for o in c.get('outputs', []):
            text = json.dumps(o.get('text', '')) + json.dumps(o.get('data', {}).get('text/plain', '')) + json.dumps(o.get('data', {}).get('text/markdown', ''))
            hits += MACHINE.findall(text) and [m.group(0) for m in MACHINE.finditer(text)]
    assert not hits, f'{nb.name} stores absolute paths of the machine it ran on: {sorted(set(hits))[:5]}'

def test_docs_do_not_cite_the_developers_spec_notes():
    "The notebooks are the documentation: a fact they need is in their own prose, not in notes a user does not have."
    files = [p for p in notebooks()] + sorted((ROOT/'cosmos_nb').glob('*.py'))
    hits = [f'{p.relative_to(ROOT)}:{i}: {l.strip()[:100]}' for p in files for i, l in enumerate(p.read_text().splitlines(), 1)
            if SPEC_NOTES.search(l) and 'kernelspec' not in l]
    assert not hits, f'{len(hits)} citations of the spec notes:\n' + '\n'.join(hits[:40])

def test_example_media_ship_with_the_package():
    from cosmos_nb.video import EXAMPLE_MEDIA, video_info
    names = {p.name for p in EXAMPLE_MEDIA.iterdir()}
    assert {'text2world_example.mp4', 'video2world_input0.jpg', 'video2world_input1.mp4', 'video2world_input2.mp4', 'README.md'} <= names
    assert 'Apache' in (EXAMPLE_MEDIA/'README.md').read_text()
    assert video_info(EXAMPLE_MEDIA/'text2world_example.mp4').num_frames == 121
    import tomllib
    pkg_data = tomllib.loads((ROOT/'pyproject.toml').read_text())['tool']['setuptools']['package-data']['cosmos_nb']
    assert any(Path('assets/media/x.mp4').match(g) for g in pkg_data), 'pyproject must ship assets/media in the wheel'
