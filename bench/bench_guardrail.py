"""Benchmark the optional Video2World stages (cosmos_nb.guardrail, cosmos_nb.upsampler) as the pipeline runs them, per video:
seconds and peak GPU memory of Pixtral-12B writing the prompt (greedy, 400 new tokens), LlamaGuard-7b + a LoRA adapter
judging it (greedy, 100 new tokens), the SigLIP so400m content filter on every frame, and face pixelation: upstream's
RetinaFace-ResNet50 (float32, at the frames' own 704×1280, batch 1 as upstream and batch 8) on the GPU, and the OpenCV
Haar-cascade fallback (CPU) used when RetinaFace's weights are missing.

Random weights at the released sizes (no download: the real weights are gated or 25 GB), built straight on the GPU in
bfloat16. Random models never emit EOS, so the generation numbers are upstream's worst case (all 400 / 100 tokens).
Face pixelation runs on 121 frames of 704×1280: a real portrait (Grace Hopper, from matplotlib) pasted on upstream's
warehouse clip (upstream's example, shipped in cosmos_nb/assets/media). RetinaFace has random weights (the official
architecture, 27M parameters): its time does not depend on the weights, except the NMS, whose Python loop would time
thousands of random "faces"; so the class heads are scaled down to answer about 0.5 (< upstream's 0.7) and the time is
the network, decoding and thresholding of every frame, as on a video with few faces (the boxes kept are reported).

GPU (the lead runs this on one H100):
    python bench/bench_guardrail.py                      # all four stages
    python bench/bench_guardrail.py --stages faces filter
    python bench/bench_guardrail.py --stages faces       # RetinaFace s/video (GPU) and the Haar fallback (CPU)
CPU dry run (tiny models, 9 small frames):
    python bench/bench_guardrail.py --tiny
Prints one JSON line (and writes it to --out if given).
"""
import argparse, json, os, sys, time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cosmos_nb.guardrail import (FaceDetector, GuardrailDependencyError, RetinaFace, RetinaFaceConfig, RetinaFaceFilter, SafetyClassifier, ContentFilter,
                                 blur_faces)
from cosmos_nb.runtime import free_memory

STAGES = ('pixtral', 'llamaguard', 'filter', 'faces')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--tiny', action='store_true', help='tiny models and 9 small frames, on the CPU')
    p.add_argument('--stages', nargs='*', default=list(STAGES), choices=STAGES)
    p.add_argument('--frames', type=int, default=121, help='video frames for the filter and the face pixelation')
    p.add_argument('--out', default=None, help='also write the JSON line here')
    return p.parse_args(argv)


class Timer:
    "Wall seconds and peak GPU memory (GiB) of a block."
    def __init__(self, device): self.cuda = device.type == 'cuda'
    def __enter__(self):
        if self.cuda: torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
        self.t = time.perf_counter(); return self
    def __exit__(self, *exc):
        if self.cuda: torch.cuda.synchronize()
        self.s = time.perf_counter() - self.t
        self.peak = torch.cuda.max_memory_allocated() / 2**30 if self.cuda else None


def build(make, device, dtype):
    "A model built directly on `device` in `dtype` (a 12B model never exists in fp32)."
    old = torch.get_default_dtype(); torch.set_default_dtype(dtype)
    try:
        with torch.device(device): return make().to(dtype).eval()
    finally: torch.set_default_dtype(old)


def bench_pixtral(a, device, dtype):
    from transformers import LlavaConfig, LlavaForConditionalGeneration, MistralConfig, PixtralVisionConfig
    if a.tiny: text, vision, side = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=1000), dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2), 64
    else:    text, vision, side = dict(hidden_size=5120, intermediate_size=14336, num_hidden_layers=40, num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=131072), dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16), 1024
    cfg = LlavaConfig(vision_config=PixtralVisionConfig(image_size=side, patch_size=16, **vision),
                      text_config=MistralConfig(max_position_embeddings=8192, rope_theta=1e9, **text),
                      image_token_index=10, vision_feature_layer=-1, vision_feature_select_strategy='full')
    model = build(lambda: LlavaForConditionalGeneration(cfg), device, dtype)
    h, w = (side * 9 // 16) // 16 * 16, side                              # upstream's 16:9 image, longer side 1024
    rows, cols = h // 16, w // 16
    img_ids = ([10] * cols + [12]) * rows; img_ids[-1] = 13
    ids = torch.tensor([[1, 3, *img_ids, *range(100, 160), 4]], device=device)   # BOS [INST] image + ~60 instruction tokens [/INST]
    x = dict(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=torch.randn(1, 3, h, w, device=device, dtype=dtype),
             image_sizes=torch.tensor([[h, w]], device=device))
    n_new = 8 if a.tiny else 400
    with torch.inference_mode():
        model.generate(**x, max_new_tokens=2, do_sample=False)          # warm-up
        with Timer(device) as t: out = model.generate(**x, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False)
    res = dict(pixtral_s=round(t.s, 2), pixtral_new_tokens=out.shape[1] - ids.shape[1], pixtral_prompt_tokens=ids.shape[1],
               pixtral_peak_gib=t.peak and round(t.peak, 1), pixtral_params_b=round(sum(p.numel() for p in model.parameters()) / 1e9, 2))
    del model; free_memory(); return res


def bench_llamaguard(a, device, dtype):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    size = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=1000) if a.tiny else \
           dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, vocab_size=32000)
    model = build(lambda: LlamaForCausalLM(LlamaConfig(max_position_embeddings=4096, **size)), device, dtype)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj'])).eval()
    from cosmos_nb.guardrail import aegis_prompt
    n_prompt = 64 if a.tiny else len(aegis_prompt('A robot arm picks up a red cube and places it in a bin.')) // 4   # ~4 chars per token
    ids = torch.randint(100, size['vocab_size'], (1, n_prompt), device=device)
    n_new = 8 if a.tiny else 100
    with torch.inference_mode():
        model.generate(input_ids=ids, max_new_tokens=2, do_sample=False)
        with Timer(device) as t: model.generate(input_ids=ids, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False)
    res = dict(llamaguard_s=round(t.s, 2), llamaguard_prompt_tokens=n_prompt, llamaguard_peak_gib=t.peak and round(t.peak, 1))
    del model; free_memory(); return res


def bench_filter(a, device, frames):
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel
    size = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14) if a.tiny else \
           dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, image_size=384, patch_size=14)
    enc = build(lambda: SiglipVisionModel(SiglipVisionConfig(**size)), device, torch.float32)
    proc = SiglipImageProcessor(size={'height': size['image_size'], 'width': size['image_size']}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    cf = ContentFilter(proc, enc, SafetyClassifier(size['hidden_size']).to(device).eval())
    with torch.no_grad(): cf.classifier.network['layers'][6].bias.copy_(torch.tensor([10.] + [0.] * 6))   # every frame safe: all are classified
    cf.classify(frames[:2], device)
    with Timer(device) as t: classes = cf.classify(frames, device)
    res = dict(filter_s=round(t.s, 2), filter_frames=len(classes), filter_peak_gib=t.peak and round(t.peak, 2))
    del cf, enc; free_memory(); return res


def bench_retinaface(a, device, frames):
    "Upstream's RetinaFaceFilter on the video: seconds per video at batch 1 (upstream) and 8, peak GPU memory."
    torch.manual_seed(0)
    cfg = RetinaFaceConfig(width=8, out_channel=16) if a.tiny else RetinaFaceConfig()
    net = RetinaFace(cfg).eval().to(device)
    with torch.no_grad():                       # random class heads "find" thousands of faces and time a Python NMS over them;
        for h in net.ClassHead: h.conv1x1.weight.mul_(0.01); h.conv1x1.bias.zero_()   # near 0.5 < 0.7, as a real video's few faces
    res = dict(retinaface_params_m=round(sum(p.numel() for p in net.parameters()) / 1e6, 1), retinaface_device=str(device))
    for bs in (1, 8):
        rf = RetinaFaceFilter(net, batch_size=bs)
        rf(frames[:2], device)                                             # warm-up (cuDNN autotuning, allocator)
        with Timer(device) as t: _, found = rf(frames, device)
        res.update({f'retinaface_b{bs}_s': round(t.s, 2), f'retinaface_b{bs}_s_per_frame': round(t.s / len(frames), 4),
                    f'retinaface_b{bs}_peak_gib': t.peak and round(t.peak, 2), f'retinaface_b{bs}_boxes': sum(map(len, found))})
    res.update(retinaface_frames=len(frames), retinaface_size=list(frames.shape[2:]))
    del net, rf; free_memory(); return res


def clip(a):
    "uint8 T×3×H×W: a portrait on a real (or gradient) background."
    from PIL import Image
    import matplotlib.cbook as cbook
    H, W = (176, 320) if a.tiny else (704, 1280)
    n = 9 if a.tiny else a.frames
    from cosmos_nb.video import read_video, resize_video, EXAMPLE_MEDIA
    try: bg = resize_video(read_video(EXAMPLE_MEDIA/'text2world_example.mp4', stop=n)[0], (H, W))
    except Exception as e:   # no video decoder on this machine (torchcodec/FFmpeg missing): upstream's still image, panned per frame
        print(f'clip: {type(e).__name__}: the example clip could not be decoded; using video2world_input0.jpg panned over {n} frames',
              file=sys.stderr)
        img = torch.from_numpy(np.array(Image.open(EXAMPLE_MEDIA/'video2world_input0.jpg').convert('RGB').resize((W + n, H))))
        bg = torch.stack([img[:, i:i + W] for i in range(n)]).permute(0, 3, 1, 2)
    bg = bg.permute(0, 2, 3, 1).numpy().copy()
    face = np.array(Image.open(cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)).convert('RGB').reduce(4 if a.tiny else 2))
    bg[:, 10:10 + face.shape[0], 20:20 + face.shape[1]] = face
    return torch.from_numpy(bg).permute(0, 3, 1, 2).contiguous()


def main(argv=None):
    a = parse_args(argv)
    device = torch.device('cpu' if a.tiny or not torch.cuda.is_available() else 'cuda')
    dtype = torch.float32 if device.type == 'cpu' else torch.bfloat16
    res = dict(bench='guardrail', tiny=a.tiny, device=torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu',
               torch=torch.__version__, cpus=os.cpu_count())
    video = clip(a) if {'filter', 'faces'} & set(a.stages) else None
    if 'pixtral' in a.stages: res.update(bench_pixtral(a, device, dtype))
    if 'llamaguard' in a.stages: res.update(bench_llamaguard(a, device, dtype))
    if 'filter' in a.stages: res.update(bench_filter(a, device, video))
    if 'faces' in a.stages:
        res.update(bench_retinaface(a, device, video))
        import cv2
        try:
            det = FaceDetector()
            with Timer(torch.device('cpu')) as t: _, found = blur_faces(video, det)
            res.update(haar_faces_s=round(t.s, 2), faces_frames=len(video), faces_size=list(video.shape[2:]), faces_found=sum(map(len, found)),
                       faces_frames_with_face=sum(len(b) > 0 for b in found), cv2_threads=cv2.getNumThreads())
        except GuardrailDependencyError as e: res.update(haar_error=str(e)[:300])   # e.g. OpenCV 5, which removed the Haar detectors
        res.update(cv2=cv2.__version__)
    line = json.dumps(res)
    print(line)
    if a.out: Path(a.out).write_text(line + '\n')
    return res


if __name__ == '__main__': main()
