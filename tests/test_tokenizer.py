"""Checks of cosmos_nb.tokenizer that do not belong in the docs: the full 315-key contract of the official files, a
literal re-statement of upstream's forward pass (pad + conv3d, GroupNorm, conv-based Haar, full attention) to compare the
fast paths against, memory bounds on the meta device, loaders, normalisation and input validation."""
import math, os, warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

os.environ.setdefault('HF_HUB_OFFLINE', '1')
from cosmos_nb.tokenizer import (CausalVideoTokenizer, TokenizerConfig, LatentNormalizer, NormalizedTokenizer,
                                 WaveletTokenizer, TokenizerLoadError, load_tokenizer, save_state_dict, read_state_dict,
                                 make_tokenizer, shape_table, Patcher3D, UnPatcher3D, CausalAttnBlock, MidBlock,
                                 CausalHybridDownsample3d, CausalHybridUpsample3d, check_video_shape)

TABLE = Path(__file__).with_name('tokenizer_cv8x8x8_state_dict.tsv')

@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad(): yield

@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    "Tiny tensors: a second thread only spins (and triples CPU time on a busy 2-core runner)."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def expected_table():
    "(file, key, shape, dtype) rows of the official files' state dicts (the .tsv beside this file), in file order."
    rows = [l.rstrip('\n').split('\t') for l in TABLE.read_text().splitlines() if l and not l.startswith('#')]
    return [(f, k, tuple(int(s) for s in shape.split(',')), dt) for f, k, shape, dt in rows]

@pytest.fixture(scope='module')
def meta_full():
    with torch.device('meta'): return CausalVideoTokenizer(TokenizerConfig.cv8x8x8())

@pytest.fixture(scope='module')
def tiny():
    torch.manual_seed(0)
    tok = CausalVideoTokenizer(TokenizerConfig.tiny()).eval()
    for m in tok.modules():                                   # non-trivial norms, so a wrong statistic would show
        if isinstance(m, nn.GroupNorm): nn.init.uniform_(m.weight, 0.5, 1.5); nn.init.uniform_(m.bias, -0.5, 0.5)
    return tok.requires_grad_(False)                          # as loaded (CPU conv kernels differ in the last bit otherwise)

def clip(B=1, T=17, H=16, W=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, 3, T, H, W, generator=g) * 2 - 1

# ---------------------------------------------------------------------------------------------------------- the contract
def test_full_config_keys_shapes_and_counts(meta_full):
    rows = expected_table()
    assert len(rows) == 315
    for file, part in (('encoder.jit', meta_full.encoder_jit()), ('decoder.jit', meta_full.decoder_jit())):
        want = [(k, s, dt) for f, k, s, dt in rows if f == file]
        got = [(k, tuple(v.shape), v.dtype) for k, v in part.state_dict().items()]
        assert [k for k, *_ in got] == [k for k, *_ in want], file          # same keys, same order
        for (k, s, dt), (_, gs, gdt) in zip(want, got):
            assert gs == s, (k, gs, s)
            assert {'float': gdt.is_floating_point, 'int64': gdt == torch.int64, 'int32': gdt == torch.int32}[dt], (k, gdt)
    assert len(meta_full.encoder_jit().state_dict()) == 141 and len(meta_full.decoder_jit().state_dict()) == 174
    assert list(meta_full.state_dict()) == [k for _, k, *_ in rows if k.startswith('encoder.')] + \
        [k for _, k, *_ in rows if k.startswith('decoder.')] + ['quant_conv.conv3d.weight', 'quant_conv.conv3d.bias',
                                                               'post_quant_conv.conv3d.weight', 'post_quant_conv.conv3d.bias']
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert n(meta_full) == 105_653_696
    assert (n(meta_full.encoder_jit()), n(meta_full.decoder_jit())) == (42_914_864, 62_738_832)

def test_config_from_state_dict(meta_full):
    assert TokenizerConfig.from_state_dict(meta_full.state_dict()) == TokenizerConfig.cv8x8x8()
    tiny = CausalVideoTokenizer(TokenizerConfig.tiny(num_res_blocks=1, latent_channels=8))
    assert TokenizerConfig.from_state_dict(tiny.state_dict()) == tiny.config
    assert TokenizerConfig.from_state_dict({}) == TokenizerConfig()          # unknown layout: defaults

def test_full_size_shapes_on_meta():
    rows = dict(shape_table())
    assert rows['encoder.patcher3d'] == (1, 192, 31, 176, 320)
    assert rows['encoder.down.0'] == (1, 256, 16, 88, 160)
    assert rows['encoder.down.2'] == rows['encoder.mid'] == (1, 512, 16, 88, 160)
    assert rows['quant_conv'] == (1, 16, 16, 88, 160)
    assert rows['decoder.up.1'] == (1, 512, 31, 176, 320)
    assert rows['decoder.up.0'] == (1, 256, 31, 176, 320)
    assert rows['decoder.unpatcher3d'] == (1, 3, 121, 704, 1280)
    assert dict(shape_table(shape=(1, 3, 1, 720, 1280)))['quant_conv'] == (1, 16, 1, 90, 160)

# ------------------------------------------------------------------------------------------------------ memory bounds
class LargestTensor(TorchDispatchMode):
    "Records the largest tensor any op returns."
    def __init__(self): super().__init__(); self.numel, self.op = 0, None
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.numel() > self.numel: self.numel, self.op = t.numel(), func
        return out

def test_spatial_attention_never_builds_clip_scores():
    "At 720p a clip-wide score tensor would be 16·14080² elements; per-frame blocks stay at 14080²."
    with torch.device('meta'): blk = CausalAttnBlock(512)
    x = torch.empty(1, 512, 16, 88, 160, device='meta')
    n = 88 * 160
    with LargestTensor() as rec: y = blk(x)
    assert y.shape == x.shape
    assert rec.numel == n * n, (rec.numel, rec.op)                   # one frame's scores, never 16 frames' at once
    blk.max_elements = 4 * n * n                                     # a larger budget groups 4 frames
    with LargestTensor() as rec: blk(x)
    assert rec.numel == 4 * n * n < 16 * n * n

def test_no_tensor_larger_than_the_unavoidable_activation(meta_full):
    "Encode+decode of 1×3×121×704×1280 on meta: nothing bigger than the 512×31×176×320 map after the upsampler."
    with LargestTensor() as rec:
        z = meta_full.encode(torch.empty(1, 3, 121, 704, 1280, device='meta'))
        meta_full.decode(z)
    assert rec.numel <= 512 * 31 * 176 * 320, (rec.numel, rec.op)

# ------------------------------------------------------------------------ upstream's forward pass, written out literally
def ref_conv(m, x):
    x = torch.cat([x[:, :, :1].repeat(1, 1, m.time_pad, 1, 1), x], dim=2)
    return m.conv3d(F.pad(x, (m.padding,) * 4))

def ref_norm(m, x):
    B, C, T, H, W = x.shape
    return m.norm(x.transpose(1, 2).reshape(B * T, C, H, W)).view(B, T, C, H, W).transpose(1, 2)

def ref_seq(seq, x):
    for m in seq: x = ref_conv(m, x)
    return x

def ref_res(m, x):
    h = ref_seq(m.conv1, F.silu(ref_norm(m.norm1, x)))
    h = ref_seq(m.conv2, F.silu(ref_norm(m.norm2, h)))
    return (x if isinstance(m.nin_shortcut, nn.Identity) else ref_conv(m.nin_shortcut, x)) + h

def ref_spatial_attn(m, x):
    h = ref_norm(m.norm, x)
    q, k, v = ref_conv(m.q, h), ref_conv(m.k, h), ref_conv(m.v, h)
    B, C, T, H, W = q.shape
    q, k, v = (t.transpose(1, 2).reshape(B * T, C, H * W) for t in (q, k, v))
    w = F.softmax(torch.bmm(q.permute(0, 2, 1), k) * C ** -0.5, dim=2)
    o = torch.bmm(v, w.permute(0, 2, 1)).reshape(B, T, C, H, W).transpose(1, 2)
    return x + ref_conv(m.proj_out, o)

def ref_temporal_attn(m, x):
    h = ref_norm(m.norm, x)
    q, k, v = ref_conv(m.q, h), ref_conv(m.k, h), ref_conv(m.v, h)
    B, C, T, H, W = q.shape
    q, k, v = (t.permute(0, 3, 4, 2, 1).reshape(B * H * W, T, C) for t in (q, k, v))
    w = torch.bmm(q, k.transpose(1, 2)) * C ** -0.5
    w = F.softmax(w.masked_fill(torch.tril(torch.ones_like(w)) == 0, float('-inf')), dim=2)
    o = torch.bmm(w, v).reshape(B, H, W, T, C).permute(0, 4, 3, 1, 2)
    return x + ref_conv(m.proj_out, o)

def ref_mid(m, x):
    x = ref_res(m.block_1, x)
    x = ref_temporal_attn(m.attn_1[1], ref_spatial_attn(m.attn_1[0], x))
    return ref_res(m.block_2, x)

def ref_down(m, x):
    if not (m.spatial_down or m.temporal_down): return x
    if m.spatial_down:
        x = F.pad(x, (0, 1, 0, 1, 0, 0))
        x = ref_conv(m.conv1, x) + F.avg_pool3d(x, (1, 2, 2), (1, 2, 2))
    if m.temporal_down:
        x = torch.cat([x[:, :, :1], x], dim=2)
        x = ref_conv(m.conv2, x) + F.avg_pool3d(x, (2, 1, 1), (2, 1, 1))
    return ref_conv(m.conv3, x)

def ref_up(m, x):
    if not (m.spatial_up or m.temporal_up): return x
    if m.temporal_up:
        f = 1 + (x.shape[2] > 1)
        x = x.repeat_interleave(f, dim=2)[:, :, f - 1:]
        x = ref_conv(m.conv1, x) + x
    if m.spatial_up:
        x = x.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)
        x = ref_conv(m.conv2, x) + x
    return ref_conv(m.conv3, x)

def _haar_filters(a, g, dtype):
    h = torch.tensor([a, a], dtype=dtype)
    return h.flip(0).reshape(1, 1, -1).repeat(g, 1, 1), (h * (-1) ** torch.arange(2)).reshape(1, 1, -1).repeat(g, 1, 1)

def ref_dwt(x, a):
    "Upstream `Patcher3D._dwt`: 1D Haar convolutions along T, H, W, bands concatenated lll…hhh, divided by 2√2."
    g = x.shape[1]
    hl, hh = _haar_filters(a, g, x.dtype)
    x = F.pad(x, (0, 1, 0, 1, 0, 1), mode='reflect')
    T = lambda t, f: F.conv3d(t, f[..., None, None], groups=g, stride=(2, 1, 1))
    H = lambda t, f: F.conv3d(t, f[:, :, None, :, None], groups=g, stride=(1, 2, 1))
    W = lambda t, f: F.conv3d(t, f[:, :, None, None, :], groups=g, stride=(1, 1, 2))
    xl, xh = T(x, hl), T(x, hh)
    xll, xlh, xhl, xhh = H(xl, hl), H(xl, hh), H(xh, hl), H(xh, hh)
    out = torch.cat([W(b, f) for b in (xll, xlh, xhl, xhh) for f in (hl, hh)], dim=1)
    return out / (2 * torch.sqrt(torch.tensor(2.0)))

def ref_idwt(x, a):
    "Upstream `UnPatcher3D._idwt`: transposed 1D Haar convolutions along W, H, T, times 2√2."
    g = x.shape[1] // 8
    hl, hh = _haar_filters(a, g, x.dtype)
    b = torch.chunk(x, 8, dim=1)
    W = lambda t, f: F.conv_transpose3d(t, f[:, :, None, None, :], groups=g, stride=(1, 1, 2))
    H = lambda t, f: F.conv_transpose3d(t, f[:, :, None, :, None], groups=g, stride=(1, 2, 1))
    T = lambda t, f: F.conv_transpose3d(t, f[..., None, None], groups=g, stride=(2, 1, 1))
    xll, xlh, xhl, xhh = (W(b[2 * i], hl) + W(b[2 * i + 1], hh) for i in range(4))
    xl, xh = H(xll, hl) + H(xlh, hh), H(xhl, hl) + H(xhh, hh)
    return (T(xl, hl) + T(xh, hh)) * (2 * torch.sqrt(torch.tensor(2.0)))

def ref_patch(x, a, p=4):
    x = torch.cat([x[:, :, :1].repeat_interleave(p, dim=2), x[:, :, 1:]], dim=2)
    for _ in range(int(math.log2(p))): x = ref_dwt(x, a)
    return x

def ref_unpatch(x, a, p=4):
    for _ in range(int(math.log2(p))): x = ref_idwt(x, a)
    return x[:, :, p - 1:]

def ref_encode(tok, x):
    e = tok.encoder
    h = ref_seq(e.conv_in, ref_patch(x, e.patcher3d.wavelets[0].item()))
    for level in e.down:
        for blk in level.block: h = ref_res(blk, h)
        if level.downsample is not None: h = ref_down(level.downsample, h)
    h = ref_mid(e.mid, h)
    return ref_conv(tok.quant_conv, ref_seq(e.conv_out, F.silu(ref_norm(e.norm_out, h))))

def ref_decode(tok, z):
    d = tok.decoder
    h = ref_mid(d.mid, ref_seq(d.conv_in, ref_conv(tok.post_quant_conv, z)))
    for level in reversed(d.up):
        for blk in level.block: h = ref_res(blk, h)
        if level.upsample is not None: h = ref_up(level.upsample, h)
    h = ref_seq(d.conv_out, F.silu(ref_norm(d.norm_out, h)))
    return ref_unpatch(h, d.unpatcher3d.wavelets[0].item())

def rel(a, b): return ((a.double() - b.double()).norm() / b.double().norm()).item()

@pytest.mark.parametrize('shape', [(1, 17, 16, 24), (2, 9, 16, 16), (1, 1, 16, 24)])
def test_matches_upstream_forward(tiny, shape):
    B, T, H, W = shape
    x = clip(B, T, H, W)
    z = tiny.encode(x)
    assert rel(z, ref_encode(tiny, x)) < 2e-6
    assert rel(tiny.decode(z), ref_decode(tiny, z)) < 2e-6

def test_blocks_match_upstream_with_odd_sizes():
    torch.manual_seed(1)
    x = torch.randn(2, 8, 7, 6, 10)
    down, up = CausalHybridDownsample3d(8), CausalHybridUpsample3d(8)
    torch.testing.assert_close(down(x), ref_down(down, x))
    torch.testing.assert_close(up(x), ref_up(up, x))
    mid = MidBlock(8)
    for m in mid.modules():
        if isinstance(m, nn.GroupNorm): nn.init.normal_(m.weight); nn.init.normal_(m.bias)
    torch.testing.assert_close(mid(x), ref_mid(mid, x), rtol=1e-5, atol=1e-5)
    for name, xs in (('contiguous', x), ('channels-last', x.contiguous(memory_format=torch.channels_last_3d))):
        torch.testing.assert_close(mid(xs), ref_mid(mid, x), rtol=1e-5, atol=1e-5, msg=name)

@pytest.mark.parametrize('a', [2 ** -0.5, 0.70703125])                  # exact, and bf16 as in the official files
def test_haar_matches_upstream_convolutions(a):
    x = torch.randn(2, 3, 17, 16, 24, dtype=torch.float64)
    pa, un = Patcher3D(), UnPatcher3D()
    pa.wavelets.fill_(a); un.wavelets.fill_(a)
    pa, un = pa.double(), un.double()
    w = pa(x)
    torch.testing.assert_close(w, ref_patch(x, a), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(un(w), ref_unpatch(w, a), rtol=1e-6, atol=1e-9)

def test_haar_round_trip_exact():
    pa, un = Patcher3D(), UnPatcher3D()
    u8 = torch.randint(0, 256, (2, 3, 25, 32, 16))
    x = u8 / 128 - 1                                                      # dyadic: every sum is exact in float32
    assert torch.equal(un(pa(x)), x)
    xd = torch.randn(1, 3, 9, 8, 16, dtype=torch.float64)
    assert (un(pa(xd)) - xd).abs().max() < 1e-13
    xf = torch.randn(1, 3, 9, 8, 16)
    assert (un(pa(xf)) - xf).abs().max() < 1e-5
    for p in (2, 8):                                                      # other depths
        pp, uu = Patcher3D(p), UnPatcher3D(p)
        xp = torch.randn(1, 3, 1 + 2 * p, 2 * p, p, dtype=torch.float64)
        assert pp(xp).shape == (1, 3 * p ** 3, 3, 2, 1)
        assert (uu(pp(xp)) - xp).abs().max() < 1e-12

# ------------------------------------------------------------------------------------------------------- causality
def test_causality_bit_exact(tiny):
    x = clip(1, 25, 16, 16)
    z, y = tiny.encode(x), tiny.decode(tiny.encode(x))
    for k in (0, 1, 2):                                                   # perturb pixel frames ≥ 1+8k
        x2 = x.clone(); x2[:, :, 1 + 8 * k:] = clip(1, 24 - 8 * k, 16, 16, seed=k + 1)
        z2 = tiny.encode(x2)
        assert torch.equal(z2[:, :, :1 + k], z[:, :, :1 + k]), k
        assert not torch.equal(z2[:, :, 1 + k:], z[:, :, 1 + k:])
    for k in (0, 1, 2):                                                   # perturb latent frames ≥ 1+k
        z2 = z.clone(); z2[:, :, 1 + k:] += torch.randn_like(z2[:, :, 1 + k:])
        assert torch.equal(tiny.decode(z2)[:, :, :1 + 8 * k], y[:, :, :1 + 8 * k]), k
    for T in (1, 9, 17):                                                  # a prefix encodes to a prefix
        torch.testing.assert_close(tiny.encode(x[:, :, :T]), z[:, :, :1 + (T - 1) // 8], rtol=1e-5, atol=1e-5)

# ----------------------------------------------------------------------------------------------- chunks and dtypes
def test_chunked_encode_decode(tiny):
    tok = CausalVideoTokenizer(TokenizerConfig.tiny(chunk_frames=9, max_enc_batch=3, max_dec_batch=2)).eval()
    tok.load_state_dict(tiny.state_dict())
    x = clip(2, 27, 16, 16)
    z = tok.encode(x)
    assert z.shape == (2, 16, 6, 2, 2)
    for b in range(2):
        for j in range(3):
            torch.testing.assert_close(z[b:b + 1, :, 2 * j:2 * j + 2], tiny.encode(x[b:b + 1, :, 9 * j:9 * j + 9]),
                                       rtol=1e-5, atol=1e-5)
    y = tok.decode(z)
    assert y.shape == x.shape
    torch.testing.assert_close(y[:, :, 9:18], tiny.decode(z[:, :, 2:4]), rtol=1e-5, atol=1e-5)
    assert tok.encode(x[:, :, :9]).shape == (2, 16, 2, 2, 2)             # one chunk or less: as is
    with pytest.raises(ValueError, match='whole number'): tok.encode(x[:, :, :17])   # 1+8k, but not whole chunks
    with pytest.raises(ValueError, match='whole number'): tok.decode(z[:, :, :5])
    free = CausalVideoTokenizer(TokenizerConfig.tiny(chunk_frames=None)).eval()
    free.load_state_dict(tiny.state_dict())
    assert free.encode(clip(1, 33, 16, 16)).shape == (1, 16, 5, 2, 2)    # no chunking: one causal piece

def test_dtypes(tiny):
    x = clip(1, 9)
    z = tiny.encode(x)
    za = tiny.encode(x, autocast=torch.bfloat16)
    assert za.dtype == torch.float32 and rel(za, z) < 0.03
    assert tiny.encode(x.double()).dtype == torch.float64
    b = CausalVideoTokenizer(tiny.config).eval(); b.load_state_dict(tiny.state_dict()); b = b.to(torch.bfloat16)
    assert b.encoder.patcher3d.wavelets.dtype == torch.bfloat16 and b.encoder.patcher3d._arange.dtype == torch.int64
    zb = b.encode(x)
    assert zb.dtype == torch.float32 and rel(zb, z) < 0.03
    yb = b.decode(zb.bfloat16())
    assert yb.dtype == torch.bfloat16 and rel(yb, tiny.decode(z)) < 0.03
    cl = b.to(memory_format=torch.channels_last_3d)                     # the GPU layout of the weights (bench)
    assert cl.encoder.conv_in[0].conv3d.weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert rel(cl.encode(x), z) < 0.03 and rel(cl.decode(zb.bfloat16()), tiny.decode(z)) < 0.03

def test_grad_mode_and_backward():
    "Outside no_grad (weights requiring grad) the forward works in every dtype, and gradients flow in float32."
    with torch.enable_grad():
        tok = CausalVideoTokenizer(TokenizerConfig.tiny())
        x = clip(1, 9, 16, 16)
        loss = tok.decode(tok.encode(x)).square().mean()
        loss.backward()
        grads = [p.grad for p in tok.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert tok.encoder.conv_in[0].conv3d.weight.grad.abs().sum() > 0
        assert tok.to(torch.bfloat16).encode(x).shape == (1, 16, 2, 2, 2)

@pytest.mark.slow
def test_torch_compile_matches_eager(tiny):
    x = clip(1, 17, 16, 16)
    enc = torch.compile(tiny.encoder)
    torch.testing.assert_close(tiny.quant_conv(enc(x)), tiny.encode(x), rtol=1e-4, atol=1e-4)

# ---------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('make, exc, msg', [
    (lambda x: x[:, :, :16], ValueError, 'trim to 9 or pad to 17'),
    (lambda x: x[:, :, :0], ValueError, 'needs 1+8k frames'),
    (lambda x: x[..., :14, :], ValueError, 'pad to 16×24'),
    (lambda x: x[:, :1], ValueError, 'expected 3'),
    (lambda x: x.transpose(1, 2)[:, :, :3], ValueError, 'B×T×C×H×W'),
    (lambda x: x[0], ValueError, 'permute'),
    (lambda x: (x * 127.5 + 127.5).to(torch.uint8), TypeError, 'to_unit'),
    (lambda x: x.long(), TypeError, 'floats in [-1, 1]'),
    (lambda x: x.numpy(), TypeError, 'torch.Tensor'),
])
def test_bad_video(tiny, make, exc, msg):
    with pytest.raises(exc, match=msg.replace('[', r'\[').replace(']', r'\]').replace('+', r'\+')):
        tiny.encode(make(clip(1, 17)))

def test_bad_latent(tiny):
    z = torch.zeros(1, 16, 2, 4, 4)
    with pytest.raises(ValueError, match='B×16×T×H×W'): tiny.decode(z[:, :8])
    with pytest.raises(ValueError, match='B×16×T×H×W'): tiny.decode(z[0])
    with pytest.raises(TypeError, match='floating'): tiny.decode(z.long())
    with pytest.raises(ValueError, match='more than one 121-frame chunk'): check_video_shape(torch.zeros(1, 3, 129, 8, 8), chunk_frames=121)
    check_video_shape(torch.zeros(1, 3, 242, 8, 8), chunk_frames=121)             # two chunks of 121: fine

# ---------------------------------------------------------------------------------------------------------- loading
class _AEPosterior(nn.Module):
    def forward(self, z): return z, (torch.tensor([0.0]), torch.tensor([0.0]))

def write_official(tok, folder, stats=None):
    "encoder.jit / decoder.jit as upstream's exporter writes them: traces of Sequential(encoder, quant_conv, distribution) etc."
    enc = tok.encoder_jit(); enc.add_module('distribution', _AEPosterior())
    x = torch.zeros(1, 3, 9, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.jit.save(torch.jit.trace(enc, x, check_trace=False), folder / 'encoder.jit')
        torch.jit.save(torch.jit.trace(tok.decoder_jit(), enc(x)[0], check_trace=False), folder / 'decoder.jit')
    if stats is not None: torch.save(stats, folder / 'mean_std.pt')

@pytest.fixture(scope='module')
def official_dir(tiny, tmp_path_factory):
    d = tmp_path_factory.mktemp('Cosmos-Tokenize1-tiny')
    torch.manual_seed(3)
    write_official(tiny, d, (torch.randn(16 * 16) * 3, torch.rand(16 * 16) + 0.5))
    return d

def test_load_official_folder(tiny, official_dir):
    with warnings.catch_warnings():
        warnings.simplefilter('error')                                    # no deprecation noise reaches the user
        tok = load_tokenizer(official_dir)
    assert tok.config == tiny.config and not tok.training
    assert all(not p.requires_grad for p in tok.parameters())
    for k, v in tiny.state_dict().items(): assert torch.equal(tok.state_dict()[k], v), k
    x = clip(1, 17)
    assert torch.equal(tok.encode(x), tiny.encode(x))
    sd = read_state_dict(official_dir / 'encoder.jit')
    assert list(sd) == list(tiny.encoder_jit().state_dict())
    # the normaliser: channel-major table of the file, bf16-rounded
    mean, std = torch.load(official_dir / 'mean_std.pt', weights_only=True)
    assert torch.equal(tok.normalizer.mean[0, :, :, 0, 0], mean.view(16, 16).bfloat16().float())

@pytest.fixture(scope='module')
def plain_dir(tiny, official_dir, tmp_path_factory):
    "The same weights converted once to safetensors, next to the same mean_std.pt (the no-TorchScript layout)."
    d = tmp_path_factory.mktemp('tiny-safetensors')
    save_state_dict(load_tokenizer(official_dir), d / 'tokenizer.safetensors')
    (d / 'mean_std.pt').write_bytes((official_dir / 'mean_std.pt').read_bytes())
    return d

def test_load_normalized(tiny, plain_dir):
    nt = load_tokenizer(plain_dir, normalized=True)
    assert isinstance(nt, NormalizedTokenizer) and nt.temporal_compression == 8 and nt.latent_channels == 16
    x = clip(1, 17)
    z, ln = nt.encode(x), nt.normalizer
    torch.testing.assert_close(z, (tiny.encode(x) - ln.mean[:, :, :3]) / ln.std[:, :, :3])   # Predict1's tokenizer output
    torch.testing.assert_close(nt.decode(z), tiny.decode(tiny.encode(x)), rtol=1e-4, atol=1e-4)

def test_load_plain_state_dicts(tiny, tmp_path):
    x = clip(1, 9)
    for name in ('tokenizer.safetensors', 'model.pt', 'weights.pth'):
        save_state_dict(tiny, tmp_path / name)
        tok = load_tokenizer(tmp_path / name)
        assert torch.equal(tok.encode(x), tiny.encode(x)), name
    b = load_tokenizer(tmp_path / 'tokenizer.safetensors', dtype=torch.bfloat16)
    assert b.quant_conv.conv3d.weight.dtype == torch.bfloat16 and b.encoder.patcher3d.patch_size_buffer.dtype == torch.int32
    sd = tiny.state_dict()
    (tmp_path / 'native').mkdir()
    torch.save({'model': {**{'network.' + k: v for k, v in sd.items() if 'patcher3d' not in k},
                          **{'ema.' + k.replace('.', '-'): v for k, v in sd.items() if 'patcher3d' not in k}},
                'optimizer': {}}, tmp_path / 'native' / 'model.pt')
    tok = load_tokenizer(tmp_path / 'native')                             # native checkpoint: EMA weights, no Haar buffers
    assert torch.equal(tok.encode(x), tiny.encode(x))

def test_load_errors_name_the_problem(tiny, tmp_path):
    sd = dict(tiny.state_dict())
    for k in ['decoder.conv_in.0.conv3d.bias', 'decoder.up.1.upsample.conv3.conv3d.weight']: sd.pop(k)
    sd['decoder.up.2.upsample.conv1.conv3d.weight'] = torch.zeros(32, 32, 3, 1, 1)
    sd['encoder.conv_out.1.conv3d.weight'] = torch.zeros(16, 16, 1, 1, 1)
    torch.save(sd, tmp_path / 'bad.pt')
    with pytest.raises(TokenizerLoadError) as e: load_tokenizer(tmp_path / 'bad.pt')
    msg = str(e.value)
    assert 'bad.pt' in msg and '2 missing keys' in msg
    assert 'decoder.conv_in.0.conv3d.bias' in msg and 'decoder.up.1.upsample.conv3.conv3d.weight' in msg
    assert 'decoder.up.2.upsample.conv1.conv3d.weight (in bad.pt)' in msg
    assert 'encoder.conv_out.1.conv3d.weight: file [16, 16, 1, 1, 1] vs model [16, 16, 3, 1, 1]' in msg
    with pytest.warns(UserWarning, match='missing keys'):
        tok = load_tokenizer(tmp_path / 'bad.pt', strict=False)
    assert torch.equal(tok.decoder.conv_out[0].conv3d.weight, tiny.decoder.conv_out[0].conv3d.weight)
    # a file of other widths: every shape is reported, not a crash
    with pytest.raises(TokenizerLoadError, match='shape mismatches'):
        load_tokenizer(tmp_path / 'bad.pt', config=TokenizerConfig(channels=16))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(TokenizerLoadError, match='encoder.jit'): load_tokenizer(tmp_path / 'empty')
    with pytest.raises(TokenizerLoadError, match='no such file'): load_tokenizer(tmp_path / 'nope')
    (tmp_path / 'junk.pt').write_bytes(b'not a torch file')
    with pytest.raises(TokenizerLoadError, match='junk.pt: cannot be read'): load_tokenizer(tmp_path / 'junk.pt')
    torch.save([1, 2], tmp_path / 'list.pt')
    with pytest.raises(TokenizerLoadError, match='dict of tensors'): load_tokenizer(tmp_path / 'list.pt')
    (tmp_path / 'norm').mkdir(); save_state_dict(tiny, tmp_path / 'norm' / 'tokenizer.safetensors')
    with pytest.raises(TokenizerLoadError, match='mean_std.pt: not found'): load_tokenizer(tmp_path / 'norm', normalized=True)

# ----------------------------------------------------------------------------------------------------- normalisation
def test_latent_normalizer_layout_and_round_trip(tmp_path):
    c, t = torch.meshgrid(torch.arange(16.), torch.arange(16.), indexing='ij')
    mean, std = (c * 10 + t).flatten(), (1 + c + t / 16).flatten()
    torch.save((mean, std), tmp_path / 'mean_std.pt')
    ln = LatentNormalizer.from_file(tmp_path / 'mean_std.pt')
    assert ln.mean.shape == (1, 16, 16, 1, 1) and ln.mean[0, 7, 3, 0, 0] == 73
    assert ln.std[0, 2, 5, 0, 0] == torch.tensor(1 + 2 + 5 / 16).bfloat16().float()
    z = torch.randn(2, 16, 5, 3, 3) * 4 + 60
    mu, sd = (c * 10 + t)[None, :, :5, None, None], (1 + c + t / 16)[None, :, :5, None, None].bfloat16().float()
    torch.testing.assert_close(ln.normalize(z), 0.5 * (z - mu) / sd)                 # Predict1: 0.5·(z − μ)/σ
    torch.testing.assert_close(ln.standardize(z), (z - mu) / sd)
    torch.testing.assert_close(ln.denormalize(ln.normalize(z)), z)
    zb = z.bfloat16()
    assert ln.normalize(zb).dtype == torch.bfloat16
    z33 = torch.randn(1, 16, 33, 2, 2)                                               # latent frame t uses column t mod 16
    torch.testing.assert_close(ln.standardize(z33)[:, :, 16:32], ln.standardize(z33[:, :, 16:32]))
    torch.testing.assert_close(ln.standardize(z33)[:, :, 32:], ln.standardize(z33[:, :, 32:]))
    ln.to_file(tmp_path / 'copy.pt')
    torch.testing.assert_close(LatentNormalizer.from_file(tmp_path / 'copy.pt').std, ln.std)
    torch.save({'x': 1}, tmp_path / 'bad.pt')
    with pytest.raises(TokenizerLoadError, match='pair'): LatentNormalizer.from_file(tmp_path / 'bad.pt')
    torch.save((torch.zeros(10), torch.ones(10)), tmp_path / 'bad.pt')
    with pytest.raises(TokenizerLoadError, match='multiple of latent_channels'): LatentNormalizer.from_file(tmp_path / 'bad.pt')
    with pytest.raises(ValueError, match='B×16'): ln.normalize(torch.zeros(1, 8, 1, 1, 1))

def test_fit_and_identity():
    z = torch.randn(4, 16, 3, 5, 5) * torch.arange(1., 17.)[None, :, None, None, None] + 2
    ln = LatentNormalizer.fit(z)
    s = ln.standardize(z)
    torch.testing.assert_close(s.mean((0, 3, 4)), torch.zeros(16, 3), atol=0.02, rtol=0)
    torch.testing.assert_close(s.std((0, 3, 4), correction=0), torch.ones(16, 3), atol=0.02, rtol=0)
    torch.testing.assert_close(LatentNormalizer.identity().normalize(z), 0.5 * z)

# ------------------------------------------------------------------------------------------- the weight-free stand-in
def test_wavelet_tokenizer():
    wt = WaveletTokenizer()
    x = torch.randint(0, 256, (2, 3, 17, 32, 16)) / 128 - 1
    z = wt.encode(x)
    assert z.shape == (2, 192, 5, 8, 4) and (wt.latent_channels, wt.spatial_compression, wt.temporal_compression) == (192, 4, 4)
    assert wt.latent_shape(17, 32, 16) == (192, 5, 8, 4)
    assert torch.equal(wt.decode(z), x)
    x2 = x.clone(); x2[:, :, 5:] = 0
    assert torch.equal(wt.encode(x2)[:, :, :2], z[:, :, :2])                           # causal
    assert wt.encode(x[:, :, :5]).shape[2] == 2                                        # 1+4k frames suffice
    with pytest.raises(ValueError, match='1\\+4k'): wt.encode(x[:, :, :4])
    with pytest.raises(ValueError, match='multiples of 4'): wt.encode(x[..., :6])
    w1 = WaveletTokenizer(levels=1)
    assert w1.encode(x).shape == (2, 24, 9, 16, 8) and torch.equal(w1.decode(w1.encode(x)), x)
    assert len(wt.state_dict()) == 5 and sum(p.numel() for p in wt.parameters()) == 0

def test_make_tokenizer(plain_dir):
    w = make_tokenizer('wavelet')
    assert isinstance(w, NormalizedTokenizer) and w.temporal_compression == 4 and w.latent_channels == 192
    x = clip(1, 9, 16, 16)
    torch.testing.assert_close(w.decode(w.encode(x)), x)
    t1, t2 = make_tokenizer('tiny', normalized=False), make_tokenizer('tiny', normalized=False)
    assert torch.equal(t1.encode(x), t2.encode(x))                                     # seeded
    t3 = make_tokenizer('tiny', dtype='bfloat16')
    assert t3.tokenizer.quant_conv.conv3d.weight.dtype == torch.bfloat16
    assert isinstance(make_tokenizer('cv8x8x8', path=plain_dir), NormalizedTokenizer)
    with pytest.raises(ValueError, match='needs path'): make_tokenizer('cv8x8x8')
    with pytest.raises(ValueError, match='unknown tokenizer kind'): make_tokenizer('vq')

# ------------------------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_cuda_bf16_matches_cpu(tiny):
    dev = torch.device('cuda')
    g = CausalVideoTokenizer(tiny.config).eval(); g.load_state_dict(tiny.state_dict())
    g = g.to(dev, torch.bfloat16).to(memory_format=torch.channels_last_3d)
    x = clip(1, 17, 64, 64)
    z = g.encode(x.to(dev)).cpu()
    assert rel(z, tiny.encode(x)) < 0.03
    assert rel(g.decode(z.to(dev)).cpu(), tiny.decode(tiny.encode(x))) < 0.03

# --------------------------------------------------- opt-in: the real weights (MD5s, strict load, parity with the .jit; not run in CI)
REAL = os.environ.get('COSMOS_TOKENIZER_DIR')     # e.g. checkpoints/Cosmos-Tokenize1-CV8x8x8-720p
MD5 = {'encoder.jit': 'f5834d03645c379bc0f8ad14b9bc0299', 'decoder.jit': 'ff21a63ed817ffdbe4b6841111ec79a8',
       'mean_std.pt': 'f07680ad7eefae57d698778e2a0c7c96'}
needs_real = pytest.mark.weights     # deselected by default: `pytest -m weights` with COSMOS_TOKENIZER_DIR set

def real_dir() -> Path:
    "The released tokenizer folder; a selected `weights` test fails (not skips) without it."
    assert REAL, 'set COSMOS_TOKENIZER_DIR to the Cosmos-Tokenize1-CV8x8x8-720p folder (cosmos-nb download-checkpoints)'
    return Path(REAL)

def synthetic_clip(T=17, H=256, W=256):
    "Smooth colour gradients and a moving square, in [-1, 1]."
    t, y, x = torch.meshgrid(torch.arange(float(T)), torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    v = torch.stack([x * 0.8, y * 0.8, (x + y) * 0.4], 0)                             # 3,T,H,W
    for i in range(T):
        r, c = 40 + 4 * i, 60 + 6 * i
        v[:, i, r:r + 48, c:c + 48] = torch.tensor([0.9, -0.6, 0.2])[:, None, None]
    return v[None]

@needs_real
def test_real_weights_load_strict():
    import hashlib
    d = real_dir()
    for name, md5 in MD5.items(): assert hashlib.md5((d / name).read_bytes()).hexdigest() == md5, name
    tok = load_tokenizer(d, dtype=torch.bfloat16)                                 # strict: every key and shape
    assert sum(p.numel() for p in tok.parameters()) == 105_653_696
    assert tok.normalizer is not None and tok.normalizer.mean.shape == (1, 16, 16, 1, 1)

@pytest.mark.gpu
@needs_real
def test_real_weights_match_official_jit():
    dev, d = torch.device('cuda'), real_dir()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        enc_jit = torch.jit.load(str(d / 'encoder.jit')).to(dev, torch.bfloat16).eval()   # as Predict1 runs them
        dec_jit = torch.jit.load(str(d / 'decoder.jit')).to(dev, torch.bfloat16).eval()
    tok = load_tokenizer(d, device=dev, dtype=torch.bfloat16)
    x = synthetic_clip().to(dev, torch.bfloat16)
    z_ref = enc_jit(x)[0]
    z = tok.encode(x)
    assert rel(z.float(), z_ref.float()) < 0.02                     # bf16 floor: two bf16 implementations differ by ≈0.8 % (random weights)
    y_ref, y = dec_jit(z_ref), tok.decode(z_ref)
    assert rel(y.float(), y_ref.float()) < 0.02
    mse = (tok.decode(z).float().clamp(-1, 1) - x.float()).square().mean()
    assert 10 * torch.log10(4 / mse) > 25                           # PSNR on [-1, 1]: a loose sanity bound
