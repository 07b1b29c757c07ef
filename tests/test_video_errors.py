"""What a user sees when video cannot be read: a broken torchcodec install (the loader's failure becomes one line with the
cause and the fix) and a file that is not a video (the reason whole, without torchcodec's source paths)."""
import os, subprocess, sys
from pathlib import Path

import pytest
import torch

from cosmos_nb.video import VideoError, read_video, torchcodec_diagnosis, video_info
from cosmos_nb.video2world import video2world_main
from cosmos_nb.testing import make_tiny_checkpoints

ROOT = Path(__file__).resolve().parent.parent
# torchcodec 0.17 from PyPI beside the CPU torch 2.13 (what a plain `pip install -e .` gave): torch's loader message, and its cause
CUDA_WHEEL = ('OSError: libnvrtc.so.13: cannot open shared object file: No such file or directory',
              'Could not load this library: {site}/torchcodec/libtorchcodec_image.so')


def fake_torchcodec(site: Path, version: str, cause: str, message: str) -> Path:
    "A `torchcodec` package that fails to import the way the real one does (an OSError raised from the dlopen error)."
    pkg = site / 'torchcodec'
    pkg.mkdir(parents=True)
    (pkg / '__init__.py').write_text(f'try: raise OSError({cause!r})\nexcept OSError as e: raise OSError({message!r}) from e\n')
    meta = site / f'torchcodec-{version}.dist-info'
    meta.mkdir()
    (meta / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: torchcodec\nVersion: {version}\n')
    return site


def run(args, site, **kw):
    env = dict(os.environ, PYTHONPATH=f'{site}{os.pathsep}{ROOT}', HF_HUB_OFFLINE='1')
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, cwd=kw.get('cwd', ROOT))


def expected_line() -> str:
    return torchcodec_diagnosis(torch.__version__, torch.version.cuda, '0.17.0', '\n'.join(CUDA_WHEEL))


def test_diagnosis_names_the_cause_and_the_version_to_install():
    if torch.version.cuda is None:
        assert expected_line().startswith(f'torch {torch.__version__} is a CPU build and torchcodec 0.17.0 is a CUDA build (it needs libnvrtc.so.13)')
        assert 'pip install "torchcodec>=0.12,<0.14"' in expected_line()


def test_broken_torchcodec_stops_the_import_with_one_line(tmp_path):
    site = fake_torchcodec(tmp_path / 'site', '0.17.0', CUDA_WHEEL[0].split(': ', 1)[1], CUDA_WHEEL[1].format(site=tmp_path / 'site'))
    r = run([sys.executable, '-c', 'import cosmos_nb.video'], site)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == f'cosmos_nb.video.TorchcodecError: {expected_line()}'
    assert 'libtorchcodec_image.so' not in r.stderr          # the loader's own story is not what the user reads
    # the command line: one line on stderr, no traceback, exit 1
    r = run([sys.executable, '-m', 'cosmos_nb.cli', 'video2world', '--help'], site)
    assert (r.returncode, r.stdout) == (1, '')
    assert r.stderr.strip() == f'cosmos-nb video2world: {expected_line()}'


def test_missing_ffmpeg_says_how_to_get_it(tmp_path):
    site = fake_torchcodec(tmp_path / 'site', '0.13.0', 'libavutil.so.57: cannot open shared object file: No such file or directory',
                           'Could not load libtorchcodec. Likely causes:\n  1. FFmpeg is not properly installed in your environment.')
    r = run([sys.executable, '-m', 'cosmos_nb.cli', 'train', '--help'], site)
    assert r.returncode == 1 and 'Traceback' not in r.stderr, r.stderr
    line = r.stderr.strip()
    assert line.startswith("cosmos-nb train: FFmpeg's shared libraries are missing (libavutil.so.57 not found; torchcodec 0.13.0")
    for way in ('apt-get install ffmpeg', 'conda install -c conda-forge ffmpeg', 'module load ffmpeg'): assert way in line


def test_text_file_named_mp4_gets_the_whole_reason(tmp_path):
    clip = tmp_path / ('a_rather_long_folder_name_for_testing_' * 3) / 'my_input_clip.mp4'
    clip.parent.mkdir()
    clip.write_text('hello\n')
    for read in (video_info, read_video):
        with pytest.raises(VideoError) as e: read(clip)
        assert str(e.value) == f'{clip}: cannot be decoded as a video: not a file FFmpeg can read (Invalid data found when processing input)'


def test_text_file_named_mp4_given_to_video2world(tmp_path):
    "The reported case: `cosmos-nb video2world` with a text file as input."
    ck = make_tiny_checkpoints(tmp_path / 'checkpoints')
    clip = tmp_path / 'x.mp4'
    clip.write_text('hello\n')
    with pytest.raises(SystemExit) as e:
        video2world_main(['--checkpoint_dir', str(ck), '--input_image_or_video_path', str(clip), '--prompt', 'p', '--device', 'cpu',
                          '--num_video_frames', '17', '--height', '32', '--width', '48', '--num_steps', '2', '--no_progress',
                          '--disable_prompt_upsampler', '--disable_guardrail', '--video_save_folder', str(tmp_path / 'out')])
    msg = str(e.value)
    assert msg.endswith(f'{clip}: cannot be decoded as a video: not a file FFmpeg can read (Invalid data found when processing input)'), msg
    assert '.cpp' not in msg and 'torchcodec' not in msg
