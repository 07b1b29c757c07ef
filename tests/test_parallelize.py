"""cosmos_nb.parallelize: activation checkpointing (bitwise the same gradients, keys unchanged, one graph per block),
compile, FSDP2 and context parallelism on 2 CPU processes (gloo), all applied to a model that knows nothing of them."""
import os

import pytest
import torch
import torch.multiprocessing as mp

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from cosmos_nb import parallelize as par
from cosmos_nb.dit import DiTConfig, VideoExtendDiT, dit_state_dict_for_upstream, rope_cos_sin
from cosmos_nb.parallelize import (ParallelConfig, apply_activation_checkpointing, apply_context_parallel, apply_fsdp,
                                   checkpointing_mode, compile_blocks, parallelize)
from test_dit import inputs, tiny_model


def test_activation_checkpointing_same_grads_same_keys():
    def grads(mode):
        m = apply_activation_checkpointing(tiny_model(), mode)
        assert checkpointing_mode(m) == mode
        x, t, ctx, cond = inputs(M=16)
        m(x, t, ctx, fps=24, condition_video_input_mask=cond).square().mean().backward()
        return {k: p.grad for k, p in m.named_parameters()}, list(m.state_dict())
    (g0, k0), (g1, k1) = grads("none"), grads("full")
    assert k0 == k1  # names unchanged
    for k in g0: assert torch.equal(g0[k], g1[k]), k
    m = apply_activation_checkpointing(apply_activation_checkpointing(tiny_model(), "full"), "none")
    assert checkpointing_mode(m) == "none" and all("forward" not in b.__dict__ for b in m.blocks.values())


def test_checkpointing_recomputes_in_backward():
    "With 'full' each block's forward runs again in the backward; without it, once."
    for mode, runs in (("none", 1), ("full", 2)):
        m = apply_activation_checkpointing(tiny_model(), mode)
        calls = []
        m.blocks["block0"].blocks[2].register_forward_pre_hook(lambda *_: calls.append(1))  # the MLP sub-block starts
        x, t, ctx, cond = inputs(M=16)
        m(x, t, ctx, fps=24, condition_video_input_mask=cond).sum().backward()
        assert len(calls) == runs, mode


def test_no_graph_breaks_in_a_block():
    m = tiny_model()
    blk = m.blocks["block1"]
    args = (torch.randn(2, 48, 64), torch.randn(2, 64), torch.randn(2, 16, 1024), rope_cos_sin(m.pos_embedder(3, 4, 4, 24)),
            torch.randn(2, 192), torch.randn(1, 48, 64))
    for mode in ("none", "full", "save_attention"):
        apply_activation_checkpointing(m, mode)
        torch._dynamo.reset()
        assert torch._dynamo.explain(blk)(*args).graph_break_count == 0, mode
    par.set_attention(m, "sdpa", ("flash", "math"))  # the sdpa_kernel context traces too
    torch._dynamo.reset()
    assert torch._dynamo.explain(blk)(*args).graph_break_count == 0


def test_compiled_blocks_match_eager():
    "torch.compile through AOTAutograd (aot_eager: no C compiler needed) gives the same forward and gradients."
    m = tiny_model()
    x, t, ctx, cond = inputs(M=16)
    ref = m(x, t, ctx, fps=24, condition_video_input_mask=cond)
    ref.square().mean().backward()
    g = {k: p.grad.clone() for k, p in m.named_parameters()}
    m.zero_grad()
    torch._dynamo.reset()
    compile_blocks(apply_activation_checkpointing(m, "full"), backend="aot_eager", fullgraph=True)
    out = m(x, t, ctx, fps=24, condition_video_input_mask=cond)
    out.square().mean().backward()
    torch.testing.assert_close(out, ref)
    for k, p in m.named_parameters(): torch.testing.assert_close(p.grad, g[k], msg=k)
    assert list(m.state_dict()) == list(tiny_model().state_dict())


@pytest.mark.slow
def test_inductor_compile_matches_eager():
    m = tiny_model()
    x, t, ctx, cond = inputs(M=16)
    with torch.no_grad():
        ref = m(x, t, ctx, fps=24, condition_video_input_mask=cond)
        torch._dynamo.reset()
        compile_blocks(m, fullgraph=True)
        torch.testing.assert_close(m(x, t, ctx, fps=24, condition_video_input_mask=cond), ref, rtol=1e-4, atol=1e-4)


def test_selective_checkpointing_keeps_only_self_attention_and_same_grads():
    "mode='save_attention' saves the self-attention kernel outputs (not cross-attention) and gives the same gradients."
    from torch.utils.checkpoint import CheckpointPolicy
    torch.manual_seed(0)
    m = VideoExtendDiT(DiTConfig.tiny()).double()
    x, ctx, t = torch.randn(1, 16, 3, 8, 8, dtype=torch.double), torch.randn(1, 16, 1024, dtype=torch.double), torch.rand(1, dtype=torch.double)
    grads = {}
    for mode in ("none", "full", "save_attention"):
        apply_activation_checkpointing(m, mode)
        m.zero_grad(); m(x, t, ctx).square().sum().backward()
        grads[mode] = [p.grad.clone() for p in m.parameters()]
    for mode in ("full", "save_attention"):
        assert all(torch.equal(a, b) for a, b in zip(grads["none"], grads[mode])), mode
    saved, orig = [], par._keep_self_attention
    def spy(ctx_, op, *a, **k):
        r = orig(ctx_, op, *a, **k)
        if r == CheckpointPolicy.MUST_SAVE: saved.append((tuple(a[0].shape), tuple(a[1].shape)))
        return r
    par._keep_self_attention = spy
    try:
        m.zero_grad(); m(x, t, ctx).sum().backward()
    finally: par._keep_self_attention = orig
    assert len(saved) == m.config.num_blocks and all(q[-2] == k[-2] for q, k in saved)   # one self-attention per block, no CA
    with pytest.raises(ValueError, match="'none', 'full' or 'save_attention'"): apply_activation_checkpointing(m, "everything")
    with pytest.raises(ValueError, match="choose one of 'none', 'full', 'save_attention'"): ParallelConfig(activation_checkpointing="nope")


def test_parallelize_applies_the_config():
    m = parallelize(tiny_model(), ParallelConfig(activation_checkpointing="save_attention", attention="naive"))
    assert checkpointing_mode(m) == "save_attention"
    attn = m.blocks["block0"].blocks[1].block.attn
    assert attn.attend is par.naive_attention
    with pytest.raises(TypeError): DiTConfig.tiny(activation_checkpointing=True)   # the model config is the architecture only


# ---------------------------------------------------------------------------------------------------------------
# FSDP2 with 2 CPU processes (gloo)

def _fsdp_worker(rank, world, init_file):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for mode in ("none", "full"): _fsdp_check(world, mode)
    finally:
        dist.destroy_process_group()


def _fsdp_check(world, mode):
    "One rank's check: sharded forward/backward (twice) and the gathered state dict equal an unsharded copy."
    from torch.distributed.device_mesh import init_device_mesh
    ref = tiny_model(seed=7)
    model = tiny_model(seed=7)
    x, t, ctx, cond = inputs(B=2, M=16, seed=11)  # every rank the same batch: averaged grads equal the single-process ones
    out_ref = ref(x, t, ctx, fps=24, condition_video_input_mask=cond)
    out_ref.square().mean().backward()
    parallelize(model, ParallelConfig(data_parallel="fsdp", activation_checkpointing=mode), mesh=init_device_mesh("cpu", (world,)))
    assert type(model.blocks["block0"].blocks[0].block.attn.to_q[0].weight).__name__ == "DTensor"
    assert checkpointing_mode(model) == mode
    for step in range(2):  # twice: reshard / unshard cycle
        model.zero_grad()
        out = model(x, t, ctx, fps=24, condition_video_input_mask=cond)
        out.square().mean().backward()
        torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-6)
        for (k, p), (k2, p2) in zip(model.named_parameters(), ref.named_parameters()):
            assert k == k2
            torch.testing.assert_close(p.grad.full_tensor(), p2.grad, rtol=1e-4, atol=1e-6, msg=k)
    sd = dit_state_dict_for_upstream(model)  # gathers full tensors
    for k, v in ref.state_dict().items(): torch.testing.assert_close(sd[f"net.{k}"], v)


def test_fsdp2_two_gloo_processes_match_unsharded(tmp_path):
    "fully_shard per block (with and without activation checkpointing) on 2 CPU processes == the unsharded model."
    mp.spawn(_fsdp_worker, args=(2, str(tmp_path / "pg")), nprocs=2, join=True)


# ---------------------------------------------------------------------------------------------------------------
# Context parallelism with 2 CPU processes (gloo): the token sequence is split, self-attention all-gathers k and v

def _cp_worker(rank, world, init_file, out_file):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        m = VideoExtendDiT(DiTConfig.tiny()).double().eval()
        x, ctx = torch.randn(1, 16, 4, 8, 8, dtype=torch.double), torch.randn(1, 16, 1024, dtype=torch.double)
        cond = torch.zeros(1, 1, 4, 8, 8, dtype=torch.double); cond[:, :, :1] = 1
        with torch.no_grad(): ref = m(x, torch.tensor([0.3]), ctx, fps=24, condition_video_input_mask=cond)
        seen = []   # the token count each block sees: a slice of 1/world
        m.blocks["block1"].register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[1]))
        parallelize(m, ParallelConfig(context_parallel=True, activation_checkpointing="none"))
        with torch.no_grad(): out = m(x, torch.tensor([0.3]), ctx, fps=24, condition_video_input_mask=cond)
        odd = torch.randn(1, 16, 3, 6, 6, dtype=torch.double)       # 3·3·3 = 27 tokens do not split over 2 ranks
        try: m(odd, torch.tensor([0.3]), ctx); err = ""
        except ValueError as e: err = str(e)
        torch.save({"ref": ref, "out": out, "err": err, "seen": seen}, f"{out_file}.{rank}")
    finally:
        dist.destroy_process_group()


def test_context_parallel_two_gloo_processes_equal_single_process(tmp_path):
    "Context parallelism over 2 ranks gives the single-process output on every rank; bad splits fail clearly."
    mp.spawn(_cp_worker, args=(2, str(tmp_path / "pg"), str(tmp_path / "res")), nprocs=2, join=True)
    for r in range(2):
        res = torch.load(f"{tmp_path / 'res'}.{r}", weights_only=True)
        assert res["out"].shape == (1, 16, 4, 8, 8)
        torch.testing.assert_close(res["out"], res["ref"], rtol=1e-10, atol=1e-10)
        assert res["seen"] == [4 * 4 * 4 // 2]   # a later block sees this rank's 32 of the 64 tokens
        assert "divide by 2" in res["err"]
