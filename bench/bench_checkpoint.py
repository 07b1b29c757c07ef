"""Checkpoint cost of the 7B Video2World full fine-tune (issue 22): how long a save holds training, against a real training
step in the same process, and rank 0's peak host memory, for the single-file format every rank waits for (`pt`: gathered
to rank 0, written by rank 0) against torch.distributed.checkpoint (`dcp`, every rank writes its shard) synchronous and
asynchronous (the state staged through pinned host memory by a background thread, `Checkpointer.wait_for_staging`).

The state is the full recipe's: the DiT (random weights, fp32 master copy sharded by FSDP2 with bf16 compute, as
`cosmos_nb.train.build_model` does), AdamW with both moments filled (one step on random gradients), and the fp32 power EMA.
FSDP2 runs over one rank here; with R ranks each rank holds 1/R of every tensor, so the per-rank numbers of the sharded
formats divide by R, while `pt` still gathers everything onto rank 0.

The whole 7B state (fp32 weights, two moments, EMA: 4 x 28.9 GB = 116 GB) fits neither one H100 nor a 128 GB host twice,
so the bench measures the first --blocks blocks of the 28 (each about 3.8 GiB of state), and extrapolates every size and
copy/write time linearly to the 28 blocks of the 7B (`extrapolated_7b`, a line through the smallest and largest measured
block counts: these costs are proportional to the bytes saved).

Each save is followed by one training step, as in the trainer: `save`, then the step's forward and backward, then
`wait_for_staging` (where the trainer's `optimizer.step()` waits for an asynchronous save's copy), then AdamW and the EMA
update, then `wait` for the commit (timed separately; in a run the write goes on under later steps). One JSON line per
(blocks, format), for the last save of --saves (`first_save` holds the first: it also pays one-time set-up, the checkpoint
group and, for dcp-async, allocating and pinning the staging buffers); the last line holds the extrapolation. Per line:
  step_s          one plain training step (forward, backward, AdamW, EMA) at --frames x --height x --width latent
  save_call_s     how long `Checkpointer.save` held the loop (gather + write for pt and sync dcp; planning for async dcp)
  staging_wait_s  how long `wait_for_staging` held the next optimizer step (0 for the synchronous formats)
  blocked_s       `Checkpointer.blocked` of the save: save_call_s + staging_wait_s, the time training was held
  staging_s       async dcp: from the `save` call to the state being in host memory (the copy, and pinning at a first save)
  hidden_s        async dcp: the part of the copy after `save` returned that ran under the step's forward and backward
  step_after_save_s  the step that follows the save, staging wait included (compare with step_s: the copy competes for
                  memory bandwidth and the CPU)
  overhead_s      save_call_s + step_after_save_s - step_s: what the save cost the loop in all
  committed_s     from the `save` call until the checkpoint is on disk and `latest` (the step included)
  host_peak_gib   rank 0's RSS peak during the save and step above its RSS before this format's first save, sampled every
                  5 ms: the pinned staging buffers, kept from save to save, count (they are this rank's shard of the state)
With --frames 0 there is no step: the staging wait follows the save at once and the step columns are null.

GPU (the lead decides; one H100 or H200, local disk for --dir; ~2.5 min):
    python bench/bench_checkpoint.py --dir /tmp/ckb --blocks 2,4 --formats dcp-async,dcp-sync,pt --saves 2,1,1
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
FORMATS = ('dcp-async', 'dcp-sync', 'pt')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--tiny', action='store_true', help='tiny DiT on the CPU (checks the script, measures nothing of interest)')
    p.add_argument('--blocks', default='2,4', help='comma list of block counts to measure (the 7B has 28)')
    p.add_argument('--formats', default=','.join(FORMATS), help=f'comma list of {", ".join(FORMATS)}')
    p.add_argument('--dir', default='/tmp/cosmos_nb_bench_checkpoint', help='where checkpoints are written (deleted after each)')
    p.add_argument('--saves', default='2', help='saves per format: one number, or one per --formats entry (2,1,1); the last is reported')
    p.add_argument('--frames', type=int, default=16, help='latent frames of the training step after each save (0: no step)')
    p.add_argument('--height', type=int, default=88)
    p.add_argument('--width', type=int, default=160)
    a = p.parse_args(argv)
    a.formats = a.formats.split(',')
    if bad := [f for f in a.formats if f not in FORMATS]: p.error(f'--formats {",".join(bad)}: use {", ".join(FORMATS)}')
    saves = [int(n) for n in a.saves.split(',')]
    if len(saves) == 1: saves *= len(a.formats)
    if len(saves) != len(a.formats) or min(saves) < 1: p.error(f'--saves {a.saves}: one number >= 1, or one per format ({len(a.formats)})')
    a.saves = dict(zip(a.formats, saves))
    return a


def rss() -> int:
    "This process's resident set size in bytes."
    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


class PeakRSS:
    "Samples RSS every 5 ms in a thread; `peak` is the largest seen inside the block, `base` the RSS given (default: at entry)."
    def __init__(self, base: int|None=None): self.base, self.peak, self.stop = base, 0, threading.Event()
    def _run(self):
        while not self.stop.is_set(): self.peak = max(self.peak, rss()); time.sleep(0.005)
    def __enter__(self):
        self.peak = rss(); self.base = self.peak if self.base is None else self.base
        self.t = threading.Thread(target=self._run, daemon=True); self.t.start(); return self
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


class Step:
    "One training step of the trainer, in its two halves: `forward_backward()`, then `update()` (AdamW, EMA), on one latent."
    def __init__(self, model, opt, ema, cfg, device, a):
        from cosmos_nb.parallelize import apply_activation_checkpointing
        apply_activation_checkpointing(model.net)
        self.model, self.opt, self.ema, self.cuda, C = model, opt, ema, device.type == 'cuda', cfg.latent_channels
        self.batch = dict(latent=torch.randn(1, C, a.frames, a.height, a.width, device=device),
                          t5_text_embeddings=torch.randn(1, 512, cfg.crossattn_emb_channels, device=device),
                          t5_text_mask=torch.ones(1, 512, device=device), fps=torch.tensor([24.0], device=device),
                          padding_mask=torch.zeros(1, 1, a.height * 8, a.width * 8, device=device))
        self.iteration = 0
    def sync(self):
        if self.cuda: torch.cuda.synchronize()
    def forward_backward(self):
        _, loss = self.model(self.batch, self.iteration)               # through FSDP2's root hooks, as the trainer calls it
        loss.backward(); self.sync()
    def update(self):
        self.opt.step(); self.ema.update(self.iteration); self.opt.zero_grad(set_to_none=True); self.sync()
        self.iteration += 1
    def time(self) -> float:
        "Seconds of one whole step (the second of two: the first warms up)."
        for _ in range(2):
            self.sync(); t0 = time.perf_counter()
            self.forward_backward(); self.update()
            dt = time.perf_counter() - t0
        return dt


def measure(fmt: str, blocks: int, model, opt, sched, ema, step: Step|None, step_s: float|None, a) -> dict:
    out = Path(a.dir)/f'{fmt}_{blocks}'
    shutil.rmtree(out, ignore_errors=True)
    ck = Checkpointer(out, 'pt' if fmt == 'pt' else 'dcp', async_save=fmt == 'dcp-async', keep_last=1)
    reg_dtype = torch.bfloat16 if model.net.x_embedder.proj[1].weight.device.type == 'cuda' else None
    rows = []
    gc.collect()
    base = rss()                                                              # staging buffers kept across saves count
    for k in range(1, a.saves[fmt] + 1):
        gc.collect()
        staged_at = []
        with PeakRSS(base) as mem:
            if step: step.sync()
            t0 = time.perf_counter()
            ck.save(k, model, opt, sched, ema, state=dict(epoch=0), consolidate=False, reg_dtype=reg_dtype)
            returned = time.perf_counter()
            if ck.staging is not None: ck.staging.add_done_callback(lambda f: staged_at.append(time.perf_counter()))
            if step: step.forward_backward()
            t_fb = time.perf_counter()
            ck.wait_for_staging()                                                 # where the trainer's optimizer step waits
            waited = time.perf_counter() - t_fb
            if step: step.update()
            t_step = time.perf_counter()
            ck.wait()
            committed = time.perf_counter() - t0
        row = dict(save_call_s=returned - t0, staging_wait_s=waited, blocked_s=ck.blocked[-1], committed_s=committed,
                   host_peak_gib=(mem.peak - mem.base) / GiB, staging_s=None, hidden_s=None, step_after_save_s=None, overhead_s=None)
        if fmt == 'dcp-async':
            done = staged_at[0] if staged_at else returned                        # done before `save` returned (tiny states)
            row.update(staging_s=done - t0, hidden_s=max(0.0, min(done, t_fb) - returned) if step else 0.0)
        if step:
            row.update(step_after_save_s=t_step - returned, overhead_s=t_step - t0 - step_s)
        rows.append({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
    assert find_resume_checkpoint(out).iteration == a.saves[fmt]
    disk = sum(f.stat().st_size for f in out.rglob('*') if f.is_file())     # keep_last=1: the last checkpoint only
    ck.close()                                                                # frees the pinned staging buffers
    shutil.rmtree(out, ignore_errors=True)
    return dict(format=fmt, blocks=blocks, saves=a.saves[fmt], **rows[-1], first_save=rows[0], disk_gib=round(disk / GiB, 3))


EXTRAPOLATED = ('save_call_s', 'staging_wait_s', 'blocked_s', 'staging_s', 'committed_s', 'host_peak_gib', 'disk_gib', 'state_gib', 'params')


def main(argv=None):
    a = parse_args(argv)
    device = torch.device('cpu' if a.tiny or not torch.cuda.is_available() else 'cuda')
    os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); os.environ.setdefault('MASTER_PORT', str(s.getsockname()[1]))
    if device.type == 'cuda': torch.cuda.set_device(0)
    dist.init_process_group('cuda:nccl,cpu:gloo' if device.type == 'cuda' else 'gloo', rank=0, world_size=1)
    if a.tiny: a.blocks, a.frames, a.height, a.width = '1,2', 2, 4, 4
    lines = []
    try:
        for blocks in map(int, a.blocks.split(',')):
            cfg = DiTConfig.tiny(num_blocks=blocks) if a.tiny else DiTConfig.predict1_7b_video2world(num_blocks=blocks)
            model, opt, sched, ema = build(cfg, device)
            common = dict(blocks=blocks, params=sum(p.numel() for p in model.parameters()), state_gib=round(state_bytes(model, opt, ema) / GiB, 3),
                          device=torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu', torch=torch.__version__)
            step = Step(model, opt, ema, cfg, device, a) if a.frames else None
            step_s = step.time() if step else None
            for fmt in a.formats:
                row = {**common, 'step_s': None if step_s is None else round(step_s, 4),
                       **measure(fmt, blocks, model, opt, sched, ema, step, step_s, a)}
                print(json.dumps(row), flush=True); lines.append(row)
            del model, opt, sched, ema, step; gc.collect()
            if device.type == 'cuda': torch.cuda.empty_cache()
        full = 28                                                               # the 7B's blocks
        extra = {}
        for fmt in a.formats:
            pts = sorted((r['blocks'], r) for r in lines if r['format'] == fmt)
            if len(pts) < 2: continue
            (b0, r0), (b1, r1) = pts[0], pts[-1]
            lin = lambda key: r0[key] + (r1[key] - r0[key]) / (b1 - b0) * (full - b0)
            extra[fmt] = {k: round(lin(k), 3) for k in EXTRAPOLATED if r0.get(k) is not None and r1.get(k) is not None}
        print(json.dumps(dict(extrapolated_7b=extra, blocks=full, note='linear in the measured block counts; per rank of one; '
                              'compare blocked_s with the 7B step (14.1 s compiled on one H100)')), flush=True)
    finally:
        dist.destroy_process_group()


if __name__ == '__main__':
    main()
