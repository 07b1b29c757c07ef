"""Checks of cosmos_nb.checkpoint that do not belong in the docs: write order under failures at every step, a real
SIGKILL during a write, pruning, upstream-style manifests, RNG states, exact fp32 resume from a bf16 weights file."""
import os, pickle, random, signal, subprocess, sys, textwrap, time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from cosmos_nb import checkpoint as ck
from cosmos_nb.checkpoint import (EMA_MODEL, LATEST_FILE, OPTIM, REG_MODEL, checkpoint_name, find_resume_checkpoint,
                                  list_checkpoints, load_file, load_training_checkpoint, parse_checkpoint_name,
                                  prune_checkpoints, remove_partial_files, rng_state,
                                  save_training_checkpoint, set_rng_state, write_checkpoint)
from cosmos_nb.config import atomic_torch_save
from conftest import ROOT


def names(d: Path): return sorted(p.name for p in d.iterdir())


def test_names_roundtrip_and_reject_other_files():
    for it, kind in [(0, ''), (7, REG_MODEL), (123456789, 'lora_adapter')]:
        assert parse_checkpoint_name(checkpoint_name(it, kind)) == (it, kind)
    for bad in ['iter_12.pt', 'iter_000000012_model.pth', '.iter_000000012.pt', 'iter_000000012_reg_model.pt.tmp', 'latest_checkpoint.txt']:
        assert parse_checkpoint_name(bad) is None, bad
    with pytest.raises(ValueError): checkpoint_name(-1)


@pytest.mark.parametrize('fail_at', ['file0', 'file1', 'manifest', 'latest'])
def test_a_failure_at_any_step_keeps_the_previous_checkpoint(tmp_path, monkeypatch, fail_at):
    write_checkpoint(tmp_path, 10, {REG_MODEL: {'w': torch.zeros(1)}, OPTIM: {'s': 1}})
    real_save, real_write = ck.atomic_torch_save, ck.atomic_write
    calls = []
    def save(obj, path):
        calls.append(Path(path).name)
        if (fail_at == 'file0' and len(calls) == 1) or (fail_at == 'file1' and len(calls) == 2) or \
           (fail_at == 'manifest' and Path(path).name == checkpoint_name(20)): raise OSError('disk full')
        return real_save(obj, path)
    def write(path, mode='wb', suffix=''):
        if fail_at == 'latest' and Path(path).name == LATEST_FILE: raise OSError('disk full')
        return real_write(path, mode, suffix)
    monkeypatch.setattr(ck, 'atomic_torch_save', save); monkeypatch.setattr(ck, 'atomic_write', write)
    with pytest.raises(OSError): write_checkpoint(tmp_path, 20, {REG_MODEL: {'w': torch.ones(1)}, OPTIM: {'s': 2}})
    monkeypatch.undo()
    assert (tmp_path/LATEST_FILE).read_text() == 'iter_000000010.pt'
    info = find_resume_checkpoint(tmp_path)
    assert info.iteration == 10 and info.load(REG_MODEL)['w'].item() == 0
    # only a failure after the manifest leaves a complete (but not 'latest') checkpoint 20
    assert list_checkpoints(tmp_path) == ([10, 20] if fail_at == 'latest' else [10])
    assert not [n for n in names(tmp_path) if n.endswith('.tmp')]


def test_sigkill_while_paused_mid_file_leaves_only_a_hidden_partial_file(tmp_path):
    "A real SIGKILL half-way through the second file of checkpoint 20 (tests/pause_checkpoint.py's writer stalls there)."
    code = textwrap.dedent(f'''
        import torch
        from cosmos_nb.checkpoint import write_checkpoint
        d = {str(tmp_path)!r}
        write_checkpoint(d, 10, {{'reg_model': {{'w': torch.zeros(1000)}}, 'optim': {{'m': torch.zeros(1000)}}}})
        write_checkpoint(d, 20, {{'reg_model': {{'w': torch.ones(1000)}}, 'optim': {{'m': torch.ones(1000)}}}})
    ''')
    (tmp_path/'writer.py').write_text(code)
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    p = subprocess.Popen([sys.executable, str(ROOT/'tests'/'pause_checkpoint.py'), '20', '60', str(tmp_path/'writer.py')],
                         env=env, start_new_session=True)
    try:
        deadline = time.time() + 60
        while not [f for f in tmp_path.glob('.iter_000000020_optim.pt.*.tmp') if f.stat().st_size > 0]:
            assert p.poll() is None and time.time() < deadline, 'the writer did not reach the pause'
            time.sleep(0.05)
    finally:
        os.killpg(p.pid, signal.SIGKILL); p.wait()
    left = names(tmp_path)
    assert 'iter_000000020_reg_model.pt' in left and 'iter_000000020.pt' not in left and 'iter_000000020_optim.pt' not in left
    assert any(n.startswith('.iter_000000020_optim.pt.') for n in left)      # the partial file, under a hidden temp name
    assert find_resume_checkpoint(tmp_path).iteration == 10 and list_checkpoints(tmp_path) == [10]
    assert remove_partial_files(tmp_path) and not [n for n in names(tmp_path) if n.startswith('.')]


def test_fallbacks_when_latest_is_missing_or_points_to_an_incomplete_checkpoint(tmp_path):
    for it in (1, 2, 3): write_checkpoint(tmp_path, it, {REG_MODEL: {'w': torch.tensor([float(it)])}})
    (tmp_path/LATEST_FILE).unlink()
    assert find_resume_checkpoint(tmp_path).iteration == 3
    (tmp_path/LATEST_FILE).write_text('iter_000000003.pt')
    (tmp_path/checkpoint_name(3, REG_MODEL)).unlink()
    with pytest.warns(UserWarning, match='not a complete checkpoint'): assert find_resume_checkpoint(tmp_path).iteration == 2
    (tmp_path/LATEST_FILE).write_text('garbage')
    with pytest.warns(UserWarning): assert find_resume_checkpoint(tmp_path).iteration == 2
    (tmp_path/checkpoint_name(2)).write_bytes(b'truncated')             # an unreadable manifest is not complete
    with pytest.warns(UserWarning): assert find_resume_checkpoint(tmp_path).iteration == 1
    assert find_resume_checkpoint(tmp_path/'nothing') is None


def test_upstream_manifest_without_a_file_list(tmp_path):
    atomic_torch_save({'w': torch.ones(1)}, tmp_path/'iter_000000200_reg_model.pt')
    atomic_torch_save({'w': torch.ones(1)}, tmp_path/'iter_000000200_ema_model.pt')
    atomic_torch_save({'iteration': 200}, tmp_path/'iter_000000200.pt')
    (tmp_path/LATEST_FILE).write_text('iter_000000200.pt')
    info = find_resume_checkpoint(tmp_path)
    assert info.iteration == 200 and sorted(info.files) == [EMA_MODEL, REG_MODEL]
    with pytest.raises(KeyError, match="no 'optim' file"): info.path(OPTIM)


def test_prune_keeps_newest_and_never_the_latest(tmp_path):
    for it in (1, 2, 3, 4): write_checkpoint(tmp_path, it, {REG_MODEL: {}, 'lora_adapter': {}})
    assert prune_checkpoints(tmp_path, 2) == [1, 2] and list_checkpoints(tmp_path) == [3, 4]
    assert not list(tmp_path.glob('iter_000000001*')) and not list(tmp_path.glob('iter_000000002*'))
    (tmp_path/LATEST_FILE).write_text(checkpoint_name(3))                 # latest is not the newest: keep it
    assert prune_checkpoints(tmp_path, 1) == [] and list_checkpoints(tmp_path) == [3, 4]
    with pytest.raises(ValueError): prune_checkpoints(tmp_path, 0)


def test_weights_only_loading_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self): return (os.system, ('echo pwned',))
    (tmp_path/'evil.pt').write_bytes(pickle.dumps({'w': Evil()}))
    with pytest.raises(ValueError, match='not a readable checkpoint'): load_file(tmp_path/'evil.pt')
    torch.save({'w': torch.ones(2)}, tmp_path/'legacy.pt', _use_new_zipfile_serialization=False)
    assert load_file(tmp_path/'legacy.pt')['w'].tolist() == [1.0, 1.0]   # legacy (non-zip) files load without mmap


def test_rng_state_roundtrip_through_a_weights_only_file(tmp_path):
    np.random.standard_normal()                                         # leaves a cached Gaussian in numpy's state
    atomic_torch_save(rng_state(), tmp_path/'rng.pt')
    a = (random.random(), np.random.standard_normal(), np.random.rand(3), torch.randn(3))
    set_rng_state(load_file(tmp_path/'rng.pt'))
    b = (random.random(), np.random.standard_normal(), np.random.rand(3), torch.randn(3))
    assert a[0] == b[0] and a[1] == b[1] and np.array_equal(a[2], b[2]) and torch.equal(a[3], b[3])


class DictEMA:
    "A stand-in EMA with the interface `save/load_training_checkpoint` use."
    def __init__(self, model): self.names = [n for n, _ in model.named_parameters()]; self.sd = {n: p.detach().clone() for n, p in model.named_parameters()}
    def full_state_dict(self): return {k: v.clone() for k, v in self.sd.items()}
    def load_full_state_dict(self, sd): self.sd = {k: sd[k].clone() for k in self.names}


def test_bf16_weights_file_with_exact_fp32_resume(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)); model.register_buffer('seq', torch.arange(3.))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda n: 0.5)
    model(torch.randn(3, 4)).sum().backward(); opt.step(); sched.step()
    ema = DictEMA(model)
    save_training_checkpoint(tmp_path, 5, model, opt, sched, ema, reg_dtype=torch.bfloat16, state=dict(epoch=2, batch_in_epoch=1))
    info = find_resume_checkpoint(tmp_path)
    assert names(tmp_path) == [f'iter_000000005{s}.pt' for s in ('', '_ema_model', '_optim', '_reg_model')] + [LATEST_FILE]
    reg, em, optim = info.load(REG_MODEL), info.load(EMA_MODEL), info.load(OPTIM)
    assert set(reg) == set(em) == {'0.weight', '0.bias', '1.weight', '1.bias', 'seq'}
    assert all(v.dtype == torch.bfloat16 for v in reg.values()) and all(v.dtype == torch.float32 for v in em.values())
    assert sorted(optim) == ['model_fp32', 'optimizer', 'scheduler'] and info.state['epoch'] == 2 and info.state['world_size'] == 1
    # a fresh model resumes to the exact fp32 weights, moments, scheduler and EMA
    torch.manual_seed(1)
    m2 = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)); m2.register_buffer('seq', torch.zeros(3))
    o2 = torch.optim.AdamW(m2.parameters(), lr=1e-2); s2 = torch.optim.lr_scheduler.LambdaLR(o2, lambda n: 0.5)
    e2 = DictEMA(m2)
    state = load_training_checkpoint(info, m2, o2, s2, e2)
    assert state['batch_in_epoch'] == 1
    for (n, p), q in zip(model.state_dict().items(), m2.state_dict().values()): assert torch.equal(p, q), n
    assert torch.equal(o2.state_dict()['state'][0]['exp_avg'], opt.state_dict()['state'][0]['exp_avg'])
    assert s2.last_epoch == sched.last_epoch and o2.param_groups[0]['lr'] == opt.param_groups[0]['lr']
    assert all(torch.equal(e2.sd[k], ema.sd[k]) for k in ema.sd)
