"""`cosmos-nb env`: run as a user runs it (the console command in a subprocess), text and --json, on this machine's real
packages, with no checkpoint folder, with a tiny one in the official layout, and with a torchcodec that cannot load."""
import importlib.metadata, json, os, platform, subprocess, sys
from pathlib import Path

import torch

from cosmos_nb.layout import DIT_DIR, TOKENIZER_DIR
from cosmos_nb.testing import make_tiny_checkpoints
from test_video_errors import CUDA_WHEEL, fake_torchcodec   # the broken-torchcodec stand-in, shared

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, '-m', 'cosmos_nb.cli', 'env']


def env_cli(*args, cwd, pythonpath=()):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*map(str, pythonpath), str(ROOT)]), HF_HUB_OFFLINE='1')
    env.pop('CHECKPOINT_DIR', None); env.pop('COSMOS_NB_SETTINGS', None)
    r = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_text_report_default_checkpoint_dir_missing(tmp_path):
    out = env_cli(cwd=tmp_path)                           # no settings.ini here: the default folder is ./checkpoints
    assert out.startswith('cosmos-nb env (paste all of this into a bug report)')
    for label, value in [('torch', torch.__version__), ('Python', platform.python_version()),
                         ('peft', importlib.metadata.version('peft')), ('submitit', importlib.metadata.version('submitit'))]:
        assert f'\n- {label}: {value}' in out, (label, out)
    assert '\n- checkpoints in checkpoints: the folder does not exist\n' in out
    assert '  - Video2World 7B: not ready: checkpoint folder checkpoints does not exist: download the weights with `cosmos-nb download-checkpoints' in out
    if not torch.cuda.is_available(): assert '\n- GPUs: none (torch sees no CUDA device)\n' in out
    assert 'Traceback' not in out


def test_json_report_with_tiny_checkpoints(tmp_path):
    make_tiny_checkpoints(tmp_path / 'ck')
    (tmp_path / 'ck' / f'{DIT_DIR}_post-trained-lora').mkdir()
    r = json.loads(env_cli('--json', '--verify', '--checkpoint_dir', 'ck', cwd=tmp_path))
    assert r['torch'] == torch.__version__ and r['python'].startswith(platform.python_version())
    assert r['cuda'] == (torch.version.cuda or 'none (a CPU build of torch)')
    assert r['torchcodec'].split()[0] == importlib.metadata.version('torchcodec')
    for p in ('peft', 'transformers', 'submitit', 'huggingface_hub'): assert r[p] == importlib.metadata.version(p)
    if not torch.cuda.is_available():
        assert r['gpus'] == [] and r['cudnn_attention'] == 'no CUDA GPU' and r['fp8_matmul'].startswith('no CUDA GPU')
    else: assert len(r['gpus']) == torch.cuda.device_count()
    c = r['checkpoints']
    assert (c['folder'], c['exists']) == ('ck', True)
    assert sorted(c['present']) == [DIT_DIR, TOKENIZER_DIR, 'google-t5/t5-11b']
    assert c['present'][DIT_DIR].startswith('does not verify: model.pt: MD5 ')          # random weights, hashed (--verify)
    assert 'Cosmos-Predict1-14B-Video2World' in c['absent']
    assert c['post_trained'] == {f'{DIT_DIR}_post-trained-lora': 'no model.pt (cosmos-nb export-checkpoint writes it)'}
    assert c['video2world_7b'].startswith('ready')
    assert set(r['slurm']) == {'sbatch', 'sinfo'}


def test_report_still_prints_with_a_broken_torchcodec(tmp_path):
    site = fake_torchcodec(tmp_path / 'site', '0.17.0', CUDA_WHEEL[0].split(': ', 1)[1], CUDA_WHEEL[1].format(site=tmp_path / 'site'))
    r = json.loads(env_cli('--json', cwd=tmp_path, pythonpath=[site]))
    assert r['torch'] == torch.__version__
    assert r['torchcodec'].startswith('does not load: ')
    if torch.version.cuda is None: assert 'is a CPU build and torchcodec 0.17.0 is a CUDA build' in r['torchcodec']
    assert isinstance(r['checkpoints'], str) and r['checkpoints'].startswith('error: TorchcodecError: ')   # it needs torchcodec: said, not raised
