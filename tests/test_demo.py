"The demo's sizes, its command line, and (slow) the quality claim of the full tiny demo."
import dataclasses
import pytest
import torch
from cosmos_nb.demo import DEMO_COMMON, DEMO_SIZES, DemoSize, demo_main, run_demo
from cosmos_nb.experiments import get_experiment


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as e: demo_main(['--help'])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ('--out', '--size', '--device', '--threads', '--base', '--pretrain', '--base_iters', '--lora_iters', '--n_videos',
                 '--n_heldout', '--steps', '--num_workers', '--quick', '--input'):
        assert flag in out, flag
    for name in DEMO_SIZES: assert name in out


def test_unknown_size_and_device_are_refused(capsys):
    for argv in (['--size', 'huge'], ['--device', 'tpu']):
        with pytest.raises(SystemExit) as e: demo_main(argv)
        assert e.value.code == 2
    assert 'invalid choice' in capsys.readouterr().err


@pytest.mark.parametrize('name', list(DEMO_SIZES))
def test_every_size_is_consistent_with_the_model_and_training(name):
    z = DEMO_SIZES[name]
    assert isinstance(z, DemoSize)
    H, W = z.video_size
    assert H % (4 * z.patch_spatial) == 0 and W % (4 * z.patch_spatial) == 0 and H % 2 == 0
    assert (z.num_frames - 1) % 4 == 0 and (z.n_input - 1) % 4 == 0 and z.n_input < z.num_frames
    cfg = get_experiment('video2world_tiny_full_synthetic', DEMO_COMMON + z.overrides('cuda'))
    assert 1 + (z.n_input - 1) // 4 <= cfg.diffusion.max_condition_frames   # generation conditions as training does
    assert 3 * cfg.net.model_channels >= 4 * cfg.net.patch_spatial**2 * 192   # every token number can be denoised, with room
    assert cfg.net.model_channels % cfg.net.num_heads == 0 and cfg.trainer.device == 'cuda'
    assert tuple(cfg.data.video_size) == z.video_size and cfg.data.num_frames == z.num_frames


def test_a_net_too_narrow_for_its_tokens_is_refused():
    with pytest.raises(ValueError, match='patch_spatial'): dataclasses.replace(DEMO_SIZES['tiny'], patch_spatial=2)
    with pytest.raises(ValueError, match='4/3'): dataclasses.replace(DEMO_SIZES['small'], model_channels=768)   # = 2·2·192: speckle


def test_a_missing_or_mismatched_base_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e: demo_main(['--out', str(tmp_path/'o'), '--base', str(tmp_path/'nowhere')])
    assert 'lacks model.pt' in str(e.value) and '--base train' in str(e.value)


def test_the_shipped_tiny_base_loads_with_strict_keys():
    "The asset is a complete upstream-format model.pt for the tiny size's net (a missing or extra key fails the load)."
    from cosmos_nb.demo import find_base
    from cosmos_nb.config import load_torch_file
    from cosmos_nb.dit import VideoExtendDiT, load_dit_checkpoint
    folder, info = find_base(None, DEMO_SIZES['tiny'])
    cfg = get_experiment('video2world_tiny_full_synthetic', DEMO_COMMON + DEMO_SIZES['tiny'].overrides())
    rep = load_dit_checkpoint(VideoExtendDiT(cfg.net), load_torch_file(folder/'model.pt'), strict=True)
    assert rep is not None and info['size']['base_iters'] == DEMO_SIZES['tiny'].base_iters


@pytest.fixture(scope='module')
def full_tiny_demo(tmp_path_factory):
    "The full tiny demo, as `make demo` runs it (minutes)."
    return run_demo(tmp_path_factory.mktemp('demo'))


@pytest.mark.slow
def test_full_tiny_demo_beats_copying_the_last_frame(full_tiny_demo):
    "The claims the demo makes: the base beats holding the last frame; post-training on faster clips halves its error again."
    s = full_tiny_demo
    assert s['t5_matches_base'] and s['size']['post_speed'] == 2
    assert s['heldout_mse_base'] < s['heldout_mse_copy_last']
    assert s['heldout_mse_lora'] < 0.5 * s['heldout_mse_base'] and s['heldout_mse_lora'] < 0.25 * s['heldout_mse_copy_last']
    assert s['loss_lora_last'] < s['loss_lora_first']
    late = s['heldout_mse_per_frame']
    assert late['lora'][-1] < 0.5 * late['base'][-1]              # the base falls behind the faster shapes; LoRA keeps up


@pytest.mark.gpu
def test_small_size_runs_on_a_gpu(tmp_path):
    "`--size small --device cuda` at toy length: no base is shipped for it, so it pretrains its own, then post-trains it."
    assert torch.cuda.is_available(), 'gpu-marked: run on the device'
    s = run_demo(tmp_path, 'small', 'cuda', base_videos=8, base_iters=20, lora_iters=10, n_videos=8, n_heldout=1, steps=4)
    assert len(s['videos']) == 1 and s['heldout_mse_base'] == s['heldout_mse_base']
