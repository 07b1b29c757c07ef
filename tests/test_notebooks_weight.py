"""Notebooks carry no dead weight: no ipywidgets state, no figure stored twice, none over 250 KB.

Why these come back: nbclient (what `jupyter nbconvert --execute` runs) stores every live widget's state in
`metadata.widgets` unless told `--ExecutePreprocessor.store_widget_state=False`, and nbdev-clean keeps that key
(it is on nbdev's built-in list, no setting removes it). A PIL image (what `contact_sheet` returns) has both
`_repr_png_` and `_repr_jpeg_`, so IPython stores every picture twice.

`slim_nb` is the fix and `make run-nbs` applies it after executing each notebook:
`python tests/test_notebooks_weight.py nbs/NN_x.ipynb ...` rewrites the given notebooks in place.
"""
import json, re, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT/'nbs').glob('*.ipynb')) + sorted((ROOT/'nbs'/'tutorials').glob('*.ipynb'))
MAX_BYTES = 250_000
WIDGET_MIMES = ('application/vnd.jupyter.widget-view+json', 'application/vnd.jupyter.widget-state+json')
IMAGE_MIMES = ('image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/svg+xml')

def _outputs(nb):
    for i, cell in enumerate(nb['cells']):
        for out in cell.get('outputs', []): yield i, out

def weight_problems(nb) -> list:
    "What `nb` (a loaded notebook) stores that it should not, one line each."
    probs = [f'metadata.widgets holds {len(json.dumps(nb["metadata"]["widgets"])):,} bytes of widget state'
             ] if 'widgets' in nb.get('metadata', {}) else []
    for i, out in _outputs(nb):
        data = out.get('data', {})
        probs += [f'cell {i}: a {m} output (widget state or a view of it)' for m in WIDGET_MIMES if m in data]
        imgs = [m for m in IMAGE_MIMES if m in data]
        if len(imgs) > 1: probs.append(f'cell {i}: one figure stored {len(imgs)} times ({", ".join(imgs)})')
    return probs

_TQDM = re.compile(r'\d+%\|.*\| *[\d.]+\w?/[\d.]+')   # what a tqdm.auto bar's text/plain says: "name:  0%|   | 0/6 [...]"

def slim_nb(nb) -> dict:
    """Drop widget state and views (their text/plain fallback stays) and keep the smallest format of every figure.
    A tqdm progress bar goes altogether: without its state, all it shows is the bar as it started (0%)."""
    nb.get('metadata', {}).pop('widgets', None)
    for cell in nb['cells']:
        if 'outputs' in cell: cell['outputs'] = [o for o in cell['outputs'] if not (
            WIDGET_MIMES[0] in o.get('data', {}) and _TQDM.search(''.join(o['data'].get('text/plain', ''))))]
    for _, out in _outputs(nb):
        data = out.get('data', {})
        for m in WIDGET_MIMES:
            if m in data: data.pop(m); data.setdefault('text/plain', '')
        imgs = [m for m in IMAGE_MIMES if m in data]
        for m in sorted(imgs, key=lambda m: len(''.join(data[m])))[1:]:
            data.pop(m); out.get('metadata', {}).pop(m, None)
    return nb

def test_checks_catch_dead_weight():
    "The checks fail on what nbconvert + PIL + ipywidgets store, and slim_nb clears exactly that."
    png, jpg = 'iVBORw0KGgo' + 'A' * 200, '/9j/4AAQ' + 'A' * 50
    nb = {'metadata': {'widgets': {'application/vnd.jupyter.widget-state+json': {'state': {}}}}, 'cells': [
        {'cell_type': 'code', 'outputs': [
            {'output_type': 'execute_result', 'metadata': {'image/png': {'width': 9}},
             'data': {'image/png': png, 'image/jpeg': jpg, 'text/plain': '<PIL.Image.Image>'}},
            {'output_type': 'display_data', 'metadata': {},
             'data': {'application/vnd.jupyter.widget-view+json': {'model_id': 'x'}, 'text/plain': 'VBox()'}},
            {'output_type': 'display_data', 'metadata': {}, 'data': {
                'application/vnd.jupyter.widget-view+json': {'model_id': 'y'},
                'text/plain': 'caching latents in /tmp/x:   0%|          | 0/4 [00:00<?, ?it/s]'}}]},
        {'cell_type': 'markdown', 'source': 'x'}]}
    assert len(weight_problems(nb)) == 4
    slim_nb(nb)
    assert weight_problems(nb) == []
    outs = nb['cells'][0]['outputs']
    assert outs[0]['data'] == {'image/jpeg': jpg, 'text/plain': '<PIL.Image.Image>'} and outs[0]['metadata'] == {}
    assert len(outs) == 2 and outs[1]['data'] == {'text/plain': 'VBox()'}   # the frozen progress bar is gone

@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT/'nbs')))
def test_notebook_weight(path):
    size = path.stat().st_size
    assert size < MAX_BYTES, f'{path.name} is {size:,} bytes (limit {MAX_BYTES:,}): shrink its stored figures or outputs'
    probs = weight_problems(json.loads(path.read_text()))
    assert not probs, f'{path.name}: ' + '; '.join(probs) + f' (fix: python tests/test_notebooks_weight.py {path.relative_to(ROOT)})'

if __name__ == '__main__':
    for p in map(Path, sys.argv[1:]):
        before = p.read_text()
        after = json.dumps(slim_nb(json.loads(before)), indent=1, ensure_ascii=False) + '\n'
        if after != before:                                       # atomic: a reader never sees half a notebook
            tmp = p.with_name(p.name + '.tmp'); tmp.write_text(after); tmp.replace(p)
        print(f'{p}: {len(before.encode()):,} -> {len(after.encode()):,} bytes')
