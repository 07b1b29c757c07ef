"""Checks of cosmos_nb.dit that do not belong in the docs: full-size key lists, an independent float64 reference,
checkpoint layouts. Parallelism, checkpointing and compile: tests/test_parallelize.py."""
import io, math, os, pickle, tempfile

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from cosmos_nb import dit
from cosmos_nb.dit import (DiTConfig, VideoExtendDiT, dit_forward_flops, dit_state_dict_for_upstream, load_dit_checkpoint,
                           naive_attention, rope_cos_sin, sdpa_attention)
from cosmos_nb.parallelize import set_attention


# ---------------------------------------------------------------------------------------------------------------
# helpers

def tiny_model(seed=0, dtype=torch.float32, attention="sdpa", backends=dit.DEFAULT_SDPA_BACKENDS, **overrides):
    "A tiny model whose every weight is random (upstream zero-inits the sub-block adaLN outputs; that would hide bugs)."
    torch.manual_seed(seed)
    m = set_attention(VideoExtendDiT(DiTConfig.tiny(**overrides)), attention, backends)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "adaLN_modulation.2" in name or "to_q.1" in name or "to_k.1" in name or "affline_norm" in name:
                p.add_(0.05 * torch.randn_like(p))
    return m.to(dtype)


def inputs(B=1, T=3, H=8, W=8, M=512, seed=1, dtype=torch.float32, n_cond=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 16, T, H, W, generator=g, dtype=dtype)
    t = 0.25 * torch.log(torch.rand(B, generator=g, dtype=dtype) * 10 + 0.1)
    ctx = torch.randn(B, M, 1024, generator=g, dtype=dtype)
    ctx[:, M // 2:] = 0  # zero-padded prompt tail, as the pipeline feeds it
    cond = torch.zeros(B, 1, T, H, W, dtype=dtype)
    cond[:, :, :n_cond] = 1
    return x, t, ctx, cond


class _Fourier(nn.Module):  # stand-in with the keys of the logvar head (`logvar.0.freqs`, `.phases`, `logvar.1.weight`)
    def __init__(self):
        super().__init__()
        self.register_buffer("freqs", torch.randn(128))
        self.register_buffer("phases", torch.rand(128))


def logvar_head(): return nn.Sequential(_Fourier(), nn.Linear(128, 1, bias=False))


# ---------------------------------------------------------------------------------------------------------------
# full-size networks on the meta device

def expected_7b_shapes():
    "Key -> shape of the official 7B Video2World model.pt, written out by hand: 571 `net.*` tensors and 3 `logvar.*`."
    D, r = 4096, 256
    sd = {"net.x_embedder.proj.1.weight": (D, 72), "net.pos_embedder.seq": (128,),
          "net.extra_pos_embedder.pos_emb_h": (120, D), "net.extra_pos_embedder.pos_emb_w": (120, D),
          "net.extra_pos_embedder.pos_emb_t": (128, D), "net.t_embedder.1.linear_1.weight": (D, D),
          "net.t_embedder.1.linear_2.weight": (3 * D, D), "net.final_layer.linear.weight": (64, D),
          "net.final_layer.adaLN_modulation.1.weight": (r, D), "net.final_layer.adaLN_modulation.2.weight": (2 * D, r),
          "net.affline_norm.weight": (D,)}
    for i in range(28):
        p = f"net.blocks.block{i}.blocks."
        for j, ctx in ((0, D), (1, 1024)):
            a = f"{p}{j}.block.attn."
            sd.update({a + "to_q.0.weight": (D, D), a + "to_q.1.weight": (128,), a + "to_k.0.weight": (D, ctx),
                       a + "to_k.1.weight": (128,), a + "to_v.0.weight": (D, ctx), a + "to_out.0.weight": (D, D)})
        sd.update({f"{p}2.block.layer1.weight": (4 * D, D), f"{p}2.block.layer2.weight": (D, 4 * D)})
        for j in range(3): sd.update({f"{p}{j}.adaLN_modulation.1.weight": (r, D), f"{p}{j}.adaLN_modulation.2.weight": (3 * D, r)})
    sd.update({"logvar.0.freqs": (128,), "logvar.0.phases": (128,), "logvar.1.weight": (1, 128)})
    return sd


def test_7b_param_count_and_keys():
    with torch.device("meta"): m = VideoExtendDiT(DiTConfig.predict1_7b_video2world())
    assert sum(p.numel() for p in m.parameters()) == 7_236_208_640
    got = {k: tuple(v.shape) for k, v in dit_state_dict_for_upstream(m, logvar_head().to("meta")).items()}
    want = expected_7b_shapes()
    assert len(want) == 571 + 3
    assert got == want
    assert not any("_extra_state" in k or k.endswith(".bias") for k in got)


def test_14b_param_count():
    with torch.device("meta"): m = VideoExtendDiT(DiTConfig.predict1_14b_video2world())
    assert sum(p.numel() for p in m.parameters()) == 14_267_169_792


def test_flops_match_the_count_by_hand():
    assert dit_forward_flops(DiTConfig.predict1_7b_video2world(), 16, 88, 160) == 2_209_463_488_479_232
    assert round(dit_forward_flops(DiTConfig.predict1_14b_video2world(), 16, 88, 160) / 1e15, 3) == 3.849


# ---------------------------------------------------------------------------------------------------------------
# an independent float64 reference of upstream's forward pass (GeneralDIT + VideoExtendGeneralDIT), written with explicit indices

def reference_forward(m, x, t, ctx, fps, pad_latent, cond):
    "Upstream's forward step by step in float64 with naive attention; `pad_latent` is the padding mask already at latent size."
    c = m.config
    P = {k: v.double() for k, v in m.state_dict().items()}
    D, h, d = c.model_channels, c.num_heads, c.head_dim
    B, C, T, H, W = x.shape
    Hp, Wp, L = H // 2, W // 2, T * (H // 2) * (W // 2)
    inp = torch.cat([x, cond, pad_latent[:, :, None].expand(B, 1, T, H, W)], 1).double()  # B, 18, T, H, W
    tok = torch.zeros(B, T, Hp, Wp, inp.shape[1] * 4, dtype=torch.float64)
    for ch in range(inp.shape[1]):
        for mm in range(2):
            for n in range(2): tok[..., 4 * ch + 2 * mm + n] = inp[:, ch, :, mm::2, n::2]  # channel-major 4c+2m+n
    hs = tok.reshape(B, L, -1) @ P["x_embedder.proj.1.weight"].T  # B, L, D
    # RoPE angles: [t(dim_t/2), h(dim_h/2), w(dim_w/2)] twice, NTK theta = 1e4·ratio^(dim/(dim-2))
    dh = d // 6 * 2
    dt = d - 2 * dh
    def freqs(dim, ratio): return (1e4 * ratio ** (dim / (dim - 2))) ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    ft, fh, fw = freqs(dt, c.rope_t_extrapolation_ratio), freqs(dh, c.rope_h_extrapolation_ratio), freqs(dh, c.rope_w_extrapolation_ratio)
    ang = torch.zeros(L, d, dtype=torch.float64)
    for ti in range(T):
        for hi in range(Hp):
            for wi in range(Wp):
                a = torch.cat([ti * 24 / fps * ft, hi * fh, wi * fw])
                ang[(ti * Hp + hi) * Wp + wi] = torch.cat([a, a])
    def rope(v):  # v: B, L, h, d;  out[i] = v[i]cos − v[i+d/2]sin, out[i+d/2] = v[i+d/2]cos + v[i]sin
        cos, sin, half = ang.cos()[None, :, None], ang.sin()[None, :, None], d // 2
        out = v * cos
        out[..., :half] -= v[..., half:] * sin[..., :half]
        out[..., half:] += v[..., :half] * sin[..., half:]
        return out
    # timestep: sinusoid [cos, sin], adaLN-LoRA MLP, RMSNorm conditioning
    half = D // 2
    arg = t.double()[:, None] * torch.exp(-math.log(1e4) * torch.arange(half, dtype=torch.float64) / half)[None]
    sinus = torch.cat([arg.cos(), arg.sin()], -1)  # B, D
    lora = F.silu(sinus @ P["t_embedder.1.linear_1.weight"].T) @ P["t_embedder.1.linear_2.weight"].T  # B, 3D
    emb = sinus / torch.sqrt(sinus.pow(2).mean(-1, keepdim=True) + 1e-6) * P["affline_norm.weight"]
    # learnable absolute position embedding, e / (eps + |e|/sqrt(D))
    e = torch.zeros(L, D, dtype=torch.float64)
    for ti in range(T):
        for hi in range(Hp):
            for wi in range(Wp):
                e[(ti * Hp + hi) * Wp + wi] = P["extra_pos_embedder.pos_emb_t"][ti] + P["extra_pos_embedder.pos_emb_h"][hi] + P["extra_pos_embedder.pos_emb_w"][wi]
    e = e / (1e-6 + e.norm(dim=-1, keepdim=True) / math.sqrt(D))
    def ln(v): return (v - v.mean(-1, keepdim=True)) / torch.sqrt(v.var(-1, unbiased=False, keepdim=True) + 1e-6)
    def rms(v, w): return v / torch.sqrt(v.pow(2).mean(-1, keepdim=True) + 1e-6) * w
    def attn(q, k, v):  # B, S, h, d -> B, S, h·d
        w = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d)
        return torch.einsum("bhqk,bkhd->bqhd", w.softmax(-1), v).reshape(B, q.shape[1], h * d)
    ctx = ctx.double()
    for i in range(c.num_blocks):
        hs = hs + e
        for j, kind in enumerate(("fa", "ca", "mlp")):
            p = f"blocks.block{i}.blocks.{j}."
            mod = F.silu(emb) @ P[p + "adaLN_modulation.1.weight"].T @ P[p + "adaLN_modulation.2.weight"].T + lora
            shift, scale, gate = (mod[:, None, k * D:(k + 1) * D] for k in range(3))
            n = ln(hs) * (1 + scale) + shift
            if kind == "mlp":
                out = F.gelu(n @ P[p + "block.layer1.weight"].T) @ P[p + "block.layer2.weight"].T
            else:
                a = p + "block.attn."
                src = n if kind == "fa" else ctx
                q = rms((n @ P[a + "to_q.0.weight"].T).reshape(B, L, h, d), P[a + "to_q.1.weight"])
                k = rms((src @ P[a + "to_k.0.weight"].T).reshape(B, src.shape[1], h, d), P[a + "to_k.1.weight"])
                v = (src @ P[a + "to_v.0.weight"].T).reshape(B, src.shape[1], h, d)
                if kind == "fa": q, k = rope(q), rope(k)
                out = attn(q, k, v) @ P[a + "to_out.0.weight"].T
            hs = hs + gate * out
    mod = F.silu(emb) @ P["final_layer.adaLN_modulation.1.weight"].T @ P["final_layer.adaLN_modulation.2.weight"].T + lora[:, :2 * D]
    shift, scale = mod[:, None, :D], mod[:, None, D:]  # no gate
    y = (ln(hs) * (1 + scale) + shift) @ P["final_layer.linear.weight"].T  # B, L, 64
    out = torch.zeros(B, c.out_channels, T, H, W, dtype=torch.float64)
    y = y.reshape(B, T, Hp, Wp, -1)
    for p1 in range(2):
        for p2 in range(2):
            for ch in range(c.out_channels): out[:, ch, :, p1::2, p2::2] = y[..., (p1 * 2 + p2) * c.out_channels + ch]  # channel-minor
    return out


@pytest.mark.parametrize("attn_impl", ["sdpa", "naive"])
def test_float64_reference_equals_model(attn_impl):
    m = tiny_model(attention=attn_impl).double()
    x, t, ctx, cond = inputs(B=2, T=3, H=6, W=8, M=16)
    pad = torch.zeros(2, 1, 6, 8)
    pad[1, :, :, 5:] = 1
    with torch.no_grad():
        got = m(x.double(), t.double(), ctx.double(), fps=torch.tensor([30.0, 30.0]), padding_mask=pad.double(), condition_video_input_mask=cond.double())
    want = reference_forward(m, x, t, ctx, 30.0, pad, cond)
    assert got.dtype == torch.float64 and got.shape == x.shape
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_sdpa_equals_naive_attention_float64():
    q, k, v = torch.randn(3, 2, 40, 4, 32, dtype=torch.float64)
    torch.testing.assert_close(sdpa_attention(q, k, v), naive_attention(q, k, v), rtol=1e-10, atol=1e-10)
    ref = torch.einsum("bqhk,bkhd->bqhd", torch.einsum("bqhd,bkhd->bqhk", q, k).div(math.sqrt(32)).softmax(-1), v).flatten(2)
    torch.testing.assert_close(sdpa_attention(q, k, v), ref, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------------------------
# behaviour

def test_tiny_forward_backward_cpu():
    m = tiny_model()
    x, t, ctx, cond = inputs()
    x.requires_grad_(True)
    out = m(x, t, ctx, fps=24, condition_video_input_mask=cond)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_rope_only_on_self_attention_q_and_k(monkeypatch):
    m = tiny_model()
    outs = {}  # id(tensor) -> "fa.q" / "ca.k" / ...
    for name, mod in m.named_modules():
        if isinstance(mod, dit.Attention):
            kind = "fa" if mod.is_selfattn else "ca"
            for proj in ("q", "k", "v"):
                getattr(mod, f"to_{proj}")[1].register_forward_hook(lambda _m, _i, o, tag=f"{kind}.{proj}": outs.__setitem__(id(o), tag))
    seen, real = [], dit.apply_rotary_pos_emb
    def spy(x, cos, sin):
        seen.append(outs.get(id(x), "other"))
        return real(x, cos, sin)
    monkeypatch.setattr(dit, "apply_rotary_pos_emb", spy)
    x, t, ctx, cond = inputs()
    with torch.no_grad(): m(x, t, ctx, fps=24, condition_video_input_mask=cond)
    assert seen == ["fa.q", "fa.k"] * m.config.num_blocks


def test_rope_changes_self_attention_but_not_cross_attention():
    "Cross-attention output does not depend on RoPE; self-attention output does."
    m = tiny_model()
    fa, ca = m.blocks["block0"].blocks[0].block.attn, m.blocks["block0"].blocks[1].block.attn
    xx, ctx = torch.randn(1, 48, 64), torch.randn(1, 7, 1024)
    r1, r2 = (rope_cos_sin(m.pos_embedder(3, 4, 4, f)) for f in (24, 6))
    with torch.no_grad():
        assert not torch.allclose(fa(xx, rope=r1), fa(xx, rope=r2))
        torch.testing.assert_close(ca(xx, ctx), ca(xx, ctx, rope=r1))


@pytest.mark.parametrize("shape", [(1, 16, 1, 2, 2), (2, 16, 1, 8, 12), (1, 16, 5, 6, 4), (3, 16, 2, 10, 8)])
def test_output_shape_variable_resolution(shape):
    m = tiny_model()
    B, _, T, H, W = shape
    with torch.no_grad():
        out = m(torch.randn(shape), torch.zeros(B), torch.randn(B, 8, 1024), fps=torch.full((B,), 24.0))
    assert out.shape == shape


def test_resolution_limits_and_bad_inputs():
    m = tiny_model(max_img_h=16, max_img_w=16, max_frames=4)
    t, ctx = torch.zeros(1), torch.randn(1, 8, 1024)
    m(torch.randn(1, 16, 4, 16, 16), t, ctx, fps=24)  # exactly the table size works
    with pytest.raises(ValueError, match="exceeds"): m(torch.randn(1, 16, 5, 8, 8), t, ctx, fps=24)
    with pytest.raises(ValueError, match="exceeds"): m(torch.randn(1, 16, 1, 18, 8), t, ctx)
    with pytest.raises(ValueError, match="divisible"): m(torch.randn(1, 16, 1, 7, 8), t, ctx)
    with pytest.raises(ValueError, match="16 latent channels"): m(torch.randn(1, 17, 1, 8, 8), t, ctx)
    with pytest.raises(ValueError, match="timesteps"): m(torch.randn(2, 16, 1, 8, 8), torch.zeros(3), torch.randn(2, 8, 1024))
    with pytest.raises(ValueError, match="masks do not fit"):
        m(torch.randn(1, 16, 2, 8, 8), t, ctx, fps=24, condition_video_input_mask=torch.zeros(1, 1, 3, 8, 8))
    with pytest.raises(ValueError, match="fps differs"):
        m(torch.randn(2, 16, 2, 8, 8), torch.zeros(2), torch.randn(2, 8, 1024), fps=torch.tensor([24.0, 30.0]))


def test_text_context_changes_output_and_padding_tokens_count():
    m = tiny_model()
    x, t, ctx, cond = inputs(M=16)
    with torch.no_grad():
        base = m(x, t, ctx, fps=24, condition_video_input_mask=cond)
        other = ctx.clone()
        other[:, 0] += 1
        assert not torch.allclose(base, m(x, t, other, fps=24, condition_video_input_mask=cond))
        # no cross-attention mask: extra zero tokens change the softmax, so the output
        longer = torch.cat([ctx, torch.zeros(1, 16, 1024)], 1)
        assert not torch.allclose(base, m(x, t, longer, fps=24, condition_video_input_mask=cond))
        # the batch dimension of the text is per sample
        x2, t2, ctx2 = x.expand(2, -1, -1, -1, -1), t.expand(2), torch.cat([ctx, other])
        both = m(x2, t2, ctx2, fps=24, condition_video_input_mask=cond.expand(2, -1, -1, -1, -1))
        torch.testing.assert_close(both[:1], base, rtol=1e-4, atol=1e-5)


def test_masks():
    m = tiny_model()
    x, t, ctx, cond = inputs(T=3, H=8, W=8, M=16)
    with torch.no_grad():
        none = m(x, t, ctx, fps=24)
        zeros = m(x, t, ctx, fps=24, padding_mask=torch.zeros(1, 1, 64, 64), condition_video_input_mask=torch.zeros(1, 1, 3, 8, 8))
        torch.testing.assert_close(none, zeros)
        with_cond = m(x, t, ctx, fps=24, condition_video_input_mask=cond)
        assert not torch.allclose(none, with_cond)
        # the padding mask is resized nearest (torchvision NEAREST) from pixels to the latent size
        pix = torch.zeros(1, 1, 64, 64)
        pix[..., :, 40:] = 1
        lat = torch.zeros(1, 1, 8, 8)
        lat[..., :, 5:] = 1
        a = m(x, t, ctx, fps=24, padding_mask=pix, condition_video_input_mask=cond)
        torch.testing.assert_close(a, m(x, t, ctx, fps=24, padding_mask=lat, condition_video_input_mask=cond))
        torch.testing.assert_close(a, m(x, t, ctx, fps=24, padding_mask=pix[:, 0], condition_video_input_mask=cond))  # B×H×W works too
        assert not torch.allclose(a, with_cond)
        # a (B,1,T,1,1) indicator broadcasts to the full mask
        torch.testing.assert_close(with_cond, m(x, t, ctx, fps=24, condition_video_input_mask=cond[..., :1, :1]))


def test_fps_scales_time_only():
    m = tiny_model()
    x, t, ctx, cond = inputs(T=3, M=16)
    img = x[:, :, :1]
    with torch.no_grad():
        assert not torch.allclose(m(x, t, ctx, fps=24), m(x, t, ctx, fps=12))
        torch.testing.assert_close(m(img, t, ctx, fps=24), m(img, t, ctx, fps=12))  # one frame: position 0 either way
        torch.testing.assert_close(m(x, t, ctx), m(x, t, ctx, fps=24))  # None means base fps
    a = m.pos_embedder(3, 2, 2, torch.tensor([12.0]))
    b = m.pos_embedder(3, 2, 2, 24)
    d, half_t = a.shape[1], m.pos_embedder.dim_t // 2
    is_t = torch.zeros(d, dtype=torch.bool)
    is_t[:half_t] = is_t[d // 2:d // 2 + half_t] = True  # layout [t, h, w] twice
    torch.testing.assert_close(a[:, is_t], 2 * b[:, is_t])
    torch.testing.assert_close(a[:, ~is_t], b[:, ~is_t])


def test_timestep_broadcast_and_effect():
    m = tiny_model()
    x, _, ctx, cond = inputs(B=2, M=16)
    ctx = ctx[:1].expand(2, -1, -1)
    with torch.no_grad():
        one = m(x, torch.tensor(0.3), ctx, fps=24)
        torch.testing.assert_close(one, m(x, torch.tensor([0.3, 0.3]), ctx, fps=24))
        assert not torch.allclose(one, m(x, torch.tensor([0.3, -1.0]), ctx, fps=24))


def test_bf16_close_to_fp32():
    m = tiny_model()
    x, t, ctx, cond = inputs(M=16)
    with torch.no_grad():
        ref = m(x, t, ctx, fps=24, condition_video_input_mask=cond)
        m16 = m.to(torch.bfloat16)
        out = m16(x, t, ctx, fps=24, condition_video_input_mask=cond)  # fp32 inputs are cast to the weights' dtype
    assert out.dtype == torch.bfloat16 and m16.pos_embedder.seq.dtype == torch.bfloat16  # upstream's bf16 RoPE table
    assert (out.float() - ref).norm() / ref.norm() < 0.05
    out2 = m16(x, t, ctx, fps=24, condition_video_input_mask=cond)
    out2.float().square().mean().backward()
    assert all(p.grad.dtype == torch.bfloat16 for p in m16.parameters())


def test_peft_can_target_the_upstream_lora_layers():
    peft = pytest.importorskip("peft")
    m = tiny_model()
    x, t, ctx, cond = inputs(M=16)
    with torch.no_grad(): ref = m(x, t, ctx, fps=24)
    pm = peft.get_peft_model(m, peft.LoraConfig(r=4, lora_alpha=4, target_modules=["to_q.0", "to_v.0"], init_lora_weights=True))
    n_lora = sum(p.numel() for n, p in pm.named_parameters() if "lora_" in n)
    assert n_lora == m.config.num_blocks * 4 * (64 + 64 + 64 + 64 + 64 + 64 + 1024 + 64)  # FA q, FA v, CA q, CA v (1024 in)
    with torch.no_grad(): torch.testing.assert_close(pm(x, t, ctx, fps=24), ref)  # B = 0 at init


# ---------------------------------------------------------------------------------------------------------------
# checkpoints

def _upstream_file(tmp, sd, **kw):
    path = os.path.join(tmp, "model.pt")
    torch.save(sd, path, **kw)
    return path


def test_load_released_layout_roundtrip(tmp_path):
    src, head = tiny_model(seed=3), logvar_head()
    sd = dit_state_dict_for_upstream(src, head)
    assert all(k.startswith(("net.", "logvar.")) for k in sd) and "net.pos_embedder.seq" in sd
    dst, dst_head = tiny_model(seed=4), logvar_head()
    rep = load_dit_checkpoint(dst, _upstream_file(tmp_path, sd), logvar=dst_head)
    assert rep.ok and len(rep.loaded) == len(src.state_dict()) and not rep.dropped
    for k, v in src.state_dict().items(): torch.testing.assert_close(dst.state_dict()[k], v, rtol=0, atol=0)
    torch.testing.assert_close(dst_head[0].freqs, head[0].freqs, rtol=0, atol=0)
    assert set(rep.logvar) == {"0.freqs", "0.phases", "1.weight"}


def test_load_trainer_layouts_drop_extra_state_and_ema(tmp_path):
    src = tiny_model(seed=3)
    sd = dit_state_dict_for_upstream(src, logvar_head())
    te = io.BytesIO()
    torch.save(None, te)  # what TE 1.12 DotProductAttention.get_extra_state() returns
    for i in range(src.config.num_blocks):
        for j in (0, 1): sd[f"net.blocks.block{i}.blocks.{j}.block.attn.attn_op._extra_state"] = io.BytesIO(te.getvalue())
    sd["net.affline_norm._extra_state"] = torch.zeros(4, dtype=torch.uint8)  # TE >= 2 RMSNorm extra state
    q = "net.blocks.block0.blocks.0.block.attn.to_q.0.weight"
    ema = {q.replace(".", "-"): torch.full_like(sd[q], 0.5)}  # PEFT-style EMA keys use '-'
    path = _upstream_file(tmp_path, {"model": sd, "ema": ema, "trained_data_record": {"iteration": 3}})
    dst = tiny_model(seed=4)
    rep = load_dit_checkpoint(dst, path)
    assert rep.ok and len(rep.dropped) == 2 * src.config.num_blocks + 1
    torch.testing.assert_close(dst.state_dict()[q[4:]], sd[q])
    rep = load_dit_checkpoint(dst, path, use_ema=True)
    assert rep.used_ema and (dst.state_dict()[q[4:]] == 0.5).all()
    with pytest.raises(ValueError, match="no 'ema'"):
        load_dit_checkpoint(dst, _upstream_file(tmp_path, {"model": sd, "ema": None}), use_ema=True)


def test_load_reports_keys_by_name(tmp_path):
    sd = dit_state_dict_for_upstream(tiny_model(seed=3))
    sd["net.blocks.block0.blocks.0.block.attn.to_q_lora.net.0.weight"] = torch.zeros(8, 64)  # an upstream LoRA key
    del sd["net.final_layer.linear.weight"]
    path = _upstream_file(tmp_path, sd)
    t2w = tiny_model(in_channels=16)  # Text2World-style patch embed: 17·4 = 68 inputs instead of 72
    with pytest.raises(ValueError) as e: load_dit_checkpoint(t2w, path)
    msg = str(e.value)
    assert "final_layer.linear.weight" in msg and "to_q_lora.net.0.weight" in msg
    assert "x_embedder.proj.1.weight (64, 72) vs (64, 68)" in msg and "in_channels" in msg
    m = tiny_model(seed=5)
    before = m.state_dict()["final_layer.linear.weight"].clone()
    rep = load_dit_checkpoint(m, path, strict=False)
    assert rep.missing == ["final_layer.linear.weight"] and rep.unexpected == ["net.blocks.block0.blocks.0.block.attn.to_q_lora.net.0.weight"]
    torch.testing.assert_close(m.state_dict()["final_layer.linear.weight"], before)  # untouched
    torch.testing.assert_close(m.state_dict()["affline_norm.weight"], sd["net.affline_norm.weight"])
    with pytest.raises(ValueError, match="logvar.0.freqs"): load_dit_checkpoint(tiny_model(), {k: v for k, v in sd.items() if "lora" not in k}
                                                                                | {"net.final_layer.linear.weight": torch.zeros(64, 64)}, logvar=logvar_head())
    with pytest.raises(FileNotFoundError, match="does not exist"): load_dit_checkpoint(m, tmp_path / "nope.pt")


def test_load_is_weights_only(tmp_path):
    class Evil:
        def __reduce__(self): return (os.system, ("echo pwned",))
    path = tmp_path / "evil.pt"
    torch.save({"net.affline_norm.weight": torch.ones(64), "evil": Evil()}, path)
    with pytest.raises(pickle.UnpicklingError): load_dit_checkpoint(tiny_model(), path)


def test_load_other_layouts(tmp_path):
    src = tiny_model(seed=3)
    # our own state_dict (no prefix), saved in the legacy (non-zip, not mmappable) format
    path = _upstream_file(tmp_path, src.state_dict(), _use_new_zipfile_serialization=False)
    dst = tiny_model(seed=4)
    assert load_dit_checkpoint(dst, path).ok
    torch.testing.assert_close(dst.state_dict()["x_embedder.proj.1.weight"], src.state_dict()["x_embedder.proj.1.weight"])
    # a model built on meta is filled by assignment
    with torch.device("meta"): meta = VideoExtendDiT(DiTConfig.tiny())
    rep = load_dit_checkpoint(meta, dit_state_dict_for_upstream(src))
    assert rep.ok and not any(t.is_meta for t in meta.state_dict().values())
    x, t, ctx, cond = inputs(M=16)
    with torch.no_grad(): torch.testing.assert_close(meta(x, t, ctx, fps=24), src(x, t, ctx, fps=24))
    # keys of a whole-model torch.compile wrapper are understood
    rep = load_dit_checkpoint(tiny_model(), {f"_orig_mod.{k}": v for k, v in src.state_dict().items()})
    assert rep.ok


# ---------------------------------------------------------------------------------------------------------------
# on the device (deselected by default; run with -m gpu)

@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cudnn", "flash", "efficient"])
def test_gpu_bf16_backends_match_float64_reference(backend):
    m = tiny_model()
    x, t, ctx, cond = inputs(B=2, T=3, H=16, W=16, M=64)
    pad = torch.zeros(2, 1, 16, 16)
    ref = reference_forward(m.double(), x, t, ctx, 24.0, pad, cond).float()
    g = tiny_model(backends=(backend,)).to("cuda", torch.bfloat16)
    with torch.no_grad():
        out = g(x.cuda(), t.cuda(), ctx.cuda(), fps=24, padding_mask=pad.cuda(), condition_video_input_mask=cond.cuda())
    assert (out.float().cpu() - ref).norm() / ref.norm() < 0.03
    g(x.cuda(), t.cuda(), ctx.cuda(), fps=24, condition_video_input_mask=cond.cuda()).float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in g.parameters())
