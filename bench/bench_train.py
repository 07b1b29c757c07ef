"""Benchmark the trainer (cosmos_nb.train) end to end on one device: seconds per iteration, clips per second and peak GPU
memory of the two upstream recipes, with the real loop (FSDP2 bf16 compute + fp32 master weights + AdamW + power EMA +
grad clipping for the full recipe; DDP with a bf16 base and fp32 adapters for LoRA), random weights, and latents read from
a cache (`cosmos_nb.latent_cache.cache_latents`, tiny tokenizer) so the tokenizer is not in the timing.

The DiT has the 7B width (D 4096, 32 heads) and `--blocks` of its 28 blocks, so one GPU holds it with its optimizer state;
per-block time scales to the full model. The latent is upstream's: 121 frames at 720×1280 (16×90×160) for `full`,
480×848 (16×60×106) for `lora`.

GPU (the lead runs this on one H100):
    python bench/bench_train.py                         # both recipes, 4 blocks, activation checkpointing on
    python bench/bench_train.py --recipe lora --blocks 8
    python bench/bench_train.py --compile               # torch.compile each block
CPU dry run:
    python bench/bench_train.py --tiny
Prints one JSON line (and writes it to --out if given).
"""
import argparse, json, os, shutil, statistics, sys, tempfile, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cosmos_nb.data import make_synthetic_dataset
from cosmos_nb.latent_cache import cache_latents
from cosmos_nb.train import read_metrics, train

RECIPES = {'full': ('video2world_7b_example_hdvila', (720, 1280)), 'lora': ('video2world_7b_lora_example_cosmos_nemo_assets', (480, 848))}
TINY = {'full': 'video2world_tiny_full_synthetic', 'lora': 'video2world_tiny_lora_synthetic'}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--tiny', action='store_true', help='the tiny experiments (17 frames at 32×32) on the CPU')
    p.add_argument('--recipe', default='both', choices=['full', 'lora', 'both'])
    p.add_argument('--blocks', type=int, default=4, help='DiT blocks at the 7B width (the release has 28)')
    p.add_argument('--frames', type=int, default=121, help='video frames per clip (1 + 8k)')
    p.add_argument('--iters', type=int, default=12, help='training iterations (the first --warmup are not timed)')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--no-ac', action='store_true', help='turn activation checkpointing off')
    p.add_argument('--compile', action='store_true', help='torch.compile every block (compile time is in the warm-up)')
    p.add_argument('--workdir', help='where to put the synthetic data, latent cache and runs (default: a temp dir)')
    p.add_argument('--out', help='also write the JSON line to this file')
    return p.parse_args(argv)


def bench_recipe(recipe: str, a, work: Path) -> dict:
    name, size = (TINY[recipe], (32, 32)) if a.tiny else RECIPES[recipe]
    frames = 17 if a.tiny else a.frames
    data = work/f'data_{size[0]}x{size[1]}x{frames}'
    if not (data/'videos').is_dir(): make_synthetic_dataset(data, n_videos=2, num_frames=frames, size=size)
    common = [f'data.dataset_dir={data}', f'data.num_frames={frames}', f'data.video_size=({size[0]},{size[1]})',
              'data.num_workers=2', 'tokenizer.kind=tiny', 'tokenizer.path=', 'tokenizer.dtype=' + ('float32' if a.tiny else 'bfloat16')]
    cache = data/'latent_cache'
    if not (cache/'index.json').is_file(): cache_latents(name, common, cache)
    over = common + [f'data.latent_cache={cache}', 'checkpoint.load_path=', f'trainer.max_iter={a.iters}',
                     f'checkpoint.save_iter={10**9}', 'trainer.logging_iter=0', 'trainer.sample_every=0', 'trainer.resume=auto',
                     f'parallel.activation_checkpointing={"none" if a.no_ac else "full"}', f'parallel.compile={a.compile}', f'job.name=bench_{recipe}_{time.time_ns()}']
    if not a.tiny:
        over += [f'net.num_blocks={a.blocks}'] + ([f'lora.first_nblocks={a.blocks}'] if recipe == 'lora' else [])
    os.environ['OUTPUT_ROOT'] = str(work/'runs')
    if torch.cuda.is_available(): torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    out = train(name, over)
    wall = time.perf_counter() - t0
    rows = read_metrics(out['metrics'])[a.warmup:]
    shutil.rmtree(out['run_dir'], ignore_errors=True)      # the final checkpoint of a 7B-width run is tens of GB
    sec = statistics.median(r['sec_per_iter'] for r in rows)
    mem = [r['gpu_mem_gb'] for r in rows if r['gpu_mem_gb'] is not None]
    return dict(recipe=recipe, experiment=name, video=[frames, *size], latent=json.loads((cache/'index.json').read_text())['latent_shape'],
                blocks=None if a.tiny else a.blocks, sec_per_iter=sec, samples_per_sec=1 / sec,
                sec_per_iter_per_block=None if a.tiny else sec / a.blocks, peak_gpu_mem_gb=max(mem) if mem else None,
                final_loss=rows[-1]['loss'] if rows else None, wall_s=wall, timed_iters=len(rows))


def main(argv=None):
    a = parse_args(argv)
    if a.iters <= a.warmup: raise SystemExit('--iters must be larger than --warmup')
    if a.tiny: torch.set_num_threads(1)
    work = Path(a.workdir or tempfile.mkdtemp(prefix='bench_train_'))
    recipes = ['full', 'lora'] if a.recipe == 'both' else [a.recipe]
    res = dict(bench='train', device=torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu',
               torch=torch.__version__, activation_checkpointing=not a.no_ac, compile=a.compile,
               results=[bench_recipe(r, a, work) for r in recipes])
    line = json.dumps(res)
    print(line)
    if a.out: Path(a.out).write_text(line + '\n')
    return res


if __name__ == '__main__': main()
