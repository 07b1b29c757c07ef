"The demo's sizes, its command line, and (slow) the quality claim of the full tiny demo."
import dataclasses
import pytest
import torch
from cosmos_nb.demo import DEMO_SIZES, DemoSize, demo_config, demo_main, run_demo
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
    cfg = demo_config('video2world_tiny_full_synthetic', z, 'cuda')
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
    cfg = demo_config('video2world_tiny_full_synthetic', 'tiny')
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


# --- the demo's pictures explain themselves (issue 18 §6) ---

def _square_clip(speed: int, T: int=17, H: int=16, W: int=16) -> torch.Tensor:
    "A uint8 3×T×H×W clip: a bright 4×4 square crossing a dark frame at `speed` pixels per frame."
    v = torch.full((3, T, H, W), 20, dtype=torch.uint8)
    for t in range(T): x = min(W - 4, speed * t); v[:, t, 6:10, x:x + 4] = 230
    return v


def test_contact_sheet_names_its_rows_and_columns(tmp_path):
    "Rows say base / LoRA / ground truth per clip, columns say given or generated; the strips hold text; the frames are unchanged."
    import json
    import numpy as np
    from PIL import Image
    from cosmos_nb.demo import demo_sheet, save_sheet, SHEET_ROWS
    groups = [(f'clip {k}', [_square_clip(1), _square_clip(2), _square_clip(2)]) for k in range(2)]
    sheet, plain = demo_sheet(groups, n_input=5, scale=4), demo_sheet(groups, n_input=5, scale=4, labels=False)
    assert SHEET_ROWS == ('base', 'after LoRA', 'ground truth')
    assert sheet.info['row_labels'] == ['clip 0: base', 'clip 0: after LoRA', 'clip 0: ground truth',
                                        'clip 1: base', 'clip 1: after LoRA', 'clip 1: ground truth']
    assert sheet.info['column_labels'] == [f'frame {t} (given)' for t in (0, 2, 4)] + [f'frame {t} (generated)' for t in range(6, 17, 2)]
    left, top, right, bottom = sheet.info['grid_box']
    assert left > 0 and top > 0 and (right - left, bottom - top) == plain.size          # strips added on the left and on top
    a, p = np.asarray(sheet), np.asarray(plain)
    assert np.array_equal(a[top:bottom, left:right], p)                               # the frames themselves are untouched
    row_h = 16 * 4
    for g in range(2):                                                                # every row's label strip holds dark text
        for r in range(3):
            y = top + g * (3 * (row_h + 2) - 2 + 4) + r * (row_h + 2)                   # 2 px between rows, 4 px between clips
            assert (a[y:y + row_h, :left] < 128).any(), (g, r)
    assert (a[:top, :] < 128).any() and (a[:top, :] != 255).any()                     # the column header is drawn
    assert not (p[:, :4] == 255).all()                                                # the unlabelled sheet starts with frames
    path = save_sheet(sheet, tmp_path/'sheet.png')
    assert json.loads(Image.open(path).text['row_labels']) == sheet.info['row_labels']


def test_loss_figure_has_lr_only_when_it_changes_and_explains_negative_loss():
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    from cosmos_nb.widgets import plot_metrics
    rows = [dict(iteration=i, loss=0.3 - i / 100, lr=2e-3) for i in range(1, 61)]      # crosses zero, constant lr
    fig = plot_metrics(rows, keys=('loss', 'lr'), title='LoRA post-training')
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ('iteration', 'loss')
    assert 'uncertainty-weighted' in ax.get_title() and 'can be negative' in ax.get_title()
    assert fig.get_suptitle() == 'LoRA post-training · learning rate 0.002 throughout'
    assert any(set(l.get_ydata()) == {0} for l in ax.get_lines())                     # a zero line to read negative values against
    warm = [dict(r, lr=2e-3 * min(1., r['iteration'] / 20)) for r in rows]
    fig2 = plot_metrics(warm, keys=('loss', 'lr'))
    assert len(fig2.axes) == 2 and fig2.axes[1].get_ylabel() == 'learning rate' and fig2.axes[1].get_xlabel() == 'iteration'
    assert fig2.get_suptitle() == ''
    plt.close('all')
