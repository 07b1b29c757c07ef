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
    for flag in ('--out', '--size', '--device', '--threads', '--base_iters', '--lora_iters', '--n_videos', '--n_heldout', '--steps',
                 '--quick', '--input'):
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
    assert cfg.net.model_channels >= cfg.net.patch_spatial**2 * 192           # every token number can be denoised
    assert cfg.net.model_channels % cfg.net.num_heads == 0 and cfg.trainer.device == 'cuda'
    assert tuple(cfg.data.video_size) == z.video_size and cfg.data.num_frames == z.num_frames


def test_a_net_too_narrow_for_its_tokens_is_refused():
    with pytest.raises(ValueError, match='patch_spatial'): dataclasses.replace(DEMO_SIZES['tiny'], patch_spatial=2)


@pytest.fixture(scope='module')
def full_tiny_demo(tmp_path_factory):
    "The full tiny demo, as `make demo` runs it (minutes)."
    return run_demo(tmp_path_factory.mktemp('demo'))


@pytest.mark.slow
def test_full_tiny_demo_learns(full_tiny_demo):
    s = full_tiny_demo
    assert s['heldout_mse_base'] < 0.5 * s['heldout_mse_random'] and s['heldout_mse_lora'] < 0.5 * s['heldout_mse_random']
    assert s['loss_base_last'] < s['loss_base_first']


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason='issue #10 (open): the tiny CPU model still denoises poorly at mid noise levels '
                   '(sigma 0.2-1: x0 error ~18% of the latent variance on a memorised clip, vs <2% at sigma >= 5), so its '
                   'continuations lose to copying the last frame; strict: this test fails loudly once that is fixed')
def test_full_tiny_demo_beats_copying_the_last_frame(full_tiny_demo):
    "The claim the demo should make: continuations of held-out clips are closer to the truth than holding the last given frame."
    assert full_tiny_demo['heldout_mse_base'] < full_tiny_demo['heldout_mse_copy_last']
    assert full_tiny_demo['heldout_mse_lora'] < full_tiny_demo['heldout_mse_copy_last']


@pytest.mark.gpu
def test_small_size_runs_on_a_gpu(tmp_path):
    if not torch.cuda.is_available(): pytest.skip('no CUDA device')
    s = run_demo(tmp_path, 'small', 'cuda', base_iters=20, lora_iters=10, n_videos=4, n_heldout=1, steps=4)
    assert len(s['videos']) == 1 and s['heldout_mse_base'] == s['heldout_mse_base']
