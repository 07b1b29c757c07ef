"""The trainer's CUDA path, run on the device (H100), not in CI: `pytest -m gpu tests/test_train_gpu.py`.

The CPU tests run the same code with gloo and float32; here the launcher is a real `torchrun` with NCCL, one process per
visible GPU, and the two recipes use their GPU precisions: FSDP2 with bf16 compute over fp32 master weights (full), a bf16
frozen base with fp32 adapters under DDP (LoRA). Needs torchcodec + FFmpeg (the synthetic clips are mp4 files)."""
import json, os
from pathlib import Path
import pytest
import torch
import torch.distributed as dist
from cosmos_nb.checkpoint import find_resume_checkpoint, load_file
from cosmos_nb.data import VideoDataset
from cosmos_nb.runtime import init_distributed
from cosmos_nb import train as T
from test_train import (MAX_ITER, TINY, check_files, check_lora_roundtrip, eval_loss, overrides, run_dir, torchrun, wait_ok,
                        world)  # noqa: F401  (world is a fixture)

pytestmark = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU (run on the device)')


@needs_cuda
@pytest.mark.parametrize('kind', ['lora', 'full'])
def test_torchrun_nccl_trains_writes_upstream_files_samples_and_resumes(world, tmp_path, kind):
    n = torch.cuda.device_count()
    p, log = torchrun(kind, world, tmp_path, nproc=n, extra=['trainer.device=cuda', 'trainer.sample_every=6', 'trainer.sample_steps=4'])
    text = wait_ok(p, log, kind, tmp_path, timeout=600)
    rd = run_dir(tmp_path, kind)
    check_files(kind, world, rd/'checkpoints', world_size=n)
    if kind == 'lora': check_lora_roundtrip(world, rd/'checkpoints')
    rows = T.read_metrics(rd/'metrics.jsonl')
    assert [r['iteration'] for r in rows] == list(range(1, MAX_ITER + 1))
    assert all(r['gpu_mem_gb'] is not None and r['gpu_mem_gb'] > 0 for r in rows), 'the run did not use the GPU'
    assert all(torch.isfinite(torch.tensor([r['loss'], r['grad_norm']])).all() for r in rows)
    samples = sorted(p.name for p in (rd/'samples').glob('*.mp4'))
    assert samples == [f'iter_{i:09d}_{k}.mp4' for i in (6, 12) for k in range(2)], samples
    final = rd/'checkpoints'/(f'iter_{MAX_ITER:09d}' + ('_model.pt' if kind == 'lora' else '_reg_model.pt'))
    before, after = eval_loss(kind, world, world/'start.pt'), eval_loss(kind, world, final)
    assert after < before, f'training on the GPU did not lower the loss: {before:.4f} -> {after:.4f}'
    if kind == 'full':   # upstream's file format: the regular weights in bf16 (as trained), the EMA in fp32
        reg = load_file(final)
        assert {v.dtype for v in reg.values()} == {torch.bfloat16}
    # the same command with a higher max_iter resumes from the last checkpoint
    p, log = torchrun(kind, world, tmp_path, nproc=n, extra=['trainer.device=cuda', f'trainer.max_iter={MAX_ITER + 3}'])
    p.wait(600)
    assert p.returncode == 0, log.read_text()[-4000:]
    assert find_resume_checkpoint(rd/'checkpoints').iteration == MAX_ITER + 3
    assert [r['iteration'] for r in T.read_metrics(rd/'metrics.jsonl')] == list(range(1, MAX_ITER + 4))
    print(json.dumps(dict(kind=kind, gpus=n, eval_loss_before=before, eval_loss_after=after,
                          peak_gpu_mem_gb=max(r['gpu_mem_gb'] for r in rows), log_tail=text[-300:])))


@needs_cuda
def test_fsdp2_mixed_precision_on_cuda_keeps_fp32_master_weights_and_computes_in_bf16(world, monkeypatch, tmp_path):
    monkeypatch.setenv('OUTPUT_ROOT', str(tmp_path))
    cfg = T.resolve_experiment(TINY['full'], overrides('full', world))
    with init_distributed('cuda') as env:
        model, inner = T.build_model(cfg, env, None)
        params = list(inner.net.parameters())
        assert all(p.dtype == torch.float32 and p.device.type == 'cuda' for p in params)          # master weights
        seen = []
        h = inner.net.blocks['block0'].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        batch = torch.utils.data.default_collate([VideoDataset(world/'shapes', 1, 17, (32, 32))[0]])
        batch.pop('video')
        batch['latent'] = torch.randn(1, 16, 3, 4, 4)                                           # what a latent cache holds
        logs, loss = model(T._to_device(batch, env.device), 0)
        h.remove()
        assert seen == [torch.bfloat16] and loss.dtype == torch.float32                        # blocks compute in bf16
        loss.backward()
        grads = [p.grad for p in params if p.grad is not None]
        assert grads and all(g.dtype == torch.float32 for g in grads)                          # reduced in fp32
    assert not dist.is_initialized()
