"Prompt upsampler: upstream's image, the Pixtral processor without torchvision, a tiny scripted Pixtral loaded through transformers, the fallback, and the Video2World CLI with the upsampler on."
import shutil, warnings
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants
from PIL import Image

import cosmos_nb.upsampler as ups
from cosmos_nb.runtime import FeatureNotAvailableWarning, ModelCache
from cosmos_nb.upsampler import (PIXTRAL_REPO, UPSAMPLER_INSTRUCTION, PixtralInputs, PromptUpsampler, UpsamplerLoadError,
                                 find_prompt_upsampler, load_pixtral_processor, upsample_prompt,
                                 upsampler_image, upsampler_missing)
from cosmos_nb.video import INFERENCE_DIVISOR, read_video, to_unit
from cosmos_nb.video2world import video2world_main
from cosmos_nb.testing import make_tiny_checkpoints, make_tiny_guardrail, make_tiny_prompt_upsampler

SAYS = 'a car drives along an empty motorway under cloudy skies'
SMALL = ['--num_video_frames', '9', '--height', '32', '--width', '48', '--num_steps', '2', '--device', 'cpu', '--dtype', 'float32',
         '--no_progress']


@pytest.fixture(scope='module')
def pixtral(tmp_path_factory):
    "A tiny scripted Pixtral in the download layout."
    return make_tiny_prompt_upsampler(tmp_path_factory.mktemp('ups') / 'checkpoints' / PIXTRAL_REPO)


# --- the image ----------------------------------------------------------------------------------------------------------------

def test_upsampler_image_is_upstreams_last_frame_and_size(example_media):
    img = upsampler_image(example_media / 'video2world_input0.jpg')
    ref = Image.open(example_media / 'video2world_input0.jpg').convert('RGB').resize((1024, 576), Image.Resampling.BICUBIC)
    assert img.size == (1024, 576) and img.tobytes() == ref.tobytes()                  # PIL's default filter for RGB: bicubic
    last = read_video(example_media / 'video2world_input2.mp4', start=8)[0][0]             # the 9th and last frame
    ref = Image.fromarray(last.permute(1, 2, 0).numpy()).resize((1024, 576))
    assert upsampler_image(example_media / 'video2world_input2.mp4').tobytes() == ref.tobytes()
    frames = read_video(example_media / 'video2world_input2.mp4', start=7)[0]             # uint8 T×3×H×W: the last one
    assert upsampler_image(frames).tobytes() == ref.tobytes()
    x = to_unit(frames, INFERENCE_DIVISOR).permute(1, 0, 2, 3)                          # the pipeline's float 3×N×H×W
    assert upsampler_image(x).tobytes() == ref.tobytes()                                 # x/128 − 1 inverts exactly
    assert upsampler_image(Image.new('RGB', (1025, 10))).size == (1024, 10)              # ceil(9.99)
    assert upsampler_image(Image.new('L', (300, 200))).mode == 'RGB'


# --- the processor ----------------------------------------------------------------------------------------------------------

def test_pixtral_inputs_expands_one_token_per_patch(pixtral):
    p = load_pixtral_processor(pixtral)
    assert p.image_tokens(32, 48) == '[IMG][IMG][IMG][IMG_BREAK][IMG][IMG][IMG][IMG_END]'
    assert PixtralInputs(None, None, patch_size=14, spatial_merge_size=2).image_tokens(56, 28) == '[IMG][IMG_BREAK][IMG][IMG_END]'
    with pytest.raises(ValueError, match='2 \\[IMG\\] tokens in the text for 1 images'):
        p(text='[IMG][IMG]', images=[Image.new('RGB', (20, 20))])


def test_autoprocessor_is_used_when_it_can_be_built(pixtral, monkeypatch):
    import transformers
    sentinel = object()
    monkeypatch.setattr(transformers.AutoProcessor, 'from_pretrained', classmethod(lambda cls, *a, **k: sentinel))
    assert load_pixtral_processor(pixtral) is sentinel
    def needs_torchvision(cls, *a, **k): raise ImportError('PixtralProcessor requires the Torchvision library')
    monkeypatch.setattr(transformers.AutoProcessor, 'from_pretrained', classmethod(needs_torchvision))
    assert isinstance(load_pixtral_processor(pixtral), PixtralInputs)


# --- finding the model ------------------------------------------------------------------------------------------------------

def test_find_prompt_upsampler_places(tmp_path, pixtral, monkeypatch):
    ck = tmp_path / 'checkpoints'
    assert find_prompt_upsampler(ck) is None
    shutil.copytree(pixtral, ck / 'Pixtral-12B')                                        # upstream's --prompt_upsampler_dir
    assert find_prompt_upsampler(ck) == ck / 'Pixtral-12B'
    assert find_prompt_upsampler(tmp_path / 'other', ck / 'Pixtral-12B') == ck / 'Pixtral-12B'   # an absolute path
    (ck / 'Pixtral-12B' / 'config.json').write_text('{"model_type": "mistral"}')        # not a Llava: not used
    assert find_prompt_upsampler(ck) is None
    cache = tmp_path / 'hf'                                                             # the Hugging Face cache
    snap = cache / ('models--' + PIXTRAL_REPO.replace('/', '--')) / 'snapshots' / ('1' * 40)
    shutil.copytree(pixtral, snap)
    (snap.parent.parent / 'refs').mkdir(); (snap.parent.parent / 'refs' / 'main').write_text('1' * 40)
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(cache))
    assert find_prompt_upsampler(ck) == snap


def test_missing_upsampler_message_names_the_download_and_upstreams_format(tmp_path):
    msg = upsampler_missing(tmp_path)
    assert f'--prompt_upsampler --checkpoint_dir {tmp_path}' in msg and PIXTRAL_REPO in msg and "upstream's own" not in msg
    (tmp_path / 'Pixtral-12B').mkdir(); (tmp_path / 'Pixtral-12B' / 'model.pt').write_bytes(b'x')
    assert "holds upstream's own conversion of Pixtral (model.pt)" in upsampler_missing(tmp_path)


def test_a_broken_folder_is_a_clear_error(tmp_path, pixtral):
    shutil.copytree(pixtral, tmp_path / 'p'); (tmp_path / 'p' / 'model.safetensors').write_bytes(b'broken')
    with pytest.raises(UpsamplerLoadError, match='cannot load the prompt upsampler from .*p .*--disable_prompt_upsampler'):
        PromptUpsampler.load(tmp_path / 'p')


# --- upsampling ---------------------------------------------------------------------------------------------------------------

def test_the_tiny_pixtral_runs_upstreams_turn_greedily(pixtral, example_media):
    up = PromptUpsampler.load(pixtral)
    assert up.chat() == f'<s>[INST][IMG]\n{UPSAMPLER_INSTRUCTION}[/INST]'
    seen = []
    generate = up.model.generate
    up.model.generate = lambda **kw: seen.append(kw) or generate(**kw)
    assert up(example_media / 'video2world_input0.jpg') == SAYS
    kw = seen[0]
    assert kw['do_sample'] is False and kw['max_new_tokens'] == 400
    ids = kw['input_ids'][0].tolist()
    assert ids.count(up.tokenizer.bos_token_id) == 1 and ids[0] == up.tokenizer.bos_token_id
    h, w = kw['image_sizes'][0].tolist()
    assert ids.count(up.model.config.image_token_index) == (h // 16) * (w // 16) and max(h, w) == 64
    assert up(example_media / 'video2world_input0.jpg', max_new_tokens=3) == ' '.join(SAYS.split()[:3])
    assert up(example_media / 'video2world_input2.mp4', offload=True) == SAYS and next(up.model.parameters()).device.type == 'cpu'


def test_upsample_prompt_replaces_keeps_or_warns(pixtral, example_media, tmp_path, capsys):
    ck = pixtral.parent.parent
    assert upsample_prompt('a road', example_media / 'video2world_input0.jpg', ck) == SAYS
    assert "replaces the given prompt 'a road'" in capsys.readouterr().out
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        assert upsample_prompt('a road', example_media / 'video2world_input0.jpg', tmp_path) == 'a road'
        assert upsample_prompt(None, example_media / 'video2world_input0.jpg', tmp_path) is None
    assert [x.category for x in w] == [FeatureNotAvailableWarning] * 2 and '--disable_prompt_upsampler' in str(w[0].message)
    mute = make_tiny_prompt_upsampler(tmp_path / 'mute' / PIXTRAL_REPO, says='')                 # answers nothing
    with pytest.warns(UserWarning, match='wrote nothing'):
        assert upsample_prompt('a road', example_media / 'video2world_input0.jpg', tmp_path / 'mute') == 'a road'


def test_models_are_loaded_once(pixtral, example_media, monkeypatch):
    loads = []
    real = ups.PromptUpsampler.load
    monkeypatch.setattr(ups.PromptUpsampler, 'load', classmethod(lambda cls, f, *a: loads.append(f) or real(f, *a)))
    cache = ModelCache()
    for _ in range(2): upsample_prompt(None, example_media / 'video2world_input0.jpg', pixtral.parent.parent, cache=cache)
    assert loads == [pixtral] and len(cache) == 1
    upsample_prompt(None, example_media / 'video2world_input0.jpg', pixtral.parent.parent)      # no cache: loaded for this call
    assert loads == [pixtral, pixtral] and len(cache) == 1


# --- the Video2World CLI ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def ck(tmp_path_factory, pixtral):
    ck = make_tiny_checkpoints(tmp_path_factory.mktemp('v2w_ups') / 'checkpoints')
    shutil.copytree(pixtral, ck / PIXTRAL_REPO)
    return ck


def _run(ck, out, example_media, *extra):
    argv = ['--checkpoint_dir', ck, '--input_image_or_video_path', example_media / 'video2world_input0.jpg', '--video_save_folder', out,
            *SMALL, *extra]
    return video2world_main([str(a) for a in argv])


def test_cli_upsampled_prompt_replaces_the_given_one(ck, tmp_path, example_media):
    saved = _run(ck, tmp_path / 'a', example_media, '--disable_guardrail')                         # no --prompt needed
    assert (tmp_path / 'a' / 'output.txt').read_text() == SAYS and saved[0].is_file()
    _run(ck, tmp_path / 'b', example_media, '--disable_guardrail', '--prompt', 'a red cube')     # upstream ignores --prompt
    assert (tmp_path / 'b' / 'output.txt').read_text() == SAYS
    _run(ck, tmp_path / 'c', example_media, '--disable_guardrail', '--disable_prompt_upsampler', '--prompt', 'a red cube')
    assert (tmp_path / 'c' / 'output.txt').read_text() == 'a red cube'                         # no HEAD branch bug


def test_cli_guardrail_checks_the_upsampled_prompt(ck, tmp_path, example_media, capsys):
    ck2 = Path(shutil.copytree(ck, tmp_path / 'checkpoints'))
    shutil.rmtree(ck2 / PIXTRAL_REPO)
    make_tiny_prompt_upsampler(ck2 / PIXTRAL_REPO, says='smoke rises after a car bomb')
    make_tiny_guardrail(ck2)                                                                  # blocklist: 'car bomb'
    assert _run(ck2, tmp_path / 'out', example_media, '--prompt', 'a quiet street') == []
    out = capsys.readouterr().out
    assert "prompt upsampler: 'smoke rises after a car bomb'" in out and 'the prompt is blocked (blocklist' in out
    assert not (tmp_path / 'out').exists()


def test_cli_without_pixtral_still_requires_a_prompt(tmp_path, example_media, ck):
    bare = Path(shutil.copytree(ck, tmp_path / 'checkpoints', ignore=shutil.ignore_patterns('mistral-community')))
    with pytest.raises(SystemExit, match='no prompt: pass --prompt'): _run(bare, tmp_path / 'out', example_media, '--disable_guardrail')


def test_cli_shows_pixtral_the_inputs_own_last_frame_not_the_stretched_one(ck, tmp_path, example_media, monkeypatch):
    "Upstream's Pixtral sees the input's last frame at its own size (≤ 1024 a side), not the frame stretched to --height/--width."
    import cosmos_nb.upsampler as ups
    seen = []
    def spy(prompt, image, *a, **k): seen.append(image); return 'a spied prompt'
    monkeypatch.setattr(ups, 'upsample_prompt', spy)
    _run(ck, tmp_path / 'out', example_media, '--disable_guardrail')                               # SMALL: 32×48 generation
    assert (tmp_path / 'out' / 'output.txt').read_text() == 'a spied prompt'
    src = example_media / 'video2world_input0.jpg'
    assert upsampler_image(seen[0]).tobytes() == upsampler_image(src).tobytes()
    assert upsampler_image(seen[0]).size != (48, 32)
