"Check on a GPU: LoRA adapter gradients with an FP8 base vs a bf16 base (2 blocks at 7B width), eager and compiled, with and without selective checkpointing. Prints one JSON line per case; grad_rel should be a few percent (1.0 means no gradient flowed)."
import json, sys, torch
from cosmos_nb.dit import DiTConfig, VideoExtendDiT
from cosmos_nb.parallelize import apply_activation_checkpointing, compile_blocks
from cosmos_nb.fp8 import convert_to_fp8, convert_from_fp8
from cosmos_nb.lora import apply_lora
from cosmos_nb.experiments import LoRAConfig
dev = torch.device('cuda')
def rel(a, b): return ((a - b).norm() / b.norm()).item()
res = []
for comp in (False, True):
    for ac in ("off", "save_attention"):
        torch.manual_seed(0)
        cfg = DiTConfig(num_blocks=2)
        m = VideoExtendDiT(cfg).to(dev, torch.bfloat16)
        with torch.no_grad():
            for n, p in m.named_parameters():
                if 'adaLN_modulation.2' in n: p.normal_(0, 0.02)
        m.requires_grad_(False)
        if ac != 'off': apply_activation_checkpointing(m, ac)
        apply_lora(m, LoRAConfig(enabled=True, first_nblocks=2, rank=8), dtype=torch.bfloat16)
        with torch.no_grad():
            for n, p in m.named_parameters():
                if p.requires_grad: p.normal_(0, 0.02)       # non-zero B so A gets gradients too
        if comp: compile_blocks(m, fullgraph=True)
        B, T, H, W = 1, 4, 44, 80
        x = torch.randn(B, 16, T, H, W, device=dev, dtype=torch.bfloat16); ctx = torch.randn(B, 512, 1024, device=dev, dtype=torch.bfloat16)
        t = torch.full((B,), 0.3, device=dev)
        def grads():
            out = m(x, t, ctx)
            out.float().square().mean().backward()
            g = torch.cat([p.grad.float().flatten() for p in m.parameters() if p.requires_grad]); 
            for p in m.parameters(): p.grad = None
            return out.float().detach(), g
        o_ref, g_ref = grads()
        convert_to_fp8(m)
        o8, g8 = grads()
        o8b, g8b = grads()
        r = dict(compile=comp, ac=ac, out_rel=rel(o8, o_ref), grad_rel=rel(g8, g_ref), grad_rel_2nd_call=rel(g8b, g_ref),
                 g_ref_norm=g_ref.norm().item(), g8_norm=g8.norm().item())
        print(json.dumps(r), flush=True); res.append(r)
