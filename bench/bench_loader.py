"""Loader throughput: clips/s for decode + resize of `--num_frames`-frame windows to `--size` with N DataLoader workers.

Makes its own source videos (high-entropy "textured" footage at `--src_size`, or copies of `--src`), builds a `VideoDataset`
with toy T5 embeddings, and times `make_dataloader(batch_size=1)` for each worker count. Prints one JSON line.

  python bench/bench_loader.py                                  # 121 frames, 1080p sources -> 720x1280, workers 0 1 2 4 8
  python bench/bench_loader.py --src_size 720x1280              # decode only (no resize needed)
  python bench/bench_loader.py --tiny                           # a seconds-long end-to-end check
"""
import argparse, json, os, platform, shutil, tempfile, time
import torch
import torch.nn.functional as F
from cosmos_nb.data import (DatasetLayout, VideoDataset, _resize_frames, iterate_epochs, make_dataloader,
                            make_synthetic_dataset, save_t5_pickle, toy_text_embedding)
from cosmos_nb.video import read_video, video_info, write_video


def _size(s): h, w = s.lower().split("x"); return int(h), int(w)


def textured_video(num_frames, size, seed):
    "A drifting random texture: real-footage-like bitrate, unlike flat synthetic shapes."
    g = torch.Generator().manual_seed(seed)
    H, W = size
    coarse = F.interpolate(torch.rand(1, 3, H // 16 + 2, W // 16 + 2, generator=g) * 255, (H + 64, W + 64), mode="bicubic")
    fine = torch.rand(1, 3, H + 64, W + 64, generator=g) * 48 - 24
    base = (coarse + fine).clamp(0, 255).to(torch.uint8)[0]                       # 3, H+64, W+64
    return torch.stack([base[:, t % 64: t % 64 + H, (2 * t) % 64: (2 * t) % 64 + W] for t in range(num_frames)])


def make_source(root, args):
    lay = DatasetLayout(root)
    if args.src:
        lay.videos.mkdir(parents=True)
        for i in range(args.videos): shutil.copy(args.src, lay.video(f"src_{i}"))
    elif args.source == "shapes":
        make_synthetic_dataset(root, args.videos, args.src_frames, args.src_size, 24.0)
    else:
        for i in range(args.videos): write_video(lay.video(f"tex_{i}"), textured_video(args.src_frames, args.src_size, i), 24.0)
    for s in lay.stems():
        if not lay.embedding(s).exists(): save_t5_pickle(lay.embedding(s), [toy_text_embedding(f"clip {s}")])
    return lay


def breakdown(ds, n=3):
    "Single-process seconds per clip for decoding and for resizing."
    dec = rs = 0.0
    _resize_frames(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), (32, 32))   # first-call set-up out of the timing
    for i in range(n):
        stem, start = ds.locate((i * 7919) % len(ds))
        ids = list(range(start, start + ds.num_frames * ds.sequence_interval, ds.sequence_interval))
        t0 = time.perf_counter(); frames, _ = read_video(ds.layout.video(stem), frame_ids=ids)
        t1 = time.perf_counter(); _resize_frames(frames, ds.video_size)
        t2 = time.perf_counter(); dec += t1 - t0; rs += t2 - t1
    return dict(decode_s=round(dec / n, 4), resize_s=round(rs / n, 4))


def time_loader(ds, workers, clips, pin):
    dl = make_dataloader(ds, batch_size=1, num_workers=workers, pin_memory=pin, seed=0)
    it = iterate_epochs(dl)
    t0 = time.perf_counter(); next(it); first = time.perf_counter() - t0   # includes worker start-up
    t0 = time.perf_counter()
    for _ in range(clips):
        _, b = next(it)
        if pin: b["video"].to("cuda", non_blocking=True)
    if pin: torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    del it, dl
    return dict(workers=workers, clips=clips, clips_per_s=round(clips / dt, 3), s_per_clip=round(dt / clips, 4),
                first_batch_s=round(first, 3))


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"): return line.split(":", 1)[1].strip()
    except OSError: pass
    return platform.processor()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4, 8])
    p.add_argument("--clips", type=int, default=24, help="timed clips per worker count (after one warm-up batch)")
    p.add_argument("--num_frames", type=int, default=121)
    p.add_argument("--size", type=_size, default=(720, 1280), help="training size HxW")
    p.add_argument("--src_size", type=_size, default=(1080, 1920), help="source video size HxW")
    p.add_argument("--src_frames", type=int, default=150, help="frames per source video")
    p.add_argument("--videos", type=int, default=4, help="source videos")
    p.add_argument("--source", choices=["textured", "shapes"], default="textured")
    p.add_argument("--src", default=None, help="use copies of this video instead of generated ones")
    p.add_argument("--dir", default=None, help="keep the generated dataset here (default: a temp dir, deleted)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes: checks the script end to end in seconds")
    a = p.parse_args(argv)
    if a.tiny:
        a.workers, a.clips, a.num_frames, a.size, a.src_size, a.src_frames, a.videos = [0, 2], 6, 9, (64, 96), (96, 128), 16, 2
    pin = torch.cuda.is_available()
    root = a.dir or tempfile.mkdtemp(prefix="bench_loader_")
    try:
        t0 = time.perf_counter(); make_source(root, a); make_s = time.perf_counter() - t0
        ds = VideoDataset(root, num_frames=a.num_frames, video_size=a.size)
        res = dict(bench="loader", cpu=cpu_name(), cpus=os.cpu_count(), gpu=torch.cuda.get_device_name() if pin else None,
                   torch=torch.__version__, torchcodec=__import__("torchcodec").__version__,
                   num_frames=a.num_frames, size=list(a.size), src_size=list(video_info(ds.layout.video(ds.stems[0])).size), source=a.src or a.source,
                   windows=len(ds), make_source_s=round(make_s, 1), pin_memory=pin, **breakdown(ds),
                   results=[time_loader(ds, w, a.clips, pin) for w in a.workers])
        print(json.dumps(res))
    finally:
        if not a.dir: shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
