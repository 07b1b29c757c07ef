"""Trading weights with diffusers (issue 21): our DiT <-> `CosmosTransformer3DModel` (names, config, transformer folders), the
same forward in both, bit-exact round trips, errors that name the file; LoRA adapters in PEFT's layout applied through
diffusers / peft; `cosmos-nb export-checkpoint --format diffusers|peft`. Tiny config, random weights, CPU."""
import json

import pytest
import torch

from cosmos_nb.dit import DiTConfig, VideoExtendDiT, dit_state_dict_for_upstream
from cosmos_nb.diffusers_format import (CONFIG_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME, diffusers_config, dit_config_from_diffusers,
                                        dit_to_diffusers, find_diffusers_transformer, read_diffusers_transformer,
                                        save_diffusers_transformer, use_torch_resize)

from diffusers import CosmosTransformer3DModel   # a dev dependency (pyproject's `dev` and `diffusers` extras)

use_torch_resize()   # no torchvision on CPU CI: diffusers' padding-mask resize through F.interpolate (nearest), as torchvision does


def random_dit(seed=0, **overrides):
    "A tiny DiT whose every weight is random (the zero-initialised adaLN outputs and unit norms would hide mapping bugs)."
    torch.manual_seed(seed)
    net = VideoExtendDiT(DiTConfig.tiny(**overrides))
    with torch.no_grad():
        for p in net.parameters(): p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def inputs(seed=1, B=2):
    g = torch.Generator().manual_seed(seed)
    x, ctx = torch.randn(B, 16, 3, 8, 8, generator=g), torch.randn(B, 7, 1024, generator=g)
    cond = torch.zeros(B, 1, 3, 8, 8); cond[:, :, :1] = 1                      # the first latent frame conditions
    pad = torch.zeros(1, 1, 64, 64); pad[..., 48:] = 1                            # right quarter padded
    return x, torch.tensor([0.3, -1.2][:B]), ctx, cond, pad


def diffusers_forward(model, x, c_noise, ctx, cond, pad, fps):
    return model(x, c_noise, ctx, fps=fps, condition_mask=cond, padding_mask=pad).sample


def set_qk_eps(model, eps):
    for m in model.modules():
        if getattr(m, "norm_q", None) is not None: m.norm_q.eps = m.norm_k.eps = eps


# --- names and config at full size -------------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["predict1_7b_video2world", "predict1_14b_video2world"])
def test_full_size_keys_and_shapes_equal_diffusers_model(preset):
    cfg = getattr(DiTConfig, preset)()
    with torch.device("meta"):
        ours = VideoExtendDiT(cfg).state_dict()
        theirs = CosmosTransformer3DModel(**diffusers_config(cfg)).state_dict()
    converted = dit_to_diffusers(ours, cfg)
    assert set(converted) == set(theirs)
    assert all(converted[k].shape == theirs[k].shape for k in theirs)


def test_config_is_what_diffusers_saves():
    "Our config.json holds every argument diffusers' own save_pretrained writes for the same model, with equal values."
    cfg = DiTConfig.tiny()
    model = CosmosTransformer3DModel(**diffusers_config(cfg))
    theirs = {k: v for k, v in model.config.items() if not k.startswith("_")}
    ours = diffusers_config(cfg)
    assert {k: theirs[k] for k in ours} == {k: list(v) if isinstance(v, tuple) else v for k, v in ours.items()}
    assert dit_config_from_diffusers(dict(model.config), base=cfg) == cfg


# --- the same network ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [{}, {"extra_per_block_abs_pos_emb": False}])
def test_exported_transformer_forward_equals_ours(tmp_path, overrides):
    net = random_dit(**overrides)
    folder = save_diffusers_transformer(dit_state_dict_for_upstream(net), net.config, tmp_path / "transformer")
    model, info = CosmosTransformer3DModel.from_pretrained(folder, output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [] and info["mismatched_keys"] == []
    model.eval()
    x, c_noise, ctx, cond, pad = inputs()
    with torch.no_grad():
        for fps in (24, 16):
            ours = net(x, c_noise, ctx, fps=fps, padding_mask=pad, condition_video_input_mask=cond)
            theirs = diffusers_forward(model, x, c_noise, ctx, cond, pad, fps)
            torch.testing.assert_close(theirs, ours, rtol=0, atol=2e-4 * ours.abs().max().item())   # diffusers' q/k-norm eps is 1e-5
        set_qk_eps(model, net.config.norm_eps)                                                      # upstream's 1e-6: then fp32 rounding only
        ours = net(x, c_noise, ctx, fps=16, padding_mask=pad, condition_video_input_mask=cond)
        theirs = diffusers_forward(model, x, c_noise, ctx, cond, pad, 16)
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)
    # and the masks matter in both (a wrong channel order or a dropped mask would pass the checks above only by luck)
    with torch.no_grad():
        other = diffusers_forward(model, x, c_noise, ctx, torch.zeros_like(cond), pad, 16)
    assert (other - theirs).abs().max() > 1e-3


# --- folders: round trips, shards, errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,shard", [(torch.float32, "5GB"), (torch.bfloat16, "100KB")])
def test_export_import_round_trips_bit_exactly(tmp_path, dtype, shard):
    net = random_dit().to(dtype)
    sd = dit_state_dict_for_upstream(net)
    folder = save_diffusers_transformer(sd, net.config, tmp_path / "t", max_shard_size=shard)
    sharded = (folder / WEIGHTS_INDEX_NAME).is_file()
    assert sharded == (shard == "100KB") and (folder / WEIGHTS_NAME).is_file() != sharded
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]            # no temp files left
    back, cfg = read_diffusers_transformer(folder, base=net.config)
    assert cfg == net.config and set(back) == set(sd)
    for k, v in sd.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
    loaded = VideoExtendDiT(cfg).to(dtype)
    loaded.load_state_dict({k[len("net."):]: v for k, v in back.items()}, strict=True)


def test_reexport_with_other_sharding_leaves_no_stale_shards(tmp_path):
    net = random_dit()
    sd = dit_state_dict_for_upstream(net)
    folder = save_diffusers_transformer(sd, net.config, tmp_path / "t", max_shard_size="100KB")
    assert len(list(folder.glob("*-of-*.safetensors"))) > 1
    save_diffusers_transformer(sd, net.config, folder)
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    CosmosTransformer3DModel.from_pretrained(folder)


def test_missing_and_unexpected_keys_name_the_file(tmp_path):
    from safetensors.torch import load_file, save_file
    net = random_dit()
    sd = dit_state_dict_for_upstream(net)
    with pytest.raises(ValueError, match=r"runs/x/iter_000000010_model\.pt: unexpected blocks\.block0\.extra\.weight"):
        dit_to_diffusers({**sd, "net.blocks.block0.extra.weight": torch.zeros(1)}, net.config, "runs/x/iter_000000010_model.pt")
    with pytest.raises(ValueError, match=r"missing final_layer\.linear\.weight"):
        dit_to_diffusers({k: v for k, v in sd.items() if "final_layer.linear" not in k}, net.config)
    with pytest.raises(ValueError, match=r"merged first"):                       # LoRA tensors: merge before exporting
        dit_to_diffusers({**sd, "net.blocks.block0.blocks.0.block.attn.to_q_lora.net.0.weight": torch.zeros(4, 64)}, net.config)
    folder = save_diffusers_transformer(sd, net.config, tmp_path / "t")
    f = folder / WEIGHTS_NAME
    tensors = load_file(f)
    save_file({**{k: v for k, v in tensors.items() if k != "proj_out.weight"}, "transformer_blocks.0.attn1.to_x.weight": torch.zeros(1)}, f)
    with pytest.raises(ValueError) as e:
        read_diffusers_transformer(folder)
    msg = str(e.value)
    assert str(f) in msg and "missing proj_out.weight" in msg and "unexpected transformer_blocks.0.attn1.to_x.weight" in msg
    # a model of another size: the shapes are named
    save_diffusers_transformer(dit_state_dict_for_upstream(random_dit(model_channels=128)), DiTConfig.tiny(model_channels=128), tmp_path / "wide")
    cfg = json.loads((tmp_path / "wide" / CONFIG_NAME).read_text())
    (tmp_path / "wide" / CONFIG_NAME).write_text(json.dumps({**cfg, "attention_head_dim": 32}))
    with pytest.raises(ValueError, match=r"wrong shape .*\(expected"):
        read_diffusers_transformer(tmp_path / "wide")


def test_detection_by_files(tmp_path):
    net = random_dit()
    assert find_diffusers_transformer(tmp_path) is None
    torch.save(dit_state_dict_for_upstream(net), tmp_path / "model.pt")
    assert find_diffusers_transformer(tmp_path / "model.pt") is None and find_diffusers_transformer(tmp_path) is None
    t = save_diffusers_transformer(dit_state_dict_for_upstream(net), net.config, tmp_path / "pipe" / "transformer")
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    assert find_diffusers_transformer(tmp_path / "pipe") == t == find_diffusers_transformer(t)
    (tmp_path / "vae").mkdir(); (tmp_path / "vae" / CONFIG_NAME).write_text(json.dumps({"_class_name": "AutoencoderKLCosmos"}))
    (tmp_path / "vae" / WEIGHTS_NAME).write_bytes(b"")
    assert find_diffusers_transformer(tmp_path / "vae") is None
    with pytest.raises(FileNotFoundError, match="not a diffusers CosmosTransformer3DModel folder"):
        read_diffusers_transformer(tmp_path / "vae")


def test_cosmos2_transformer_is_refused_by_name(tmp_path):
    net = random_dit()
    folder = save_diffusers_transformer(dit_state_dict_for_upstream(net), net.config, tmp_path / "t")
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    (folder / CONFIG_NAME).write_text(json.dumps({**cfg, "use_crossattn_projection": True}))
    with pytest.raises(ValueError, match=r"config\.json: .*Cosmos-Predict2"):
        read_diffusers_transformer(folder)


# --- LoRA adapters in PEFT's layout ----------------------------------------------------------------------------------------

from cosmos_nb.experiments import LoRAConfig                                   # noqa: E402
from cosmos_nb.lora import (apply_lora, load_lora_adapter, lora_layers, read_lora_checkpoint, read_peft_adapter,  # noqa: E402
                            save_lora_adapter, save_peft_adapter, upstream_lora_checkpoint)


def trained_lora(net, rank=4, scale=0.5, first_nblocks=2, seed=5):
    "Add adapters to `net` and make A and B random (as after training); scale != 1 so a wrong alpha would show."
    apply_lora(net, LoRAConfig(enabled=True, first_nblocks=first_nblocks, rank=rank, scale=scale))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(net).values():
            for lin in (layer.lora_A["default"], layer.lora_B["default"]): lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * 0.1)
    return net


def test_lora_through_diffusers_and_peft_equals_ours(tmp_path):
    from peft import PeftModel
    net = random_dit()
    base_folder = save_diffusers_transformer(dit_state_dict_for_upstream(net), net.config, tmp_path / "base")
    trained_lora(net)
    adapter = save_peft_adapter(net, tmp_path / "adapter")
    x, c_noise, ctx, cond, pad = inputs()
    with torch.no_grad(): ours = net(x, c_noise, ctx, fps=16, padding_mask=pad, condition_video_input_mask=cond)

    for how in ({}, {"use_safetensors": True}):          # the plain call reads pytorch_lora_weights.bin; this one the .safetensors
        transformer = CosmosTransformer3DModel.from_pretrained(base_folder).eval()
        transformer.load_lora_adapter(adapter, **how)                            # diffusers' default prefix, no weight_name
        c = transformer.peft_config["default_0"]
        assert (c.r, c.lora_alpha) == ((4, 2.0) if how else (4, 4))              # the .bin has no header: alpha = r, scale in B
        set_qk_eps(transformer, net.config.norm_eps)
        with torch.no_grad(): via_diffusers = diffusers_forward(transformer, x, c_noise, ctx, cond, pad, 16)
        torch.testing.assert_close(via_diffusers, ours, rtol=1e-5, atol=1e-5)

    plain = CosmosTransformer3DModel.from_pretrained(base_folder).eval()
    set_qk_eps(plain, net.config.norm_eps)
    with torch.no_grad(): without = diffusers_forward(plain, x, c_noise, ctx, cond, pad, 16)
    assert (without - ours).abs().max() > 1e-3                                  # the adapter changes the output
    via_peft = PeftModel.from_pretrained(plain, adapter).eval()
    with torch.no_grad(): y = diffusers_forward(via_peft.base_model.model, x, c_noise, ctx, cond, pad, 16)
    torch.testing.assert_close(y, ours, rtol=1e-5, atol=1e-5)


def test_peft_folder_round_trips_into_our_model_bit_exactly(tmp_path):
    net = trained_lora(random_dit(), rank=3, scale=0.5)
    save_lora_adapter(net, tmp_path / "adapter.safetensors")
    folder = save_peft_adapter(tmp_path / "adapter.safetensors", tmp_path / "peft")      # from our adapter file
    ours_sd, meta, _ = read_lora_checkpoint(tmp_path / "adapter.safetensors")
    sd, peft_meta = read_peft_adapter(folder)
    assert set(sd) == set(ours_sd) and all(torch.equal(sd[k], ours_sd[k]) for k in sd)
    assert peft_meta["scale"] == meta["scale"] == 0.5
    fresh = random_dit()                                                       # the same base weights, no adapters
    cfg = load_lora_adapter(fresh, folder)
    assert (cfg.first_nblocks, cfg.rank, cfg.scale) == (2, 3, 0.5)
    x, c_noise, ctx, cond, pad = inputs()
    with torch.no_grad():
        assert torch.equal(fresh(x, c_noise, ctx, fps=16, padding_mask=pad, condition_video_input_mask=cond),
                           net(x, c_noise, ctx, fps=16, padding_mask=pad, condition_video_input_mask=cond))


def test_peft_folder_from_a_lora_run_checkpoint_takes_the_ema(tmp_path):
    net = trained_lora(random_dit(), scale=1.0)
    ema = {n: p.detach() + 1.0 for n, p in net.named_parameters() if ".lora_" in n}
    torch.save(upstream_lora_checkpoint(net, ema=ema), tmp_path / "iter_000000010_model.pt")
    sd, _ = read_peft_adapter(save_peft_adapter(tmp_path / "iter_000000010_model.pt", tmp_path / "ema"))
    reg, _ = read_peft_adapter(save_peft_adapter(tmp_path / "iter_000000010_model.pt", tmp_path / "reg", use_ema=False))
    k = "net.blocks.block1.blocks.1.block.attn.to_v_lora.net.1.weight"
    assert torch.equal(sd[k], reg[k] + 1.0)


def test_peft_folders_we_cannot_use_are_refused_by_name(tmp_path):
    from safetensors.torch import load_file, save_file
    net = trained_lora(random_dit())
    folder = save_peft_adapter(net, tmp_path / "a")
    cfg = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    with pytest.raises(ValueError, match=r"adapter_config\.json: .*plain LoRA"):
        load_lora_adapter(random_dit(), folder)
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    w = folder / "adapter_model.safetensors"
    save_file({**load_file(w), "base_model.model.transformer_blocks.0.ff.net.2.lora_A.weight": torch.zeros(4, 256)}, w)
    with pytest.raises(ValueError, match=r"adapter_model\.safetensors: .*ff\.net\.2\.lora_A"):
        load_lora_adapter(random_dit(), folder)


# --- cosmos-nb export-checkpoint --format diffusers | peft ---------------------------------------------------------------

from dataclasses import replace                                                 # noqa: E402
from cosmos_nb.checkpoint import save_training_checkpoint                       # noqa: E402
from cosmos_nb.config import config_to_dict                                     # noqa: E402
from cosmos_nb.diffusion import Video2WorldDiffusion                            # noqa: E402
from cosmos_nb.experiments import get_experiment                                # noqa: E402
from cosmos_nb.pretrained import ExportError, export_checkpoint, export_checkpoint_main  # noqa: E402


def tiny_run(tmp_path, lora: bool):
    "A run folder with one checkpoint written by the trainer's own function: random base (and trained adapters)."
    cfg = get_experiment('video2world_tiny_lora_synthetic' if lora else 'video2world_tiny_full_synthetic')
    net = random_dit()
    cfg = replace(cfg, net=net.config, lora=replace(cfg.lora, first_nblocks=2, rank=4, scale=0.5) if lora else cfg.lora)
    run = tmp_path / 'run'; run.mkdir()
    (run / 'config.json').write_text(json.dumps(config_to_dict(cfg)))
    if lora: trained_lora(net, rank=4, scale=0.5)
    model = Video2WorldDiffusion(net)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    save_training_checkpoint(run / 'checkpoints', 10, model, opt, lora=lora)
    return run, net


def test_export_lora_run_as_merged_diffusers_transformer_and_as_peft_adapter(tmp_path):
    run, net = tiny_run(tmp_path, lora=True)
    folder = export_checkpoint(run, format='diffusers', checkpoint_dir=tmp_path / 'ck')
    assert folder == tmp_path / 'ck' / 'Cosmos-Predict1-7B-Video2World_post-trained-lora_diffusers'
    model, info = CosmosTransformer3DModel.from_pretrained(folder, output_loading_info=True)
    assert info['missing_keys'] == [] and info['unexpected_keys'] == []
    assert not any('lora' in k for k in model.state_dict())                     # merged: a plain transformer
    set_qk_eps(model.eval(), net.config.norm_eps)
    x, c_noise, ctx, cond, pad = inputs()
    with torch.no_grad():
        ours = net.eval()(x, c_noise, ctx, fps=16, padding_mask=pad, condition_video_input_mask=cond)   # adapters unmerged
        torch.testing.assert_close(diffusers_forward(model, x, c_noise, ctx, cond, pad, 16), ours, rtol=1e-5, atol=1e-5)
    adapter = export_checkpoint_main([str(run), '--format', 'peft', '--checkpoint_dir', str(tmp_path / 'ck')])
    assert adapter.name == 'Cosmos-Predict1-7B-Video2World_post-trained-lora_peft'
    sd, meta = read_peft_adapter(adapter)
    assert len(sd) == 16 and meta['scale'] == 0.5
    with pytest.raises(ExportError, match='export without --ema'):              # the run kept no EMA
        export_checkpoint(run, ema=True, format='peft', checkpoint_dir=tmp_path / 'ck')


def test_export_full_run_as_bf16_diffusers_folder_from_the_command_line(tmp_path):
    run, net = tiny_run(tmp_path, lora=False)
    folder = export_checkpoint_main([str(run), '--format', 'diffusers', '--dtype', 'bfloat16', '--output_dir', str(tmp_path / 'out')])
    assert folder == tmp_path / 'out'
    back, cfg = read_diffusers_transformer(folder, base=net.config)
    assert cfg == net.config
    for k, v in dit_state_dict_for_upstream(net).items():
        assert back[k].dtype == torch.bfloat16 and torch.equal(back[k], v.to(torch.bfloat16)), k
    with pytest.raises(ExportError, match='--format peft writes LoRA adapters'):
        export_checkpoint(run, format='peft', output_dir=tmp_path / 'x')
    with pytest.raises(ExportError, match='--dtype applies to --format diffusers only'):
        export_checkpoint(run, dtype='bfloat16', output_dir=tmp_path / 'x')


# --- the reverse: inference and training take a diffusers folder -----------------------------------------------------------

from cosmos_nb.dit import read_dit_checkpoint                                   # noqa: E402
from cosmos_nb.layout import DIT_DIR, read_model_config                         # noqa: E402
from cosmos_nb.testing import make_tiny_checkpoints                             # noqa: E402
from cosmos_nb.train import preflight, start_weights                            # noqa: E402
from cosmos_nb.video2world import PipelineOptions, Video2WorldPipeline, find_model_files, load_video2world_dit  # noqa: E402


@pytest.fixture(scope='module')
def ck(tmp_path_factory):
    "Tiny checkpoints (DiT, tokenizer, T5) plus the DiT as a diffusers transformer folder and as a pipeline folder's transformer/."
    ck = make_tiny_checkpoints(tmp_path_factory.mktemp('diffusers') / 'checkpoints')
    net, _, _, _ = read_dit_checkpoint(ck / DIT_DIR / 'model.pt')
    cfg = read_model_config(ck / DIT_DIR)
    save_diffusers_transformer(net, cfg, ck / 'tiny_diffusers')
    save_diffusers_transformer(net, cfg, ck / 'tiny_pipeline' / 'transformer')
    (ck / 'tiny_pipeline' / 'model_index.json').write_text(json.dumps({'_class_name': 'CosmosVideoToWorldPipeline'}))
    return ck


def test_video2world_generates_the_same_video_from_the_diffusers_folder(ck, example_media):
    assert find_model_files(ck, 'tiny_diffusers').dit == ck / 'tiny_diffusers'
    assert find_model_files(ck, str(ck / 'tiny_pipeline')).dit == ck / 'tiny_pipeline' / 'transformer'   # a path works too
    a = load_video2world_dit(ck / DIT_DIR / 'model.pt', dtype=torch.float32, verbose=False)
    b = load_video2world_dit(ck / 'tiny_diffusers', dtype=torch.float32, verbose=False)
    assert a.config == b.config and all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    opts = PipelineOptions(device='cpu', dtype='float32', disable_prompt_upsampler=True, disable_guardrail=True, progress=False,
                           checkpoint_dir=ck)
    kw = dict(num_video_frames=9, height=32, width=32, num_steps=2)
    image = example_media / 'video2world_input0.jpg'
    ours = Video2WorldPipeline(opts).generate(image, 'a red cube', **kw)
    theirs = Video2WorldPipeline(opts, diffusion_transformer_dir='tiny_pipeline').generate(image, 'a red cube', **kw)
    assert torch.equal(ours.video, theirs.video)


def test_video2world_takes_a_peft_adapter_folder_as_lora_path(ck, tmp_path):
    base = load_video2world_dit(ck / DIT_DIR / 'model.pt', dtype=torch.float32, verbose=False)
    trained_lora(base, scale=0.5)
    adapter = save_peft_adapter(base, tmp_path / 'adapter')
    assert find_model_files(ck, lora_path=adapter).lora == ((adapter, 1.0),)
    merged = load_video2world_dit(ck / 'tiny_diffusers', lora_path=adapter, dtype=torch.float32, verbose=False)
    x, c_noise, _, cond, pad = inputs(B=1)
    ctx = torch.randn(1, 7, merged.config.crossattn_emb_channels)
    with torch.no_grad():
        torch.testing.assert_close(merged(x, c_noise, ctx, fps=16, padding_mask=pad, condition_video_input_mask=cond),
                                   base(x, c_noise, ctx, fps=16, padding_mask=pad, condition_video_input_mask=cond))


def test_training_starts_from_a_diffusers_folder(ck):
    cfg = get_experiment('video2world_tiny_full_synthetic')
    net_cfg = read_model_config(ck / DIT_DIR)
    from_pt = replace(cfg, net=net_cfg, checkpoint=replace(cfg.checkpoint, load_path=str(ck / DIT_DIR / 'model.pt')))
    from_folder = replace(from_pt, checkpoint=replace(cfg.checkpoint, load_path=str(ck / 'tiny_pipeline')))
    a, _ = start_weights(from_pt)
    b, rep = start_weights(from_folder)
    assert not any(k.startswith('logvar.') for k in b) and not rep.logvar      # diffusers keeps no uncertainty head
    assert {k for k in a if k.startswith('net.')} == set(b) and all(torch.equal(a[k], b[k]) for k in b)
    assert not [p for p in preflight(from_folder) if 'load_path' in p]
    missing = replace(from_pt, checkpoint=replace(cfg.checkpoint, load_path=str(ck / 'nothing_here')))
    assert [p for p in preflight(missing) if 'load_path' in p]
    with pytest.raises(FileNotFoundError, match='does not exist'):
        start_weights(missing)


# --- several adapters at once (merged) -----------------------------------------------------------------------------------

from cosmos_nb.lora import merge_lora_adapters                                  # noqa: E402


def test_two_adapters_at_weights_1_and_half_equal_the_merged_sum(tmp_path):
    a = trained_lora(random_dit(), rank=4, scale=0.5, seed=1)
    b = trained_lora(random_dit(), rank=2, scale=1.0, first_nblocks=1, seed=2)
    save_peft_adapter(a, tmp_path / 'a')                                       # a PEFT folder ...
    save_lora_adapter(b, tmp_path / 'b.safetensors')                           # ... and our adapter file
    merged = random_dit()
    merge_lora_adapters(merged, [str(tmp_path / 'a'), f"{tmp_path / 'b.safetensors'}:0.5"])
    expected = random_dit()
    with torch.no_grad():
        for w, m in ((1.0, a), (0.5, b)):
            for name, layer in lora_layers(m).items():
                expected.get_submodule(name).weight += w * layer.scaling['default'] * layer.lora_B['default'].weight @ layer.lora_A['default'].weight
    for k, v in expected.state_dict().items():
        torch.testing.assert_close(merged.state_dict()[k], v, rtol=1e-6, atol=1e-7)
    changed = [k for k, v in random_dit().state_dict().items() if not torch.equal(v, merged.state_dict()[k])]
    assert len(changed) == 8 and all('to_q.0' in k or 'to_v.0' in k for k in changed)   # block 0 and 1: FA/CA x q/v
    with pytest.raises(ValueError, match=r'b\.safetensors: .*another model size'):
        merge_lora_adapters(random_dit(model_channels=128), [tmp_path / 'b.safetensors'])
    with pytest.raises(ValueError, match='already has LoRA layers'):
        merge_lora_adapters(a, [tmp_path / 'b.safetensors'])
