"""Sharded, asynchronous checkpoints (issue 22) in real CPU gloo processes, on tests/dcp_toy.py's float64 toy run: saved on 4
ranks and resumed on 2 (FSDP2 and DDP) with the loss trajectory of the uninterrupted run; a SIGKILL during an asynchronous
save leaves the previous checkpoint in use; upstream's consolidated files equal the single-file format's, written live and
exported from DCP; a failed background write is raised and never becomes latest."""
import json, os, signal, subprocess, sys, threading, time
from pathlib import Path

import pytest
import torch

from cosmos_nb import checkpoint as ck
from cosmos_nb.checkpoint import (DCP, EMA_MODEL, LATEST_FILE, REG_MODEL, CheckpointWriteError, Checkpointer,
                                  consolidate_checkpoint, find_resume_checkpoint, list_checkpoints, read_checkpoint, read_dcp)
from conftest import ROOT

sys.path.insert(0, str(ROOT/'tests'))
import dcp_toy                                                                      # noqa: E402

STEPS = 8


@pytest.fixture(scope='module')
def reference():
    "The uninterrupted run: one process, the whole global batch of 4, no checkpoints."
    return dcp_toy.train(1, STEPS)


def close(a, b, rtol=1e-9):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), rtol=rtol, atol=rtol * 1e-3)


def same(a, b) -> bool:
    "Equal file contents: tensors bitwise with their dtype, dicts by keys in order."
    if torch.is_tensor(a): return torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict): return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize('parallel,format', [('fsdp', 'dcp'), ('ddp', 'dcp'), ('ddp', 'pt')])
def test_saved_on_4_ranks_resumed_on_2_follows_the_uninterrupted_run(tmp_path, reference, parallel, format):
    "FSDP2 and DDP in the sharded format, and DDP in the single-file format LoRA runs keep."
    d, kw = tmp_path/'checkpoints', dict(parallel=parallel, format=format, async_save=format == 'dcp', save_every=3)
    # A: 4 ranks x 1 sample; saves at 3 and 6 (asynchronous for dcp) while training goes on; stop after 6 (as if preempted)
    a = dcp_toy.spawn(4, str(tmp_path/'a.pt'), steps=6, dir=str(d), **kw)
    assert list_checkpoints(d) == [3, 6] and (d/LATEST_FILE).read_text() == 'iter_000000006.pt'
    info = find_resume_checkpoint(d)
    assert info.state['world_size'] == 4 and info.state['samples_in_epoch'] == 4   # 6 steps of 4 samples: epoch 1, 1 step in
    if format == 'dcp': assert len(list(info.path(DCP).glob('*.distcp'))) == 4     # every rank wrote its part
    else: assert not info.has(DCP) and info.has(REG_MODEL)
    # B: 2 ranks x 2 samples resume from 6 and train to 8
    b = dcp_toy.spawn(2, str(tmp_path/'b.pt'), steps=STEPS, dir=str(d), resume=True, **kw)
    got = a['losses'] + b['losses']
    assert [i for i, _ in got] == list(range(1, STEPS + 1))
    assert close([l for _, l in got], [l for _, l in reference['losses']]), (got, reference['losses'])
    ema_rtol = 1e-9 if format == 'dcp' else 1e-6     # upstream's EMA file is fp32 (as the trainer's EMA); this toy trains in fp64
    for k in reference['model']:
        assert close(b['model'][k], reference['model'][k]) and close(b['ema'][k], reference['ema'][k], ema_rtol), k
    # the data order matters: a resume that restarted the epoch would not follow the reference
    assert not close([l for _, l in a['losses'][:2]], [l for _, l in reference['losses'][5:7]])


def test_upstream_files_equal_the_single_file_format_written_live_and_exported(tmp_path):
    "FSDP2 on 2 ranks: at the last save the same state is written three ways; upstream's files agree bit for bit."
    d, pt, plain = tmp_path/'dcp', tmp_path/'pt', tmp_path/'plain'
    dcp_toy.spawn(2, str(tmp_path/'r.pt'), steps=3, dir=str(d), parallel='fsdp', save_every=3, pt_dir=str(pt), plain_dir=str(plain))
    old, live = find_resume_checkpoint(pt), find_resume_checkpoint(d)
    assert not old.has(DCP) and live.has(DCP) and live.has(REG_MODEL) and live.has(EMA_MODEL)
    exported = find_resume_checkpoint(plain)
    assert not exported.has(REG_MODEL)                                   # consolidate=False: DCP only, until exported
    exported = consolidate_checkpoint(exported)
    assert read_checkpoint(plain, 3).has(REG_MODEL)                      # the manifest lists the new files
    for kind in (REG_MODEL, EMA_MODEL):
        want = old.load(kind)
        assert want['0.weight'].dtype == (torch.bfloat16 if kind == REG_MODEL else torch.float32)
        assert same(live.load(kind), want), kind
        assert same(exported.load(kind), want), kind


def test_sigkill_during_an_asynchronous_save_keeps_the_previous_checkpoint(tmp_path, reference):
    d, progress = tmp_path/'checkpoints', tmp_path/'progress'
    run = dict(world=2, out=str(tmp_path/'k.pt'), steps=STEPS, dir=str(d), parallel='fsdp', save_every=2, progress=str(progress))
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}
    p = subprocess.Popen([sys.executable, str(ROOT/'tests'/'dcp_toy.py'), json.dumps({**run, 'pause': [4, 120]})], env=env,
                         start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tmp = d/'.iter_000000004_dcp.tmp'
    try:
        deadline = time.time() + 90
        # the save of 4 stalls before .metadata with both shards written; training goes on to 6, whose save waits for 4
        while not ((tmp/'PAUSED').exists() and progress.exists() and progress.read_text() == '6'):
            assert p.poll() is None, p.stdout.read().decode()[-3000:]
            assert time.time() < deadline, 'the run did not reach the paused save'
            time.sleep(0.05)
        time.sleep(0.3)
        assert progress.read_text() == '6' and not (d/'iter_000000006.pt').exists()
    finally:
        os.killpg(p.pid, signal.SIGKILL); p.wait()
    assert len(list(tmp.glob('*.distcp'))) == 2 and not (tmp/'.metadata').exists()
    assert not (d/'iter_000000004.pt').exists() and not (d/'iter_000000004_dcp').exists()
    assert (d/LATEST_FILE).read_text() == 'iter_000000002.pt' and list_checkpoints(d) == [2]
    assert find_resume_checkpoint(d).iteration == 2
    # resume: from 2, the temp folder is cleaned up, and the losses follow the uninterrupted run
    r = dcp_toy.spawn(2, str(tmp_path/'r.pt'), steps=STEPS, dir=str(d), parallel='fsdp', save_every=2, resume=True)
    assert not tmp.exists() and list_checkpoints(d) == [2, 4, 6, 8]
    assert [i for i, _ in r['losses']] == list(range(3, STEPS + 1))
    assert close([l for _, l in r['losses']], [l for _, l in reference['losses'][2:]])


def test_a_failed_background_write_is_raised_and_never_becomes_latest(tmp_path, monkeypatch):
    model = dcp_toy.make_model(); opt = torch.optim.AdamW(model.parameters()); ema = dcp_toy.EMA(model)
    c = Checkpointer(tmp_path, 'dcp', async_save=True)
    c.save(1, model, opt, ema=ema, consolidate=False)
    deadline = time.time() + 30                                         # committed in the background, without a wait()
    while not (tmp_path/LATEST_FILE).exists(): assert time.time() < deadline; time.sleep(0.02)
    real = ck.dcp_writer
    def broken(folder):
        w = real(folder)
        def write_data(plan, planner): raise OSError(28, 'No space left on device')
        w.write_data = write_data
        return w
    monkeypatch.setattr(ck, 'dcp_writer', broken)
    c.save(2, model, opt, ema=ema, consolidate=False)                   # returns: the failure happens in the background
    with pytest.raises(CheckpointWriteError, match=r'checkpoint 2 could not be written.*No space left.*still names iter_000000001.pt'):
        c.wait()
    assert (tmp_path/LATEST_FILE).read_text() == 'iter_000000001.pt' and list_checkpoints(tmp_path) == [1]
    monkeypatch.undo()
    c.save(3, model, opt, ema=ema, consolidate=False); c.wait()         # the next save works again
    assert list_checkpoints(tmp_path) == [1, 3]


def test_an_asynchronous_save_stages_in_the_background_and_blocked_counts_the_staging_wait(tmp_path):
    """`save` returns before the state is copied to host memory; `wait_for_staging` (where the trainer's next optimizer step
    is) holds the caller until it is, and that wait counts in the save's `blocked`; changes to weights, moments and EMA made
    right after it do not reach the checkpoint. The copy is held back by a gate so the order is certain, not a race."""
    model = dcp_toy.make_model(); opt = torch.optim.AdamW(model.parameters()); ema = dcp_toy.EMA(model)
    model(torch.randn(2, 6, dtype=torch.float64)).sum().backward(); opt.step()        # moments to save
    c = Checkpointer(tmp_path, 'dcp', async_save=True)
    c.save(1, model, opt, ema=ema, consolidate=False); c.wait()                        # the first save makes the stager
    stager, gate = c.stager, threading.Event()
    copy = stager._stage                                  # DefaultStager's copy, run in its own thread (private: test only)
    stager._stage = lambda sd, **kw: (gate.wait(30), copy(sd, **kw))[1]
    want = {k: v.detach().clone() for k, v in model.state_dict().items()}
    want_ema = [s.clone() for s in ema.shadow]
    want_avg = opt.state[model[0].weight]['exp_avg'].clone()
    c.save(2, model, opt, ema=ema, consolidate=False)
    assert c.stager is stager and c.staging is not None and not c.staging.done()    # returned with the copy still to do
    saved_call = c.blocked[1]
    threading.Timer(0.5, gate.set).start()
    t0 = time.perf_counter(); c.wait_for_staging(); waited = time.perf_counter() - t0
    assert gate.is_set() and waited > 0.3                                            # it waited for the copy
    assert c.blocked[1] == pytest.approx(saved_call + waited, abs=0.01) and len(c.blocked) == 2
    with torch.no_grad():                                                            # the next optimizer step and EMA update
        for p in model.parameters(): p.add_(1.0)
        opt.state[model[0].weight]['exp_avg'].add_(1.0)
        for s in ema.shadow: s.add_(1.0)
    assert c.wait() == 2 and c.blocked[1] == pytest.approx(saved_call + waited, abs=0.01)   # nothing left to count
    c.close()
    assert c.stager is None                                                          # its host buffers are released
    got = read_dcp(find_resume_checkpoint(tmp_path).path(DCP))
    assert all(torch.equal(got['model'][k], v) for k, v in want.items()) and set(got['model']) == set(want)
    assert all(torch.equal(got['ema'][n], s) for n, s in zip(ema.names, want_ema))
    assert torch.equal(got['optim']['state']['0.weight']['exp_avg'], want_avg)


def test_an_old_style_checkpoint_resumes_and_the_run_goes_on_in_dcp(tmp_path, reference):
    "A checkpoint as the code before issue 22 wrote it (single files, data position in per-rank batches) resumes exactly."
    d = tmp_path/'checkpoints'
    a = dcp_toy.train(1, 3, dir=str(d), format='pt', async_save=False, save_every=3, old_position=True)
    info = find_resume_checkpoint(d)
    assert not info.has(DCP) and 'samples_in_epoch' not in info.state
    b = dcp_toy.train(1, 7, dir=str(d), format='dcp', save_every=2, resume=True)      # crosses an epoch boundary (5 steps)
    assert a['losses'] + b['losses'] == reference['losses'][:7]                       # the same process and batch: bit for bit
    assert list_checkpoints(d) == [3, 4, 6, 7] and find_resume_checkpoint(d).has(DCP)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU (run on the device)')
def test_cuda_nccl_fsdp2_asynchronous_save_and_resume(tmp_path, reference):
    "The CUDA path: FSDP2 on NCCL, the state staged from the GPU for the background write, loaded back into CUDA DTensors."
    n, d = torch.cuda.device_count(), tmp_path/'checkpoints'
    kw = dict(dir=str(d), parallel='fsdp', save_every=3, device='cuda')
    a = dcp_toy.spawn(n, str(tmp_path/'a.pt'), steps=6, **kw)
    assert list_checkpoints(d) == [3, 6] and len(list(find_resume_checkpoint(d).path(DCP).glob('*.distcp'))) == n
    b = dcp_toy.spawn(n, str(tmp_path/'b.pt'), steps=STEPS, resume=True, **kw)
    got = [l for _, l in a['losses'] + b['losses']]
    assert close(got, [l for _, l in reference['losses']], rtol=1e-6), (got, reference['losses'])
