"Edge cases of cosmos_nb.fp8 that don't belong in the docs: meta-device builds and checkpoint loading, dtype moves, filters, undo, compile."
import copy
import pytest
import torch
import torch.nn as nn
from cosmos_nb.dit import DiTConfig, VideoExtendDiT, load_dit_checkpoint, dit_state_dict_for_upstream
from cosmos_nb.parallelize import compile_blocks
from cosmos_nb.fp8 import (FP8, Float8Linear, convert_from_fp8, convert_to_fp8, dequantize_rowwise, fp8_available, fp8_layers,
                           fp8_targets, quantize_rowwise)


def rel(a, b): return ((a.float() - b.float()).norm() / b.float().norm()).item()


def tiny_dit(seed=0):
    torch.manual_seed(seed)
    net = VideoExtendDiT(DiTConfig.tiny())
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear): nn.init.xavier_uniform_(m.weight)
    return net.eval().requires_grad_(False)


def tiny_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 16, 2, 8, 8, generator=g), torch.full((1,), 0.3), torch.randn(1, 16, 1024, generator=g)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quantize_roundtrip_bound_and_range(dtype):
    x = (torch.randn(64, 128) * torch.logspace(-4, 4, 64)[:, None]).to(dtype)
    q, s = quantize_rowwise(x)
    assert q.dtype == FP8 and s.dtype == torch.float32 and s.shape == (64, 1)
    x2 = dequantize_rowwise(q, s)
    assert bool(((x2 - x.float()).abs() <= x.float().abs() * 2**-4 + s * 2**-10).all())
    assert torch.equal(q.float().abs().amax(-1), torch.full((64,), 448.0))


def test_quantize_leading_dims_and_zero_rows():
    x = torch.randn(2, 3, 32)
    x[0, 1] = 0
    q, s = quantize_rowwise(x)
    assert q.shape == x.shape and s.shape == (2, 3, 1)
    assert torch.equal(dequantize_rowwise(q, s)[0, 1], torch.zeros(32))


def test_float8linear_shapes_1d_and_3d_inputs_and_bias():
    torch.manual_seed(0)
    lin = nn.Linear(64, 48).requires_grad_(False)
    f8 = Float8Linear(lin)
    for shape in [(64,), (5, 64), (2, 7, 64)]:
        x = torch.randn(*shape)
        y = f8(x)
        assert y.shape == (*shape[:-1], 48)
        assert rel(y, lin(x)) < 0.05


def test_float8linear_is_not_bitwise_linear():
    "Guards against a silent fallback: the fp8 path must differ from the bf16 product (rounding), yet stay close."
    lin = nn.Linear(256, 256, bias=False).requires_grad_(False)
    x = torch.randn(32, 256)
    err = rel(Float8Linear(lin)(x), lin(x))
    assert 0.005 < err < 0.05


@pytest.mark.parametrize("keep_weight,fp8_backward", [(True, False), (False, False), (True, True), (False, True)])
def test_input_gradient_in_every_mode(keep_weight, fp8_backward):
    torch.manual_seed(0)
    lin = nn.Linear(128, 64).requires_grad_(False)
    f8 = Float8Linear(lin, keep_weight=keep_weight, fp8_backward=fp8_backward)
    x = torch.randn(3, 10, 128, requires_grad=True)
    gy = torch.randn(3, 10, 64)
    f8(x).backward(gy)
    ref = gy @ lin.weight
    assert x.grad.shape == x.shape
    assert rel(x.grad, ref) < (1e-6 if keep_weight and not fp8_backward else 0.05)
    assert (f8.weight_t_fp8 is not None) == fp8_backward


def test_to_dtype_and_device_moves_keep_fp8_buffers():
    f8 = Float8Linear(nn.Linear(32, 32).requires_grad_(False))
    q = f8.weight_fp8.clone()
    f8.to(torch.bfloat16).half().float()
    assert f8.weight_fp8.dtype == FP8 and f8.weight_scale.dtype == torch.float32 and torch.equal(f8.weight_fp8.float(), q.float())
    assert f8.weight.dtype == torch.float32 and f8.bias.dtype == torch.float32
    f8.to("cpu")
    assert f8.weight_fp8.device.type == "cpu"


def test_7b_on_meta_counts_and_keeps_upstream_keys():
    with torch.device("meta"): net = VideoExtendDiT(DiTConfig.predict1_7b_video2world()).requires_grad_(False)
    keys = list(dit_state_dict_for_upstream(net))
    targets = fp8_targets(net)
    convert_to_fp8(net, fp8_backward=True)
    assert len(fp8_layers(net)) == len(targets) == 224
    assert list(dit_state_dict_for_upstream(net)) == keys  # no fp8 buffer leaks into checkpoints
    f8 = net.blocks.block3.blocks[2].block.layer1
    assert isinstance(f8, Float8Linear) and f8.weight_fp8.is_meta and f8.weight_t_fp8.shape == (4096, 16384)


@pytest.mark.parametrize("keep_weight", [True, False])
def test_convert_on_meta_then_load_checkpoint_matches_real_conversion(keep_weight):
    ref = tiny_dit()
    sd = dit_state_dict_for_upstream(ref)
    with torch.device("meta"): net = VideoExtendDiT(DiTConfig.tiny()).requires_grad_(False)
    convert_to_fp8(net, keep_weight=keep_weight)
    rep = load_dit_checkpoint(net, sd, strict=True)  # meta model: load with assign=True
    assert rep.ok
    if not keep_weight: net.to_empty(device="cpu"); net.load_state_dict({k[4:]: v for k, v in sd.items()})  # buffers were meta
    net.pos_embedder.reset_buffers()
    direct = convert_to_fp8(copy.deepcopy(ref), keep_weight=keep_weight)
    x, t, ctx = tiny_inputs()
    with torch.no_grad(): assert torch.equal(net.eval()(x, t, ctx, fps=24), direct(x, t, ctx, fps=24))


def test_convert_from_fp8_is_exact_with_kept_weight():
    ref = tiny_dit()
    x, t, ctx = tiny_inputs()
    with torch.no_grad():
        y = ref(x, t, ctx, fps=24)
        net = convert_from_fp8(convert_to_fp8(copy.deepcopy(ref)))
        assert not fp8_layers(net) and torch.equal(net(x, t, ctx, fps=24), y)
        assert all(type(net.get_submodule(n)) is nn.Linear for n in fp8_targets(net))


def test_filter_selects_and_never_converts_adapters_or_trainable_weights():
    from cosmos_nb.experiments import LoRAConfig
    from cosmos_nb.lora import apply_lora
    net = apply_lora(tiny_dit(), LoRAConfig(enabled=True, first_nblocks=2, rank=4))
    convert_to_fp8(net, filter=lambda name, m: m.in_features % 16 == 0 and m.out_features % 16 == 0)  # all it can: still not the adapters
    names = list(fp8_layers(net))
    assert not any(".lora_" in n for n in names)
    assert "blocks.block0.blocks.0.block.attn.to_q.0.base_layer" in names and "final_layer.linear" in names
    net2 = convert_to_fp8(tiny_dit(), filter=lambda name, m: name.endswith(("layer1", "layer2")))
    assert len(fp8_layers(net2)) == 2 * 2
    with pytest.raises(ValueError, match=r"blocks\.block0\.blocks\.0\.block\.attn\.to_q\.0: .*requires grad"):
        convert_to_fp8(tiny_dit().requires_grad_(True))
    with pytest.raises(ValueError, match="multiples of 16"):
        convert_to_fp8(tiny_dit(), filter=lambda name, m: name == "x_embedder.proj.1")  # 72 inputs


def test_merge_lora_after_undoing_fp8():
    from cosmos_nb.experiments import LoRAConfig
    from cosmos_nb.lora import apply_lora, lora_layers, merge_lora
    net = apply_lora(tiny_dit(), LoRAConfig(enabled=True, first_nblocks=2, rank=4))
    for l in lora_layers(net).values(): nn.init.normal_(l.lora_B["default"].weight, std=0.02)
    x, t, ctx = tiny_inputs()
    with torch.no_grad():
        y = net(x, t, ctx, fps=24)
        convert_to_fp8(net)
        merged = merge_lora(convert_from_fp8(net))
        assert not lora_layers(merged)
        assert torch.allclose(merged(x, t, ctx, fps=24), y, atol=1e-5)


def test_fp8_available_on_cpu():
    assert fp8_available("cpu")


@pytest.mark.slow
def test_compiled_fp8_blocks_fullgraph_forward_and_lora_backward():
    from cosmos_nb.experiments import LoRAConfig
    from cosmos_nb.lora import apply_lora
    x, t, ctx = tiny_inputs()
    net = convert_to_fp8(apply_lora(tiny_dit().to(torch.bfloat16), LoRAConfig(enabled=True, first_nblocks=2, rank=4)), fp8_backward=True)
    y_eager = net(x, t, ctx, fps=24)
    compile_blocks(net, fullgraph=True)  # raises on a graph break
    y = net(x, t, ctx, fps=24)
    assert rel(y, y_eager) < 0.03
    y.float().square().mean().backward()
    assert all(p.grad is not None for n, p in net.named_parameters() if p.requires_grad)


def test_fp8_copies_have_the_layouts_cuda_needs():
    "_scaled_mm on CUDA wants a row-major first and a column-major second operand: every stored copy must be row-major."
    f8 = Float8Linear(nn.Linear(64, 256, bias=False).requires_grad_(False), fp8_backward=True)
    for t in (f8.weight_fp8, f8.weight_t_fp8, f8.weight_scale, f8.weight_t_scale): assert t.is_contiguous()
    assert f8.weight_fp8.shape == (256, 64) and f8.weight_t_fp8.shape == (64, 256)
    assert f8.weight_fp8.t().stride() == (1, 64) and f8.weight_t_fp8.t().stride() == (1, 256)


def test_ddp_ignores_fp8_buffers_and_trains_lora(tmp_path):
    "One gloo process: DDP over a LoRA model with an fp8 base, fp8 buffers excluded from DDP's buffer sync; adapters get gradients."
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from cosmos_nb.experiments import LoRAConfig
    from cosmos_nb.fp8 import fp8_buffer_names
    from cosmos_nb.lora import apply_lora
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    ddp = None
    try:
        net = convert_to_fp8(apply_lora(tiny_dit(), LoRAConfig(enabled=True, first_nblocks=2, rank=4)), fp8_backward=True)
        names = fp8_buffer_names(net)
        assert len(names) == 16 * 4 and all(dict(net.named_buffers())[n] is not None for n in names)
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(net, names)
        ddp = DistributedDataParallel(net)
        assert not any(b.dtype == FP8 for b in ddp.modules_buffers)
        x, t, ctx = tiny_inputs()
        ddp(x, t, ctx, fps=24).square().mean().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in net.named_parameters() if p.requires_grad and "lora_B" in n)
    finally:
        del ddp   # DDP's reducer must go while its group exists: freed after destroy_process_group, gloo's destructor can hang
        dist.destroy_process_group()
