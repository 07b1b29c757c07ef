"""Benchmark the Video2World DiT (cosmos_nb.dit): forward and forward+backward time, TFLOP/s and MFU.

MFU is measured against the bf16 matmul peak this script measures on the same device (large square matmuls),
and also given against the datasheet value when the device is known. FLOPs per forward count 2 per multiply-add
of every matmul, elementwise work and softmax ignored (`dit_forward_flops`: 2.2095 PFLOP for 7B at 16×88×160
latents = 121×704×1280 video); a training step counts 3× the forward (activation recomputation is not counted,
as is usual for MFU).

GPU (the lead runs this on one H100):
    python bench/bench_dit.py                       # 7B, 1×16×16×88×160, SDPA backends cudnn>flash, eager
    python bench/bench_dit.py --compile             # torch.compile each block
    python bench/bench_dit.py --attn-sweep          # also time each SDPA backend alone at this shape
    python bench/bench_dit.py --compile --fp8 --no-backward              # FP8 block Linears (cosmos_nb.fp8), forward only
    python bench/bench_dit.py --compile --fp8 --lora 8 --ac save_attention [--fp8-backward]   # LoRA step on an FP8 base
With --fp8 the JSON also has the quality of the FP8 model on the same random inputs: `fp8_forward_rel_err`
(‖y_fp8 − y_bf16‖/‖y_bf16‖ of one full-size forward; the bf16 reference is eager, the FP8 run compiled if --compile)
and, with --lora, `fp8_lora_grad_rel_err` (the adapters' gradients of one step, FP8 base vs bf16 base).
CPU dry run:
    python bench/bench_dit.py --tiny
Prints one JSON line (and writes it to --out if given).
"""
import argparse, json, math, os, statistics, sys, time, traceback
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cosmos_nb.dit import SDPA_BACKENDS, DiTConfig, VideoExtendDiT, dit_forward_flops, dit_step_flops
from cosmos_nb.parallelize import apply_activation_checkpointing, compile_blocks, set_attention
from cosmos_nb.fp8 import convert_from_fp8, convert_to_fp8, fp8_available, fp8_layers, fp8_mm, quantize_rowwise

DATASHEET_BF16_TFLOPS = {"H100 80GB HBM3": 989.4, "H100 SXM": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.0, "H200": 989.4}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny config and latent; runs on CPU")
    p.add_argument("--model", default="7b", choices=["7b", "14b"])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--frames", type=int, default=16, help="latent frames (16 = 121 video frames)")
    p.add_argument("--height", type=int, default=88, help="latent height (88 = 704 px)")
    p.add_argument("--width", type=int, default=160, help="latent width (160 = 1280 px)")
    p.add_argument("--text-len", type=int, default=512)
    p.add_argument("--compile", action="store_true", help="torch.compile every block (compile time is excluded)")
    p.add_argument("--ac-skip", type=int, default=0, help="leave activation checkpointing off in the last N blocks (spends spare memory on speed)")
    p.add_argument("--ac", default="on", choices=["on", "off", "save_attention"],
                   help="activation checkpointing for forward+backward: on (recompute all), off, save_attention (selective: keep self-attention outputs)")
    p.add_argument("--sdpa-backends", default="cudnn,flash,efficient,math",
                   help="comma-separated priority list from cudnn,flash,efficient,math; 'default' = PyTorch's own choice")
    p.add_argument("--flash-impl", default=None, help="activate a registered flash-attention impl first (FA3 / FA4), if installed")
    p.add_argument("--no-backward", action="store_true", help="only time the forward")
    p.add_argument("--lora", type=int, default=0, metavar="RANK",
                   help="LoRA post-training step: frozen bf16 base + rank-RANK adapters on q/v of FA and CA in all blocks "
                        "(cosmos_nb.lora.apply_lora); MFU counts forward + input-gradient backward = 2x forward FLOPs")
    p.add_argument("--fp8", action="store_true",
                   help="run the block Linears (FA q/k/v/out, CA q/out, MLP) in FP8 e4m3 (cosmos_nb.fp8.convert_to_fp8); "
                        "frozen weights only: forward, or the base of a --lora step (the full-training step is skipped)")
    p.add_argument("--fp8-backward", action="store_true", help="with --fp8 --lora: input gradients in FP8 too (a 2nd fp8 weight copy)")
    p.add_argument("--fp8-fast-accum", action="store_true", help="with --fp8: _scaled_mm use_fast_accum=True in the forward")
    p.add_argument("--fp8-drop-weight", action="store_true", help="with --fp8 (forward only): keep only the fp8 weights (less memory; keep_weight=False)")
    p.add_argument("--attn-sweep", action="store_true", help="time each SDPA backend alone on the self-attention shape")
    p.add_argument("--profile", action="store_true", help="print the top CUDA kernels of one forward")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--out", default=None, help="also write the JSON line to this file")
    return p.parse_args(argv)


class Timer:
    "Wall time of a region: CUDA events on a GPU, perf_counter on the CPU."
    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.start.record()
        else: self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.end.record()
            torch.cuda.synchronize()
            self.seconds = self.start.elapsed_time(self.end) / 1e3
        else: self.seconds = time.perf_counter() - self.t0


def time_fn(fn, device, warmup, iters):
    "Median seconds of `fn()` over `iters` runs after `warmup` runs."
    for _ in range(warmup): fn()
    times = []
    for _ in range(iters):
        with Timer(device) as t: fn()
        times.append(t.seconds)
    return statistics.median(times), times


def matmul_peak(device, dtype, tiny):
    "Best bf16 matmul TFLOP/s over a few large shapes (our 'measured peak')."
    sizes = [(512, 512, 512)] if tiny else [(8192, 8192, 8192), (16384, 16384, 16384), (16384, 8192, 16384), (56320, 4096, 4096)]
    best, per = 0.0, {}
    for m, k, n in sizes:
        a, b = torch.randn(m, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype)
        sec, _ = time_fn(lambda: a @ b, device, warmup=3, iters=1 if tiny else 10)
        tf = 2 * m * k * n / sec / 1e12
        per[f"{m}x{k}x{n}"] = round(tf, 1)
        best = max(best, tf)
        del a, b
    return best, per


def rel_err(a, b):
    "‖a − b‖ / ‖b‖ in float32."
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def fp8_matmul_tflops(device, tiny):
    "bf16 matmul vs FP8 `_scaled_mm` (operands pre-quantized) vs FP8 including the per-token quantization of x (eager), on the DiT's Linear shapes."
    L = 1024 if tiny else 56320
    shapes = {"qkvo_4096x4096": (L, 4096 if not tiny else 256, 4096 if not tiny else 256),
              "mlp1_4096x16384": (L, 4096 if not tiny else 256, 16384 if not tiny else 1024),
              "mlp2_16384x4096": (L, 16384 if not tiny else 1024, 4096 if not tiny else 256)}
    res = {}
    for name, (m, k, n) in shapes.items():
        x, w = torch.randn(m, k, device=device, dtype=torch.bfloat16), torch.randn(n, k, device=device, dtype=torch.bfloat16)
        xq, xs = quantize_rowwise(x)
        wq, ws = quantize_rowwise(w)
        ws = ws.reshape(1, -1)
        it = 1 if tiny else 10
        t_bf16, _ = time_fn(lambda: x @ w.t(), device, 2, it)
        t_fp8, _ = time_fn(lambda: fp8_mm(xq, xs, wq, ws), device, 2, it)
        t_fp8q, _ = time_fn(lambda: fp8_mm(*quantize_rowwise(x), wq, ws), device, 2, it)
        f = 2 * m * k * n
        res[name] = dict(bf16_tflops=round(f / t_bf16 / 1e12, 1), fp8_tflops=round(f / t_fp8 / 1e12, 1),
                         fp8_with_eager_quant_tflops=round(f / t_fp8q / 1e12, 1))
        del x, w, xq, wq
    return res


def attention_error(backend, device, dtype, heads, head_dim, L=2048):
    "Max abs error of one backend's bf16 forward and input gradients against a float32 math-kernel reference."
    from torch.nn.attention import sdpa_kernel
    g = torch.Generator(device=device).manual_seed(0)
    q, k, v, dout = (torch.randn(1, L, heads, head_dim, device=device, generator=g) for _ in range(4))
    def run(be, dt):
        qkv = [t.detach().to(dt).requires_grad_(True) for t in (q, k, v)]  # fresh leaves
        with sdpa_kernel([be]):
            o = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in qkv))
        o.backward(dout.to(dt).transpose(1, 2))
        return [o.float()] + [t.grad.float() for t in qkv]
    ref, got = run(SDPA_BACKENDS["math"], torch.float32), run(SDPA_BACKENDS[backend], dtype)
    return dict(zip(["out", "dq", "dk", "dv"], (round((a - b).abs().max().item(), 5) for a, b in zip(got, ref))))


def attention_sweep(device, dtype, B, L, heads, head_dim, tiny):
    "Self-attention alone, [B, L, h, d] inputs as the model passes them, with each SDPA backend forced; plus its error."
    flops = 4 * B * L * L * heads * head_dim
    q, k, v = (torch.randn(B, L, heads, head_dim, device=device, dtype=dtype, requires_grad=True).transpose(1, 2) for _ in range(3))
    res = {}
    for name in ("cudnn", "flash", "efficient", "math"):
        if name == "math" and not tiny: continue  # would materialise L×L
        try:
            from torch.nn.attention import sdpa_kernel
            with sdpa_kernel([SDPA_BACKENDS[name]]):
                fwd, _ = time_fn(lambda: F.scaled_dot_product_attention(q, k, v), device, 2, 1 if tiny else 5)
                def fb():
                    F.scaled_dot_product_attention(q, k, v).sum().backward()
                fwdbwd, _ = time_fn(fb, device, 1, 1 if tiny else 3)
            res[name] = dict(fwd_ms=round(fwd * 1e3, 2), fwd_tflops=round(flops / fwd / 1e12, 1),
                             fwdbwd_ms=round(fwdbwd * 1e3, 2), fwdbwd_tflops=round(3.5 * flops / fwdbwd / 1e12, 1),
                             max_abs_err_vs_fp32=attention_error(name, device, dtype, heads, head_dim, 256 if tiny else 2048))
        except Exception as e:  # backend not available for this device / shape
            res[name] = f"unavailable: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
    return res


def main(argv=None):
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.tiny: sys.exit("no CUDA device: use --tiny for a CPU dry run")
    dtype = torch.bfloat16
    torch.manual_seed(0)
    if args.tiny:
        B, T, H, W, M, iters, warmup = 1, 4, 16, 16, 64, 2, 1
        backends = None if args.sdpa_backends == "default" else tuple(args.sdpa_backends.split(","))
        cfg = DiTConfig.tiny()
    else:
        B, T, H, W, M, iters, warmup = args.batch, args.frames, args.height, args.width, args.text_len, args.iters, args.warmup
        backends = None if args.sdpa_backends == "default" else tuple(args.sdpa_backends.split(","))
        preset = DiTConfig.predict1_7b_video2world if args.model == "7b" else DiTConfig.predict1_14b_video2world
        cfg = preset()
    result = dict(bench="dit", model="tiny" if args.tiny else args.model, device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                  torch=torch.__version__, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version() if device.type == "cuda" else None,
                  dtype="bfloat16", latent=[B, cfg.out_channels, T, H, W], text=[B, M, cfg.crossattn_emb_channels],
                  compile=args.compile, sdpa_backends=backends or "default", flash_impl=args.flash_impl)
    if args.flash_impl:
        try:
            torch.nn.attention.activate_flash_attention_impl(args.flash_impl)
            result["flash_impl_active"] = str(torch.nn.attention.current_flash_attention_impl())
        except Exception as e:
            result["flash_impl_active"] = f"failed: {type(e).__name__}: {e}"

    # 1. the measured matmul peak
    peak, per_shape = matmul_peak(device, dtype, args.tiny)
    result.update(matmul_peak_tflops=round(peak, 1), matmul_tflops_by_shape=per_shape)
    datasheet = next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in result["device"]), None)

    # 2. the model: random weights, upstream init, cast to bf16 (no checkpoint needed)
    with torch.device(device): model = VideoExtendDiT(cfg)
    model = set_attention(model.to(dtype), "sdpa", backends)
    n_params = sum(p.numel() for p in model.parameters())
    x = torch.randn(B, cfg.out_channels, T, H, W, device=device, dtype=dtype)
    c_noise = torch.full((B,), 0.25 * math.log(10.0), device=device, dtype=dtype)
    ctx = torch.randn(B, M, cfg.crossattn_emb_channels, device=device, dtype=dtype)
    ctx[:, M // 4:] = 0  # zero-padded prompt tail, as in the pipeline
    fps = torch.full((B,), 24.0, device=device)
    pad = torch.zeros(B, 1, H * 8, W * 8, device=device, dtype=dtype)
    cond = torch.zeros(B, 1, T, H, W, device=device, dtype=dtype)
    cond[:, :, :1] = 1
    run = lambda: model(x, c_noise, ctx, fps=fps, padding_mask=pad, condition_video_input_mask=cond)
    fp8_kw = dict(keep_weight=not args.fp8_drop_weight, fp8_backward=args.fp8_backward, fast_accum=args.fp8_fast_accum)
    if args.fp8:
        if args.fp8_drop_weight and args.lora: sys.exit("--fp8-drop-weight is for the forward only (the LoRA step needs the kept bf16 weights)")
        if not fp8_available(device): sys.exit(f"--fp8: {result['device']} has no FP8 matmuls (needs compute capability >= 8.9)")
        with torch.inference_mode(): ref_out = run()  # the bf16 reference (eager), one forward
        convert_to_fp8(model.requires_grad_(False), **fp8_kw)
        result.update(fp8=True, fp8_layers=len(fp8_layers(model)), fp8_options=fp8_kw,
                      fp8_weights=sum(m.weight_fp8.numel() for m in fp8_layers(model).values()))
        result["fp8_matmul"] = fp8_matmul_tflops(device, args.tiny)
    if args.compile: compile_blocks(model, fullgraph=True)  # fails loudly on a graph break inside a block
    flops = dit_forward_flops(cfg, T, H, W, batch=B, text_len=M)
    L = T // cfg.patch_temporal * (H // cfg.patch_spatial) * (W // cfg.patch_spatial)
    result.update(params=n_params, tokens=L, forward_pflop=round(flops / 1e15, 4))

    # 3. forward (inference)
    model.eval()
    if device.type == "cuda": torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = run()
        if device.type == "cuda": torch.cuda.synchronize()
        result["first_forward_s"] = round(time.perf_counter() - t0, 2)  # includes compilation with --compile
        result["output_finite"] = bool(torch.isfinite(out).all())
        assert out.shape == x.shape, (out.shape, x.shape)
        if args.fp8: result["fp8_forward_rel_err"] = round(rel_err(out, ref_out), 5); del ref_out
        del out
        fwd, fwd_all = time_fn(run, device, warmup, iters)
    tflops = flops / fwd / 1e12
    result.update(forward_ms=round(fwd * 1e3, 1), forward_ms_all=[round(t * 1e3, 1) for t in fwd_all],
                  forward_tflops=round(tflops, 1), forward_mfu=round(tflops / peak, 4),
                  forward_mfu_datasheet=round(tflops / datasheet, 4) if datasheet else None)
    if device.type == "cuda": result["forward_peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)

    if args.profile and device.type == "cuda":
        from torch.profiler import ProfilerActivity, profile
        with torch.inference_mode(), profile(activities=[ProfilerActivity.CUDA]) as prof:
            run()
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15), file=sys.stderr)

    # 4. forward + backward (training step without the optimizer)
    if args.fp8 and not args.lora and not args.no_backward:
        result["fwdbwd_skipped"] = "--fp8 keeps weights frozen: time a training step with --lora RANK"
    elif not args.no_backward:
        model.train()
        apply_activation_checkpointing(model, {"off": "none", "on": "full"}.get(args.ac, args.ac))
        for block in list(model.blocks.values())[len(model.blocks) - args.ac_skip:]: block.__dict__.pop("forward", None)  # the class's forward: not checkpointed
        result["activation_checkpointing"] = args.ac
        result["ac_skip_blocks"] = args.ac_skip
        if args.lora:
            from cosmos_nb.lora import apply_lora
            from cosmos_nb.experiments import LoRAConfig
            if args.fp8: convert_from_fp8(model)  # peft wraps nn.Linear only: adapters first, FP8 after
            apply_lora(model, LoRAConfig(enabled=True, first_nblocks=cfg.num_blocks, rank=args.lora), dtype=dtype)
            result["lora_rank"] = args.lora
            if args.fp8:
                def lora_grads():
                    model(x, c_noise, ctx, fps=fps, padding_mask=pad, condition_video_input_mask=cond).float().square().mean().backward()
                    g = torch.cat([p.grad.float().flatten() for p in model.parameters() if p.requires_grad])
                    for p in model.parameters(): p.grad = None
                    return g
                g_ref = lora_grads()  # bf16 base
                convert_to_fp8(model, **fp8_kw)
                result["fp8_lora_grad_rel_err"] = round(rel_err(lora_grads(), g_ref), 5)
                del g_ref
            result["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        def step():
            model(x, c_noise, ctx, fps=fps, padding_mask=pad, condition_video_input_mask=cond).float().square().mean().backward()
            for p in model.parameters(): p.grad = None
        try:
            if device.type == "cuda": torch.cuda.reset_peak_memory_stats()
            fb, fb_all = time_fn(step, device, warmup, iters)
            # model FLOPs of the step: 3x forward; with frozen weights (LoRA) 2x forward + attention (dit_step_flops)
            step_flops = dit_step_flops(cfg, T, H, W, batch=B, text_len=M, frozen_weights=bool(args.lora))
            useful = step_flops / flops
            tflops = step_flops / fb / 1e12
            result.update(fwdbwd_ms=round(fb * 1e3, 1), fwdbwd_ms_all=[round(t * 1e3, 1) for t in fb_all],
                          fwdbwd_flops_counted=f"{useful:.3f}x forward" + (" (2x forward + attention: input gradients only)" if args.lora else ""),
                          fwdbwd_tflops=round(tflops, 1), fwdbwd_mfu=round(tflops / peak, 4),
                          fwdbwd_hw_tflops=round((useful + (args.ac == "on")) * flops / fb / 1e12, 1) if args.ac != "save_attention" else None)
            if device.type == "cuda": result["fwdbwd_peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        except torch.OutOfMemoryError as e:
            result["fwdbwd_error"] = f"OOM: {str(e).splitlines()[0][:200]}"
            for p in model.parameters(): p.grad = None

    # 5. the attention kernels alone
    if args.attn_sweep:
        del model
        if device.type == "cuda": torch.cuda.empty_cache()
        result["attention_sweep"] = attention_sweep(device, dtype, B, L, cfg.num_heads, cfg.head_dim, args.tiny)

    line = json.dumps(result)
    print(line)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(line + "\n")
    return result


if __name__ == "__main__":
    main()
