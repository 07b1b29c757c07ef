"""A toy stand-in for `cosmos_nb.train:train`, for tests/test_slurm.py.

`train(experiment, overrides)` behaves like the real trainer where dispatch is concerned: it joins torch.distributed from
torchrun's variables (gloo on CPU), trains a tiny model with gradients averaged over the ranks, saves
`iter_{N:09d}.pt` + `latest_checkpoint.txt` atomically every `trainer.save_iter` iterations into `job.run_dir`, resumes
from the newest checkpoint when `trainer.resume=auto`, and returns what a test can check.
"""
import os, socket, time
from pathlib import Path
import torch, torch.distributed as dist
from cosmos_nb.config import atomic_torch_save, atomic_write

DEFAULTS = {'trainer.max_iter': 40, 'trainer.save_iter': 10, 'trainer.sleep': 0.0, 'trainer.resume': 'none',
            'trainer.fail_at': -1, 'job.run_dir': 'toy_run'}

def parse(overrides):
    cfg = dict(DEFAULTS)
    for o in overrides:
        k, v = o.split('=', 1)
        if k not in cfg: raise KeyError(f'unknown config key {k!r}; known: {sorted(cfg)}')
        cfg[k] = type(DEFAULTS[k])(v) if not isinstance(DEFAULTS[k], str) else v
    return cfg

def batch(it, rank):
    "The same data for the same (iteration, rank), whatever happened before."
    g = torch.Generator().manual_seed(1000 * it + rank)
    x = torch.randn(16, 4, generator=g)
    return x, x @ torch.tensor([[1.], [-2.], [3.], [0.5]])

def latest(run_dir: Path):
    f = run_dir/'latest_checkpoint.txt'
    return run_dir/f.read_text().strip() if f.exists() else None

def train(experiment, overrides):
    cfg = parse(overrides)
    run_dir = Path(cfg['job.run_dir'])
    dist.init_process_group('gloo')
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        start = 0
        ck = latest(run_dir) if cfg['trainer.resume'] == 'auto' else None
        if ck is not None:
            state = torch.load(ck, weights_only=True)
            model.load_state_dict(state['model']); opt.load_state_dict(state['optim']); start = state['iteration']
        for it in range(start, cfg['trainer.max_iter']):
            if it == cfg['trainer.fail_at']: raise RuntimeError(f'toy failure at iteration {it}')
            x, y = batch(it, rank)
            loss = torch.nn.functional.mse_loss(model(x), y)
            opt.zero_grad(); loss.backward()
            for p in model.parameters():
                dist.all_reduce(p.grad); p.grad /= world
            opt.step()
            n = it + 1
            if rank == 0 and (n % cfg['trainer.save_iter'] == 0 or n == cfg['trainer.max_iter']):
                name = f'iter_{n:09d}.pt'
                atomic_torch_save({'model': model.state_dict(), 'optim': opt.state_dict(), 'iteration': n}, run_dir/name)
                with atomic_write(run_dir/'latest_checkpoint.txt', 'w') as f: f.write(name)
            print(f'[rank {rank}] iteration {n} loss {loss.item():.5f}', flush=True)
            time.sleep(cfg['trainer.sleep'])
        dist.barrier()
        return dict(experiment=experiment, rank=rank, world_size=world, local_rank=int(os.environ['LOCAL_RANK']),
                    local_world_size=int(os.environ['LOCAL_WORLD_SIZE']), host=socket.gethostname(),
                    master=f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}", resumed_from=start,
                    iteration=cfg['trainer.max_iter'], loss=loss.item(), overrides=list(overrides),
                    attempt=int(os.environ.get('COSMOS_NB_ATTEMPT', -1)),
                    slurm_restarts=int(os.environ.get('SLURM_RESTART_COUNT', 0)),
                    slurm_node=os.environ.get('SLURMD_NODENAME'), cuda_visible=os.environ.get('CUDA_VISIBLE_DEVICES'),
                    weights=[p.detach().clone() for p in model.parameters()])
    finally:
        dist.destroy_process_group()
