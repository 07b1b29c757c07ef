"""The quality cost of FP8 on a *trained* model: the demo's shipped GPU-pretrained base (cosmos_nb/assets/demo_base_tiny).

Trained weights have the activation outliers that break low-precision attention, so random weights alone do not show it
(issue 23: decoded-video PSNR >= 30 dB and final-latent relative error <= 5 % against the bf16 path from the same seed).
Every held-out clip of the demo (synthetic, seed 1234, tiny-T5 captions; exactly as `cosmos_nb.demo.run_demo` builds them)
is continued from its first `n_input` frames by the BASE model (no LoRA), with the demo's seeds (clip k: seed k), once per
variant:
    sdpa           the reference: `set_attention(net, 'sdpa')`
    fp8_attn       FP8 self-attention: `set_attention(net, 'fp8')` (cuDNN's FP8 kernel on Hopper; a float32 emulation on the CPU)
    fp8_linear     FP8 block Linears only: `convert_to_fp8(net, keep_weight=False)` (where `fp8_available`)
    fp8_attn_linear  both
Per variant against `sdpa`: PSNR of the decoded uint8 videos over the generated frames (all clips pooled, and the worst
clip), relative error of the sampler's final latent (‖Δ‖/‖ref‖, pooled and worst clip); and per variant the demo's
held-out MSE against the ground truth ([0,1] pixels, generated frames), so one sees whether FP8 changes the model's use.
The DiT runs in bf16 on CUDA (as generation does) and float32 on the CPU.

CPU (here; builds the clips from mp4s, needs torchcodec; ~1 min on 2 cores):
    python bench/bench_fp8_quality_demo.py --device cpu --save-clips bench/results/demo_heldout_clips.pt
GPU (no torchcodec needed: the clips come from the saved file):
    python bench/bench_fp8_quality_demo.py --device cuda --clips bench/results/demo_heldout_clips.pt
    add --random-weights for the same network with random weights (the same measurement, no outliers)
Prints one JSON line (and writes it to --out if given).
"""
import argparse, json, math, sys, tempfile, time, traceback
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
STUBBED = []   # modules replaced by stand-ins on this machine (see `_stand_ins`)

def _stand_ins():
    "Where torchcodec/FFmpeg or ipywidgets are missing (the GPU image), stand-ins so cosmos_nb imports: with --clips nothing is decoded."
    import types
    try: import ipywidgets
    except ImportError:
        sys.modules['ipywidgets'] = m = types.ModuleType('ipywidgets'); m.VBox = m.HBox = m.Output = object; STUBBED.append('ipywidgets')
    try: import cosmos_nb.video
    except ImportError as e:   # cosmos_nb.video.TorchcodecError
        why = (str(e).splitlines() or [type(e).__name__])[0][:200]
        class NoCodec:
            def __init__(self, *a, **k): raise RuntimeError(f'no mp4 decoder/encoder here ({why}): pass --clips FILE')
        for n in [n for n in sys.modules if n == 'torchcodec' or n.startswith('torchcodec.')]: del sys.modules[n]
        for n in ('torchcodec', 'torchcodec.decoders', 'torchcodec.encoders'):
            sys.modules[n] = m = types.ModuleType(n); m.VideoDecoder = m.VideoEncoder = NoCodec
        STUBBED.append('torchcodec')
_stand_ins()

from cosmos_nb.demo import (DEMO_SIZES, DEMO_TEXT_TOKENS, demo_config, demo_t5, find_base, frame_mse, copy_last_frame,
                            t5_fingerprint, _heldout_clips)
from cosmos_nb.data import make_synthetic_dataset
from cosmos_nb.t5 import embed_dataset
from cosmos_nb.tokenizer import make_tokenizer
from cosmos_nb.dit import VideoExtendDiT, load_dit_checkpoint
from cosmos_nb.diffusion import Video2WorldDiffusion
from cosmos_nb.parallelize import set_attention
from cosmos_nb.fp8 import convert_to_fp8, fp8_available, fp8_layers
from cosmos_nb.fp8_attention import fp8_attention_unsupported

VARIANTS = ('sdpa', 'fp8_attn', 'fp8_linear', 'fp8_attn_linear')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu', choices=['cuda', 'cpu'])
    p.add_argument('--size', default='tiny', choices=[n for n in DEMO_SIZES if n == 'tiny'], help='demo size (a base is shipped for tiny only)')
    p.add_argument('--steps', type=int, default=None, help="sampler steps per clip (default: the demo size's)")
    p.add_argument('--clips', default=None, help='held-out clips saved by --save-clips (torch file); default: build them (needs torchcodec)')
    p.add_argument('--save-clips', default=None, help='write the built held-out clips to this file (for runs without torchcodec)')
    p.add_argument('--variants', default=','.join(VARIANTS), help=f'comma-separated, from {",".join(VARIANTS)} (sdpa always runs first)')
    p.add_argument('--random-weights', action='store_true', help='the same network with random weights (seed 0) instead of the trained base')
    p.add_argument('--threads', type=int, default=2, help='torch CPU threads (default: 2)')
    p.add_argument('--out', default=None, help='also write the JSON line to this file')
    return p.parse_args(argv)


def build_clips(z, base_info) -> dict:
    "The demo's held-out clips (run_demo's step 2-3 for the held-out set): uint8 videos, padded T5 embeddings, captions."
    with tempfile.TemporaryDirectory() as tmp:
        held = Path(tmp)/'heldout'
        make_synthetic_dataset(held, n_videos=z.n_heldout, num_frames=z.post_clip_frames, size=z.video_size, seed=1234, toy_t5=False)
        tok, enc = demo_t5(Path(tmp)/'t5')
        embed_dataset(held, tok, enc, progress=False)
        fp = t5_fingerprint(tok, enc)
        clips = _heldout_clips(held, z.num_frames)
    same = all(abs(a - b) <= 1e-3 * max(1., abs(b)) for a, b in zip(fp, base_info['t5_fingerprint']))
    return dict(video=torch.stack([c['video'] for c in clips]).contiguous(), emb=torch.stack([c['emb'].float() for c in clips]).contiguous(),
                caption=[c['caption'] for c in clips], stem=[c['stem'] for c in clips], t5_fingerprint=fp, t5_matches_base=same,
                seed=1234, num_frames=z.num_frames, text_tokens=DEMO_TEXT_TOKENS)


def build_model(z, base_dir, device, random_weights=False) -> Video2WorldDiffusion:
    "The demo's base as a `Video2WorldDiffusion`: the demo config's DiT + the wavelet tokenizer with the base's mean_std.pt."
    cfg = demo_config('video2world_tiny_lora_synthetic', z, device.type)
    tok = make_tokenizer(cfg.tokenizer.kind, str(base_dir/'mean_std.pt'), device, cfg.tokenizer.dtype)
    torch.manual_seed(0)
    net = VideoExtendDiT(cfg.net)
    model = Video2WorldDiffusion(net, tok, cfg.diffusion)
    if not random_weights:
        rep = load_dit_checkpoint(net, base_dir/'model.pt', logvar=model.logvar)   # strict: raises on any key mismatch
        assert rep.ok, rep.summary()
    net.to(torch.bfloat16 if device.type == 'cuda' else torch.float32)   # the frozen base as the demo generates with it
    model.to(device).eval().requires_grad_(False)
    return model


def generate_all(model, clips, n_input, steps):
    "Each clip's continuation as `continue_clips` makes it (clip k: seed k, no negative prompt): uint8 videos and final latents."
    videos, latents = [], []
    with torch.no_grad():
        for k in range(len(clips['video'])):
            v = clips['video'][k:k + 1]                                                # 1, 3, T, H, W uint8
            out, lat = model.generate(v[:, :, :n_input], clips['emb'][k:k + 1], None, num_frames=v.shape[2], seed=k,
                                      num_steps=steps, return_latent=True)
            videos.append(out[0].cpu()); latents.append(lat[0].float().cpu())
    return videos, latents


def psnr(a, b):
    mse = (a.float() - b.float()).square().mean().item()
    return round(10 * math.log10(255**2 / mse), 2) if mse > 0 else float('inf')


def main(argv=None):
    a = parse_args(argv)
    if a.device == 'cpu': torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == 'cuda' and not torch.cuda.is_available(): sys.exit('--device cuda: no CUDA GPU here')
    z = DEMO_SIZES[a.size]
    steps = a.steps or z.steps
    base_dir, base_info = find_base(None, z, a.size)
    t0 = time.perf_counter()
    if a.clips:
        clips = torch.load(a.clips, weights_only=True)
        if clips['num_frames'] != z.num_frames or tuple(clips['video'].shape[-2:]) != z.video_size:
            sys.exit(f'{a.clips} holds {tuple(clips["video"].shape)} clips, not {z.num_frames}x{z.video_size}: rebuild it with --save-clips')
    else:
        clips = build_clips(z, base_info)
        if a.save_clips:
            Path(a.save_clips).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(a.save_clips).with_suffix('.tmp'); torch.save(clips, tmp); tmp.replace(a.save_clips)
    t_clips = time.perf_counter() - t0
    n_in, truth = z.n_input, clips['video']
    err_copy = torch.stack([frame_mse(copy_last_frame(v, n_in), v, n_in) for v in truth]).mean().item()

    variants = ['sdpa'] + [v for v in a.variants.split(',') if v and v != 'sdpa']
    if bad := [v for v in variants if v not in VARIANTS]: sys.exit(f'--variants: unknown {bad}; choose from {",".join(VARIANTS)}')
    backends = tuple(demo_config('video2world_tiny_lora_synthetic', z, a.device).parallel.sdpa_backends) if device.type == 'cuda' else None
    head_dim = z.model_channels // z.num_heads
    results, ref = {}, None
    for name in variants:
        t = time.perf_counter()
        row = dict()
        attn, linear = name in ('fp8_attn', 'fp8_attn_linear'), name in ('fp8_linear', 'fp8_attn_linear')
        try:
            if attn and (why := fp8_attention_unsupported(device, head_dim)): raise RuntimeError(why)
            if linear and not fp8_available(device): raise RuntimeError(f'{device}: no FP8 matmuls (fp8_available is False)')
            model = build_model(z, base_dir, device, a.random_weights)
            set_attention(model.net, 'fp8' if attn else 'sdpa', backends)
            if linear:
                convert_to_fp8(model.net, keep_weight=False)
                row['fp8_layers'] = len(fp8_layers(model.net))
            videos, latents = generate_all(model, clips, n_in, steps)
            del model
        except Exception as e:   # one variant failing (no kernel here) is a result, not the end of the run
            results[name] = dict(status='error', error=f'{type(e).__name__}: {str(e).splitlines()[0][:300]}' if str(e) else type(e).__name__)
            if name == 'sdpa': traceback.print_exc(); break
            continue
        row.update(status='ok', seconds=round(time.perf_counter() - t, 2),
                   heldout_mse=round(torch.stack([frame_mse(v, g, n_in) for v, g in zip(videos, truth)]).mean().item(), 6))
        if name == 'sdpa': ref = (videos, latents)
        else:
            rv, rl = ref
            gen = lambda vs: torch.stack([v[:, n_in:] for v in vs])           # the generated frames only
            rel = [((l - r).norm() / r.norm()).item() for l, r in zip(latents, rl)]
            row.update(psnr_db=psnr(gen(videos), gen(rv)), psnr_db_worst_clip=min(psnr(v[:, n_in:], r[:, n_in:]) for v, r in zip(videos, rv)),
                       latent_rel_err=round((torch.stack(latents) - torch.stack(rl)).norm().item() / torch.stack(rl).norm().item(), 5),
                       latent_rel_err_worst_clip=round(max(rel), 5),
                       videos_identical=all(torch.equal(v, r) for v, r in zip(videos, rv)))
            row['meets_target'] = row['psnr_db'] >= 30 and row['latent_rel_err'] <= 0.05
        results[name] = row

    res = dict(bench='fp8_quality_demo', device=torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu',
               torch=torch.__version__, dtype='bfloat16' if device.type == 'cuda' else 'float32',
               weights='random (seed 0)' if a.random_weights else f'trained: demo_base_{a.size} ({base_info.get("command", "")})',
               clips=len(truth), clip_shape=list(truth.shape[1:]), n_input=n_in, steps=steps, seeds=list(range(len(truth))),
               guidance='none (no negative prompt, as the demo)', clips_source=('file' if a.clips else 'built'), stand_ins=STUBBED,
               t5_matches_base=clips['t5_matches_base'], heldout_mse_copy_last=round(err_copy, 6),
               target='psnr_db >= 30 and latent_rel_err <= 0.05 vs sdpa', variants=results,
               clips_s=round(t_clips, 2), total_s=round(time.perf_counter() - t0, 2))
    line = json.dumps(res)
    print(line)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(line + '\n')
    return res


if __name__ == '__main__':
    main()
