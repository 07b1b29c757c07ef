"""Checks of cosmos_nb.lora that do not belong in the docs: full-size (meta) counts and names, a hand-written upstream
checkpoint, EMA layouts, block-count mismatches, dtypes, and FSDP2 with two gloo processes."""
import io, os, pickle

import pytest
import torch
import torch.multiprocessing as mp

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from cosmos_nb.diffusion import Video2WorldDiffusion, logvar_head
from cosmos_nb.dit import DiTConfig, VideoExtendDiT, dit_state_dict_for_upstream, load_dit_checkpoint
from cosmos_nb.parallelize import apply_fsdp
from cosmos_nb.experiments import LoRAConfig
from cosmos_nb.lora import (ADAPTER, apply_lora, infer_lora_config, is_lora_param, load_lora_adapter, load_lora_checkpoint,
                            lora_layers, lora_state_dict, merge_lora, model_lora_config, peft_to_upstream_key,
                            LORA_METADATA_KEY, read_lora_adapter_file, read_lora_checkpoint, save_lora_adapter, upstream_lora_checkpoint, upstream_lora_state_dict,
                            upstream_to_peft_key)

CFG = LoRAConfig(enabled=True, first_nblocks=2, rank=4, scale=1.0)


# ---------------------------------------------------------------------------------------------------------------
# helpers

def base_model(seed=0, dtype=torch.float32):
    "A tiny DiT whose every weight is random (upstream zero-inits the sub-block adaLN outputs; that would hide bugs)."
    torch.manual_seed(seed)
    m = VideoExtendDiT(DiTConfig.tiny())
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "adaLN_modulation.2" in name or "to_q.1" in name or "to_k.1" in name or "affline_norm" in name:
                p.add_(0.05 * torch.randn_like(p))
    return m.to(dtype)


def trained_lora(seed=0, cfg=CFG, dtype=torch.float32):
    "A tiny DiT with adapters whose A and B are both random, as after training."
    m = apply_lora(base_model(seed, dtype), cfg)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for layer in lora_layers(m).values():
            for w in (layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight):
                w.copy_(0.05 * torch.randn(w.shape, generator=g))
    return m


def inputs(B=1, T=2, H=8, W=8, M=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 16, T, H, W, generator=g)
    ctx = torch.randn(B, M, 1024, generator=g)
    cond = torch.zeros(B, 1, T, H, W)
    cond[:, :, :1] = 1
    return x, torch.full((B,), 0.2), ctx, cond


def run(m, seed=1, **kw):
    x, t, ctx, cond = inputs(seed=seed, **kw)
    with torch.no_grad(): return m(x, t, ctx, fps=24, condition_video_input_mask=cond)


def upstream_lora_keys(first_nblocks):
    "The adapter keys of an upstream LoRA checkpoint, written out (`to_q_lora`/`to_v_lora` of FA and CA, `net.0` down, `net.1` up)."
    return [f"net.blocks.block{i}.blocks.{j}.block.attn.to_{qv}_lora.net.{n}.weight"
            for i in range(first_nblocks) for j in (0, 1) for qv in "qv" for n in (0, 1)]


# ---------------------------------------------------------------------------------------------------------------
# the full-size network on the meta device

@pytest.mark.parametrize("nblocks, total", [(28, 6_651_904), (27, 6_414_336)])
def test_7b_counts_names_and_shapes_on_meta(nblocks, total):
    with torch.device("meta"): net = VideoExtendDiT(DiTConfig.predict1_7b_video2world())
    n_base = sum(p.numel() for p in net.parameters())
    apply_lora(net, LoRAConfig(enabled=True, first_nblocks=nblocks, rank=8, scale=1.0))
    trainable = {n: p for n, p in net.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in trainable.values()) == total
    for i in range(nblocks):
        assert sum(p.numel() for n, p in trainable.items() if n.startswith(f"blocks.block{i}.")) == 237_568
    assert sum(p.numel() for n, p in net.named_parameters() if not p.requires_grad) == n_base  # every base weight frozen
    sd = lora_state_dict(net)
    assert sorted(sd) == sorted(upstream_lora_keys(nblocks))
    p = "net.blocks.block0.blocks."
    shapes = {f"{p}0.block.attn.to_q_lora.net.0.weight": (8, 4096), f"{p}0.block.attn.to_q_lora.net.1.weight": (4096, 8),
              f"{p}0.block.attn.to_v_lora.net.0.weight": (8, 4096), f"{p}0.block.attn.to_v_lora.net.1.weight": (4096, 8),
              f"{p}1.block.attn.to_q_lora.net.0.weight": (8, 4096), f"{p}1.block.attn.to_q_lora.net.1.weight": (4096, 8),
              f"{p}1.block.attn.to_v_lora.net.0.weight": (8, 1024), f"{p}1.block.attn.to_v_lora.net.1.weight": (4096, 8)}
    assert {k: tuple(sd[k].shape) for k in shapes} == shapes
    assert infer_lora_config(sd) == LoRAConfig(enabled=True, first_nblocks=nblocks, rank=8, scale=1.0)
    # every name survives the trip to upstream's names and back
    wrapped = {f"{n}.base_layer.weight" for n in lora_layers(net)}
    for k in net.state_dict():
        up = peft_to_upstream_key(k)
        assert "base_layer" not in up and "lora_A" not in up and "lora_B" not in up
        assert upstream_to_peft_key(up, base_layer=up.replace(".weight", ".base_layer.weight") in wrapped) == k


def test_upstream_full_state_dict_has_exactly_the_released_keys_plus_lora():
    with torch.device("meta"):
        plain = VideoExtendDiT(DiTConfig.predict1_7b_video2world())
        net = apply_lora(VideoExtendDiT(DiTConfig.predict1_7b_video2world()), LoRAConfig(enabled=True))
    want = set(dit_state_dict_for_upstream(plain)) | set(upstream_lora_keys(28))
    assert set(upstream_lora_state_dict(net)) == want and len(want) == 571 + 28 * 8


# ---------------------------------------------------------------------------------------------------------------
# behaviour on the tiny network

@pytest.mark.parametrize("dtype, lora_dtype", [(torch.float32, None), (torch.bfloat16, None), (torch.bfloat16, torch.float32)])
def test_init_is_the_base_model_exactly(dtype, lora_dtype):
    ref = run(base_model(3, dtype))
    m = apply_lora(base_model(3, dtype), CFG, dtype=lora_dtype)
    for layer in lora_layers(m).values():
        A, B = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
        assert A.dtype == (lora_dtype or dtype) and layer.base_layer.weight.dtype == dtype
        assert (B == 0).all() and layer.scaling[ADAPTER] == 1.0
    A = torch.cat([l.lora_A[ADAPTER].weight.flatten().float() for l in lora_layers(m).values()])
    assert abs(A.std().item() - 1 / CFG.rank) < 0.02 and abs(A.mean().item()) < 0.02  # N(0, (1/rank)^2), not Kaiming
    assert torch.equal(run(m), ref)


def test_perturbed_adapters_follow_the_formula():
    cfg = LoRAConfig(enabled=True, first_nblocks=1, rank=2, scale=3.0)
    m = apply_lora(base_model(3), cfg)
    ref = run(base_model(3))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in lora_layers(m).values(): layer.lora_B[ADAPTER].weight.copy_(torch.randn(layer.lora_B[ADAPTER].weight.shape, generator=g))
    assert not torch.allclose(run(m), ref, atol=1e-3)
    # one network with the adapters folded in by hand (W + scale·B·A) computes the same thing: names, q/v, FA/CA all right
    folded = base_model(3)
    with torch.no_grad():
        for name, layer in lora_layers(m).items():
            folded.get_submodule(name).weight += 3.0 * layer.lora_B[ADAPTER].weight @ layer.lora_A[ADAPTER].weight
    torch.testing.assert_close(run(m), run(folded), rtol=1e-4, atol=1e-5)
    assert model_lora_config(m) == cfg


def test_only_adapters_get_gradients_and_logvar_is_frozen():
    diff = Video2WorldDiffusion(base_model(0))
    apply_lora(diff, CFG)
    assert not any(p.requires_grad for p in diff.logvar.parameters())
    trainable = [n for n, p in diff.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("net.") and is_lora_param(n) for n in trainable)
    with torch.no_grad():
        for layer in lora_layers(diff).values(): layer.lora_B[ADAPTER].weight.normal_(std=0.1)
    x, t, ctx, cond = inputs()
    diff.net(x, t, ctx, fps=24, condition_video_input_mask=cond).square().mean().backward()
    for n, p in diff.named_parameters():
        if is_lora_param(n): assert p.grad is not None and p.grad.abs().sum() > 0, n
        else: assert p.grad is None, n


def test_apply_lora_refuses_bad_configs():
    with pytest.raises(ValueError, match="enabled is False"): apply_lora(base_model(), LoRAConfig(enabled=False))
    with pytest.raises(ValueError, match="between 1 and"): apply_lora(base_model(), LoRAConfig(enabled=True, first_nblocks=0))
    with pytest.raises(ValueError, match="num_blocks=2"): apply_lora(base_model(), LoRAConfig(enabled=True, first_nblocks=3))
    with pytest.raises(ValueError, match="rank=0"): apply_lora(base_model(), LoRAConfig(enabled=True, first_nblocks=1, rank=0))
    with pytest.raises(TypeError, match="VideoExtendDiT"): apply_lora(torch.nn.Linear(2, 2), CFG)
    with pytest.raises(ValueError, match="already has LoRA"): apply_lora(apply_lora(base_model(), CFG), CFG)


# ---------------------------------------------------------------------------------------------------------------
# files

def test_adapter_file_on_fresh_base_equals_full_checkpoint(tmp_path):
    src = trained_lora(5)
    want = run(src)
    torch.save(upstream_lora_checkpoint(src), tmp_path / "iter_000000010_model.pt")
    save_lora_adapter(src, tmp_path / "adapter.safetensors")
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file
    assert (tmp_path / "adapter.safetensors").stat().st_size < (tmp_path / "iter_000000010_model.pt").stat().st_size / 10
    full = VideoExtendDiT(DiTConfig.tiny())  # random weights: everything comes from the file
    rep = load_lora_checkpoint(full, tmp_path / "iter_000000010_model.pt")
    assert rep.ok and not rep.used_ema
    base = base_model(5)  # the released base weights
    assert load_lora_adapter(base, tmp_path / "adapter.safetensors") == CFG
    assert torch.equal(run(full), want) and torch.equal(run(base), want)
    # the adapter part of a full checkpoint can be applied the same way
    base2 = base_model(5)
    load_lora_adapter(base2, tmp_path / "iter_000000010_model.pt")
    assert torch.equal(run(base2), want)


def test_adapter_metadata_and_scale(tmp_path):
    src = trained_lora(1, LoRAConfig(enabled=True, first_nblocks=1, rank=3, scale=0.5))
    save_lora_adapter(src, tmp_path / "a.safetensors")
    from safetensors import safe_open
    with safe_open(tmp_path / "a.safetensors", "pt") as f:                   # a plain safetensors file: any tool lists it
        assert sorted(f.keys()) == sorted(upstream_lora_keys(1)) and LORA_METADATA_KEY in f.metadata()
    obj = read_lora_adapter_file(tmp_path / "a.safetensors")
    assert set(obj) == {"lora", "metadata"} and sorted(obj["lora"]) == sorted(upstream_lora_keys(1))
    assert {k: obj["metadata"][k] for k in ("rank", "scale", "first_nblocks", "targets")} == {"rank": 3, "scale": 0.5, "first_nblocks": 1, "targets": ["to_q", "to_v"]}
    dst = base_model(1)
    assert load_lora_adapter(dst, tmp_path / "a.safetensors").scale == 0.5
    assert torch.equal(run(dst), run(src))
    with pytest.raises(ValueError, match="scale 0.5"): load_lora_adapter(apply_lora(base_model(1), LoRAConfig(enabled=True, first_nblocks=1, rank=3)), tmp_path / "a.safetensors")
    torch.save(obj, tmp_path / "old_lora_adapter.pt")                           # the pickled file runs wrote before safetensors
    old = base_model(1)
    assert load_lora_adapter(old, tmp_path / "old_lora_adapter.pt").scale == 0.5 and torch.equal(run(old), run(src))
    with pytest.raises(ValueError, match="should end in .safetensors"): save_lora_adapter(src, tmp_path / "a.pt")
    obj["metadata"]["first_nblocks"] = 2
    with pytest.raises(ValueError, match="metadata says first_nblocks=2"): load_lora_adapter(base_model(1), obj)


def test_merged_equals_unmerged_and_loads_as_a_plain_dit():
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 5e-2)):
        m = trained_lora(2, dtype=dtype)
        want = run(m)
        merge_lora(m)
        assert not lora_layers(m) and not hasattr(m, "peft_config")
        assert all(not is_lora_param(n) and "base_layer" not in n for n in m.state_dict())
        torch.testing.assert_close(run(m), want, rtol=tol, atol=tol)
        plain = VideoExtendDiT(DiTConfig.tiny()).to(dtype)
        assert load_dit_checkpoint(plain, dit_state_dict_for_upstream(m)).ok  # strict
        torch.testing.assert_close(run(plain), run(m), rtol=0, atol=0)


def hand_written_upstream_checkpoint(seed=7, nblocks=2, rank=4):
    "An upstream `iter_N_model.pt` built from upstream's key names only (no cosmos_nb.lora code)."
    g = torch.Generator().manual_seed(seed)
    base = base_model(seed)
    head = logvar_head()
    with torch.no_grad(): head[1].weight.normal_(generator=g)
    sd = dit_state_dict_for_upstream(base, head)  # the released layout: net.* and logvar.*
    for k in upstream_lora_keys(nblocks):
        out, inp = (64, rank) if k.endswith("net.1.weight") else (rank, 1024 if ".blocks.1.block.attn.to_v_" in k else 64)
        sd[k] = 0.05 * torch.randn(out, inp, generator=g)
    te = io.BytesIO()
    torch.save(None, te)  # TE DotProductAttention _extra_state
    for i in range(2):
        for j in (0, 1): sd[f"net.blocks.block{i}.blocks.{j}.block.attn.attn_op._extra_state"] = io.BytesIO(te.getvalue())
    ema = {k.replace(".", "-"): 0.05 * torch.randn(sd[k].shape, generator=g) for k in upstream_lora_keys(nblocks)}  # fp32, '-' names
    return base, head, sd, ema


def folded_reference(base, sd, nblocks=2, scale=1.0):
    "The base model with W += scale·B·A folded in by hand from upstream-named tensors."
    ref = VideoExtendDiT(DiTConfig.tiny())
    ref.load_state_dict(base.state_dict())
    with torch.no_grad():
        for i in range(nblocks):
            for j in (0, 1):
                for qv in "qv":
                    a = f"net.blocks.block{i}.blocks.{j}.block.attn.to_{qv}_lora.net."
                    ref.get_submodule(f"blocks.block{i}.blocks.{j}.block.attn.to_{qv}.0").weight += scale * sd[a + "1.weight"] @ sd[a + "0.weight"]
    return ref


@pytest.mark.parametrize("layout", ["ema", "ema_none", "no_ema_key", "ema_ignored"])
def test_hand_written_upstream_checkpoint_loads(layout, tmp_path):
    base, head, sd, ema = hand_written_upstream_checkpoint()
    obj = {"model": dict(sd), "trained_data_record": {"image": 0, "video": 16, "iteration": 8}}
    if layout != "no_ema_key": obj["ema"] = None if layout == "ema_none" else ema
    path = tmp_path / "iter_000000008_model.pt"
    torch.save(obj, path)
    diff = Video2WorldDiffusion(VideoExtendDiT(DiTConfig.tiny()))  # random weights, no adapters yet
    rep = load_lora_checkpoint(diff, path, use_ema=False if layout == "ema_ignored" else None)
    used = layout == "ema"
    assert rep.ok and rep.used_ema == used and len(rep.dropped) == 4
    assert model_lora_config(diff) == CFG
    torch.testing.assert_close(diff.logvar[1].weight, head[1].weight, rtol=0, atol=0)
    expect = dict(sd)
    if used: expect.update({k.replace("-", "."): v for k, v in ema.items()})  # the EMA adapters win
    torch.testing.assert_close(run(diff.net), run(folded_reference(base, expect)), rtol=1e-4, atol=1e-5)
    got = lora_state_dict(diff)
    for k in upstream_lora_keys(2): torch.testing.assert_close(got[k], expect[k], rtol=0, atol=0)
    # and back: our full state dict is the upstream file's "model" (minus TE extra state) with the same tensors
    back = upstream_lora_state_dict(diff)
    assert set(back) == {k for k in sd if not k.endswith("_extra_state")}
    for k in back: torch.testing.assert_close(back[k], expect[k], rtol=0, atol=0, msg=k)


def test_ema_handling_and_our_checkpoint_for_upstream(tmp_path):
    m = trained_lora(4)
    ema = {n: torch.full_like(p, 0.25) for n, p in m.named_parameters() if p.requires_grad}  # peft names, as a trainer keeps them
    ck = upstream_lora_checkpoint(m, ema=ema, trained_data_record={"image": 0, "video": 4, "iteration": 2})
    assert set(ck) == {"model", "ema", "trained_data_record"}
    assert sorted(ck["ema"]) == sorted(k.replace(".", "-") for k in upstream_lora_keys(2))
    assert all(v.dtype == torch.float32 for v in ck["ema"].values())
    assert all(k.startswith(("net.", "logvar.")) and "base_layer" not in k and "lora_" not in k.replace("_lora.", "") for k in ck["model"])
    torch.save(ck, tmp_path / "ck.pt")
    sd, _, used = read_lora_checkpoint(tmp_path / "ck.pt")
    assert used and all((sd[k] == 0.25).all() for k in upstream_lora_keys(2))
    sd, _, used = read_lora_checkpoint(tmp_path / "ck.pt", use_ema=False)
    assert not used and torch.equal(sd[upstream_lora_keys(2)[1]], ck["model"][upstream_lora_keys(2)[1]])
    with pytest.raises(ValueError, match="no EMA"): read_lora_checkpoint({"model": ck["model"], "ema": None}, use_ema=True)
    bad = dict(ck, ema={"net-blocks-block9-blocks-0-block-attn-to_q_lora-net-0-weight": torch.zeros(4, 64)})
    with pytest.raises(ValueError, match="not in 'model'"): read_lora_checkpoint(bad)
    # a plain state dict of our peft model (no prefix) is understood too
    dst = base_model(0)
    load_lora_checkpoint(dst, m.state_dict())
    assert torch.equal(run(dst), run(m))


def test_block_count_is_read_from_the_checkpoint(tmp_path):
    _, _, sd, _ = hand_written_upstream_checkpoint()
    torch.save({"model": sd, "ema": None}, tmp_path / "model.pt")
    short = apply_lora(base_model(), LoRAConfig(enabled=True, first_nblocks=1, rank=4))  # upstream's 27-for-28 mistake, in small
    with pytest.raises(ValueError, match=r"blocks 0\.\.1 \(2 blocks, rank 4.*lora\.first_nblocks=2"): load_lora_checkpoint(short, tmp_path / "model.pt")
    with pytest.raises(ValueError, match="first_nblocks=2"): load_lora_adapter(short, tmp_path / "model.pt")
    wrong_rank = apply_lora(base_model(), LoRAConfig(enabled=True, first_nblocks=2, rank=8))
    with pytest.raises(ValueError, match="lora.rank=4"): load_lora_adapter(wrong_rank, tmp_path / "model.pt")
    _, _, sd1, _ = hand_written_upstream_checkpoint(nblocks=1)
    fresh = base_model()
    assert load_lora_adapter(fresh, sd1) == LoRAConfig(enabled=True, first_nblocks=1, rank=4, scale=1.0)  # inferred: 1 block
    # malformed adapter sets
    lora = {k: v for k, v in sd.items() if "_lora." in k}
    with pytest.raises(ValueError, match=r"blocks \[1\]"): infer_lora_config({k: v for k, v in lora.items() if "block0." not in k})
    with pytest.raises(ValueError, match="incomplete"): infer_lora_config({k: v for k, v in lora.items() if "block1.blocks.1.block.attn.to_v_lora.net.1" not in k})
    mixed = dict(lora, **{"net.blocks.block1.blocks.0.block.attn.to_q_lora.net.0.weight": torch.zeros(2, 64)})
    with pytest.raises(ValueError, match="different ranks"): infer_lora_config(mixed)
    with pytest.raises(ValueError, match="no LoRA tensors"): load_lora_adapter(base_model(), dit_state_dict_for_upstream(base_model()))
    big = {k: torch.zeros(v.shape[0], v.shape[1] * 2) if k.endswith("net.0.weight") else v for k, v in lora.items()}
    with pytest.raises(ValueError, match="another model size"): load_lora_adapter(base_model(), big)


def test_loading_is_weights_only(tmp_path):
    class Evil:
        def __reduce__(self): return (os.system, ("echo pwned",))
    torch.save({"lora": {"x": Evil()}, "metadata": {}}, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError): load_lora_adapter(base_model(), tmp_path / "evil.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"): load_lora_adapter(base_model(), tmp_path / "nope.pt")


# ---------------------------------------------------------------------------------------------------------------
# FSDP2 with 2 CPU processes (gloo): mixed requires_grad inside every sharded block

def _fsdp_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        # eps=1e-3 keeps Adam's first step (≈ lr·sign(g)) a smooth function of g, so tiny reduction-order differences stay tiny
        def opt_for(m): return torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2, eps=1e-3, weight_decay=0.1)
        x, t, ctx, cond = inputs(B=2, seed=11)  # the same batch on every rank: averaged grads equal the single-process ones
        ref = trained_lora(6)
        ref(x, t, ctx, fps=24, condition_video_input_mask=cond).square().mean().backward()
        ref_grads = {n: p.grad.clone() for n, p in ref.named_parameters() if p.requires_grad}
        opt_for(ref).step()

        model = trained_lora(6)
        frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
        apply_fsdp(model, mesh=init_device_mesh("cpu", (world,)))
        assert isinstance(model.blocks.block0.blocks[0].block.attn.to_q[0].lora_A[ADAPTER].weight, DTensor)
        opt = opt_for(model)
        model(x, t, ctx, fps=24, condition_video_input_mask=cond).square().mean().backward()
        for n, p in model.named_parameters():
            if p.requires_grad: torch.testing.assert_close(p.grad.full_tensor(), ref_grads[n], rtol=1e-4, atol=1e-6, msg=n)
            else: assert p.grad is None, n
        opt.step()
        path = save_lora_adapter(model, os.path.join(out_dir, "adapter.safetensors"))  # gathers the adapters on every rank; rank 0 writes
        want = lora_state_dict(ref)
        for k, v in lora_state_dict(model).items(): torch.testing.assert_close(v, want[k], rtol=1e-4, atol=1e-5, msg=k)
        for n, p in model.named_parameters():
            if not p.requires_grad: assert torch.equal(p.full_tensor(), frozen[n]), n  # the base did not move
        dist.barrier()
        if rank == 0:
            saved = read_lora_adapter_file(path)
            assert sorted(saved["lora"]) == sorted(want)
            for k, v in saved["lora"].items(): torch.testing.assert_close(v, want[k], rtol=1e-4, atol=1e-5, msg=k)
    finally:
        dist.destroy_process_group()


def test_fsdp2_two_gloo_processes_lora_step_and_gathered_adapter(tmp_path):
    mp.spawn(_fsdp_worker, args=(2, str(tmp_path / "pg"), str(tmp_path)), nprocs=2, join=True)
    assert (tmp_path / "adapter.safetensors").is_file()
    dst = base_model(6)
    load_lora_adapter(dst, tmp_path / "adapter.safetensors")
    assert model_lora_config(dst) == CFG
