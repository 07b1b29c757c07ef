"""Benchmark Video2World generation (cosmos_nb.diffusion.Video2WorldDiffusion.generate, as cosmos_nb.video2world runs it):
end-to-end seconds for one video, seconds per sampler step (one guided DiT forward: prompt + negative prompt batched),
tokenizer encode / decode seconds, and peak GPU memory, with and without offloading.

Random weights (no download): the 7B DiT and the CV8x8x8 tokenizer at their released sizes, in bf16; T5 is not run
(random 512×1024 prompt embeddings), so the numbers are DiT + tokenizer only.

GPU (the lead runs this on one H100):
    python bench/bench_video2world.py                         # 121×704×1280, 35 steps, everything resident
    python bench/bench_video2world.py --offload               # --offload_tokenizer + --offload_diffusion_transformer
    python bench/bench_video2world.py --steps 5 --frames 57   # quicker: fewer steps / frames
    python bench/bench_video2world.py --compile --fp8         # block Linears in FP8 e4m3 (cosmos_nb.fp8.convert_to_fp8)
    python bench/bench_video2world.py --compile --fp8 --fp8-compare --steps 5 --frames 57
                                      # also generate in bf16 first (same seed): PSNR of the FP8 video against it
CPU dry run:
    python bench/bench_video2world.py --tiny
Prints one JSON line (and writes it to --out if given).
"""
import argparse, json, math, sys, time
import psutil
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cosmos_nb.diffusion import DiffusionConfig, Video2WorldDiffusion
from cosmos_nb.dit import DiTConfig, VideoExtendDiT
from cosmos_nb.parallelize import compile_blocks, set_attention
from cosmos_nb.offload import swap_blocks
from cosmos_nb.runtime import expandable_cuda_segments
from cosmos_nb.fp8 import convert_to_fp8, fp8_available, fp8_layers
from cosmos_nb.tokenizer import CausalVideoTokenizer, LatentNormalizer, TokenizerConfig
from cosmos_nb.runtime import free_memory
from cosmos_nb.video2world import OffloadingTokenizer
from cosmos_nb.fp8_attention import fp8_attention_unsupported
from cosmos_nb.runtime import use_compile_cache
from cosmos_nb.video import write_video


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--tiny', action='store_true', help='tiny DiT and tokenizer, 17×32×48, on the CPU')
    p.add_argument('--model', default='7b', choices=['7b', '14b'])
    p.add_argument('--frames', type=int, default=121, help='output frames (1 + 8k, at most 121)')
    p.add_argument('--height', type=int, default=704)
    p.add_argument('--width', type=int, default=1280)
    p.add_argument('--input-frames', type=int, default=1, help='conditioning frames (1 or 9)')
    p.add_argument('--steps', type=int, default=35)
    p.add_argument('--swap-blocks', action='store_true', help='DiT block weights in pinned host memory, each copied in ahead of use (--swap_blocks)')
    p.add_argument('--cap-gib', type=float, default=None, help='cap the process at this much GPU memory for the generation (set_per_process_memory_fraction)')
    p.add_argument('--offload', action='store_true', help='tokenizer on the GPU only to encode/decode; DiT leaves before decoding')
    p.add_argument('--no-batch-guidance', action='store_true', help='two forwards per step (as upstream) instead of one of batch 2')
    p.add_argument('--compile', action='store_true', help='torch.compile every DiT block (compile time is in the first step, excluded from the median)')
    p.add_argument('--sdpa-backends', default='cudnn,flash,efficient,math', help="SDPA kernels in priority order (ParallelConfig.sdpa_backends), or 'default'")
    p.add_argument('--fp8', action='store_true', help='run the DiT block Linears in FP8 e4m3 (cosmos_nb.fp8.convert_to_fp8)')
    p.add_argument('--fp8-keep-weight', action='store_true', help='with --fp8: keep the bf16 weights beside the fp8 ones (default: drop them, inference only)')
    p.add_argument('--fp8-fast-accum', action='store_true', help='with --fp8: _scaled_mm use_fast_accum=True')
    p.add_argument('--fp8-attention', action='store_true', help='self-attention in FP8 (cosmos_nb.fp8_attention, cuDNN; --fp8_attention)')
    p.add_argument('--compile-cache', default=None, help="with --compile: keep torch.compile's caches here (cosmos_nb.runtime.use_compile_cache; 'none': PyTorch's default)")
    p.add_argument('--write-mp4', default=None, help='write the video here (cosmos_nb.video.write_video) and report process_to_mp4_s: from the process start')
    p.add_argument('--fp8-compare', action='store_true',
                   help='with --fp8: first generate the same video in bf16 (same seed; not timed) and report the PSNR of the FP8 '
                        'video against it and the relative error of the final latents (doubles the run time: use fewer --steps/--frames)')
    p.add_argument('--out', default=None, help='also write the JSON line to this file')
    return p.parse_args(argv)


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()


def main(argv=None):
    a = parse_args(argv)
    device = torch.device('cpu' if a.tiny or not torch.cuda.is_available() else 'cuda')
    dtype = torch.float32 if device.type == 'cpu' else torch.bfloat16
    if a.tiny: a.frames, a.height, a.width, a.steps = 17, 32, 48, 3
    backends = None if a.sdpa_backends == 'default' or device.type == 'cpu' else tuple(a.sdpa_backends.split(','))
    if a.tiny: cfg = DiTConfig.tiny()
    else: cfg = (DiTConfig.predict1_14b_video2world if a.model == '14b' else DiTConfig.predict1_7b_video2world)()
    torch.manual_seed(0)
    with torch.device('meta'): net = VideoExtendDiT(cfg)
    net = net.to(dtype).to_empty(device=device)                   # allocated once, in the compute dtype
    net.init_weights()
    net = set_attention(net.eval().requires_grad_(False), 'sdpa', backends)
    quality = {}
    if a.fp8_compare and not (a.fp8 or a.fp8_attention): sys.exit('--fp8-compare needs --fp8 or --fp8-attention')
    if a.fp8_compare and a.offload: sys.exit('--fp8-compare runs two generations: leave out --offload')
    if a.fp8 and not fp8_available(device): sys.exit('--fp8: this GPU has no FP8 matmuls (needs compute capability >= 8.9)')
    if a.compile:
        quality['compile_cache'] = str(use_compile_cache(a.compile_cache))
        compile_blocks(net)
    tok = CausalVideoTokenizer(TokenizerConfig.tiny() if a.tiny else TokenizerConfig.cv8x8x8())
    tok.normalizer = LatentNormalizer.identity(tok.latent_channels)
    tok = tok.to(device=device, dtype=dtype).eval().requires_grad_(False)

    swap = None
    def dit_off():
        if swap is not None: swap.offload_all()                                      # as the pipeline's --swap_blocks does
        if a.offload and device.type == 'cuda': model.to('cpu'); free_memory()   # DiT + logvar head, as the pipeline does

    times = dict(encode=0.0, decode=0.0)
    wrapped = OffloadingTokenizer(tok, device, offload=a.offload, before_decode=dit_off)
    for name in ('encode', 'decode'):
        fn = getattr(wrapped, name)
        def timed(x, _fn=fn, _name=name, **kw):
            sync(device); t = time.perf_counter(); y = _fn(x, **kw); sync(device)
            times[_name] += time.perf_counter() - t; return y
        setattr(wrapped, name, timed)
    model = Video2WorldDiffusion(net, wrapped, DiffusionConfig(batch_guidance=not a.no_batch_guidance)).to(device).eval()

    step_times, t_step = [], [0.0]
    def pre(*_): sync(device); t_step[0] = time.perf_counter()
    def post(*_): sync(device); step_times.append(time.perf_counter() - t_step[0])
    net.register_forward_pre_hook(pre); net.register_forward_hook(post)

    frames = torch.randint(0, 256, (1, 3, a.input_frames, a.height, a.width), dtype=torch.uint8)
    emb, neg = torch.randn(1, 512, cfg.crossattn_emb_channels) * 0.1, torch.randn(1, 512, cfg.crossattn_emb_channels) * 0.1
    if a.fp8 or a.fp8_attention:
        if a.fp8_compare:  # the bf16 reference from the same seed (not timed)
            ref_video, ref_latent = model.generate(frames.to(device), emb.to(device), neg.to(device), num_frames=a.frames, seed=1,
                                                   num_steps=a.steps, return_latent=True)
            ref_video, ref_latent = ref_video.cpu(), ref_latent.float().cpu()
            step_times.clear(); times.update(encode=0.0, decode=0.0)
        if a.fp8:
            convert_to_fp8(net, keep_weight=a.fp8_keep_weight, fast_accum=a.fp8_fast_accum)
            quality.update(fp8_layers=len(fp8_layers(net)), fp8_keep_weight=a.fp8_keep_weight, fp8_fast_accum=a.fp8_fast_accum)
        if a.fp8_attention:
            if why := fp8_attention_unsupported(device, cfg.head_dim): sys.exit(f'--fp8-attention: {why}')
            set_attention(net, 'fp8')
        quality['fp8_attention'] = a.fp8_attention
    if a.swap_blocks:
        if a.offload: sys.exit('--swap-blocks and --offload: use one (as the pipeline)')
        swap = swap_blocks(net)
    if device.type == 'cuda':
        expandable_cuda_segments()
        free_memory(); torch.cuda.reset_peak_memory_stats()
        if a.cap_gib: torch.cuda.set_per_process_memory_fraction(min(1.0, a.cap_gib * 2**30 / torch.cuda.get_device_properties(device).total_memory))
    sync(device)
    t0 = time.perf_counter()
    try:
        video, latent = model.generate(frames.to(device), emb.to(device), neg.to(device), num_frames=a.frames, seed=1, num_steps=a.steps,
                                       return_latent=True)
    except torch.OutOfMemoryError as e:
        res = dict(bench='video2world', status='oom', cap_gib=a.cap_gib, swap_blocks=a.swap_blocks, fp8=a.fp8, error=str(e).splitlines()[0][:240],
                   peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2))
        print(json.dumps(res)); return res
    sync(device)
    total = time.perf_counter() - t0
    if a.write_mp4:
        write_video(a.write_mp4, video[0].permute(1, 0, 2, 3).cpu(), fps=24)
        quality.update(mp4=a.write_mp4, process_to_mp4_s=round(time.time() - psutil.Process().create_time(), 2))
    if a.fp8_compare:
        mse = (video.cpu().float() - ref_video.float()).square().mean().item()
        quality.update(fp8_video_psnr_db=round(10 * math.log10(255**2 / mse), 2) if mse > 0 else float('inf'),
                       fp8_latent_rel_err=round(((latent.float().cpu() - ref_latent).norm() / ref_latent.norm()).item(), 5))
    calls_per_step = 2 if a.no_batch_guidance else 1
    per_step = [sum(step_times[i:i + calls_per_step]) for i in range(0, len(step_times), calls_per_step)]
    res = dict(bench='video2world', device=torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu', torch=torch.__version__,
               model='tiny' if a.tiny else a.model, frames=a.frames, height=a.height, width=a.width, input_frames=a.input_frames,
               steps=a.steps, dtype=str(dtype).split('.')[-1], offload=a.offload, batch_guidance=not a.no_batch_guidance,
               sdpa_backends=backends, compile=a.compile, output_shape=list(video.shape), total_s=round(total, 3),
               step_s_median=round(sorted(per_step)[len(per_step) // 2], 4), step_s_first=round(per_step[0], 4),
               total_warm_s=round(total - per_step[0] + sorted(per_step)[len(per_step) // 2], 3),   # first step (compilation) at the median
               encode_s=round(times['encode'], 3), decode_s=round(times['decode'], 3),
               peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == 'cuda' else None,
               fp8=a.fp8, swap_blocks=a.swap_blocks, cap_gib=a.cap_gib, status='ok',
               peak_reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 2) if device.type == 'cuda' else None, **quality)
    line = json.dumps(res)
    print(line)
    if a.out: Path(a.out).write_text(line + '\n')
    return res


if __name__ == '__main__':
    main()
