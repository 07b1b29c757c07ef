"Block swapping and activation offloading (cosmos_nb.offload) on the tiny LoRA DiT: bitwise the plain step, and proof that things moved."
import contextlib, gc
import pytest
import torch
from cosmos_nb.dit import DiTConfig, VideoExtendDiT
from cosmos_nb.experiments import LoRAConfig
from cosmos_nb.fp8 import convert_to_fp8, fp8_layers
from cosmos_nb.lora import apply_lora
from cosmos_nb.offload import offload_activations, swap_blocks
from cosmos_nb.parallelize import apply_activation_checkpointing


def tiny_lora_dit(num_blocks=4, seed=0, mode="full"):
    torch.manual_seed(seed)
    net = VideoExtendDiT(DiTConfig.tiny(num_blocks=num_blocks))
    with torch.no_grad():
        for p in net.parameters():
            if not p.any(): p.normal_(std=0.02)
    apply_lora(net, LoRAConfig(enabled=True, first_nblocks=num_blocks, rank=2))
    with torch.no_grad():
        for n, p in net.named_parameters():
            if "lora_B" in n: p.normal_(std=0.02)
    return apply_activation_checkpointing(net, mode)


def tiny_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 16, 2, 8, 8, generator=g), torch.full((1,), 0.3), torch.randn(1, 8, 1024, generator=g)


def lora_step(net, ctx=None):
    with ctx if ctx is not None else contextlib.nullcontext():
        loss = net(*tiny_inputs()).float().square().mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.requires_grad}
    for p in net.parameters(): p.grad = None
    return loss.detach(), grads


def assert_same(a, b):
    assert a[0].item() == b[0].item()
    assert sorted(a[1]) == sorted(b[1]) and len(a[1]) > 0
    for k in a[1]: assert torch.equal(a[1][k], b[1][k]), k


def frozen(net, block):
    return [p for p in net.blocks[block].parameters() if not p.requires_grad]


@pytest.mark.parametrize("resident,prefetch", [(0, 1), (1, 2), (2, 1)])
def test_swap_is_bitwise_and_blocks_are_empty_between_uses(resident, prefetch):
    net = tiny_lora_dit()
    plain = lora_step(net)
    swap = swap_blocks(net, resident=resident, prefetch=prefetch)
    swapped = [f"block{i}" for i in range(4 - resident)]
    assert swap.swapped == swapped
    seen = []  # (running block, blocks with real weights, swapped blocks on the device or in flight)
    spy = [b.register_forward_pre_hook(lambda m, a, name=n: seen.append(
        (name, {x for x in net.blocks if frozen(net, x)[0].numel() > 0}, set(swap.loaded)))) for n, b in net.blocks.items()]
    for _ in range(2): assert_same(lora_step(net), plain)
    for h in spy: h.remove()
    for name, real, loaded in seen:
        assert name in real  # the running block has its weights
        assert real - {name} <= set(net.blocks) - set(swapped) | loaded  # no other swapped block is materialised unless prefetched
        assert len(loaded) <= prefetch + 1
    n, back = len(swapped), max(len(swapped) - prefetch, 0)  # the backward re-fetches all but the last `prefetch` swapped blocks
    assert swap.stats.loads == (n + back) + ((n - 1) + back)  # the second step starts with block 0 still there
    assert swap.stats.waited == 1  # only the very first block of the very first forward was not prefetched
    assert all(p.numel() == 0 for b in swapped[1:] for p in frozen(net, b))  # between steps only block 0 is on the device
    assert all(p.numel() > 0 for p in net.parameters() if p.requires_grad)  # adapters never move
    swap.remove()
    assert all(p.numel() > 0 for p in net.parameters())
    assert_same(lora_step(net), plain)


def test_swap_inference_loops_without_waiting():
    net = tiny_lora_dit()
    with torch.no_grad(): ref = net(*tiny_inputs())
    swap = swap_blocks(net)
    with torch.no_grad():
        for _ in range(3): assert torch.equal(net(*tiny_inputs()), ref)
    assert swap.stats.loads == 3 * 4 + 1 and swap.stats.waited == 1  # after each call block 0 is fetched for the next one
    swap.offload_all()
    assert not swap.loaded and all(p.numel() == 0 for b in net.blocks for p in frozen(net, b))
    swap.remove()


def test_swap_state_dict_and_load():
    net, ref = tiny_lora_dit(), tiny_lora_dit()
    swap = swap_blocks(net, resident=1)
    sd = net.state_dict()
    assert list(sd) == list(ref.state_dict()) and all(torch.equal(sd[k], v) for k, v in ref.state_dict().items())
    assert all(p.numel() == 0 for p in frozen(net, "block1"))  # state_dict put the stand-ins back
    other = tiny_lora_dit(seed=1)
    net.load_state_dict(other.state_dict())
    with torch.no_grad(): assert torch.equal(net(*tiny_inputs()), other(*tiny_inputs()))
    assert_same(lora_step(net), lora_step(other))
    swap.remove()
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values()))


@pytest.mark.parametrize("keep_weight", [True, False])
def test_swap_fp8_base(keep_weight):
    net = convert_to_fp8(tiny_lora_dit(), keep_weight=keep_weight)
    plain = lora_step(net)
    swap = swap_blocks(net)
    f8 = next(iter(fp8_layers(net).values()))
    assert f8.weight_fp8.numel() == 0  # the fp8 copies are swapped too
    for _ in range(2): assert_same(lora_step(net), plain)
    other = convert_to_fp8(tiny_lora_dit(seed=1), keep_weight=keep_weight)
    net.load_state_dict(other.state_dict())  # fp8 re-quantizes into new buffers: the swap must pick them up
    with torch.no_grad(): assert torch.equal(net(*tiny_inputs()), other(*tiny_inputs()))
    swap.remove()


def test_swap_refusals():
    net = apply_activation_checkpointing(tiny_lora_dit(), "none")
    swap = swap_blocks(net)
    with pytest.raises(RuntimeError, match="apply_activation_checkpointing"): lora_step(net)
    with pytest.raises(ValueError, match="already swapped"): swap_blocks(net)
    swap.remove()
    with pytest.raises(ValueError, match="resident=4"): swap_blocks(net, resident=4)
    with pytest.raises(ValueError, match="prefetch=0"): swap_blocks(net, prefetch=0)
    apply_activation_checkpointing(net, "save_attention")  # saves attention outputs, not weights: allowed
    plain = lora_step(net)
    swap = swap_blocks(net)
    assert_same(lora_step(net), plain)
    swap.remove()


def test_offload_is_bitwise_and_autograd_uses_the_host_copies():
    net = tiny_lora_dit()
    plain = lora_step(net)
    for offload in (None, offload_activations(min_bytes=4096)):
        inputs = []
        spy = [b.register_forward_pre_hook(lambda m, a: inputs.append(a[0])) for b in net.blocks.values()]
        with offload if offload is not None else contextlib.nullcontext():
            loss = net(*tiny_inputs()).float().square().mean()
        for h in spy: h.remove()
        with torch.no_grad():
            for x in inputs: x.zero_()  # what a plain graph saved is now wrong
        if offload is None:  # without offloading autograd notices: the test can tell the two apart
            with pytest.raises(RuntimeError, match="modified by an inplace operation"): loss.backward()
            for p in net.parameters(): p.grad = None
            continue
        assert offload.host_bytes >= sum(x.nbytes for x in inputs[1:])  # every block input waits on the host
        loss.backward()
        assert_same((loss.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.requires_grad}), plain)
        s = offload.stats
        assert s.offloaded >= 4 and s.reloads == s.offloaded and s.shared >= 3 and offload.host_bytes == 0
        assert s.waited < s.reloads  # the rest were prefetched


def test_offload_keeps_small_tensors_and_frees_abandoned_graphs():
    net = tiny_lora_dit()
    big = offload_activations(min_bytes=2**30)
    assert_same(lora_step(net, big), lora_step(net))
    assert big.stats.offloaded == 0 and big.stats.kept > 0
    offload = offload_activations(min_bytes=4096)
    with offload: loss = net(*tiny_inputs()).float().square().mean()
    assert offload.host_bytes > 0
    del loss
    gc.collect()
    assert offload.host_bytes == 0  # the graph went, and its host copies with it


def test_offload_second_backward_is_refused():
    net = tiny_lora_dit()
    with offload_activations(min_bytes=4096): loss = net(*tiny_inputs()).float().square().mean()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="retain_graph"): loss.backward()


@pytest.mark.parametrize("mode", ["full", "save_attention"])
def test_swap_and_offload_together(mode):
    net = tiny_lora_dit(mode=mode)
    plain = lora_step(net)
    swap, offload = swap_blocks(net, resident=1), offload_activations(min_bytes=4096)
    for _ in range(2): assert_same(lora_step(net, offload), plain)
    assert swap.stats.loads > 0 and offload.stats.offloaded > 0 and offload.host_bytes == 0
    swap.remove()


def test_host_copies_keep_the_strides_of_dense_tensors():
    "A compiled backward asserts the strides of what it saved: host copies keep them (a transposed attention output, say)."
    from cosmos_nb.offload import host_copy, host_empty
    t = torch.randn(1, 6, 2, 4).transpose(1, 2)                      # B, h, L, d view of a B, L, h, d buffer
    assert host_empty(t, False).stride() == t.stride() and not t.is_contiguous()
    c = host_copy(t, False)
    assert c.stride() == t.stride() and torch.equal(c, t)
    e = torch.randn(3, 1).expand(3, 4)                                # overlapping memory: a contiguous copy instead
    assert host_copy(e, False).is_contiguous() and torch.equal(host_copy(e, False), e)
