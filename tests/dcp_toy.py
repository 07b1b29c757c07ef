"""A toy training run for the sharded-checkpoint tests (tests/test_checkpoint_dcp.py): a float64 MLP trained under FSDP2 or DDP
on CPU gloo processes, with AdamW, a warm-up scheduler, an EMA and a shuffled, sharded loader, saved and resumed through
`cosmos_nb.checkpoint.Checkpointer` exactly as the trainer does (data position in samples). float64, so that runs on different
numbers of ranks (which sum in different orders) agree to ~1e-12 and any real difference shows.

    python tests/dcp_toy.py JSON     # mp.spawn of the run JSON describes (the kill test starts it this way)"""
import json, os, socket, sys
from itertools import islice
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from torch.distributed.tensor import DTensor
from torch.utils.data import DataLoader, DistributedSampler, Sampler, TensorDataset

from cosmos_nb.checkpoint import (Checkpointer, data_position, find_resume_checkpoint, load_training_checkpoint,
                                  remove_partial_files)

N, GLOBAL_BATCH = 22, 4        # 22 samples: an epoch is 5 steps of 4 (2 left over), so runs cross epoch boundaries


def dataset():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 6, generator=g, dtype=torch.float64)
    return TensorDataset(x, x.sin().sum(1, keepdim=True))


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1)).double()


class Warmup:
    "The scheduler's multiplier, an object so that `LambdaLR.state_dict` saves its fields (as the trainer's `LambdaLinear`)."
    def __init__(self, n): self.n = n
    def __call__(self, i): return min(1.0, (i + 1) / self.n)


class EMA:
    "An EMA with the trainer's `PowerEMA` interface (names, shadow sharded like the weights, full_state_dict)."
    def __init__(self, model):
        named = list(model.named_parameters())
        self.names, self.params = [n for n, _ in named], [p for _, p in named]
        self.shadow = [p.detach().clone() for p in self.params]
    @torch.no_grad()
    def update(self):
        torch._foreach_mul_(self.shadow, 0.9); torch._foreach_add_(self.shadow, [p.detach() for p in self.params], alpha=0.1)
    def full_state_dict(self):
        full = [s.full_tensor() if isinstance(s, DTensor) else s for s in self.shadow]
        return {n: t.detach().cpu().clone() for n, t in zip(self.names, full)} if rank() == 0 else {}
    @torch.no_grad()
    def load_full_state_dict(self, sd):
        from torch.distributed.tensor import distribute_tensor
        for n, s in zip(self.names, self.shadow):
            src = sd[n].to(s.device)
            s.copy_(distribute_tensor(src, s.device_mesh, s.placements, src_data_rank=None) if isinstance(s, DTensor) else src)


class Skip(Sampler):
    "The trainer's `ResumableSampler`: the next pass skips its first `skip` indices."
    def __init__(self, sampler): self.sampler, self.skip = sampler, 0
    def set_epoch(self, e): self.sampler.set_epoch(e)
    def __iter__(self):
        skip, self.skip = self.skip, 0
        return islice(iter(self.sampler), skip, None)
    def __len__(self): return len(self.sampler)


def rank(): return dist.get_rank() if dist.is_initialized() else 0


def train(world: int, steps: int, dir: str = '', parallel: str = 'none', format: str = 'dcp', async_save: bool = True,
          save_every: int = 0, resume: bool = False, progress: str = '', pt_dir: str = '', plain_dir: str = '',
          old_position: bool = False, device: str = 'cpu') -> dict:
    "Train to `steps` on this process's share; returns {'losses': [(iteration, global mean loss)], 'model', 'ema'} (full, rank 0)."
    torch.set_num_threads(1)
    model = make_model().to(device)
    if parallel == 'fsdp':
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
        mesh = init_device_mesh(torch.device(device).type, (world,))
        for m in model:
            if isinstance(m, nn.Linear): fully_shard(m, mesh=mesh)
        fully_shard(model, mesh=mesh)
        wrapped = model
    elif parallel == 'ddp': wrapped = nn.parallel.DistributedDataParallel(model)
    else: wrapped = model
    opt = torch.optim.AdamW(wrapped.parameters(), lr=3e-2, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, Warmup(3))
    ema = EMA(model)
    B, ds = GLOBAL_BATCH // world, dataset()
    sampler = Skip(DistributedSampler(ds, world, rank(), shuffle=True, seed=0, drop_last=True))
    loader = DataLoader(ds, B, sampler=sampler, drop_last=True)
    ck = Checkpointer(dir, format, async_save) if dir else None
    it = epoch = batch_in_epoch = 0
    if resume:
        from cosmos_nb.checkpoint import resume_position
        info = find_resume_checkpoint(dir)
        state = load_training_checkpoint(info, wrapped, opt, sched, ema)
        it = info.iteration
        epoch, batch_in_epoch, sampler.skip = resume_position(state, B, world)
        if rank() == 0: remove_partial_files(dir)
    losses = []
    while it < steps:
        sampler.set_epoch(epoch)
        for x, y in loader:
            batch_in_epoch += 1
            loss = ((wrapped(x.to(device)) - y.to(device)) ** 2).mean()
            loss.backward()
            mean = loss.detach().clone()
            if dist.is_initialized(): dist.all_reduce(mean); mean /= world
            if ck is not None: ck.wait_for_staging()                 # as the trainer: a save's copy is done before the state changes
            opt.step(); sched.step(); ema.update(); opt.zero_grad(set_to_none=True)
            it += 1
            losses.append((it, mean.item()))
            if progress and rank() == 0: Path(progress).write_text(str(it))
            if ck is not None and (it % save_every == 0 or it == steps):
                pos = data_position(epoch, batch_in_epoch, B, world)
                if old_position: pos = dict(epoch=epoch, batch_in_epoch=batch_in_epoch)   # what checkpoints before issue 22 stored
                ck.save(it, wrapped, opt, sched, ema, state=pos, consolidate=it == steps, reg_dtype=torch.bfloat16)
                if it == steps and pt_dir:      # the same state in today's single files, and in DCP without upstream files
                    Checkpointer(pt_dir, 'pt', False).save(it, wrapped, opt, sched, ema, state=pos, reg_dtype=torch.bfloat16)
                    plain = Checkpointer(plain_dir, 'dcp', True)
                    plain.save(it, wrapped, opt, sched, ema, state=pos, consolidate=False, reg_dtype=torch.bfloat16)
                    plain.wait()
            if it == steps: break
        else:
            epoch, batch_in_epoch = epoch + 1, 0
            continue
        break
    if ck is not None: ck.wait()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    full = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return dict(losses=losses, model=full, ema=ema.full_state_dict())


def _worker(r: int, world: int, port: int, out: str, kw: dict):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    cuda = kw.get('device', 'cpu') == 'cuda'
    if cuda: torch.cuda.set_device(r); kw['device'] = f'cuda:{r}'
    dist.init_process_group('cuda:nccl,cpu:gloo' if cuda else 'gloo', rank=r, world_size=world)
    if pause := kw.pop('pause', None):         # [iteration, seconds]: stall that save (tests/pause_checkpoint.py)
        sys.path.insert(0, str(Path(__file__).parent))
        import pause_checkpoint
        pause_checkpoint.install(*pause)
    try:
        res = train(world, **kw)
        if r == 0: torch.save(res, out)
    finally: dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def spawn(world: int, out: str, **kw) -> dict:
    "Run `train` on `world` gloo processes; returns rank 0's result."
    mp.spawn(_worker, args=(world, free_port(), out, kw), nprocs=world, join=True)
    return torch.load(out, weights_only=True)


if __name__ == '__main__':
    a = json.loads(sys.argv[1])
    spawn(a.pop('world'), a.pop('out'), **a)
