"""Memory budgets (issue 20) through the trainer: block swapping and activation offloading change where tensors wait,
not what is computed (the tiny LoRA run's losses and adapters are bit-identical on the CPU); a budget picks the levers
before anything loads, and a budget nothing fits stops the command line with what it needs."""
import os, subprocess, sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from cosmos_nb import train as T
from cosmos_nb.config import Settings
from cosmos_nb.data import make_synthetic_dataset
from cosmos_nb.experiments import get_experiment
from cosmos_nb.memory import fit_memory_budget
from cosmos_nb.train import read_metrics
from conftest import ROOT

LORA_7B = 'video2world_7b_lora_example_cosmos_nemo_assets'


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp('mem') / 'shapes'
    make_synthetic_dataset(d, n_videos=2, num_frames=17, size=(32, 32))
    return d


def _flat(d, prefix=''):
    "name -> tensor of a nested checkpoint dict."
    out = {}
    for k, v in d.items():
        if isinstance(v, dict): out.update(_flat(v, f'{prefix}{k}.'))
        elif torch.is_tensor(v): out[prefix + k] = v
    return out


def _run(clips, root, extra):
    torch.set_num_threads(1)
    out = T.train('video2world_tiny_lora_synthetic', [f'data.dataset_dir={clips}', 'checkpoint.load_path=', 'trainer.max_iter=3',
                                                      'checkpoint.save_iter=3', 'trainer.logging_iter=0', *extra],
                  settings=Settings(output_root=str(root)))
    rows = read_metrics(out['metrics'])
    ck = sorted(Path(out['checkpoint_dir']).glob('iter_*_model.pt'))[-1]
    return [r['loss'] for r in rows if 'loss' in r], _flat(torch.load(ck, weights_only=True))


def test_swapping_and_offloading_train_bit_identically(clips, tmp_path, monkeypatch):
    made = []
    real = T.swap_blocks
    monkeypatch.setattr(T, 'swap_blocks', lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    ac = ['parallel.activation_checkpointing=full']
    plain_losses, plain = _run(clips, tmp_path / 'plain', ac)
    losses, got = _run(clips, tmp_path / 'swap', ac + ['parallel.swap_blocks=true', 'parallel.offload_activations=true'])
    assert len(plain_losses) == 3 and losses == plain_losses
    assert len(plain) > 10 and plain.keys() == got.keys() and all(torch.equal(plain[k], got[k]) for k in plain)   # upstream's iter_N_model.pt: same bits
    swap = made[0]
    assert swap.stats.loads >= 3 * len(swap.swapped) and swap.stats.releases >= 3   # blocks really moved, every step


def test_swapping_needs_checkpointing_and_a_frozen_base(clips, tmp_path):
    base = [f'data.dataset_dir={clips}', 'checkpoint.load_path=', 'trainer.max_iter=1']
    with pytest.raises(ValueError, match='activation_checkpointing=full'):
        T.train('video2world_tiny_lora_synthetic', base + ['parallel.swap_blocks=true'], settings=Settings(output_root=str(tmp_path)))
    with pytest.raises(ValueError, match='frozen base'):
        T.train('video2world_tiny_full_synthetic', base + ['parallel.swap_blocks=true', 'parallel.activation_checkpointing=full'],
                settings=Settings(output_root=str(tmp_path)))


def test_a_budget_picks_the_levers_before_anything_loads():
    cfg = get_experiment(LORA_7B, ['data.video_size=(704,1280)', 'trainer.memory_budget_gb=24'])
    p = fit_memory_budget(cfg, host_gib=100).parallel
    assert (p.swap_blocks, p.offload_activations) == (True, True)
    p = fit_memory_budget(get_experiment(LORA_7B, ['data.video_size=(704,1280)', 'trainer.memory_budget_gb=80']), host_gib=100).parallel
    assert (p.swap_blocks, p.offload_activations, p.activation_checkpointing) == (False, False, 'save_attention')
    full = get_experiment('video2world_7b_example_hdvila', ['trainer.memory_budget_gb=24'])
    with pytest.raises(ValueError, match='needs at least .* GiB .*more GPUs'): fit_memory_budget(full, world_size=1, host_gib=100)


def _cli(*args):
    return subprocess.run([sys.executable, '-m', 'cosmos_nb.train', *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, 'HF_HUB_OFFLINE': '1'}, timeout=300)


def test_the_command_line_shows_the_plan_or_what_is_needed():
    r = _cli('--dryrun', f'experiment={LORA_7B}', 'trainer.memory_budget_gb=24')
    assert r.returncode == 0, r.stderr
    assert '"swap_blocks": true' in r.stdout and '"activation_checkpointing": "save_attention"' in r.stdout   # 480×848: swapping suffices
    r = _cli('--dryrun', f'experiment={LORA_7B}', 'trainer.memory_budget_gb=6')
    assert r.returncode == 2 and 'trainer.memory_budget_gb=6' in r.stderr + r.stdout and 'needs at least' in r.stderr + r.stdout
    assert 'Traceback' not in r.stderr
