"""Checkpoint cost of the 7B Video2World full fine-tune (issue 22): how long a save blocks training, and rank 0's peak host
memory during it, for the single-file format every rank waits for (`pt`: gathered to rank 0, written by rank 0) against
torch.distributed.checkpoint (`dcp`, every rank writes its shard) synchronous and asynchronous.

The state is the full recipe's: the DiT (random weights, fp32 master copy sharded by FSDP2 with bf16 compute, as
`cosmos_nb.train.build_model` does), AdamW with both moments filled (one step on random gradients), and the fp32 power EMA.
FSDP2 runs over one rank here; with R ranks each rank holds 1/R of every tensor, so the per-rank numbers of the sharded
formats divide by R, while `pt` still gathers everything onto rank 0.

The whole 7B state (fp32 weights, two moments, EMA: 4 x 28.9 GB = 116 GB) fits neither one H100 nor a 128 GB host twice,
so the bench measures the first --blocks blocks of the 28 (default 4 and 8, about 1.0e9 and 2.0e9 parameters plus the
embedders), and extrapolates every number linearly to the 28 blocks of the 7B (`extrapolated_7b`, a fit through the
measured sizes: the costs are proportional to the bytes saved). One JSON line per (blocks, format); the last line holds the
extrapolation. Per line: `blocked_s` (what `Checkpointer.save` held the loop: gather + write for pt and sync dcp, the copy
to CPU for async dcp), `committed_s` (until the checkpoint is on disk and `latest`), `host_peak_gib` (rank 0's RSS peak
during the save above its RSS before, sampled every 5 ms, pinned memory included), `disk_gib`, the state's `state_gib`, and
`step_s` (one forward/backward/optimizer step at --frames x --height x --width latent, to compare blocked time with).

GPU (the lead decides; one H100 or H200, local disk for --dir):
    python bench/bench_checkpoint.py --dir /tmp/ckpt_bench
CPU dry run (tiny model):
    python bench/bench_checkpoint.py --tiny
"""
import argparse, gc, json, os, shutil, socket, sys, threading, time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cosmos_nb.checkpoint import Checkpointer, find_resume_checkpoint
from cosmos_nb.diffusion import DiffusionConfig
from cosmos_nb.dit import DiTConfig, VideoExtendDiT
from cosmos_nb.train import PowerEMA, TrainingDiffusion

GiB = 2**30
FORMATS = ('pt', 'dcp-sync', 'dcp-async')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--tiny', action='store_true', help='tiny DiT on the CPU (checks the script, measures nothing of interest)')
    p.add_argument('--blocks', default='4,8', help='comma list of block counts to measure (the 7B has 28)')
    p.add_argument('--formats', default=','.join(FORMATS), help=f'comma list of {", ".join(FORMATS)}')
    p.add_argument('--dir', default='/tmp/cosmos_nb_bench_checkpoint', help='where checkpoints are written (deleted after each)')
    p.add_argument('--saves', type=int, default=2, help='saves per format (the first async save also creates the checkpoint group)')
    p.add_argument('--frames', type=int, default=16, help='latent frames of the timed training step (0: no step)')
    p.add_argument('--height', type=int, default=88)
    p.add_argument('--width', type=int, default=160)
    return p.parse_args(argv)


def rss() -> int:
    "This process's resident set size in bytes."
    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


class PeakRSS:
    "Samples RSS every 5 ms in a thread; `peak` is the largest seen since `start`."
    def __init__(self): self.peak, self.stop = 0, threading.Event()
    def _run(self):
        while not self.stop.is_set(): self.peak = max(self.peak, rss()); time.sleep(0.005)
    def __enter__(self):
        self.base = self.peak = rss(); self.t = threading.Thread(target=self._run, daemon=True); self.t.start(); return self
    def __exit__(self, *a): self.stop.set(); self.t.join(); self.peak = max(self.peak, rss())


def build(cfg: DiTConfig, device: torch.device):
    "The full recipe's model on one FSDP2 rank, AdamW with filled moments, fp32 EMA."
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    torch.manual_seed(0)
    with torch.device(device): model = TrainingDiffusion(VideoExtendDiT(cfg), None, DiffusionConfig())
    with torch.no_grad():
        for p in model.parameters(): p.normal_(0, 0.02)                         # random weights, no zero-initialised gates
    mesh = init_device_mesh(device.type, (1,))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if device.type == 'cuda' else None
    kw = {'mp_policy': mp} if mp else {}
    for block in model.net.blocks.values(): fully_shard(block, mesh=mesh, **kw)
    fully_shard(model.logvar, mesh=mesh, **kw); fully_shard(model, mesh=mesh, **kw)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.1)
    for p in model.parameters(): p.grad = torch.randn_like(p) * 1e-3
    opt.step(); opt.zero_grad(set_to_none=True)
    return model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda n: 1.0), PowerEMA(model)


def state_bytes(model, opt, ema) -> int:
    local = lambda t: t.to_local() if hasattr(t, 'to_local') else t
    n = sum(local(p).numel() * local(p).element_size() for p in model.parameters())
    n += sum(local(v).numel() * local(v).element_size() for s in opt.state.values() for v in s.values() if torch.is_tensor(v))
    return n + sum(local(s).numel() * local(s).element_size() for s in ema.shadow)


def step_time(model, opt, cfg, device, a) -> float|None:
    "Seconds of one training step (forward, backward, AdamW) on one latent of frames x height x width."
    if not a.frames: return None
    from cosmos_nb.parallelize import apply_activation_checkpointing
    apply_activation_checkpointing(model.net)
    C = cfg.latent_channels
    batch = dict(latent=torch.randn(1, C, a.frames, a.height, a.width, device=device),
                 t5_text_embeddings=torch.randn(1, 512, cfg.crossattn_emb_channels, device=device),
                 t5_text_mask=torch.ones(1, 512, device=device), fps=torch.tensor([24.0], device=device),
                 padding_mask=torch.zeros(1, 1, a.height * 8, a.width * 8, device=device))
    times = []
    for _ in range(2):
        if device.type == 'cuda': torch.cuda.synchronize()
        t0 = time.perf_counter()
        _, loss = model(batch, 0)                                       # through FSDP2's root hooks, as the trainer calls it
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        if device.type == 'cuda': torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times[-1]


def measure(fmt: str, blocks: int, model, opt, sched, ema, a) -> dict:
    out = Path(a.dir)/f'{fmt}_{blocks}'
    shutil.rmtree(out, ignore_errors=True)
    ck = Checkpointer(out, 'pt' if fmt == 'pt' else 'dcp', async_save=fmt == 'dcp-async', keep_last=1)
    rows = []
    for k in range(1, a.saves + 1):
        gc.collect()
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            ck.save(k, model, opt, sched, ema, state=dict(epoch=0), consolidate=False,
                    reg_dtype=torch.bfloat16 if model.net.x_embedder.proj[1].weight.device.type == 'cuda' else None)
            blocked = time.perf_counter() - t0
            ck.wait()
            committed = time.perf_counter() - t0
        rows.append(dict(blocked_s=blocked, committed_s=committed, host_peak_gib=(mem.peak - mem.base) / GiB))
    assert find_resume_checkpoint(out).iteration == a.saves
    disk = sum(f.stat().st_size for f in out.rglob('*') if f.is_file())     # keep_last=1: the last checkpoint only
    shutil.rmtree(out, ignore_errors=True)
    last = rows[-1]                                                           # the first save pays one-time set-up (the gloo group)
    return dict(format=fmt, blocks=blocks, **last, first_save=rows[0], disk_gib=disk / GiB)


def main(argv=None):
    a = parse_args(argv)
    device = torch.device('cpu' if a.tiny or not torch.cuda.is_available() else 'cuda')
    os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); os.environ.setdefault('MASTER_PORT', str(s.getsockname()[1]))
    if device.type == 'cuda': torch.cuda.set_device(0)
    dist.init_process_group('cuda:nccl,cpu:gloo' if device.type == 'cuda' else 'gloo', rank=0, world_size=1)
    if a.tiny: a.blocks, a.frames, a.height, a.width = '1,2', 2, 4, 4
    formats, lines = a.formats.split(','), []
    try:
        for blocks in map(int, a.blocks.split(',')):
            cfg = DiTConfig.tiny(num_blocks=blocks) if a.tiny else DiTConfig.predict1_7b_video2world(num_blocks=blocks)
            model, opt, sched, ema = build(cfg, device)
            common = dict(blocks=blocks, params=sum(p.numel() for p in model.parameters()), state_gib=state_bytes(model, opt, ema) / GiB,
                          device=torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu')
            step = step_time(model, opt, cfg, device, a)
            for fmt in formats:
                row = {**common, **measure(fmt, blocks, model, opt, sched, ema, a), 'step_s': step}
                print(json.dumps(row), flush=True); lines.append(row)
            del model, opt, sched, ema; gc.collect()
            if device.type == 'cuda': torch.cuda.empty_cache()
        full = 28                                                               # the 7B's blocks
        extra = {}
        for fmt in formats:
            pts = sorted((r['blocks'], r) for r in lines if r['format'] == fmt)
            if len(pts) < 2: continue
            (b0, r0), (b1, r1) = pts[0], pts[-1]
            lin = lambda key: r0[key] + (r1[key] - r0[key]) / (b1 - b0) * (full - b0)
            extra[fmt] = {k: round(lin(k), 3) for k in ('blocked_s', 'committed_s', 'host_peak_gib', 'disk_gib', 'state_gib', 'params')}
        print(json.dumps(dict(extrapolated_7b=extra, blocks=full, note='linear in the measured block counts; per rank of one')), flush=True)
    finally:
        dist.destroy_process_group()


if __name__ == '__main__':
    main()
