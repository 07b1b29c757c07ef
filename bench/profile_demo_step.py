"""Where a demo training step's time and memory go (issue 10's `--size small` pretraining on one GPU).

    python bench/profile_demo_step.py --size small --device cuda        # on the H100 host (source bench/device_env.sh)
    python bench/profile_demo_step.py --size tiny --device cpu --iters 2 # a quick CPU check of the script

The trainer is `pretrain_base`'s (its data preparation and overrides: blocks compiled on a GPU; add
`--extra parallel.compile=false` to time them eagerly), built on `--clips` synthetic clips. It times the loader alone, the
training step alone on one fixed batch, and prints a profiler table of the step's top ops. Prints JSON lines.
"""
import argparse, ast, dataclasses, json, sys, tempfile, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cosmos_nb.config import Settings, apply_overrides
from cosmos_nb.demo import DEMO_SIZES, _base_config, _base_data
from cosmos_nb.runtime import init_distributed
from cosmos_nb.train import Trainer, get_experiment

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument('--size', default='small'); p.add_argument('--device', default='cuda')
p.add_argument('--iters', type=int, default=10); p.add_argument('--clips', type=int, default=32)
p.add_argument('--extra', nargs='*', default=[], help='more experiment overrides, e.g. parallel.compile=false')
p.add_argument('--change', nargs='*', default=[], help='DemoSize fields to change, e.g. video_size=128,128 base_batch_size=32 lr=1e-3')
p.add_argument('--no-profile', action='store_true', help='skip the profiler tables')
a = p.parse_args()
z = dataclasses.replace(DEMO_SIZES[a.size], **{k: ast.literal_eval(v) for k, v in (c.split('=', 1) for c in a.change)})
sync = torch.cuda.synchronize if a.device == 'cuda' else (lambda: None)
with tempfile.TemporaryDirectory() as tmp:
    tmp, t0 = Path(tmp), time.time()
    z = dataclasses.replace(z, base_videos=a.clips)
    data, stats, _ = _base_data(tmp, z)                      # as pretrain_base prepares them, on fewer clips
    print(json.dumps(dict(what='data', clips=a.clips, seconds=round(time.time() - t0, 2))), flush=True)
    cfg = apply_overrides(_base_config(z, a.device, data, stats), ['trainer.max_iter=100', 'checkpoint.save_iter=100'] + a.extra)
    with init_distributed(a.device) as env:
        tr = Trainer(cfg, env, Settings(output_root=str(tmp/'runs')))
        print(json.dumps(dict(what='config', activation_checkpointing=tr.cfg.parallel.activation_checkpointing, compile=tr.cfg.parallel.compile,
                              params=sum(q.numel() for q in tr.inner.parameters()), batch=tr.cfg.data.batch_size)), flush=True)
        it = iter(tr.loader); next(it); t0 = time.time(); n = 0
        for _ in range(min(a.iters, len(tr.loader) - 1)): next(it); n += 1
        print(json.dumps(dict(what='loader', batches=n, sec_per_batch=(time.time() - t0) / max(n, 1))), flush=True)
        batch = next(iter(tr.loader))
        for _ in range(3): tr.step(batch)
        sync(); torch.cuda.reset_peak_memory_stats() if a.device == 'cuda' else None; t0 = time.time()
        for _ in range(a.iters): tr.step(batch)
        sync(); dt = (time.time() - t0) / a.iters
        mem = torch.cuda.max_memory_allocated() / 2**30 if a.device == 'cuda' else None
        print(json.dumps(dict(what='step', size=z.video_size, batch=z.base_batch_size, extra=a.extra, sec_per_iter=dt, peak_gb=mem)), flush=True)
        if a.no_profile: sys.exit(0)
        acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if a.device == 'cuda' else [])
        with torch.profiler.profile(activities=acts, profile_memory=True) as prof:
            for _ in range(2): tr.step(batch)
            sync()
        key = 'cuda_time_total' if a.device == 'cuda' else 'cpu_time_total'
        print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60))
        print(prof.key_averages().table(sort_by='self_cuda_memory_usage' if a.device == 'cuda' else 'self_cpu_memory_usage', row_limit=12, max_name_column_width=60))
