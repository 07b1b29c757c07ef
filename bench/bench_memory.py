"""Memory tiers for the LoRA step of the 7B Video2World DiT (issue 20): plain, block swapping, and block swapping plus
activation offloading (cosmos_nb.offload), on a bf16 and an FP8 base (cosmos_nb.fp8), under per-process memory caps.

One process runs every configuration in sequence on one model per base (random weights, nothing zero-initialised, so
every adapter gets a gradient): LoRA rank 8 on q/v of self- and cross-attention in all 28 blocks, full activation
checkpointing, batch 1 at 121×704×1280 (latent 16×16×88×160, text 512×1024), eager. A cap is
`torch.cuda.set_per_process_memory_fraction(cap / device memory)`. Per configuration it prints one JSON line:
s/step (median of --iters after --warmup), peak GiB (`max_memory_allocated`, and reserved), host RSS and pinned bytes,
`status` ok / oom (an OOM is a result, not a crash), and the adapters' gradients of its first step against the plain
step of the same base (`grad_rel_err`, `grad_bitwise_equal`).

Caps are tried from small to large (the plain step: uncapped first, it is the baseline). Once a configuration has run
under some cap with peak P, a larger cap ≥ P + --headroom GiB cannot change what it does, so that line is not re-run:
it repeats the measured numbers with `derived_from` naming the cap that was measured (--measure-all runs every one).
The live-tensor peak does not depend on the cap, so a cap below a measured peak OOMs; it is still run, since it fails fast.

GPU (the lead runs this on one H100; about 8 minutes):
    python bench/bench_memory.py                                  # everything, JSON lines to stdout
    python bench/bench_memory.py --bases bf16 --modes swap+offload --caps 24    # one configuration
    python bench/bench_memory.py --fp8-keep-weight                # FP8 base that also keeps the bf16 weights (as bench_dit --fp8)
CPU dry run (tiny model, no caps):
    python bench/bench_memory.py --tiny
"""
import argparse, contextlib, gc, json, math, statistics, sys, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cosmos_nb.dit import DiTConfig, VideoExtendDiT
from cosmos_nb.experiments import LoRAConfig
from cosmos_nb.fp8 import convert_to_fp8, fp8_available, fp8_layers
from cosmos_nb.lora import apply_lora
from cosmos_nb.offload import offload_activations, swap_blocks
from cosmos_nb.parallelize import apply_activation_checkpointing

MODES = ("plain", "swap", "swap+offload")
GiB = 2**30


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny model and latent on the CPU (checks the script, measures nothing)")
    p.add_argument("--bases", default="bf16,fp8", help="comma list of bf16, fp8 (fp8 is skipped where the GPU has no FP8 matmul)")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma list of {', '.join(MODES)}")
    p.add_argument("--caps", default="24,40,48,none", help="per-process memory caps in GiB; 'none' = uncapped")
    p.add_argument("--headroom", type=float, default=4.0, help="GiB above a measured peak from which a larger cap is not re-run")
    p.add_argument("--measure-all", action="store_true", help="run every cap, even those a smaller one already answers")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--rank", type=int, default=8, help="LoRA rank")
    p.add_argument("--resident", type=int, default=0, help="blocks that stay on the GPU when swapping (the last ones)")
    p.add_argument("--prefetch", type=int, default=1, help="blocks copied in ahead of use")
    p.add_argument("--act-prefetch", type=int, default=2, help="saved activations copied back ahead of use")
    p.add_argument("--min-offload-mib", type=float, default=1.0, help="saved tensors below this stay on the GPU")
    p.add_argument("--fp8-keep-weight", action="store_true", help="FP8 base keeps the bf16 weights too (bf16 backward; more memory)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--height", type=int, default=88)
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--text-len", type=int, default=512)
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    return p.parse_args(argv)


def host_memory() -> dict:
    "This process's resident set now and at most (GiB), from /proc (None elsewhere)."
    try: status = Path("/proc/self/status").read_text()
    except OSError: return dict(host_rss_gib=None, host_rss_peak_gib=None)
    kib = {l.split(":")[0]: int(l.split()[1]) for l in status.splitlines() if l.startswith(("VmRSS", "VmHWM"))}
    return dict(host_rss_gib=round(kib["VmRSS"] / 2**20, 2), host_rss_peak_gib=round(kib["VmHWM"] / 2**20, 2))


def build(cfg: DiTConfig, device, dtype, rank: int) -> VideoExtendDiT:
    "Random-weight DiT built on meta, materialised on `device` in `dtype`; LoRA on q/v of FA and CA in every block; full checkpointing."
    with torch.device("meta"): model = VideoExtendDiT(cfg)
    model = model.to(dtype).to_empty(device=device)
    with torch.no_grad():
        model.init_weights()
        for p in model.parameters():
            if not p.any(): p.normal_(std=0.02)  # the zero-initialised adaLN gates would give the adapters zero gradients
    apply_lora(model, LoRAConfig(enabled=True, first_nblocks=cfg.num_blocks, rank=rank), dtype=dtype)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n: p.normal_(std=0.02)
    return apply_activation_checkpointing(model, "full")


def make_inputs(cfg, B, T, H, W, M, device, dtype):
    "The benchmark's fixed inputs (as bench_dit): latent, noise level, zero-padded text, fps, padding and condition masks."
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(B, cfg.out_channels, T, H, W, device=device, dtype=dtype, generator=g)
    ctx = torch.randn(B, M, cfg.crossattn_emb_channels, device=device, dtype=dtype, generator=g)
    ctx[:, M // 4:] = 0
    cond = torch.zeros(B, 1, T, H, W, device=device, dtype=dtype)
    cond[:, :, :1] = 1
    return dict(x=x, timesteps=torch.full((B,), 0.25 * math.log(10.0), device=device, dtype=dtype), crossattn_emb=ctx,
                fps=torch.full((B,), 24.0, device=device), padding_mask=torch.zeros(B, 1, H * 8, W * 8, device=device, dtype=dtype),
                condition_video_input_mask=cond)


def gpu_peaks(device) -> dict:
    "Peak allocated and reserved GPU memory since the last reset, GiB."
    return dict(peak_gib=round(torch.cuda.max_memory_allocated(device) / GiB, 2),
                peak_reserved_gib=round(torch.cuda.max_memory_reserved(device) / GiB, 2))


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize(device)


def run_config(model, inputs, mode, cap, args, device, total_bytes, ref_grads):
    "Warmup + timed LoRA steps of one configuration; a dict for the JSON line (OOM is a status)."
    res = dict(mode=mode, cap_gib=cap)
    swap = offload = None
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        if mode != "plain": swap = swap_blocks(model, resident=args.resident, prefetch=args.prefetch)
        if mode == "swap+offload":
            offload = offload_activations(min_bytes=int(args.min_offload_mib * 2**20), prefetch=args.act_prefetch, device=device)
        if device.type == "cuda":
            gc.collect(); torch.cuda.empty_cache()
            torch.cuda.set_per_process_memory_fraction(1.0 if cap is None else min(1.0, cap * GiB / total_bytes), device)
            torch.cuda.reset_peak_memory_stats(device)
        times, first = [], None
        for i in range(args.warmup + args.iters):
            sync(device)
            t0 = time.perf_counter()
            with offload if offload is not None else contextlib.nullcontext():
                loss = model(**inputs).float().square().mean()
            loss.backward()
            sync(device)
            times.append(time.perf_counter() - t0)
            if first is None: first = torch.cat([p.grad.float().flatten() for p in params]).cpu()
            for p in params: p.grad = None
            del loss
        timed = times[args.warmup:] or times
        res.update(status="ok", s_per_step=round(statistics.median(timed), 3), step_s_all=[round(t, 3) for t in times])
        if ref_grads is None: ref_grads = first
        else:
            res.update(grad_rel_err=float((first - ref_grads).norm() / ref_grads.norm()), grad_max_abs_diff=float((first - ref_grads).abs().max()),
                       grad_bitwise_equal=bool(torch.equal(first, ref_grads)))
    except torch.OutOfMemoryError as e:
        res.update(status="oom", error=str(e).splitlines()[0][:300])
        for p in params: p.grad = None
    finally:
        if device.type == "cuda": res.update(gpu_peaks(device))
        res.update(host_memory())
        res["pinned_gib"] = round(((swap.host_bytes if swap else 0) + (offload.stats.max_host_bytes if offload else 0)) / GiB, 3)
        if swap is not None:
            res["swap"] = dict(blocks=len(swap.swapped), loads=swap.stats.loads, waited=swap.stats.waited, max_loaded=swap.stats.max_loaded,
                               gib_in=round(swap.stats.bytes_in / GiB, 2))
        if offload is not None:
            s = offload.stats
            res["offload"] = dict(offloaded=s.offloaded, shared=s.shared, kept=s.kept, reloads=s.reloads, waited=s.waited,
                                  gib_out=round(s.offloaded_bytes / GiB, 2))
        if device.type == "cuda": torch.cuda.set_per_process_memory_fraction(1.0, device)
        if swap is not None: swap.remove()
        del offload
        gc.collect()
        if device.type == "cuda": torch.cuda.empty_cache()
    return res, ref_grads


def main(argv=None):
    args = parse_args(argv)
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() and not args.tiny else torch.device("cpu")
    if device.type == "cpu" and not args.tiny: sys.exit("no CUDA device: use --tiny for a CPU dry run")
    dtype = torch.bfloat16
    if args.tiny:
        cfg, (B, T, H, W, M) = DiTConfig.tiny(num_blocks=4), (1, 2, 8, 8, 16)
        caps, args.min_offload_mib = [None], 1 / 1024  # tiny tensors: offload those of 1 KiB and more, so the path runs
    else:
        cfg, (B, T, H, W, M) = DiTConfig.predict1_7b_video2world(), (1, args.frames, args.height, args.width, args.text_len)
        caps = sorted({None if c.strip().lower() == "none" else float(c) for c in args.caps.split(",")}, key=lambda c: math.inf if c is None else c)
    modes = [m.strip() for m in args.modes.split(",")]
    if bad := [m for m in modes if m not in MODES]: sys.exit(f"--modes: unknown {bad}; use {', '.join(MODES)}")
    total = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None
    head = dict(bench="memory", model="tiny" if args.tiny else "7b", device=torch.cuda.get_device_name(device) if total else "cpu",
                device_gib=round(total / GiB, 1) if total else None, torch=torch.__version__, latent=[B, cfg.out_channels, T, H, W],
                text=[B, M, cfg.crossattn_emb_channels], lora_rank=args.rank, checkpointing="full", resident=args.resident,
                prefetch=args.prefetch, act_prefetch=args.act_prefetch, min_offload_mib=args.min_offload_mib)
    lines, t_start = [], time.perf_counter()
    def emit(d):
        d = {k: v for k, v in d.items() if k not in head}  # the run's settings go once, in the first line
        line = json.dumps(d)
        print(line, flush=True)
        lines.append(line)

    print(json.dumps(dict(head, header=True)), flush=True)
    lines.append(json.dumps(dict(head, header=True)))
    torch.manual_seed(0)
    inputs = make_inputs(cfg, B, T, H, W, M, device, dtype)
    model = None
    for base in [b.strip() for b in args.bases.split(",")]:
        if base == "fp8" and not fp8_available(device):
            emit(dict(base="fp8", status="skipped", reason=f"{head['device']} has no FP8 matmul (compute capability < 8.9)"))
            continue
        if base not in ("bf16", "fp8"): sys.exit(f"--bases: unknown {base!r}; use bf16, fp8")
        t0 = time.perf_counter()
        if model is None: model = build(cfg, device, dtype, args.rank)
        if base == "fp8": convert_to_fp8(model, keep_weight=args.fp8_keep_weight)  # after LoRA: peft wraps nn.Linear only
        base_info = dict(base=base, build_s=round(time.perf_counter() - t0, 1), fp8_layers=len(fp8_layers(model)),
                         fp8_keep_weight=args.fp8_keep_weight if base == "fp8" else None,
                         block_weights_gib=round(sum(t.nbytes for t in (*model.blocks.parameters(), *model.blocks.buffers())) / GiB, 2))
        ref = None
        for mode in sorted(modes, key=lambda m: m != "plain"):  # plain first: the other modes' gradients are checked against it
            order = ([None] + [c for c in caps if c is not None]) if mode == "plain" and None in caps else caps
            measured = []  # (cap, result) of the runs that fitted
            for cap in order:
                fit = next(((c, r) for c, r in measured if (math.inf if cap is None else cap) >= r["peak_gib"] + args.headroom), None)
                if fit is not None and not args.measure_all and device.type == "cuda":
                    emit(dict(**base_info, **{**fit[1], "cap_gib": cap, "derived_from": fit[0] if fit[0] is not None else "none"}))
                    continue
                res, grads = run_config(model, inputs, mode, cap, args, device, total, ref)
                if mode == "plain" and ref is None and res["status"] == "ok": ref = grads
                if res["status"] == "ok" and "peak_gib" in res: measured.append((cap, res))
                emit(dict(**base_info, **res))
    emit(dict(summary=True, elapsed_s=round(time.perf_counter() - t_start, 1)))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as f: f.write("".join(l + "\n" for l in lines))


if __name__ == "__main__":
    main()
