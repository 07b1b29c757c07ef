"Checks of cosmos_nb.diffusion beyond the notebook's examples: EDM identities, the schedule, conditioning, guidance, generation, learning."
import math
import numpy as np
import pytest
import torch
from cosmos_nb.diffusion import (
    DiffusionConfig, VideoCondition, Video2WorldDiffusion, append_dims, classifier_free_guidance, compose_condition_input,
    condition_indicator, drop_text_embeddings, edm_loss, edm_loss_weight, edm_scaling, euler_step, karras_sigmas,
    paste_condition_output, res_2ab_step, sample_lognormal_sigma, sample_num_condition_frames)
from cosmos_nb.dit import DiTConfig, VideoExtendDiT

# ---------------------------------------------------------------------------------------------------------------- formulas

@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_edm_scaling_identities(dtype):
    sigma = torch.logspace(-4, 2, 50, dtype=dtype)
    c_skip, c_out, c_in, c_noise = edm_scaling(sigma)
    for c in (c_skip, c_out, c_in, c_noise): assert c.shape == sigma.shape and c.dtype == dtype
    sd = 0.5
    torch.testing.assert_close(c_skip + (c_out / sd)**2, torch.ones_like(sigma))      # skip and output variances add to 1
    torch.testing.assert_close(c_skip, sd**2 * c_in**2)
    torch.testing.assert_close(c_out, sigma * sd * c_in)
    torch.testing.assert_close(c_noise, 0.25 * torch.log(sigma))
    # the limits: identity at σ → 0, pure network (× σ_d) at σ → ∞
    cs, co, ci, _ = edm_scaling(torch.tensor([1e-8, 1e8], dtype=torch.float64))
    assert abs(cs[0] - 1) < 1e-12 and co[0] < 1e-7 and abs(ci[0] - 2) < 1e-9
    assert cs[1] < 1e-12 and abs(co[1] - sd) < 1e-9
    x, F = torch.randn(3, 16, 2, 4, 4, dtype=torch.float64), 1e3 * torch.randn(3, 16, 2, 4, 4, dtype=torch.float64)
    cs, co, _, _ = edm_scaling(torch.full((3,), 1e-10, dtype=torch.float64))
    torch.testing.assert_close(append_dims(cs, 5) * x + append_dims(co, 5) * F, x, atol=1e-6, rtol=0)
    # a python float works too, and a different σ_d changes the result
    assert edm_scaling(1.0, sigma_data=1.0)[0].item() == pytest.approx(0.5)

def test_loss_weight_is_inverse_c_out_squared_and_F_target():
    sigma = sample_lognormal_sigma(64, 0, 1, 4, generator=torch.Generator().manual_seed(0)).double()
    _, c_out, _, _ = edm_scaling(sigma)
    torch.testing.assert_close(edm_loss_weight(sigma) * c_out**2, torch.ones_like(sigma))
    x0, eps, F = (torch.randn(64, 8, dtype=torch.float64) for _ in range(3))
    c_skip, c_out = (append_dims(c, 2) for c in edm_scaling(sigma)[:2])
    xt = x0 + append_dims(sigma, 2) * eps
    D = c_skip * xt + c_out * F
    loss, logs = edm_loss(x0, D, sigma)
    torch.testing.assert_close(loss.double(), ((F - (x0 - c_skip * xt) / c_out)**2).mean(), rtol=1e-5, atol=0)
    assert logs['mse_loss'] == pytest.approx(((x0 - D)**2).mean().item(), rel=1e-5)

def test_edm_loss_logvar_optimum_and_reductions():
    x0 = torch.randn(3, 4, 2, 2, 2)
    x0_pred = x0 + 0.1 * torch.randn_like(x0)
    sigma = torch.tensor([0.5, 2.0, 10.0])
    # the optimal u per sample is ln of that sample's mean weighted error; the gradient vanishes there
    per_sample = (append_dims(edm_loss_weight(sigma), 5) * (x0 - x0_pred)**2).flatten(1).mean(1)
    u = per_sample.log()[:, None].clone().requires_grad_(True)
    loss, _ = edm_loss(x0, x0_pred, sigma, u)
    loss.backward()
    assert u.grad.abs().max() < 1e-6
    assert loss < 0                           # small errors: a negative log-likelihood below zero
    # 'sum' = per-sample sums averaged over the batch
    s, _ = edm_loss(x0, x0_pred, sigma, torch.zeros(3, 1), reduce='sum')
    m, _ = edm_loss(x0, x0_pred, sigma, torch.zeros(3, 1), reduce='mean')
    assert s.item() == pytest.approx(m.item() * x0[0].numel(), rel=1e-5)
    with pytest.raises(ValueError, match="'mean' or 'sum'"): edm_loss(x0, x0_pred, sigma, reduce='none')

def test_lognormal_sigma_median_and_spread():
    s = sample_lognormal_sigma(200_000, 0.0, 1.0, 4.0, generator=torch.Generator().manual_seed(1))
    assert s.median().item() == pytest.approx(4.0, rel=0.02)
    assert s.log().std().item() == pytest.approx(1.0, rel=0.02)
    assert s.dtype == torch.float32 and (s > 0).all()
    a = sample_lognormal_sigma(200_000, -3.0, 2.0, generator=torch.Generator().manual_seed(2))
    assert a.median().item() == pytest.approx(math.exp(-3), rel=0.03)
    # same generator seed -> same draws
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(sample_lognormal_sigma(8, generator=g1), sample_lognormal_sigma(8, generator=g2))

def test_karras_schedule_endpoints_monotone_formula():
    s = karras_sigmas(35)
    assert len(s) == 36 and s.dtype == torch.float64
    assert s[0].item() == pytest.approx(80.0, abs=1e-12) and s[-2].item() == pytest.approx(0.0002, rel=1e-12) and s[-1] == 0
    assert (s[1:] < s[:-1]).all()
    i = torch.arange(35, dtype=torch.float64)
    ref = (80 ** (1 / 7) + i / 34 * (0.0002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    torch.testing.assert_close(s[:-1], ref, rtol=1e-12, atol=0)
    r = karras_sigmas(36, sigma_min=0.002, append_zero=False)       # the RES list: 36 values ending at σ_min
    assert len(r) == 36 and r[-1].item() == pytest.approx(0.002) and (r > 0).all()
    lin = karras_sigmas(5, 1.0, 5.0, rho=1.0, append_zero=False)     # ρ = 1 is a linear ramp
    torch.testing.assert_close(lin, torch.tensor([5., 4., 3., 2., 1.], dtype=torch.float64))
    with pytest.raises(ValueError, match='at least 2'): karras_sigmas(1)
    with pytest.raises(ValueError, match='sigma_min < sigma_max'): karras_sigmas(10, 0.0, 80.0)

def test_euler_and_res_first_step_agree_and_land_on_x0():
    x, x0 = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    torch.testing.assert_close(euler_step(x, x0, 3.0, 0.0), x0)
    t_over_s = 1.2 / 3.0
    torch.testing.assert_close(res_2ab_step(x, x0, 3.0, 1.2), t_over_s * x + (1 - t_over_s) * x0)
    # with a previous x0 equal to the current one, 2ab reduces to the exact exponential step x0 + (t/s)(x − x0)
    s, t, s1 = torch.tensor(3.0, dtype=torch.float64), torch.tensor(1.2, dtype=torch.float64), torch.tensor(6.0, dtype=torch.float64)
    torch.testing.assert_close(res_2ab_step(x, x0, s, t, x0, s1), x0 + t / s * (x - x0))

def test_guidance_convention():
    c, u = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 3.0])
    torch.testing.assert_close(classifier_free_guidance(c, u, 7.0), torch.tensor([1 + 7 * 0.5, 2 - 7 * 1.0]))

def test_num_condition_frames_and_text_dropout_use_the_global_rng():
    torch.manual_seed(3); a = [sample_num_condition_frames() for _ in range(50)]
    torch.manual_seed(3); b = [sample_num_condition_frames() for _ in range(50)]
    assert a == b and set(a) == {0, 1, 2}
    assert set(sample_num_condition_frames(1, 1) for _ in range(10)) == {1}
    emb = torch.ones(4, 3, 2)
    assert drop_text_embeddings(emb, 1.0).abs().sum() == 0
    assert torch.equal(drop_text_embeddings(emb, 0.0), emb)

# ----------------------------------------------------------------------------------------------------------- conditioning

def test_compose_and_paste_exact_on_condition_frames():
    B, T = 3, 5
    g = torch.Generator().manual_seed(0)
    x0, xt, n = (torch.randn(B, 16, T, 2, 2, generator=g, dtype=torch.float64) for _ in range(3))
    sigma, sigma_aug = torch.tensor([80.0, 1.0, 0.01], dtype=torch.float64), torch.tensor([1.3, 0.05, 0.002], dtype=torch.float64)
    ind = condition_indicator(T, 2, dtype=torch.float64)
    new_xt = compose_condition_input(xt, x0, ind, sigma, sigma_aug, n)
    _, _, c_in, _ = edm_scaling(sigma); _, _, c_in_aug, _ = edm_scaling(sigma_aug)
    torch.testing.assert_close(append_dims(c_in, 5) * new_xt[:, :, :2],
                               append_dims(c_in_aug, 5) * (x0 + append_dims(sigma_aug, 5) * n)[:, :, :2])
    assert torch.equal(new_xt[:, :, 2:], xt[:, :, 2:])
    F = torch.randn(B, 16, T, 2, 2, generator=g, dtype=torch.float64)
    Fp = paste_condition_output(F, new_xt, x0, ind, sigma)
    c_skip, c_out = (append_dims(c, 5) for c in edm_scaling(sigma)[:2])
    torch.testing.assert_close((c_skip * new_xt + c_out * Fp)[:, :, :2], x0[:, :, :2], atol=1e-12, rtol=0)
    assert torch.equal(Fp[:, :, 2:], F[:, :, 2:])

class SpyNet(torch.nn.Module):
    "A linear stand-in net that records its inputs; output depends on the text so guidance is visible."
    def __init__(self, C=16):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.3))
        self.calls = []
    def forward(self, x, timesteps, crossattn_emb, fps=None, padding_mask=None, condition_video_input_mask=None):
        self.calls.append(dict(x=x.detach().clone(), t=timesteps.detach().clone(), emb=crossattn_emb.detach().clone(),
                               mask=None if condition_video_input_mask is None else condition_video_input_mask.detach().clone()))
        return self.w * x + crossattn_emb.mean((1, 2))[:, None, None, None, None]

def _cond(B=2, T=4, n=1, L=3, D=4, neg=True):
    g = torch.Generator().manual_seed(0)
    gt = 0.5 * torch.randn(B, 16, T, 2, 2, generator=g)
    return VideoCondition(torch.ones(B, L, D), gt, n, torch.full((B,), 0.001), torch.randn(B, 16, T, 2, 2, generator=g),
                          neg_crossattn_emb=-torch.ones(B, L, D) if neg else None)

def test_denoise_guidance_is_batched_and_in_upstream_convention():
    m = Video2WorldDiffusion(SpyNet())
    cond = _cond()
    xt, sigma = torch.randn(2, 16, 4, 2, 2), torch.tensor([5.0, 5.0])
    pred = m.denoise(xt, sigma, cond, guidance=7.0)
    assert len(m.net.calls) == 1 and m.net.calls[0]['x'].shape[0] == 4          # one forward of batch 2B
    assert torch.equal(m.net.calls[0]['emb'][:2], cond.crossattn_emb) and torch.equal(m.net.calls[0]['emb'][2:], cond.neg_crossattn_emb)
    # F_c − F_u = mean(+1) − mean(−1) = 2 on the generated frames, so F = F_c + 7·2
    x_in = m.net.calls[0]['x'][:2]
    torch.testing.assert_close(pred.F[:, :, 1:], (0.3 * x_in + 1 + 14)[:, :, 1:])
    torch.testing.assert_close(pred.x0[:, :, :1], cond.gt_latent[:, :, :1], atol=1e-5, rtol=0)
    # sequential passes give the same result
    m2 = Video2WorldDiffusion(SpyNet(), config=DiffusionConfig(batch_guidance=False))
    pred2 = m2.denoise(xt, sigma, cond, guidance=7.0)
    assert len(m2.net.calls) == 2
    torch.testing.assert_close(pred2.x0, pred.x0)
    # no negative prompt or g = 0: a single pass of batch B
    m3 = Video2WorldDiffusion(SpyNet())
    m3.denoise(xt, sigma, _cond(neg=False), guidance=7.0); m3.denoise(xt, sigma, cond, guidance=0.0)
    assert [c['x'].shape[0] for c in m3.net.calls] == [2, 2]

def test_release_rule_keeps_mask_channel():
    m = Video2WorldDiffusion(SpyNet())
    cond = _cond(n=2)
    xt = torch.randn(2, 16, 4, 2, 2)
    # above σ_aug: the conditioning frames are composed and pasted
    p = m.denoise(xt, torch.tensor([0.0013, 0.0013]), cond, release=True)
    torch.testing.assert_close(p.x0[:, :, :2], cond.gt_latent[:, :, :2], atol=1e-5, rtol=0)
    assert not torch.equal(p.new_xt[:, :, :2], xt[:, :, :2])
    # at or below σ_aug = 0.001: released, the state is used as it is and nothing is pasted ...
    p = m.denoise(xt, torch.tensor([0.00055, 0.0002]), cond, release=True)
    assert torch.equal(p.new_xt, xt)
    c_skip, c_out = (append_dims(c, 5) for c in edm_scaling(torch.tensor([0.00055, 0.0002]))[:2])
    torch.testing.assert_close(p.x0, c_skip * xt + c_out * (0.3 * m.net.calls[-1]['x'] + 1), rtol=1e-5, atol=1e-6)
    # ... but the mask channel still marks the conditioning frames
    mask = m.net.calls[-1]['mask']
    assert mask.shape == (2, 1, 4, 2, 2) and mask[:, :, :2].min() == 1 and mask[:, :, 2:].max() == 0
    # training (release=False) never releases
    p = m.denoise(xt, torch.tensor([0.0002, 0.0002]), cond)
    torch.testing.assert_close(p.x0[:, :, :2], cond.gt_latent[:, :, :2], atol=1e-5, rtol=0)

def test_training_step_on_latents():
    torch.manual_seed(0)
    cfg = DiffusionConfig(min_condition_frames=2, max_condition_frames=2, text_dropout=1.0)
    m = Video2WorldDiffusion(VideoExtendDiT(DiTConfig.tiny()), config=cfg)
    x0 = 0.5 * torch.randn(2, 16, 3, 4, 4)
    batch = dict(latent=x0, t5_text_embeddings=torch.randn(2, 7, 1024), fps=torch.tensor([24., 24.], dtype=torch.float64),
                 padding_mask=torch.zeros(2, 1, 32, 32), image_size=torch.tensor([[32, 32, 32, 32]] * 2), num_frames=[9, 9])
    logs, loss = m.training_step(batch)
    assert logs['num_condition_frames'] == 2 and torch.isfinite(loss)
    loss.backward()
    assert m.logvar[1].weight.grad is not None and m.logvar[1].weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.net.parameters())
    # the whole batch's text was dropped (p = 1) and the loss equals the formula on the pasted prediction
    spy = Video2WorldDiffusion(SpyNet(), config=cfg)
    torch.manual_seed(1); logs, loss = spy.training_step(batch)
    assert spy.net.calls[0]['emb'].abs().sum() == 0
    assert loss.item() == pytest.approx(logs['loss'].item())
    with pytest.raises(KeyError, match='t5_text_embeddings'): m.training_step(dict(latent=x0))
    with pytest.raises(KeyError, match="'video'"): m.training_step(dict(t5_text_embeddings=torch.zeros(2, 1, 1024)))
    with pytest.raises(ValueError, match='no tokenizer'): m.training_step(dict(video=torch.zeros(2, 3, 9, 32, 32, dtype=torch.uint8),
                                                                               t5_text_embeddings=torch.zeros(2, 1, 1024)))

def test_training_step_is_reproducible_from_the_global_seed():
    m = Video2WorldDiffusion(VideoExtendDiT(DiTConfig.tiny()))
    batch = dict(latent=0.5 * torch.randn(2, 16, 3, 4, 4), t5_text_embeddings=torch.randn(2, 7, 1024))
    torch.manual_seed(7); a = m.training_step(batch)
    torch.manual_seed(7); b = m.training_step(batch)
    torch.manual_seed(8); c = m.training_step(batch)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0]['sigma'], b[0]['sigma'])
    assert not torch.equal(a[0]['sigma'], c[0]['sigma'])

def test_state_dict_is_the_checkpoint_layout(tmp_path):
    from cosmos_nb.dit import load_dit_checkpoint
    m = Video2WorldDiffusion(VideoExtendDiT(DiTConfig.tiny()))
    keys = list(m.state_dict())
    assert all(k.startswith(('net.', 'logvar.')) for k in keys)
    assert {'logvar.0.freqs', 'logvar.0.phases', 'logvar.1.weight'} <= set(keys)
    torch.save(m.state_dict(), tmp_path / 'model.pt')
    m2 = Video2WorldDiffusion(VideoExtendDiT(DiTConfig.tiny()))
    rep = load_dit_checkpoint(m2.net, tmp_path / 'model.pt', logvar=m2.logvar)
    assert rep.ok
    for k, v in m.state_dict().items(): assert torch.equal(v, m2.state_dict()[k]), k

# ------------------------------------------------------------------------------------------------- with a real tokenizer

from cosmos_nb.tokenizer import (CausalVideoTokenizer, LatentNormalizer, NormalizedTokenizer, TokenizerConfig, WaveletTokenizer,
                                 make_tokenizer)
from cosmos_nb.video import to_unit

def _clip(B=2, T=17, H=32, W=32, seed=0):
    "A smooth uint8 clip: a bright square moving right on a dark background."
    v = torch.full((B, 3, T, H, W), 30, dtype=torch.uint8)
    for b in range(B):
        for t in range(T): v[b, :, t, 8 + 4 * b:16 + 4 * b, t:t + 8] = torch.tensor([200, 120 + 40 * b, 60])[:, None, None]
    return v

def test_latent_pipeline_scaling_and_inverse():
    torch.manual_seed(0)
    video = _clip()
    latents = WaveletTokenizer().encode(to_unit(video))
    norm = LatentNormalizer.fit(latents, per_frame=False)
    m = Video2WorldDiffusion(VideoExtendDiT(DiTConfig.tiny(latent_channels=192)), WaveletTokenizer(), normalizer=norm)
    assert isinstance(m.tokenizer, NormalizedTokenizer) and m.normalizer is norm
    x0 = m.encode(video)
    assert x0.shape == (2, 192, 5, 8, 8) and x0.dtype == torch.float32
    ch_std = x0.transpose(0, 1).flatten(1).std(1, correction=0)               # standardised per channel, then × σ_data
    varying = latents.transpose(0, 1).flatten(1).std(1) > 1e-3
    assert varying.sum() > 10
    torch.testing.assert_close(ch_std[varying], torch.full((int(varying.sum()),), 0.5), atol=5e-3, rtol=0)   # stats rounded to bf16
    torch.testing.assert_close(x0, 0.5 * norm.standardize(latents))
    torch.testing.assert_close(m.decode(x0), to_unit(video), atol=1e-5, rtol=0)
    # float input in [-1, 1] is taken as is; uint8 uses x/127.5 − 1 by default
    torch.testing.assert_close(m.encode(to_unit(video)), x0)
    assert not torch.allclose(m.encode(video, divisor=128.0), x0)
    # cached latents and videos give the same training step
    batch = dict(video=video, t5_text_embeddings=torch.randn(2, 4, 1024))
    torch.manual_seed(1); a = m.training_step(batch)[1]
    torch.manual_seed(1); b = m.training_step(dict(batch, latent=x0))[1]
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match='B×3×T×H×W'): m.encode(video[0])

def test_tokenizer_without_statistics_warns_and_normalizer_errors():
    with pytest.warns(UserWarning, match='no latent statistics'):
        m = Video2WorldDiffusion(VideoExtendDiT(DiTConfig.tiny()), CausalVideoTokenizer(TokenizerConfig.tiny()))
    assert isinstance(m.tokenizer, NormalizedTokenizer)
    assert m.tokenizer.temporal_compression == 8 and m.num_latent_frames(9) == 2 and m.num_latent_frames(1) == 1
    with pytest.raises(ValueError, match=r'1 \+ 8·k'): m.num_latent_frames(5)
    with pytest.raises(ValueError, match='already a NormalizedTokenizer'):
        Video2WorldDiffusion(VideoExtendDiT(DiTConfig.tiny()), make_tokenizer('tiny'), normalizer=LatentNormalizer.identity())
    # tokenizer parameters stay out of the model's parameters and state dict
    assert all(k.startswith(('net.', 'logvar.')) for k in m.state_dict())
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in m.net.parameters()) + 128

@pytest.fixture(scope='module')
def model8():
    "The tiny DiT with the 8×-in-time wavelet packet (levels=3), so 1 frame → 1 latent and 9 frames → 2, as upstream."
    torch.manual_seed(0)
    return Video2WorldDiffusion(VideoExtendDiT(DiTConfig.tiny(latent_channels=1536)), WaveletTokenizer(levels=3))

@pytest.mark.parametrize('n_in,n_lat', [(1, 1), (9, 2)])
def test_generate_reproduces_condition_frames(model8, n_in, n_lat):
    video = _clip()
    assert model8.num_latent_frames(n_in) == n_lat
    emb = torch.randn(2, 6, 1024)
    out = model8.generate(video[:, :, :n_in], emb, torch.zeros_like(emb), num_frames=17, num_steps=6, seed=3)
    assert out.shape == (2, 3, 17, 32, 32) and out.dtype == torch.uint8
    # exact tokenizer: the input comes back up to the truncating uint8 conversion of x/128 − 1 (−1 level) and the
    # σ_aug = 0.001 conditioning noise, which leaves about 1e-4 in the latent
    d = out[:, :, :n_in].int() - video[:, :, :n_in].int()
    assert d.abs().max() <= 2 and d.float().abs().mean() < 1
    # ... while the generated frames (an untrained net) do not
    assert (out[:, :, n_in:].int() - video[:, :, n_in:].int()).abs().float().mean() > 10

def test_generate_is_seeded_and_guidance_matters(model8):
    video, emb = _clip(), torch.randn(2, 6, 1024)
    neg = torch.randn(2, 6, 1024)
    kw = dict(num_frames=17, num_steps=4)
    a = model8.generate(video[:, :, :1], emb, neg, seed=11, **kw)
    assert torch.equal(a, model8.generate(video[:, :, :1], emb, neg, seed=11, **kw))
    assert not torch.equal(a, model8.generate(video[:, :, :1], emb, neg, seed=12, **kw))
    assert not torch.equal(a, model8.generate(video[:, :, :1], emb, neg, seed=11, guidance=0.0, **kw))
    # no negative prompt: guidance has no effect (upstream reuses the prompt), one pass per step
    b = model8.generate(video[:, :, :1], emb, seed=11, **kw)
    torch.testing.assert_close(b, model8.generate(video[:, :, :1], emb, seed=11, guidance=0.0, **kw), atol=0, rtol=0)
    # the RES 2ab sampler also reproduces the condition
    r, lat = model8.generate(video[:, :, :1], emb, neg, seed=11, sampler='res', return_latent=True, **kw)
    assert lat.shape == (2, 1536, 3, 4, 4) and (r[:, :, :1].int() - video[:, :, :1].int()).abs().max() <= 2
    with pytest.raises(ValueError, match="'euler' or 'res'"): model8.generate(video[:, :, :1], emb, sampler='dpm', **kw)
    with pytest.raises(ValueError, match=r'1 \+ 8·k'): model8.generate(video[:, :, :4], emb, **kw)
    with pytest.raises(ValueError, match='only num_frames=9'): model8.generate(video[:, :, :17], emb, num_frames=9)

def test_generate_start_noise_and_schedule(model8):
    "The Euler path starts at √(80²+1)·noise and takes 35 steps with 2 net passes each (one batched forward)."
    calls = []
    h = model8.net.register_forward_hook(lambda mod, args, out: calls.append((args[0].shape[0], float(args[1].flatten()[0]))))
    video, emb = _clip(B=1), torch.randn(1, 6, 1024)
    model8.generate(video[:, :, :1], emb, torch.zeros_like(emb), num_frames=9, seed=0)
    h.remove()
    assert len(calls) == 35 and all(b == 2 for b, _ in calls)
    c_noise = torch.tensor([c for _, c in calls], dtype=torch.float64)
    torch.testing.assert_close(c_noise, 0.25 * karras_sigmas(35)[:-1].log(), atol=1e-6, rtol=0)

# ------------------------------------------------------------------------------------------------------------- learning

def _learning_run(steps: int, tmp_path, n_videos: int=6, lr: float=1e-3, batch_size: int=8):
    "Train the tiny model on synthetic clips; pixel MSE of 16-frame continuations of 1 input frame, before and after."
    from cosmos_nb.data import make_synthetic_dataset, VideoDataset
    torch.manual_seed(0)
    make_synthetic_dataset(tmp_path, n_videos=n_videos, num_frames=24, size=(32, 32), seed=0)
    ds = VideoDataset(tmp_path, num_frames=17, video_size=(32, 32), start_frame_interval=2)
    items = [ds[i] for i in range(len(ds))]
    videos = torch.stack([it['video'] for it in items])                              # N, 3, 17, 32, 32 uint8
    embs = torch.stack([it['t5_text_embeddings'] for it in items])[:, :16]           # N, 16, 1024 (the toy captions are short)
    tok = WaveletTokenizer()
    std, mean = torch.std_mean(tok.encode(to_unit(videos)), dim=(0, 2, 3, 4), correction=0)
    norm = LatentNormalizer(mean, std.clamp_min(0.02), 192, 1)   # per channel; a floor keeps the empty high bands small
    model = Video2WorldDiffusion(VideoExtendDiT(DiTConfig.tiny(latent_channels=192)), tok, normalizer=norm)
    latents = model.encode(videos)
    held = torch.arange(0, len(videos), max(1, len(videos) // 4))[:4]
    def mse():
        out = model.generate(videos[held, :, :1], embs[held], num_frames=17, num_steps=15, guidance=0.0, seed=0)
        return ((out[:, :, 1:].float() - videos[held, :, 1:].float())**2).mean().item()
    before = mse()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for _ in range(steps):
        i = torch.randint(0, len(videos), (batch_size,))
        _, loss = model.training_step(dict(latent=latents[i], t5_text_embeddings=embs[i]))
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    return before, mse(), losses

def test_tiny_model_learns_to_continue_clips(tmp_path):
    "A few hundred CPU steps: continuations of the first frame get measurably closer to the real clips."
    before, after, losses = _learning_run(150, tmp_path)
    print(f'pixel MSE of continuations: before {before:.0f}, after {after:.0f}')
    assert np.mean(losses[-30:]) < np.mean(losses[:30])
    assert after < 0.75 * before

@pytest.mark.slow
def test_tiny_model_learns_to_continue_clips_long(tmp_path):
    before, after, losses = _learning_run(800, tmp_path)
    print(f'pixel MSE of continuations: before {before:.0f}, after {after:.0f}')
    assert after < 0.5 * before
