"""FP8 attention and the generation forward (issue 23), on one GPU. JSON lines on stdout (and --out).

Sections (`--sections`, default all):
- kernel:   self-attention at the 7B's generation shape (batch 2 = prompt + negative prompt, 56,320 tokens, 32 heads of
            128): cuDNN bf16 SDPA against `cosmos_nb.fp8_attention.fp8_attention` (the kernel alone, and the whole function
            compiled: quantization included), errors against float32 on the first 2,048 queries, on RMS-normed random q/k
            ("plain") and on q/k/v with what trained models have ("trained-like": per-channel gains, keys sharing a common
            component, a few large value channels), keys smoothed or not.
- linears:  the block's three Linear shapes at 112,640 rows, compiled: bf16, `cosmos_nb.fp8.Float8Linear` (fast_accum off
            and on) and torchao's `Float8DynamicActivationFloat8WeightConfig(PerRow())`, time and error against bf16.
- forward:  one 7B forward (batch 1, 121×704×1280, random weights, compiled blocks): ours in bf16, with FP8 Linears, with
            FP8 Linears + FP8 attention; diffusers' `CosmosTransformer3DModel` (same config and input, compiled blocks),
            with PyTorch's default SDPA choice and with cuDNN first; output error of each FP8 variant against ours in bf16.
- quality:  generation from one seed (random 7B weights, `--quality-frames` frames, `--quality-steps` guided steps):
            bf16 reference, FP8 attention alone, FP8 attention + FP8 Linears: decoded-video PSNR and final-latent
            relative error against the reference.

    python bench/bench_fp8_attention.py [--sections kernel linears forward quality] [--out FILE]

Needs nvidia-cudnn-frontend (FP8 attention), and for their sections torchao and diffusers (carried as wheels on the device).
"""
import argparse, gc, json, math, statistics, sys, time, traceback
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cosmos_nb.dit import DiTConfig, VideoExtendDiT, dit_forward_flops
from cosmos_nb.fp8 import Float8Linear, convert_to_fp8
from cosmos_nb.fp8_attention import (E4M3_MAX, _cudnn_fp8_graph, cudnn_fp8_sdpa, fp8_attention, fp8_attention_unsupported, quantize_per_tensor)
from cosmos_nb.parallelize import compile_blocks, set_attention

SECTIONS = ('kernel', 'linears', 'forward', 'quality')
OUT = []


def emit(**row):
    line = json.dumps(row)
    print(line, flush=True)
    OUT.append(line)


def timed(fn, n=8, warmup=2):
    "Median seconds of `fn` on the GPU (CUDA events)."
    for _ in range(warmup): fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(n):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize()
        ts.append(a.elapsed_time(b) / 1e3)
    return statistics.median(ts)


def rel(a, b): return float((a.float() - b.float()).norm() / b.float().norm())


def free():
    gc.collect(); torch.cuda.empty_cache()


def bf16_sdpa(q, k, v):  # (B, S, h, d) -> (B, S, h·d), cuDNN
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION], set_priority=True):
        return F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v))).transpose(1, 2).flatten(2)


def ref_attention(q, k, v, chunk=256):  # float32 reference, in query chunks
    qt, kt, vt = (t.transpose(1, 2).float() for t in (q, k, v))
    out = [torch.softmax(qc @ kt.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1) @ vt for qc in qt.split(chunk, 2)]
    return torch.cat(out, 2).transpose(1, 2).flatten(2)


def make_qkv(B, S, H, D, kind, gen):
    def rms(x): return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype)
    q, k = (rms(torch.randn(B, S, H, D, device='cuda', generator=gen, dtype=torch.bfloat16)) for _ in range(2))
    v = torch.randn(B, S, H, D, device='cuda', generator=gen, dtype=torch.bfloat16)
    if kind == 'trained-like':
        q = (q.float() * (0.5 + 1.5 * torch.rand(H, D, device='cuda', generator=gen))).bfloat16()
        k = (k.float() * (0.5 + 1.5 * torch.rand(H, D, device='cuda', generator=gen))
             + 2 * torch.randn(H, D, device='cuda', generator=gen)).bfloat16()            # a component every key shares
        v[..., :4] *= 20                                                                # a few large value channels
    return q, k, v


def section_kernel(a, gen):
    B, S, H, D = 2, a.seq, 32, 128
    flops = 4 * B * H * S * S * D
    compiled = torch.compile(fp8_attention, fullgraph=True)
    for kind in ('plain', 'trained-like'):
        q, k, v = make_qkv(B, S, H, D, kind, gen)
        with torch.no_grad():
            ob = bf16_sdpa(q, k, v)
            sub = slice(0, 2048)
            ref = ref_attention(q[:1, sub], k[:1], v[:1])
            row = dict(section='kernel', kind=kind, shape=[B, S, H, D], bf16_s=round(timed(lambda: bf16_sdpa(q, k, v)), 5),
                       bf16_vs_fp32=rel(ob[:1, sub], ref))
            (q8, dq), (k8, dk), (v8, dv) = (quantize_per_tensor(t) for t in (q, k, v))
            row['fp8_kernel_s'] = round(timed(lambda: cudnn_fp8_sdpa(q8, k8, v8, dq, dk, dv, 1 / dv)), 5)
            built = _cudnn_fp8_graph(tuple(tuple(t.shape) for t in (q8, k8, v8)), tuple(t.stride() for t in (q8, k8, v8)), torch.cuda.current_device())
            row.update(plan=built.plan, plans=built.plan_names, plan_s=[round(t, 5) for t in built.plan_seconds])
            row['fp8_compiled_s'] = round(timed(lambda: compiled(q, k, v)), 5)
            o8 = compiled(q, k, v)
            k_other = k.transpose(1, 2).contiguous().transpose(1, 2)          # the same keys laid out (B, h, S, d), as compiled code may pass them
            row['fp8_other_key_layout_vs_fp8'] = rel(fp8_attention(q, k_other, v), fp8_attention(q, k, v))
            row.update(fp8_vs_fp32=rel(o8[:1, sub], ref), fp8_vs_bf16=rel(o8, ob),
                       fp8_unsmoothed_vs_fp32=rel(fp8_attention(q[:1], k[:1], v[:1], smooth_keys=False)[:, sub], ref))
        for n in ('bf16', 'fp8_kernel', 'fp8_compiled'): row[f'{n}_tflops'] = round(flops / row[f'{n}_s'] / 1e12, 1)
        row['speedup_compiled'] = round(row['bf16_s'] / row['fp8_compiled_s'], 3)
        emit(**row)
        del q, k, v, ob, q8, k8, v8, o8; free()


def section_linears(a, gen):
    try:
        import torchao
        from torchao.quantization import quantize_, Float8DynamicActivationFloat8WeightConfig, PerRow
    except Exception as e:
        emit(section='linears', error=f'torchao: {e!r}'[:300]); return
    M = 2 * a.seq
    for K, N in ((4096, 4096), (4096, 16384), (16384, 4096)):
        x = torch.randn(M, K, device='cuda', dtype=torch.bfloat16, generator=gen)
        lin = torch.nn.Linear(K, N, bias=False, device='cuda', dtype=torch.bfloat16).requires_grad_(False)
        ao = torch.nn.Sequential(torch.nn.Linear(K, N, bias=False, device='cuda', dtype=torch.bfloat16)).requires_grad_(False)
        ao[0].weight.copy_(lin.weight)
        quantize_(ao, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
        mods = dict(bf16=lin, ours=torch.compile(Float8Linear(lin, keep_weight=False)),
                    ours_fast_accum=torch.compile(Float8Linear(lin, keep_weight=False, fast_accum=True)), torchao=torch.compile(ao))
        with torch.no_grad():
            yb = lin(x)
            row = dict(section='linears', torchao=torchao.__version__, M=M, K=K, N=N)
            for n, m in mods.items():
                row[f'{n}_s'] = round(timed(lambda: m(x)), 5)
                row[f'{n}_tflops'] = round(2 * M * K * N / row[f'{n}_s'] / 1e12, 1)
                if n != 'bf16': row[f'{n}_err'] = rel(m(x), yb)
        emit(**row)
        del x, lin, ao, mods, yb; free()


def forward_inputs(cfg, B=1, T=16, H=88, W=160, M=512):
    g = torch.Generator('cuda').manual_seed(1)
    x = torch.randn(B, cfg.out_channels, T, H, W, device='cuda', dtype=torch.bfloat16, generator=g)
    c_noise = torch.full((B,), 0.25 * math.log(10.0), device='cuda', dtype=torch.bfloat16)
    ctx = torch.randn(B, M, cfg.crossattn_emb_channels, device='cuda', dtype=torch.bfloat16, generator=g)
    ctx[:, M // 4:] = 0
    fps = torch.full((B,), 24.0, device='cuda')
    pad = torch.zeros(B, 1, H * 8, W * 8, device='cuda', dtype=torch.bfloat16)
    cond = torch.zeros(B, 1, T, H, W, device='cuda', dtype=torch.bfloat16); cond[:, :, :1] = 1
    return x, c_noise, ctx, fps, pad, cond


def section_forward(a, gen):
    cfg = DiTConfig.predict1_7b_video2world()
    x, c_noise, ctx, fps, pad, cond = forward_inputs(cfg)
    flops = dit_forward_flops(cfg, 16, 88, 160, batch=1, text_len=512)
    torch.manual_seed(0)
    with torch.device('meta'): net = VideoExtendDiT(cfg)
    net = net.to(torch.bfloat16).to_empty(device='cuda'); net.init_weights()
    with torch.no_grad():
        for p in net.parameters(): p.add_(0.02 * torch.randn_like(p))      # no zero-initialised layer hides a path
    net = set_attention(net.eval().requires_grad_(False), 'sdpa')
    run = lambda: net(x, c_noise, ctx, fps=fps, padding_mask=pad, condition_video_input_mask=cond)
    results = {}
    compile_blocks(net, fullgraph=True)          # once: the FP8 variants below change modules and the guards recompile
    with torch.inference_mode():
        ref = run()
        for name, setup in (('ours_bf16', lambda: None), ('ours_fp8_linears', lambda: convert_to_fp8(net, keep_weight=False, fast_accum=True)),
                            ('ours_fp8_linears_fp8_attention', lambda: set_attention(net, 'fp8'))):
            setup()
            t0 = time.perf_counter(); out = run(); torch.cuda.synchronize(); first = time.perf_counter() - t0
            s = timed(run, n=3, warmup=1)
            results[name] = s
            emit(section='forward', impl=name, forward_s=round(s, 4), first_call_s=round(first, 1), tflops=round(flops / s / 1e12, 1),
                 rel_err_vs_ours_bf16=rel(out, ref), peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2))
            del out
    del net, ref; free()
    if a.no_diffusers: return results
    try:
        from diffusers import CosmosTransformer3DModel
        from cosmos_nb.diffusers_format import diffusers_config
    except Exception as e:
        emit(section='forward', impl='diffusers', error=repr(e)[:300]); return results
    torch.manual_seed(0)
    with torch.device('meta'): dm = CosmosTransformer3DModel(**diffusers_config(cfg))
    dm = dm.to(torch.bfloat16).to_empty(device='cuda')
    with torch.no_grad():
        for p in dm.parameters(): p.normal_(0, 0.02)
    dm = dm.eval().requires_grad_(False)
    for b in dm.transformer_blocks: b.compile(fullgraph=True)
    drun = lambda: dm(x, c_noise, ctx, fps=fps, condition_mask=cond, padding_mask=pad).sample
    variants = [('diffusers_cudnn_first', [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION])]
    if a.diffusers_default_sdpa: variants.insert(0, ('diffusers_default_sdpa', None))     # PyTorch's choice: FlashAttention-2 here
    for label, backends in variants:
        try:
            torch._dynamo.reset()
            for b in dm.transformer_blocks: b.compile(fullgraph=True)
            def go():
                if backends is None: return drun()
                with sdpa_kernel(backends, set_priority=True): return drun()
            with torch.inference_mode():
                t0 = time.perf_counter(); go(); torch.cuda.synchronize(); first = time.perf_counter() - t0
                s = timed(go, n=3, warmup=1)
            results[label] = s
            emit(section='forward', impl=label, forward_s=round(s, 4), first_call_s=round(first, 1), tflops=round(flops / s / 1e12, 1))
        except Exception as e:
            emit(section='forward', impl=label, error=traceback.format_exc()[-600:])
    best = min((v for k, v in results.items() if k.startswith('diffusers')), default=None)
    if best:
        emit(section='forward', summary=True, diffusers_best_s=round(best, 4),
             **{f'speedup_{k}': round(best / v, 3) for k, v in results.items() if k.startswith('ours')})
    del dm; free()
    return results


def section_quality(a, gen):
    from cosmos_nb.diffusion import DiffusionConfig, Video2WorldDiffusion
    from cosmos_nb.tokenizer import CausalVideoTokenizer, LatentNormalizer, TokenizerConfig
    cfg = DiTConfig.predict1_7b_video2world()
    torch.manual_seed(0)
    with torch.device('meta'): net = VideoExtendDiT(cfg)
    net = net.to(torch.bfloat16).to_empty(device='cuda'); net.init_weights()
    with torch.no_grad():
        for p in net.parameters(): p.add_(0.02 * torch.randn_like(p))
    net = set_attention(net.eval().requires_grad_(False), 'sdpa')
    compile_blocks(net)
    tok = CausalVideoTokenizer(TokenizerConfig.cv8x8x8())
    tok.normalizer = LatentNormalizer.identity(tok.latent_channels)
    tok = tok.to(device='cuda', dtype=torch.bfloat16).eval().requires_grad_(False)
    model = Video2WorldDiffusion(net, tok, DiffusionConfig()).to('cuda').eval()
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (1, 3, 1, 704, 1280), dtype=torch.uint8, generator=g).cuda()
    emb, neg = (0.1 * torch.randn(1, 512, cfg.crossattn_emb_channels, generator=g)).cuda(), (0.1 * torch.randn(1, 512, cfg.crossattn_emb_channels, generator=g)).cuda()
    gen_ = lambda: model.generate(frames, emb, neg, num_frames=a.quality_frames, seed=1, num_steps=a.quality_steps, return_latent=True)
    with torch.no_grad():
        ref_v, ref_l = gen_()
        ref_v, ref_l = ref_v.cpu(), ref_l.float().cpu()
        for name, setup in (('fp8_attention', lambda: set_attention(net, 'fp8')),
                            ('fp8_attention_fp8_linears', lambda: convert_to_fp8(net, keep_weight=False, fast_accum=True))):
            setup()
            v, l = gen_()
            mse = (v.cpu().float() - ref_v.float()).square().mean().item()
            emit(section='quality', weights='random', variant=name, frames=a.quality_frames, steps=a.quality_steps,
                 psnr_db=round(10 * math.log10(255 ** 2 / mse), 2) if mse > 0 else None,
                 latent_rel_err=round(rel(l.float().cpu(), ref_l), 5))
    del model, net, tok; free()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--sections', nargs='*', default=list(SECTIONS), choices=SECTIONS)
    p.add_argument('--seq', type=int, default=56320, help='tokens for the kernel and linears sections (56,320 = 121×704×1280)')
    p.add_argument('--quality-frames', type=int, default=57)
    p.add_argument('--quality-steps', type=int, default=5)
    p.add_argument('--no-diffusers', action='store_true', help='forward section: ours only')
    p.add_argument('--diffusers-default-sdpa', action='store_true', help="also time diffusers with PyTorch's own SDPA choice")
    p.add_argument('--out', default=None, help='also write the JSON lines here')
    a = p.parse_args(argv)
    if not torch.cuda.is_available(): sys.exit('bench_fp8_attention needs a CUDA GPU')
    if why := fp8_attention_unsupported('cuda'): sys.exit(why)
    emit(bench='fp8_attention', device=torch.cuda.get_device_name(), torch=torch.__version__, cudnn=torch.backends.cudnn.version(),
         cudnn_frontend=__import__('cudnn').__version__)
    gen = torch.Generator('cuda').manual_seed(0)
    for s in a.sections:
        t0 = time.perf_counter()
        try: globals()[f'section_{s}'](a, gen)
        except Exception: emit(section=s, error=traceback.format_exc()[-1200:])
        emit(section=s, seconds=round(time.perf_counter() - t0, 1))
        free()
        if a.out: Path(a.out).write_text('\n'.join(OUT) + '\n')


if __name__ == '__main__':
    main()
