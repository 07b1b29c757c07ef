"""Memory budgets end to end (issue 20): for each `trainer.memory_budget_gb`, the plan `cosmos_nb.memory.fit_memory_budget`
picks for the 7B LoRA recipe at 121×704×1280 (checkpointing per block, block swapping, activation offloading), run under
a per-process cap equal to the budget: s/step, peak allocated / reserved GiB, pinned host GiB, the adapters' gradients
against the plain full-checkpointing step. Also the FP8 base (weights not kept) under the smallest budget. JSON lines.

The model and inputs are bench_memory.py's (random bf16 weights with nothing zero-initialised, LoRA rank 8 on q/v of
self- and cross-attention in all 28 blocks, batch 1, latent 16×16×88×160, text 512×1024); expandable segments are on
(as the trainer sets them for swapping and offloading), so reserved memory tracks allocated memory.

    python bench/bench_memory_tiers.py                       # budgets 24,40,48,80, eager; the 80 and 24 plans compiled too
    python bench/bench_memory_tiers.py --tiny                # CPU dry run of the script
"""
import argparse, contextlib, gc, json, statistics, sys, time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import GiB, build, gpu_peaks, host_memory, make_inputs, sync
from cosmos_nb.dit import DiTConfig
from cosmos_nb.experiments import get_experiment
from cosmos_nb.fp8 import convert_to_fp8, fp8_available
from cosmos_nb.memory import describe_plan, fit_memory_budget, host_memory_gib, training_memory
from cosmos_nb.offload import offload_activations, swap_blocks
from cosmos_nb.parallelize import apply_activation_checkpointing, compile_blocks
from cosmos_nb.runtime import expandable_cuda_segments


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--tiny', action='store_true', help='tiny model on the CPU (checks the script, measures nothing)')
    p.add_argument('--budgets', default='24,40,48,80', help='comma list of memory budgets (GiB), each also the process cap')
    p.add_argument('--compiled', default='80,24', help='budgets whose plan is also run with compiled blocks')
    p.add_argument('--fp8-budget', default='24', help="comma list of budgets to run the FP8 base (bf16 weights dropped) under; '' or 0: skip")
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--iters', type=int, default=2)
    return p.parse_args(argv)


def step_loop(model, inputs, params, offload, n, device):
    times, first = [], None
    for _ in range(n):
        sync(device); t0 = time.perf_counter()
        with offload if offload is not None else contextlib.nullcontext():
            loss = model(**inputs).float().square().mean()
        loss.backward()
        sync(device); times.append(time.perf_counter() - t0)
        if first is None: first = torch.cat([p.grad.float().flatten() for p in params]).cpu()
        for p in params: p.grad = None
        del loss
    return times, first


def run(model, inputs, plan, cap, compiled, args, device, ref):
    p = plan.parallel
    res = dict(budget_gib=cap, plan=describe_plan(plan), compiled=compiled, estimate_gib=round(training_memory(plan).gpu, 2),
               estimate_budget_gib=round(training_memory(plan).budget, 2), estimate_host_gib=round(training_memory(plan).host, 2))
    params = [q for q in model.parameters() if q.requires_grad]
    swap = offload = None
    try:
        apply_activation_checkpointing(model, p.activation_checkpointing, p.save_attention_blocks)
        if compiled: compile_blocks(model)
        if p.swap_blocks: swap = swap_blocks(model, resident=p.resident_blocks)
        if p.offload_activations: offload = offload_activations(device=device)
        if device.type == 'cuda':
            gc.collect(); torch.cuda.empty_cache()
            total = torch.cuda.get_device_properties(device).total_memory
            torch.cuda.set_per_process_memory_fraction(1.0 if cap is None else min(1.0, cap * GiB / total), device)
            torch.cuda.reset_peak_memory_stats(device)
        times, first = step_loop(model, inputs, params, offload, args.warmup + args.iters, device)
        res.update(status='ok', s_per_step=round(statistics.median(times[args.warmup:] or times), 3), step_s_all=[round(t, 3) for t in times])
        if ref is not None:
            res.update(grad_rel_err=float((first - ref).norm() / ref.norm()), grad_bitwise_equal=bool(torch.equal(first, ref)))
    except torch.OutOfMemoryError as e:
        res.update(status='oom', error=str(e).splitlines()[0][:240])
        for q in params: q.grad = None
    finally:
        if device.type == 'cuda':
            res.update(gpu_peaks(device))
            torch.cuda.set_per_process_memory_fraction(1.0, device)
        res.update(host_memory())
        res['pinned_gib'] = round(((swap.host_bytes if swap else 0) + (offload.stats.max_host_bytes if offload else 0)) / GiB, 2)
        if swap is not None: res['swap_waited'] = swap.stats.waited; swap.remove()
        del offload
        apply_activation_checkpointing(model, 'full')     # also drops the compiled forwards
        gc.collect()
        if device.type == 'cuda': torch.cuda.empty_cache()
    return res


def main(argv=None):
    args = parse_args(argv)
    device = torch.device('cuda', torch.cuda.current_device()) if torch.cuda.is_available() and not args.tiny else torch.device('cpu')
    if device.type == 'cpu' and not args.tiny: sys.exit('no CUDA device: use --tiny for a CPU dry run')
    if device.type == 'cuda': expandable_cuda_segments()
    recipe = get_experiment('video2world_7b_lora_example_cosmos_nemo_assets', ['data.video_size=(704,1280)'])
    if args.tiny:
        recipe = replace(recipe, net=DiTConfig.tiny(num_blocks=4), data=replace(recipe.data, num_frames=9, video_size=(64, 64)),
                         lora=replace(recipe.lora, first_nblocks=4))
        shape = (1, 2, 8, 8, 16)
    else: shape = (1, 16, 88, 160, 512)
    cfg = recipe.net
    host = 0.8 * host_memory_gib()
    print(json.dumps(dict(bench='memory_tiers', device=torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu',
                          torch=torch.__version__, latent=[shape[0], cfg.out_channels, *shape[1:4]], host_allowed_gib=round(host, 1),
                          expandable_segments=device.type == 'cuda')), flush=True)
    t_start = time.perf_counter()
    torch.manual_seed(0)
    inputs = make_inputs(cfg, *shape, device, torch.bfloat16)
    model = build(cfg, device, torch.bfloat16, recipe.lora.rank)
    params = [q for q in model.parameters() if q.requires_grad]
    _, ref = step_loop(model, inputs, params, None, 1, device)            # the plain full-checkpointing step: the gradient reference
    budgets = [float(b) for b in args.budgets.split(',') if b]
    compiled = {float(b) for b in args.compiled.split(',') if b}
    done = {}                                                              # (plan, compiled) -> the result of a smaller budget
    for budget in budgets:
        plan = fit_memory_budget(replace(recipe, trainer=replace(recipe.trainer, memory_budget_gb=budget)), host_gib=host)
        for comp in ([False, True] if budget in compiled else [False]):
            if comp and device.type == 'cpu': continue
            key = (describe_plan(plan), comp)
            if key in done and done[key]['status'] == 'ok':                # the same plan fitted a smaller cap: a larger one changes nothing
                print(json.dumps({**done[key], 'budget_gib': budget, 'same_as_budget': done[key]['budget_gib']}), flush=True)
                continue
            done[key] = run(model, inputs, plan, None if args.tiny else budget, comp, args, device, ref)
            print(json.dumps(done[key]), flush=True)
    fp8_budgets = [float(b) for b in args.fp8_budget.split(',') if b and float(b)]
    if fp8_budgets and fp8_available(device):
        convert_to_fp8(model, keep_weight=False)
        for budget in fp8_budgets:
            plan = fit_memory_budget(replace(recipe, trainer=replace(recipe.trainer, memory_budget_gb=budget, fp8=True)), host_gib=host)
            print(json.dumps(dict(base='fp8', **run(model, inputs, plan, budget, False, args, device, ref))), flush=True)
    print(json.dumps(dict(summary=True, elapsed_s=round(time.perf_counter() - t_start, 1))), flush=True)


if __name__ == '__main__':
    main()
