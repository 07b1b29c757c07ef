"""Upstream's command line (--config, --dryrun), checks before a run starts, gradient accumulation (the same update as one big
batch, one gradient reduction per step under DDP and FSDP2), and experiment tracking read back from TensorBoard's and W&B's files."""
import glob, json, os, struct, subprocess, sys
from pathlib import Path

import pytest
import torch

from cosmos_nb import train as T
from cosmos_nb.checkpoint import load_file
from cosmos_nb.data import make_synthetic_dataset
from conftest import ROOT
from test_train import TINY, one_thread, overrides, run_dir, world   # the tiny dataset and start checkpoint, reused

UPSTREAM_LINE = ['--config=cosmos_predict1/diffusion/training/config/config.py', '--', 'experiment=video2world_7b_example_hdvila']


def files_under(d: Path) -> list[str]: return sorted(str(p.relative_to(d)) for p in Path(d).rglob('*'))


def cli(args, cwd, env_extra=None, module='cosmos_nb.train'):
    "Run `python -m cosmos_nb.train ARGS` (or the cosmos-nb console script) in `cwd`; returns the CompletedProcess."
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1', **(env_extra or {})}
    env['PYTHONPATH'] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get('PYTHONPATH')] if p])
    env.pop('OUTPUT_ROOT', None)
    cmd = [sys.executable, '-m', module, *args] if module else args
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


# --- the command line -------------------------------------------------------------------------------------------------

def test_upstream_launch_line_without_checkpoints_or_data_reports_everything_missing_and_writes_nothing(tmp_path):
    out = cli(UPSTREAM_LINE, tmp_path)
    assert out.returncode == 1, out.stderr
    err = out.stderr
    assert 'Traceback' not in err and 'get_ipython' not in err and 'unrecognized arguments' not in err, err
    assert 'video2world_7b_example_hdvila cannot start; nothing was written. Missing (5):' in err
    assert 'checkpoints/Cosmos-Predict1-7B-Video2World/model.pt does not exist: cosmos-nb download-checkpoints --model_sizes 7B --model_types Video2World' in err
    assert 'tokenizer.path checkpoints/Cosmos-Tokenize1-CV8x8x8-720p lacks the tokenizer' in err
    assert 'datasets/hdvila/videos does not exist: cosmos-nb download-hdvila --dataset_path datasets/hdvila --do_download --do_clip' in err
    assert 'datasets/hdvila/t5_xxl does not exist: cosmos-nb t5-embed datasets/hdvila' in err
    assert len(err.strip().splitlines()) == 6 and files_under(tmp_path) == []


def test_config_flag_accepts_only_upstreams_path_and_dryrun_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for flag in (['--config=cosmos_predict1/diffusion/training/config/config.py'], ['--config', './cosmos_predict1/diffusion/training/config/config.py']):
        T.train_main(['--dryrun', *flag, '--', 'experiment=video2world_7b_example_cosmos_nemo_assets_4gpu_80gb', 'trainer.max_iter=7'])
        cfg = json.loads(capsys.readouterr().out)
        assert (cfg['job']['name'], cfg['trainer']['max_iter'], cfg['data']['video_size']) == ('video2world_7b_example_cosmos_nemo_assets_4gpu_80gb', 7, [384, 384])
    with pytest.raises(SystemExit) as e: T.train_main(['--config=configs/mine.py', '--', 'experiment=video2world_7b_example_hdvila'])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1
    assert '--config=configs/mine.py is not a config cosmos-nb reads' in err and 'cosmos_predict1/diffusion/training/config/config.py' in err
    assert files_under(tmp_path) == []


def test_unknown_experiment_no_experiment_and_bad_override_are_one_clear_message(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e: T.train_main(['--experiment', 'video2world_7b_example_hdvla'])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and 'Traceback' not in err
    assert "unknown experiment 'video2world_7b_example_hdvla'; did you mean video2world_7b_example_hdvila" in err
    assert '`cosmos-nb train` without an experiment lists them all' in err
    with pytest.raises(SystemExit) as e: T.train_main([])
    err = capsys.readouterr().err
    assert e.value.code == 2 and 'cosmos_nb.experiments' not in err and 'list_experiments' not in err
    from cosmos_nb.experiments import describe_experiments
    for r in describe_experiments(): assert r['name'] in err and r['purpose'] in err
    assert T.TINY_CPU_TRY in err
    with pytest.raises(SystemExit) as e: T.train_main(['experiment=video2world_tiny_lora_synthetic', 'trainer.max_iters=3'])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "unknown config key 'trainer.max_iters'" in err
    assert files_under(tmp_path) == []


def test_console_script_unknown_experiment_and_missing_synthetic_dataset(tmp_path):
    exe = str(Path(sys.executable).parent/'cosmos-nb')
    out = cli([exe, 'train', '--experiment', 'no_such_experiment'], tmp_path, module=None)
    assert out.returncode == 2 and out.stderr.count('\n') == 1 and "unknown experiment 'no_such_experiment'" in out.stderr
    out = cli([exe, 'train', '--experiment', 'video2world_tiny_lora_synthetic'], tmp_path, module=None)
    assert out.returncode == 1 and 'Traceback' not in out.stderr and '[rank0]' not in out.stderr, out.stderr
    assert 'datasets/synthetic/videos does not exist; datasets/synthetic/metas does not exist; datasets/synthetic/t5_xxl does not exist: ' \
           'cosmos-nb make-synthetic-dataset datasets/synthetic --num_frames 17 --size 32 32 (' in out.stderr
    assert out.stderr.count('make-synthetic-dataset') == 1, 'one fix makes all three folders: say it once'
    assert 'python -c' not in out.stderr and 'cosmos-nb demo' in out.stderr
    assert files_under(tmp_path) == []
    # the command it names makes a dataset the run accepts
    fix = out.stderr.split('make-synthetic-dataset ', 1)[1].split(' (', 1)[0].split()
    made = cli([exe, 'make-synthetic-dataset', *fix], tmp_path, module=None)
    assert made.returncode == 0 and 'datasets/synthetic: 8 clips of 17 frames at 32×32' in made.stdout, made.stderr
    assert T.preflight(T.resolve_experiment(TINY["lora"], [f"data.dataset_dir={tmp_path/'datasets'/'synthetic'}"])) == []


def test_train_help_shows_the_tiny_cpu_try_and_upstreams_line():
    out = cli(['--help'], ROOT)
    assert out.returncode == 0 and T.TINY_CPU_TRY in out.stdout and '--config' in out.stdout and '--dryrun' in out.stdout


def test_readme_tiny_cpu_try_runs_on_the_demos_clips(tmp_path):
    "The README's and `train --help`'s try, exactly as written, in a folder holding what `make demo` leaves in outputs/demo/datasets."
    from cosmos_nb.demo import demo_t5
    from cosmos_nb.t5 import embed_dataset
    data = tmp_path/'outputs'/'demo'/'datasets'/'posttrain'
    make_synthetic_dataset(data, n_videos=4, num_frames=17, size=(32, 32), seed=1, toy_t5=False)   # as run_demo (tiny size)
    embed_dataset(data, *demo_t5(tmp_path/'outputs'/'demo'/'t5'), progress=False)
    assert T.TINY_CPU_TRY in (ROOT/'README.md').read_text()
    out = cli(T.TINY_CPU_TRY.split()[1:], tmp_path, module='cosmos_nb.cli')
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary['iteration'] == 2 and (tmp_path/summary['metrics']).is_file()


# --- gradient accumulation ---------------------------------------------------------------------------------------------

def per_clip_seeded(forward):
    "A training step whose loss is the mean of per-clip losses, each drawing its noise from a seed of its own clip: the same draws however clips are batched."
    def step(self, batch, iteration=0):
        B, losses = batch['t5_text_embeddings'].shape[0], []
        for b in range(B):
            one = {k: v[b:b + 1] if torch.is_tensor(v) and v.dim() else v for k, v in batch.items()}
            with torch.random.fork_rng():
                torch.manual_seed(int(one['video'].long().sum()) % 2**31)
                losses.append(forward(self, one, iteration)[1])
        return {}, torch.stack(losses).mean()
    return step


def reductions(monkeypatch) -> list:
    "Count gradient reductions: DDP's comm hook calls (one per bucket) and FSDP2's `foreach_reduce` calls (one per unit)."
    import torch.distributed.fsdp._fully_shard._fsdp_param_group as G
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    calls, build, reduce = [], T.build_model, G.foreach_reduce
    def build_counting(*a, **k):
        wrapped, inner = build(*a, **k)
        if isinstance(wrapped, torch.nn.parallel.DistributedDataParallel):
            wrapped.register_comm_hook(None, lambda s, bucket: (calls.append('ddp'), allreduce_hook(s, bucket))[1])
        return wrapped, inner
    monkeypatch.setattr(T, 'build_model', build_counting)
    monkeypatch.setattr(G, 'foreach_reduce', lambda *a, **k: (calls.append('fsdp'), reduce(*a, **k))[1])
    return calls


@pytest.mark.parametrize('kind', ['lora', 'full'])
def test_batch_2_times_accumulation_2_is_batch_4_with_one_reduction_per_step(world, tmp_path, monkeypatch, kind, one_thread):
    forward = T.TrainingDiffusion.forward
    monkeypatch.setattr(T.TrainingDiffusion, 'forward', per_clip_seeded(forward))
    calls = reductions(monkeypatch)
    base = overrides(kind, world)[:2] + ['trainer.max_iter=2', 'checkpoint.save_iter=2', 'trainer.logging_iter=0']
    runs = {}
    for name, (batch, accum) in dict(big=(4, 1), accum=(2, 2), small=(2, 1)).items():
        monkeypatch.setenv('OUTPUT_ROOT', str(tmp_path/name)); calls.clear()
        out = T.train(TINY[kind], base + [f'data.batch_size={batch}', f'trainer.grad_accum_iter={accum}'])
        ck = Path(out['checkpoint_dir'])
        files = ['iter_000000002_model.pt'] if kind == 'lora' else ['iter_000000002_reg_model.pt', 'iter_000000002_ema_model.pt']
        runs[name] = dict(out=out, calls=len(calls), metrics=T.read_metrics(out['metrics']),
                          weights={f: load_file(ck/f) for f in files}, state=load_file(ck/'iter_000000002.pt'))
    big, acc = runs['big'], runs['accum']
    assert acc['out']['iteration'] == 2 and [r['iteration'] for r in acc['metrics']] == [1, 2]      # iterations are optimizer steps
    for f, w in big['weights'].items():
        sd_big, sd_acc = (w['model'], acc['weights'][f]['model']) if kind == 'lora' else (w, acc['weights'][f])
        for k in sd_big: torch.testing.assert_close(sd_acc[k], sd_big[k], rtol=1e-5, atol=1e-6, msg=f'{f}:{k}')
    torch.testing.assert_close([r['loss'] for r in acc['metrics']], [r['loss'] for r in big['metrics']], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close([r['grad_norm'] for r in acc['metrics']], [r['grad_norm'] for r in big['metrics']], rtol=1e-4, atol=1e-6)
    # the check can see a difference: half the batch without accumulation is another update
    f = next(iter(big['weights']))
    sd = lambda r: r['weights'][f]['model'] if kind == 'lora' else r['weights'][f]
    assert any(not torch.allclose(sd(runs['small'])[k], sd(big)[k], rtol=1e-5, atol=1e-6) for k in sd(big))
    # one gradient reduction per optimizer step, however many micro-batches (with the model's own forward: the per-clip
    # forwards above use each FSDP2 unit several times in one backward, which FSDP2 may reduce more than once)
    monkeypatch.setattr(T.TrainingDiffusion, 'forward', forward)
    count = {}
    for name, (batch, accum) in dict(one=(2, 1), two=(1, 2)).items():
        monkeypatch.setenv('OUTPUT_ROOT', str(tmp_path/name)); calls.clear()
        T.train(TINY[kind], base + [f'data.batch_size={batch}', f'trainer.grad_accum_iter={accum}'])
        count[name] = len(calls)
    assert count['one'] > 0 and count['two'] == count['one']
    if kind == 'lora':
        assert load_file(Path(acc['out']['checkpoint_dir'])/'iter_000000002_model.pt')['trained_data_record']['video'] == 8


# --- experiment tracking -----------------------------------------------------------------------------------------------

def wandb_records(path: Path) -> list:
    "The protobuf records of a W&B `.wandb` file (a LevelDB-style log: 32 KiB blocks of [crc32, length, type] + data)."
    from wandb.proto import wandb_internal_pb2 as pb
    data, block, pos, buf, out = path.read_bytes(), 32768, 7, b'', []
    assert data[:4] == b':W&B'
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7: pos += left; continue
        _, n, kind = struct.unpack('<IHB', data[pos:pos + 7])
        if n == 0 and kind == 0: pos += left; continue
        buf += data[pos + 7:pos + 7 + n]; pos += 7 + n
        if kind in (1, 4):                                   # a full record, or the last piece of one
            r = pb.Record(); r.ParseFromString(buf); out.append(r); buf = b''
    return out


def test_tensorboard_and_offline_wandb_get_metrics_and_previews_from_rank_0(world, tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv('OUTPUT_ROOT', str(tmp_path)); monkeypatch.setenv('WANDB_MODE', 'offline'); monkeypatch.setenv('WANDB_SILENT', 'true')
    out = T.train(TINY['lora'], overrides('lora', world)[:2] + ['trainer.max_iter=3', 'checkpoint.save_iter=3', 'trainer.sample_every=3',
                                                                'trainer.sample_steps=2', 'trainer.loggers=[jsonl,tensorboard,wandb]'])
    rows = T.read_metrics(out['metrics'])
    assert [r['iteration'] for r in rows] == [1, 2, 3]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(Path(out['run_dir'])/'tensorboard'), size_guidance={'images': 0}); ea.Reload()
    for key in ('loss', 'lr', 'grad_norm', 'samples_per_sec', 'sec_per_iter'):
        assert [(e.step, round(e.value, 5)) for e in ea.Scalars(key)] == [(r['iteration'], round(r[key], 5)) for r in rows], key
    assert 'gpu_mem_gb' not in ea.Tags()['scalars']                                     # no CUDA here: not logged
    img = ea.Images('samples/preview_0')
    assert [i.step for i in img] == [3] and (img[0].width, img[0].height) == (8 * 32, 32)
    run = Path(glob.glob(str(Path(out['run_dir'])/'wandb'/'offline-run-*'))[0])
    hist = [{i.key or '/'.join(i.nested_key): json.loads(i.value_json) for i in r.history.item}       # nested: 'a/b/c'
            for r in wandb_records(next(run.glob('run-*.wandb'))) if r.WhichOneof('record_type') == 'history']
    steps = {h['_step']: h for h in hist}
    assert sorted(steps) == [1, 2, 3] and [round(steps[i]['loss'], 5) for i in (1, 2, 3)] == [round(r['loss'], 5) for r in rows]
    assert steps[3]['samples/preview_0/_type'] == 'video-file' and (run/'files'/steps[3]['samples/preview_0/path']).is_file()
    assert 'samples/preview_0/_type' not in steps[2]
    assert (Path(out['run_dir'])/'wandb'/'run_id').read_text() in run.name


def test_missing_logger_package_is_refused_before_the_run_with_its_pip_install(world, tmp_path, monkeypatch):
    monkeypatch.setenv('OUTPUT_ROOT', str(tmp_path))
    monkeypatch.setitem(sys.modules, 'wandb', None)                                     # as if not installed
    with pytest.raises(T.PreflightError, match=r'the wandb package is not installed: pip install wandb'):
        T.train(TINY['lora'], overrides('lora', world)[:2] + ['trainer.loggers=[jsonl,wandb]'])
    assert files_under(tmp_path) == []
