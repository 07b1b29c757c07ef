"""The trainer in real processes: 2-process torchrun (gloo) runs of the tiny LoRA (DDP) and full (FSDP2) recipes, a SIGKILL
in the middle of a checkpoint write, exact resume; and in-process checks (NaN stop, resume refusal, cached latents,
previews under FSDP2, the command line)."""
import json, math, os, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from cosmos_nb.checkpoint import (LATEST_FILE, find_resume_checkpoint, list_checkpoints, load_file)
from cosmos_nb.data import VideoDataset, make_synthetic_dataset
from cosmos_nb.diffusion import Video2WorldDiffusion
from cosmos_nb.dit import VideoExtendDiT, dit_state_dict_for_upstream, load_dit_checkpoint
from cosmos_nb.experiments import get_experiment
from cosmos_nb.latent_cache import LatentCacheDataset, cache_latents, cache_latents_main
from cosmos_nb.tokenizer import make_tokenizer
from cosmos_nb import train as T
from conftest import ROOT

TINY = dict(lora='video2world_tiny_lora_synthetic', full='video2world_tiny_full_synthetic')
MAX_ITER, SAVE_ITER, KILL_AT = 12, 3, 9


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    "A synthetic dataset (4 clips of 17 frames, 32×32) and a 'released' start checkpoint (bf16, upstream keys)."
    d = tmp_path_factory.mktemp('train')
    make_synthetic_dataset(d/'shapes', n_videos=4, num_frames=17, size=(32, 32))
    cfg = get_experiment(TINY['full'])
    torch.manual_seed(123)
    m = Video2WorldDiffusion(VideoExtendDiT(cfg.net), None, cfg.diffusion)
    with torch.no_grad():   # a 'trained' model: upstream's zero-initialised adaLN gates would make every block a no-op
        for n, p in m.net.named_parameters():
            if 'adaLN_modulation.2' in n: p.normal_(0, 0.05)
    torch.save({k: v.bfloat16() for k, v in dit_state_dict_for_upstream(m.net, m.logvar).items()}, d/'start.pt')
    return d


@pytest.fixture
def one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)   # tiny tensors: much faster on one thread here
    yield
    torch.set_num_threads(n)


def overrides(kind, d):
    return [f'data.dataset_dir={d/"shapes"}', f'checkpoint.load_path={d/"start.pt"}', f'trainer.max_iter={MAX_ITER}',
            f'checkpoint.save_iter={SAVE_ITER}', 'checkpoint.keep_last=2', 'trainer.logging_iter=0']


def run_dir(root, kind): return Path(root)/'posttraining'/'diffusion_video2world'/TINY[kind]


def torchrun(kind, d, root, env_extra=None, nproc=2, extra=(), pause=None):
    """Start `torchrun --nproc_per_node=N -m cosmos_nb.train -- experiment=... ...` in its own process group;
    `pause=(N, SECONDS)` runs it through tests/pause_checkpoint.py, which stalls half-way through writing checkpoint N."""
    script = ['-m', 'cosmos_nb.train'] if pause is None else [str(ROOT/'tests'/'pause_checkpoint.py'), *map(str, pause), 'cosmos_nb.train']
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}', *script, '--',
           f'experiment={TINY[kind]}', *overrides(kind, d), *extra]
    env = dict(os.environ)
    env.update(OUTPUT_ROOT=str(root), HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1', **(env_extra or {}))
    env['PYTHONPATH'] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get('PYTHONPATH')] if p])
    Path(root).mkdir(parents=True, exist_ok=True)
    log = open(Path(root)/'torchrun.log', 'w')
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True), Path(root)/'torchrun.log'


def process_tree(pid: int) -> list[int]:
    "`pid` and all its descendants (from /proc/*/task/*/children)."
    out, todo = [], [pid]
    while todo:
        p = todo.pop(); out.append(p)
        for f in Path(f'/proc/{p}/task').glob('*/children'):
            try: todo += [int(c) for c in f.read_text().split()]
            except OSError: pass
    return out


def alive(pid: int) -> bool:
    try: return Path(f'/proc/{pid}/status').read_text().split('State:')[1].split()[0] != 'Z'
    except (OSError, IndexError): return False


def kill_job(p):
    "SIGKILL torchrun and every worker it started: the workers run in sessions of their own, so a killpg of torchrun's misses them."
    pids = process_tree(p.pid)
    for pid in pids:
        try: os.kill(pid, signal.SIGKILL)
        except ProcessLookupError: pass
    p.wait()
    deadline = time.time() + 30
    while any(alive(pid) for pid in pids[1:]):
        assert time.time() < deadline, f'processes {[q for q in pids if alive(q)]} survived SIGKILL'
        time.sleep(0.05)
    return pids


def finished(kind, root) -> bool:
    "The run recorded success: its final checkpoint is complete and the metrics reach max_iter."
    rows = T.read_metrics(run_dir(root, kind)/'metrics.jsonl')
    info = find_resume_checkpoint(run_dir(root, kind)/'checkpoints')
    return info is not None and info.iteration == MAX_ITER and rows and rows[-1]['iteration'] == MAX_ITER


def wait_ok(p, log, kind, root, timeout=180):
    try: rc = p.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_job(p)
        pytest.fail(f'torchrun timed out:\n{log.read_text()[-4000:]}')
    text = log.read_text()
    if rc != 0:
        # the known gloo teardown flake (on CPU a rank may SIGABRT at exit after destroy_process_group, "terminate called
        # without an active exception", about 1 run in 4) is tolerated only after success was recorded
        assert finished(kind, root) and ('SIGABRT' in text or 'exitcode  : -6' in text or 'terminate called' in text), \
            f'torchrun failed (rc {rc}):\n{text[-4000:]}'
    return text


def eval_loss(kind, d, weights) -> float:
    "Mean training loss over all clips and 8 fixed noise draws each (paired: the same draws for every model)."
    cfg = get_experiment(TINY[kind])
    m = Video2WorldDiffusion(VideoExtendDiT(cfg.net), make_tokenizer('tiny'), cfg.diffusion)
    if kind == 'lora' and 'model' in load_file(weights):
        from cosmos_nb.lora import load_lora_checkpoint
        load_lora_checkpoint(m, weights)
    else: load_dit_checkpoint(m.net, weights, logvar=m.logvar)
    ds = VideoDataset(d/'shapes', 1, 17, (32, 32))
    losses = []
    with torch.no_grad(), torch.random.fork_rng():
        for i in range(len(ds)):
            b = torch.utils.data.default_collate([ds[i]])
            b['latent'] = m.encode(b.pop('video'))                                     # encode once, draw noise 8 times
            for s in range(8):
                torch.manual_seed(1000 * i + s)
                losses.append(m.training_step(b)[1].item())
    return sum(losses) / len(losses)


def same(a, b) -> bool:
    "Equal nested checkpoint contents: tensors bitwise, dicts by key, lists and tuples alike (loading turns tuples into lists)."
    if torch.is_tensor(a): return torch.is_tensor(b) and torch.equal(a, b)
    if isinstance(a, dict): return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)): return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(same, a, b))
    return a == b


def check_files(kind, d, ck: Path, world_size=2):
    "Upstream names and keys in the final checkpoint of a finished run."
    start = load_file(d/'start.pt')
    it = f'iter_{MAX_ITER:09d}'
    want = ['_lora_adapter.safetensors', '_model.pt', '_optim.pt'] if kind == 'lora' else ['_dcp', '_ema_model.pt', '_reg_model.pt']
    assert sorted(p.name for p in ck.iterdir() if p.name.startswith(it)) == sorted([f'{it}.pt'] + [it + s for s in want])
    assert list_checkpoints(ck) == [MAX_ITER - SAVE_ITER, MAX_ITER]                    # keep_last=2
    assert (ck/LATEST_FILE).read_text() == f'{it}.pt'
    if kind == 'lora':
        optim = load_file(ck/f'{it}_optim.pt')
        assert {'optimizer', 'scheduler'} <= set(optim) and optim['optimizer']['state']
    else:   # FSDP2: the resume state sharded by DCP, every rank's part (issue 22); the scheduler in the manifest
        assert len(list((ck/f'{it}_dcp').glob('*.distcp'))) == world_size and load_file(ck/f'{it}.pt')['scheduler']['last_epoch'] == MAX_ITER
    state = load_file(ck/f'{it}.pt')
    assert state['iteration'] == MAX_ITER and state['world_size'] == world_size and len(state['rng']) == world_size
    if world_size > 1: assert not torch.equal(state['rng'][0]['torch'], state['rng'][1]['torch'])   # ranks draw different noise
    if kind == 'full':
        reg, ema = load_file(ck/f'{it}_reg_model.pt'), load_file(ck/f'{it}_ema_model.pt')
        assert set(reg) == set(ema) == set(start)                                       # exactly model.pt's keys
        assert all(v.dtype == torch.float32 for v in ema.values())
        assert not torch.equal(reg['net.x_embedder.proj.1.weight'], start['net.x_embedder.proj.1.weight'].float())
    else:
        f = load_file(ck/f'{it}_model.pt')
        assert sorted(f) == ['ema', 'model', 'trained_data_record'] and f['ema'] is None
        assert f['trained_data_record'] == dict(image=0, video=MAX_ITER * world_size, iteration=MAX_ITER)
        lora_keys = {k for k in f['model'] if '_lora.net.' in k}
        assert set(f['model']) - lora_keys == set(start)                                # base keys unchanged
        assert len(lora_keys) == 2 * 2 * 2 * 2                                          # 2 blocks × FA,CA × q,v × A,B
        assert all(torch.equal(f['model'][k], start[k].float()) for k in start)         # the base stayed frozen
        from cosmos_nb.lora import read_lora_adapter_file
        adapter = read_lora_adapter_file(ck/f'{it}_lora_adapter.safetensors')                 # safetensors, the settings in its header
        assert set(adapter['lora']) == lora_keys and adapter['metadata']['first_nblocks'] == 2


def check_lora_roundtrip(d, ck: Path):
    "The adapter-only file on the base model gives the same output as the full upstream-format LoRA checkpoint."
    from cosmos_nb.lora import load_lora_adapter, load_lora_checkpoint
    cfg = get_experiment(TINY['lora'])
    full, split = VideoExtendDiT(cfg.net), VideoExtendDiT(cfg.net)
    load_lora_checkpoint(full, ck/f'iter_{MAX_ITER:09d}_model.pt')
    load_dit_checkpoint(split, d/'start.pt'); load_lora_adapter(split, ck/f'iter_{MAX_ITER:09d}_lora_adapter.safetensors')
    x, t, emb = torch.randn(1, 16, 3, 4, 4), torch.tensor([0.3]), torch.randn(1, 8, 1024)
    with torch.no_grad(): assert torch.equal(full(x, t, emb), split(x, t, emb))


@pytest.mark.parametrize('kind', ['lora', 'full'])
def test_two_processes_train_then_survive_a_sigkill_mid_checkpoint_and_resume_exactly(world, tmp_path, kind, one_thread):
    # A: an uninterrupted 2-process run
    p, log = torchrun(kind, world, tmp_path/'A')
    out = wait_ok(p, log, kind, tmp_path/'A')
    assert f'"iteration": {MAX_ITER}' in out or finished(kind, tmp_path/'A')
    a_dir = run_dir(tmp_path/'A', kind)
    check_files(kind, world, a_dir/'checkpoints')
    assert json.loads((a_dir/'config.json').read_text())['job']['name'] == TINY[kind]
    if kind == 'lora': check_lora_roundtrip(world, a_dir/'checkpoints')
    final = a_dir/'checkpoints'/(f'iter_{MAX_ITER:09d}' + ('_model.pt' if kind == 'lora' else '_reg_model.pt'))
    before, after = eval_loss(kind, world, world/'start.pt'), eval_loss(kind, world, final)
    assert after < before, f'training did not lower the loss: {before:.4f} -> {after:.4f}'

    # B: the same run, SIGKILLed (torchrun and both workers) while checkpoint 9 is half-written: LoRA's single files by rank 0;
    # FSDP2's asynchronous DCP save after both ranks wrote their shards, before .metadata, while training went on
    p, log = torchrun(kind, world, tmp_path/'B', pause=(KILL_AT, 120))
    ck = run_dir(tmp_path/'B', kind)/'checkpoints'
    deadline = time.time() + 120
    def paused():
        if kind == 'full': return (ck/f'.iter_{KILL_AT:09d}_dcp.tmp'/'PAUSED').exists()
        return list(ck.glob(f'iter_{KILL_AT:09d}_*.pt')) and [f for f in ck.glob(f'.iter_{KILL_AT:09d}_*.tmp') if f.stat().st_size > 0]
    try:
        # the first file is written whole (its own temp file exists for a moment too), then the second stalls half-written
        while not paused():
            assert p.poll() is None, f'run B ended before the pause:\n{log.read_text()[-3000:]}'
            assert time.time() < deadline, 'run B did not reach checkpoint 9'
            time.sleep(0.05)
    finally:
        pids = kill_job(p)
    assert len(pids) >= 3                                                               # torchrun and its two workers
    names = sorted(f.name for f in ck.iterdir())
    assert f'iter_{KILL_AT:09d}.pt' not in names and any(n.startswith(f'.iter_{KILL_AT:09d}_') for n in names)
    if kind == 'lora': assert any(n.startswith(f'iter_{KILL_AT:09d}_') for n in names)   # a complete first file, no manifest
    else: assert len(list((ck/f'.iter_{KILL_AT:09d}_dcp.tmp').glob('*.distcp'))) == 2     # both shards, no .metadata, no rename
    assert (ck/LATEST_FILE).read_text() == f'iter_{KILL_AT - SAVE_ITER:09d}.pt'
    assert find_resume_checkpoint(ck).iteration == KILL_AT - SAVE_ITER

    # C: resume=auto continues from checkpoint 6 and reproduces A bit for bit
    p, log = torchrun(kind, world, tmp_path/'B')
    wait_ok(p, log, kind, tmp_path/'B')
    assert not [f for f in ck.iterdir() if f.name.startswith('.')]                      # the partial file was cleaned up
    loss = lambda root: [(r['iteration'], r['loss'], r['grad_norm'], r['lr']) for r in T.read_metrics(run_dir(root, kind)/'metrics.jsonl')]
    assert loss(tmp_path/'B') == loss(tmp_path/'A') and len(loss(tmp_path/'A')) == MAX_ITER
    for f in sorted((a_dir/'checkpoints').glob(f'iter_{MAX_ITER:09d}_*.pt')):
        if 'lora_adapter' in f.name: continue
        assert same(load_file(f), load_file(ck/f.name)), f'{f.name} differs after resuming'
    assert load_file(ck/f'iter_{MAX_ITER:09d}.pt')['rng'][1]['torch'].equal(
        load_file(a_dir/'checkpoints'/f'iter_{MAX_ITER:09d}.pt')['rng'][1]['torch'])


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(world, tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv('OUTPUT_ROOT', str(tmp_path))
    step = T.TrainingDiffusion.forward
    def poisoned(self, batch, iteration=0):
        logs, loss = step(self, batch, iteration)
        return logs, loss * float('nan') if iteration == 4 else loss
    monkeypatch.setattr(T.TrainingDiffusion, 'forward', poisoned)
    with pytest.raises(T.NonFiniteLossError, match=r'iteration 4: the training loss is nan.*iter_000000003\.pt'):
        T.train(TINY['full'], overrides('full', world)[:-2])
    assert not dist.is_initialized()                                                   # the process group was torn down
    ck = run_dir(tmp_path, 'full')/'checkpoints'
    assert list_checkpoints(ck) == [3] and (ck/LATEST_FILE).read_text() == 'iter_000000003.pt'
    assert [r['iteration'] for r in T.read_metrics(run_dir(tmp_path, 'full')/'metrics.jsonl')] == [1, 2, 3, 4]
    monkeypatch.setattr(T.TrainingDiffusion, 'forward', step)
    out = T.train(TINY['full'], overrides('full', world)[:-2] + ['trainer.max_iter=5'])  # resumes from the good one
    assert (out['resumed_from'], out['iteration']) == (3, 5)


def test_resume_none_refuses_to_overwrite_and_explicit_resume_paths(world, tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv('OUTPUT_ROOT', str(tmp_path))
    base = overrides('lora', world)[:2] + ['trainer.max_iter=3', 'checkpoint.save_iter=2']
    T.train(TINY['lora'], base)
    with pytest.raises(FileExistsError, match='trainer.resume=auto'): T.train(TINY['lora'], base + ['trainer.resume=none'])
    ck = run_dir(tmp_path, 'lora')/'checkpoints'
    out = T.train(TINY['lora'], base + [f'trainer.resume={ck/"iter_000000002.pt"}', 'trainer.max_iter=4'])
    assert out['resumed_from'] == 2
    with pytest.raises(FileNotFoundError, match='no complete checkpoint'):
        T.train(TINY['lora'], base + [f'trainer.resume={tmp_path/"nowhere"}'])
    with pytest.raises(ValueError, match='parallel.data_parallel=ddp'): T.train(TINY['lora'], base + ['parallel.data_parallel=fsdp'])
    with pytest.raises(FileNotFoundError, match='checkpoint.load_path'):
        T.train(TINY['full'], base[:1] + [f'checkpoint.load_path={tmp_path/"missing.pt"}'])
    assert not dist.is_initialized()


def test_fp8_attention_is_refused_for_training_before_the_model_is_built(world, tmp_path, monkeypatch, one_thread):
    "parallel.attention=fp8 has no backward (generation only): the run stops before the DiT is built or any checkpoint written."
    monkeypatch.setenv('OUTPUT_ROOT', str(tmp_path))
    monkeypatch.setattr(T, 'start_weights', lambda cfg: pytest.fail('the starting weights were read'))
    with pytest.raises(ValueError, match='parallel.attention=fp8 .* no backward.*set parallel.attention=sdpa'):
        T.train(TINY['lora'], overrides('lora', world)[:2] + ['parallel.attention=fp8'])
    assert not dist.is_initialized() and not list_checkpoints(run_dir(tmp_path, 'lora')/'checkpoints')

def test_cached_latents_equal_the_online_encoding_and_train(world, tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv('OUTPUT_ROOT', str(tmp_path/'runs'))
    cfg_over = [f'data.dataset_dir={world/"shapes"}']
    cache = cache_latents(TINY['full'], cfg_over, tmp_path/'cache')
    index = json.loads((cache/'index.json').read_text())
    assert index['count'] == 4 and index['latent_shape'] == [16, 3, 4, 4] and len(list(cache.glob('0*.pt'))) == 4
    cfg = get_experiment(TINY['full'], cfg_over)
    enc = Video2WorldDiffusion(torch.nn.Identity(), make_tokenizer('tiny'), cfg.diffusion)
    ds, cached = VideoDataset(world/'shapes', 1, 17, (32, 32)), LatentCacheDataset(cache, cfg)
    for i in range(len(ds)):
        assert torch.equal(cached[i]['latent'], enc.encode(ds[i]['video'][None])[0])
        assert torch.equal(cached[i]['t5_text_embeddings'], ds[i]['t5_text_embeddings'])
    out = T.train(TINY['full'], cfg_over + [f'data.latent_cache={cache}', 'trainer.max_iter=2'])
    assert out['iteration'] == 2
    with pytest.raises(ValueError, match='cached with other settings'):
        T.train(TINY['full'], cfg_over + [f'data.latent_cache={cache}', 'data.video_size=(64,64)', 'job.name=other'])
    (cache/'index.json').unlink()
    with pytest.raises(FileNotFoundError, match='cache-latents'): LatentCacheDataset(cache)


def test_previews_under_fsdp2(world, tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv('OUTPUT_ROOT', str(tmp_path))
    out = T.train(TINY['full'], overrides('full', world)[:2] + ['trainer.max_iter=2', 'trainer.sample_every=2', 'trainer.sample_steps=3'])
    samples = Path(out['run_dir'])/'samples'
    assert sorted(p.name for p in samples.iterdir()) == ['iter_000000002_0.mp4', 'iter_000000002_1.mp4', 'prompts.json']
    from cosmos_nb.video import read_video
    video, info = read_video(samples/'iter_000000002_0.mp4')
    assert tuple(video.shape) == (17, 3, 32, 32)
    prompts = json.loads((samples/'prompts.json').read_text())
    assert [p['index'] for p in prompts] == [0, 2] and prompts[0]['caption']


def test_command_line(capsys):
    T.train_main(['--dryrun', 'experiment=video2world_7b_lora_example_cosmos_nemo_assets', 'trainer.max_iter=7'])
    cfg = json.loads(capsys.readouterr().out)
    assert cfg['trainer']['max_iter'] == 7 and cfg['lora']['enabled'] and cfg['job']['name'] == 'video2world_7b_lora_example_cosmos_nemo_assets'
    with pytest.raises(SystemExit): T.train_main(['trainer.max_iter=3'])                # no experiment
    with pytest.raises(SystemExit): T.train_main(['--dryrun', '--experiment', 'nope'])          # one line, no traceback
    assert "unknown experiment 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit): cache_latents_main([])


def test_lora_with_ema_saves_upstream_ema_names_and_resumes_exactly(world, tmp_path, monkeypatch, one_thread):
    "Upstream's LoRA EMA (fp32, '-' names, adapters only) round-trips through a resume in one process, bit for bit."
    base = overrides('lora', world)[:2] + ['ema.enabled=true', 'checkpoint.save_iter=2', 'trainer.max_iter=4']
    monkeypatch.setenv('OUTPUT_ROOT', str(tmp_path/'A'))
    T.train(TINY['lora'], base)
    monkeypatch.setenv('OUTPUT_ROOT', str(tmp_path/'B'))
    T.train(TINY['lora'], base[:-1] + ['trainer.max_iter=2'])
    assert T.train(TINY['lora'], base)['resumed_from'] == 2
    f = {r: load_file(run_dir(tmp_path/r, 'lora')/'checkpoints'/'iter_000000004_model.pt') for r in 'AB'}
    ema = f['A']['ema']
    assert len(ema) == 16 and all('-' in k and '.' not in k and v.dtype == torch.float32 for k, v in ema.items())
    assert 'net-blocks-block1-blocks-1-block-attn-to_v_lora-net-1-weight' in ema
    assert same(f['A'], f['B'])
    from cosmos_nb.lora import read_lora_checkpoint
    sd, _, used = read_lora_checkpoint(run_dir(tmp_path/'A', 'lora')/'checkpoints'/'iter_000000004_model.pt')
    assert used and not torch.equal(sd['net.blocks.block0.blocks.0.block.attn.to_q_lora.net.0.weight'],
                                    f['A']['model']['net.blocks.block0.blocks.0.block.attn.to_q_lora.net.0.weight'])


def test_lora_on_an_fp8_base_trains_keeps_upstream_keys_and_resumes_exactly(world, tmp_path, monkeypatch, one_thread):
    "trainer.fp8=true (CPU `torch._scaled_mm`): finite loss, trained adapters, the same checkpoint keys as a bf16/fp32 run, exact resume."
    base = overrides('lora', world)[:2] + ['checkpoint.save_iter=2', 'trainer.max_iter=4']
    fp8 = base + ['trainer.fp8=true']
    for root, over in (('plain', base), ('A', fp8), ('B', fp8[:-2] + ['trainer.max_iter=2', 'trainer.fp8=true'])):
        monkeypatch.setenv('OUTPUT_ROOT', str(tmp_path/root))
        out = T.train(TINY['lora'], over)
        assert math.isfinite(out['loss'])
    monkeypatch.setenv('OUTPUT_ROOT', str(tmp_path/'B'))
    assert T.train(TINY['lora'], fp8)['resumed_from'] == 2                               # resume the fp8 run
    ck = {r: run_dir(tmp_path/r, 'lora')/'checkpoints' for r in ('plain', 'A', 'B')}
    f = {r: load_file(c/'iter_000000004_model.pt') for r, c in ck.items()}
    assert list(f['A']['model']) == list(f['plain']['model'])                           # exactly upstream's keys, in order
    assert all(f['A']['model'][k].dtype == v.dtype for k, v in f['plain']['model'].items())
    start = load_file(world/'start.pt')
    assert all(torch.equal(f['A']['model'][k], start[k].float()) for k in start)         # the base: frozen, saved as loaded
    lora_b = [k for k in f['A']['model'] if '_lora.net.1.' in k]
    assert lora_b and all(f['A']['model'][k].abs().sum() > 0 for k in lora_b)           # the adapters (B starts at 0) were trained
    assert any(not torch.equal(f['A']['model'][k], f['plain']['model'][k]) for k in lora_b)   # through the fp8 forward
    adapters = {r: load_file(ck[r]/'iter_000000004_lora_adapter.safetensors') for r in ('plain', 'A')}
    assert adapters['A'].keys() == adapters['plain'].keys()
    assert same(f['A'], f['B'])                                                          # 2 + resume 2 == 4, bit for bit
    losses = [r['loss'] for r in T.read_metrics(run_dir(tmp_path/'A', 'lora')/'metrics.jsonl')]
    assert len(losses) == 4 and all(map(math.isfinite, losses))
    with pytest.raises(ValueError, match='lora.enabled=true'): T.train(TINY['full'], overrides('full', world)[:2] + ['trainer.fp8=true'])
    with pytest.raises(ValueError, match='trainer.fp8_backward=true only'): T.train(TINY['lora'], base + ['trainer.fp8_backward=true'])
    monkeypatch.setenv('OUTPUT_ROOT', str(tmp_path/'C'))                                 # input gradients in fp8 too
    assert math.isfinite(T.train(TINY['lora'], fp8 + ['trainer.fp8_backward=true', 'trainer.max_iter=2'])['loss'])
    assert not dist.is_initialized()


@pytest.mark.parametrize('kind', ['full', 'lora'])
def test_saved_by_2_processes_resumed_by_1_continues_the_data_order(world, tmp_path, monkeypatch, kind, one_thread):
    """FSDP2 (sharded DCP) and LoRA (single files): 2 torchrun processes save at 3; one process goes on from the same sample of
    the epoch (the position is kept in samples, not in per-rank batches, which would restart half as far in)."""
    p, log = torchrun(kind, world, tmp_path, extra=['trainer.max_iter=3'])
    p.wait(240)
    ck = run_dir(tmp_path, kind)/'checkpoints'
    assert find_resume_checkpoint(ck) is not None and find_resume_checkpoint(ck).iteration == 3, log.read_text()[-3000:]
    state = load_file(ck/'iter_000000003.pt')
    assert state['world_size'] == 2
    seen = []
    real = T.ResumableSampler.__iter__
    def spy(self):
        for i in real(self): seen.append(i); yield i
    monkeypatch.setattr(T.ResumableSampler, '__iter__', spy)
    monkeypatch.setenv('OUTPUT_ROOT', str(tmp_path))
    args = overrides(kind, world) + ['trainer.max_iter=5']
    with pytest.warns(UserWarning, match='resuming a run of 2 ranks on 1'): out = T.train(TINY[kind], args)
    assert (out['resumed_from'], out['iteration']) == (3, 5)
    # the epoch's order is DistributedSampler's permutation (seed + epoch) whatever the ranks; 3 steps of 2 clips were taken
    d, seed = T.resolve_experiment(TINY[kind], args).data, get_experiment(TINY[kind]).trainer.seed
    n = len(VideoDataset(d.dataset_dir, d.sequence_interval, d.num_frames, d.video_size, d.start_frame_interval))
    done = state['samples_in_epoch']
    assert done == 3 * 2 - state["epoch"] * (n // 2 * 2) and 0 < done and done + 2 <= n   # 0 < done: per-rank batches would differ
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + state['epoch'])).tolist()
    assert seen[:2] == perm[done:done + 2]                                         # iterations 4 and 5: the next 2 clips
