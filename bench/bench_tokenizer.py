#!/usr/bin/env python
"""Benchmark the Cosmos CV8x8x8 tokenizer (cosmos_nb.tokenizer): encode and decode one 1×3×121×704×1280 clip in bf16 with
random weights, and print one JSON line (median time after a warm-up, CUDA-synchronised, and peak memory per direction).

    python bench/bench_tokenizer.py                  # H100: the numbers for BENCHMARKS.md
    python bench/bench_tokenizer.py --compile        # the same through torch.compile
    python bench/bench_tokenizer.py --profile        # also print the top kernels (stderr)
    python bench/bench_tokenizer.py --tiny           # small CPU run, checks the script end to end

Targets: encode ≤ 0.38 s, decode ≤ 0.76 s (upstream's modules traced like the shipped .jit files, bf16, random weights,
measured on an H100 80GB with PyTorch 2.11; they peaked at ≈12.3 GiB above weights and input), peak < 9 GiB.
"""
import argparse, json, statistics, sys, time

import torch

from cosmos_nb.tokenizer import CausalVideoTokenizer, TokenizerConfig

TARGETS = {'encode_s': 0.38, 'decode_s': 0.76, 'peak_gib': 9.0}

def tokenizer_tflop(T: int, H: int, W: int, B: int=1) -> tuple[float, float]:
    """Convolution + attention FLOPs of the CV8x8x8 config, in TFLOP: (encode, decode). The per-voxel constants reproduce
    torch's FLOP counter on upstream's modules (35.67 / 61.29 TFLOP at 121×704×1280); the last term is the mid blocks'
    per-frame spatial attention, quadratic in the frame area."""
    k = (T - 1) // 8
    n0, n1, S = (1 + 2 * k) * (H // 4) * (W // 4), (1 + k) * (H // 8) * (W // 8), (H // 8) * (W // 8)
    enc = 2 * (3.30e6 * n0 + 3.91e7 * n1 + 1024 * S * n1)
    dec = 2 * (8.81e6 * n0 + 5.33e7 * n1 + 1024 * S * n1)
    return B * enc / 1e12, B * dec / 1e12

def measure(fn, arg, warmup: int, iters: int, dev: torch.device) -> dict:
    "Median/min seconds of `fn(arg)` after `warmup` calls, and the peak memory of the timed calls."
    cuda = dev.type == 'cuda'
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(warmup):
        out = fn(arg); del out
    sync()
    if cuda:
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(iters):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(); out = fn(arg); end.record(); sync()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter(); out = fn(arg); times.append(time.perf_counter() - t0)
        shape, finite = tuple(out.shape), bool(torch.isfinite(out).all())
        del out                                                  # the next call must not see this one's output
    res = {'s': statistics.median(times), 'min_s': min(times), 'times_s': [round(t, 4) for t in times],
           'out_shape': shape, 'finite': finite}
    if cuda:
        peak = torch.cuda.max_memory_allocated()
        res.update(peak_gib=peak / 2**30, peak_above_baseline_gib=(peak - base) / 2**30)
    return res

def profile(fn, arg, name: str, dev: torch.device):
    from torch.profiler import profile as prof, ProfilerActivity
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == 'cuda' else [])
    with prof(activities=acts) as p:
        fn(arg)
        if dev.type == 'cuda': torch.cuda.synchronize()
    key = 'cuda_time_total' if dev.type == 'cuda' else 'cpu_time_total'
    print(f'--- {name}: top kernels by {key}', file=sys.stderr)
    print(p.key_averages().table(sort_by=key, row_limit=25), file=sys.stderr)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--tiny', action='store_true', help='TokenizerConfig.tiny() on a 1×3×17×64×64 clip (CPU by default)')
    ap.add_argument('--device', default=None, help='default: cuda if available (cpu with --tiny)')
    ap.add_argument('--dtype', default=None, choices=['bfloat16', 'float16', 'float32'], help='default: bfloat16 (float32 with --tiny)')
    ap.add_argument('--batch', type=int, default=1)
    ap.add_argument('--frames', type=int, default=None, help='default 121 (17 with --tiny)')
    ap.add_argument('--height', type=int, default=None, help='default 704 (64 with --tiny)')
    ap.add_argument('--width', type=int, default=None, help='default 1280 (64 with --tiny)')
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--iters', type=int, default=5)
    ap.add_argument('--compile', action='store_true', help='torch.compile the encoder and decoder')
    ap.add_argument('--attn-max-elements', type=int, default=None, help='spatial attention score block (default 2**28)')
    ap.add_argument('--no-channels-last-weights', action='store_true', help='keep conv weights in the default layout')
    ap.add_argument('--no-cudnn-benchmark', action='store_true')
    ap.add_argument('--profile', action='store_true', help='print the top kernels of one encode and one decode to stderr')
    a = ap.parse_args(argv)

    dev = torch.device(a.device or ('cuda' if torch.cuda.is_available() and not a.tiny else 'cpu'))
    dtype = getattr(torch, a.dtype or ('float32' if a.tiny else 'bfloat16'))
    T, H, W = a.frames or (17 if a.tiny else 121), a.height or (64 if a.tiny else 704), a.width or (64 if a.tiny else 1280)
    extra = {} if a.attn_max_elements is None else {'attn_max_elements': a.attn_max_elements}
    cfg = TokenizerConfig.tiny(chunk_frames=None, **extra) if a.tiny else TokenizerConfig.cv8x8x8(chunk_frames=None, **extra)
    if dev.type == 'cuda': torch.backends.cudnn.benchmark = not a.no_cudnn_benchmark

    torch.manual_seed(0)
    with torch.device(dev): tok = CausalVideoTokenizer(cfg)
    tok = tok.to(dtype=dtype).eval().requires_grad_(False)
    if not a.no_channels_last_weights: tok = tok.to(memory_format=torch.channels_last_3d)
    weights_gib = sum(p.numel() * p.element_size() for p in tok.parameters()) / 2**30
    if a.compile:
        with torch.inference_mode():                             # fill the Haar sign caches eagerly, then compile
            tok.decode(tok.encode(torch.zeros(1, 3, 9, 64, 64, device=dev, dtype=dtype)))
        tok.encoder = torch.compile(tok.encoder)
        tok.decoder = torch.compile(tok.decoder)

    video = torch.rand(a.batch, 3, T, H, W, device=dev, dtype=dtype).mul_(2).sub_(1)
    with torch.inference_mode():
        latent = tok.encode(video)
        enc = measure(tok.encode, video, a.warmup, a.iters, dev)
        del video
        dec = measure(tok.decode, latent, a.warmup, a.iters, dev)
        if a.profile:
            profile(tok.decode, latent, 'decode', dev)
            video = torch.rand(a.batch, 3, T, H, W, device=dev, dtype=dtype).mul_(2).sub_(1)
            profile(tok.encode, video, 'encode', dev)

    full = not a.tiny
    tf_enc, tf_dec = tokenizer_tflop(T, H, W, a.batch) if full else (None, None)
    res = {'bench': 'tokenizer', 'config': 'tiny' if a.tiny else 'cv8x8x8', 'device': str(dev),
           'device_name': torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu',
           'torch': torch.__version__, 'cuda': torch.version.cuda,
           'cudnn': torch.backends.cudnn.version() if dev.type == 'cuda' else None,
           'dtype': str(dtype).replace('torch.', ''), 'input_shape': [a.batch, 3, T, H, W], 'latent_shape': list(latent.shape),
           'compile': a.compile, 'channels_last_weights': not a.no_channels_last_weights,
           'attn_max_elements': cfg.attn_max_elements, 'weights_gib': round(weights_gib, 4),
           'encode_s': round(enc['s'], 4), 'encode_min_s': round(enc['min_s'], 4), 'encode_times_s': enc['times_s'],
           'decode_s': round(dec['s'], 4), 'decode_min_s': round(dec['min_s'], 4), 'decode_times_s': dec['times_s'],
           'finite': enc['finite'] and dec['finite']}
    if dev.type == 'cuda':
        res.update(encode_peak_gib=round(enc['peak_gib'], 3), encode_peak_above_baseline_gib=round(enc['peak_above_baseline_gib'], 3),
                   decode_peak_gib=round(dec['peak_gib'], 3), decode_peak_above_baseline_gib=round(dec['peak_above_baseline_gib'], 3))
    if full:
        res.update(encode_tflop=round(tf_enc, 2), decode_tflop=round(tf_dec, 2),
                   encode_tflops_per_s=round(tf_enc / enc['s'], 1), decode_tflops_per_s=round(tf_dec / dec['s'], 1),
                   targets=TARGETS)
        if dev.type == 'cuda' and a.batch == 1 and (T, H, W) == (121, 704, 1280):
            res['meets_targets'] = (enc['s'] <= TARGETS['encode_s'] and dec['s'] <= TARGETS['decode_s']
                                    and max(enc['peak_gib'], dec['peak_gib']) < TARGETS['peak_gib'])
    print(json.dumps(res))
    return res

if __name__ == '__main__':
    main()
