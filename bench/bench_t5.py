"""T5-11B encoder time for the two prompts of a guided generation (prompt + negative prompt), random weights.

The Video2World pipeline encodes its prompts with google-t5/t5-11b's encoder (float32, as upstream) before the DiT runs;
this measures that step on its own so the generation benchmark (`bench_video2world.py`, random prompt embeddings) can add
it. The encoder is built from the release's config (24 layers, d_model 1024, 128 heads of 128, d_ff 65536) with random
weights, directly on the device; inputs are 2 × `--tokens` token ids (512 is the most the pipeline keeps).

    python3 bench/bench_t5.py              # float32 and bfloat16 on the GPU
    python3 bench/bench_t5.py --tiny       # a 2-layer, 64-wide encoder on the CPU (checks the script)
Prints one JSON line.
"""
import argparse, json, statistics, time
import torch
from transformers import T5Config, T5EncoderModel

T5_11B = dict(vocab_size=32128, d_model=1024, d_kv=128, d_ff=65536, num_layers=24, num_heads=128, feed_forward_proj="relu")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=512, help="tokens per prompt")
    p.add_argument("--prompts", type=int, default=2, help="prompts encoded in one batch (guidance: prompt + negative)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--tiny", action="store_true")
    a = p.parse_args(argv)
    dev = torch.device("cuda" if torch.cuda.is_available() and not a.tiny else "cpu")
    cfg = T5Config(**(dict(T5_11B, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4) if a.tiny else T5_11B))
    res = dict(bench="t5", device=torch.cuda.get_device_name() if dev.type == "cuda" else "cpu", torch=torch.__version__,
               prompts=a.prompts, tokens=a.tokens, results=[])
    ids = torch.randint(0, cfg.vocab_size, (a.prompts, a.tokens), device=dev)
    for dtype in (torch.float32, torch.bfloat16):
        with torch.device(dev): enc = T5EncoderModel(cfg).to(dtype).eval()
        if dev.type == "cuda": torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
        times = []
        with torch.inference_mode():
            for i in range(a.iters + 1):
                t0 = time.perf_counter()
                h = enc(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
                if dev.type == "cuda": torch.cuda.synchronize()
                if i: times.append(time.perf_counter() - t0)          # the first call is a warm-up
        res["results"].append(dict(dtype=str(dtype).split(".")[-1], params=sum(q.numel() for q in enc.parameters()),
                                   encode_s=round(statistics.median(times), 4), output=list(h.shape),
                                   finite=bool(torch.isfinite(h).all()),
                                   peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if dev.type == "cuda" else None))
        del enc, h
        if dev.type == "cuda": torch.cuda.empty_cache()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
