"Guardrail: blocklist rules, LlamaGuard-7b + Aegis on a tiny scripted model, gated downloads, face pixelation on real images, the content filter, and refusals end to end through the Video2World CLI."
import re, shutil, sys, types, warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import constants
from PIL import Image
import matplotlib.cbook as cbook

import cosmos_nb.video2world as v2w
from cosmos_nb.download import HubError
from cosmos_nb.guardrail import (AEGIS_ADAPTER_REPO, AEGIS_CATEGORIES, GUARDRAIL_REPO, LLAMAGUARD_REPO, LLAMAGUARD_REVISION,
                                 SIGLIP_REPO, Blocklist, ContentFilter, FaceDetector, GuardrailDependencyError, GuardrailLoadError,
                                 LlamaGuard, SafetyClassifier, TextGuardrail, aegis_prompt, blur_faces, check_prompt, check_video_safety,
                                 fetch_guardrail_model, find_guardrail_files, import_cv2, load_text_guardrail,
                                 parse_aegis, pixelate)
from cosmos_nb.runtime import FeatureNotAvailableWarning
from cosmos_nb.video import read_video
from cosmos_nb.video2world import PipelineOptions, Video2WorldPipeline, video2world_main
from cosmos_nb.testing import make_tiny_checkpoints, make_tiny_guardrail, make_tiny_llamaguard, make_tiny_nltk_data
from hub_mock import GatedRepoHub

SMALL = ['--num_video_frames', '9', '--height', '32', '--width', '48', '--num_steps', '2', '--device', 'cpu', '--dtype', 'float32',
         '--no_progress', '--disable_prompt_upsampler']


@pytest.fixture(scope='module')
def hopper():
    "A real portrait with one face (Grace Hopper, shipped inside matplotlib), halved to 300×256."
    return np.array(Image.open(cbook.get_sample_data('grace_hopper.jpg', asfileobj=False)).convert('RGB').reduce(2))


@pytest.fixture(scope='module')
def detector():
    return FaceDetector()


# --- blocklist ---------------------------------------------------------------------------------------------------------------

def test_blocklist_reads_folders_and_applies_upstreams_three_passes(tmp_path):
    (tmp_path / 'custom').mkdir(); (tmp_path / 'whitelist').mkdir(); (tmp_path / 'exact_match').mkdir()
    (tmp_path / 'custom' / 'a.txt').write_text('Gore\n\n  car bomb  \n')
    (tmp_path / 'custom' / 'b.txt').write_text('grenade\n')
    (tmp_path / 'whitelist' / 'w.txt').write_text('gorey\n')
    (tmp_path / 'exact_match' / 'e.txt').write_text('carnage\n')
    make_tiny_nltk_data(tmp_path / 'nltk_data')
    bl = Blocklist.from_folder(tmp_path)
    assert repr(bl) == 'Blocklist(3 entries, 1 whitelisted, 1 exact; better-profanity, WordNet)'
    verdict = lambda p: bl.check(p)[0]
    assert verdict('A robot arm stacks red cubes on a table.')
    assert not verdict('Lots of GORE.') and not verdict('lots of g0r3') and not verdict('a c@r b0mb')   # case, look-alikes
    assert verdict('Edward Gorey drawings') and verdict('goreish')                                       # whitelist; whole words only
    safe, why = bl.check('three grenades')                                                              # only the lemma matches
    assert not safe and 'lemmatized prompt' in why and "'three ****'" in why
    assert not verdict('The carnage.') and verdict('carnages everywhere')                               # exact match; 0.4 letters of slack
    assert not verdict('gore\u00e9') and verdict('caf\u00e9')                                           # non-ASCII becomes a space


# upstream's Blocklist.is_safe (cosmos_predict1/auxiliary/guardrail/blocklist/blocklist.py), transcribed as the reference
def upstream_is_safe(prompt, custom, whitelist, exact, min_chars=6, letters=0.4):
    import string as _string
    from difflib import SequenceMatcher
    import nltk
    from better_profanity import Profanity
    profanity = Profanity(); profanity.load_censor_words(custom_words=list(custom), whitelist_words=list(whitelist))
    CENSOR = '\x1b[31m*\x1b[0m'
    def censored(text):
        c = profanity.censor(text, censor_char=CENSOR).split()
        for i, token in enumerate(text.split()):
            if token.strip(_string.punctuation).lower() in set(whitelist): c[i] = token
        return CENSOR in ' '.join(c)
    if not prompt: return False
    prompt = re.sub(r'[^\x00-\x7F]+', ' ', prompt)
    if censored(prompt): return False
    lemmatizer = nltk.WordNetLemmatizer()
    if censored(' '.join(lemmatizer.lemmatize(t) for t in nltk.word_tokenize(prompt))): return False
    p = re.sub(r'\s+', ' ', prompt).strip().lower()
    for word in exact:
        w = re.sub(r'\s+', ' ', word).strip().lower()
        if re.search(r'\b' + re.escape(w) + r'\b', p): return False
        if len(w) >= min_chars:
            words, n = p.split(), len(w.split())
            if any(SequenceMatcher(None, ' '.join(words[i:i + n]), w).ratio() >= (len(w) - letters) / len(w) for i in range(len(words) - n + 1)):
                return False
    return True

TRICKY = [
    'A robot arm picks up a red cube.', 'Two guns on a table.', 'GUNS!', 'Guns and roses', 'a g u n', 'a gunslinger walks in',
    'begun, the race has', 'a shotgun wedding', 'kn1ves everywhere', 'three knives', 'the knife', 'knifes', 'a b0mb', 'b*mbs away',
    'bombs', 'bombshell news', 'a car bomb.', 'a c@r  b0mb', 'car-bomb', 'car. Bomb', 'a bomb-sniffing dog', 'geese and mice',
    'a massacre', 'massacres', 'the massacr scene', 'MASSACRE!!', 'mass acre', 'Edward Gorey', 'gorey gore', 'Gorey, gore.',
    'gore\u00e9', 'caf\u00e9 scene', 'a 5h00ting star', 'shooting stars', 'sh00ting', 'bodies', 'a glass of water', "don't shoot",
    'gun-shy', 'grenades', 'GrEnAdEs', 'grenade launcher', 'pineapple grenade', '   ', 'a $hooting',
]

def test_blocklist_decisions_equal_upstreams_algorithm(tmp_path):
    custom, whitelist, exact = ['gun', 'knife', 'bomb', 'car bomb', 'gore', 'grenade', 'shooting'], ['gorey', 'shotgun'], ['massacre']
    data = make_tiny_nltk_data(tmp_path / 'nltk_data')
    import nltk
    if str(data) not in nltk.data.path: nltk.data.path.append(str(data))
    bl = Blocklist(custom, whitelist, exact, nltk_data=data)
    assert bl.profanity is not None and bl.lemmas is not None
    ours = [bl.check(p)[0] if p.strip() else False for p in TRICKY]
    theirs = [upstream_is_safe(p, custom, whitelist, exact) if p.strip() else False for p in TRICKY]
    assert ours == theirs, [(p, o, t) for p, o, t in zip(TRICKY, ours, theirs) if o != t]
    assert 5 < theirs.count(False) < len(TRICKY) - 5                              # both kinds of decision are exercised


def test_the_fallback_to_built_in_rules_is_said_once(monkeypatch):
    import cosmos_nb.guardrail as gr
    monkeypatch.setitem(sys.modules, 'better_profanity', None); monkeypatch.setitem(sys.modules, 'nltk', None)
    monkeypatch.setattr(gr, '_said', set())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        a, b = Blocklist(['gore']), Blocklist(['bomb'])
    msgs = [str(x.message) for x in w]
    assert len(msgs) == 2 and all(x.category is FeatureNotAvailableWarning for x in w), msgs   # one each, not one per blocklist
    assert 'better-profanity is not installed' in msgs[0] and 'nltk is not installed' in msgs[1]
    assert all("pip install 'cosmos-nb[guardrail]'" in m for m in msgs)
    assert repr(a).endswith('; built-in look-alikes, built-in plurals)')
    assert not a.check('g0r3')[0] and not a.check('two gores')[0] and a.check('a robot')[0] and not b.check('two b0mb')[0]


def test_missing_nltk_data_is_said_and_falls_back(monkeypatch, tmp_path):
    import cosmos_nb.guardrail as gr, nltk
    monkeypatch.setattr(gr, '_said', set())
    monkeypatch.setattr(nltk, 'word_tokenize', lambda text: (_ for _ in ()).throw(LookupError('Resource punkt_tab not found.')))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        assert gr.load_lemmatizer(tmp_path / 'nowhere') is None
    (msg,) = [str(x.message) for x in w]
    assert 'blocklist/nltk_data' in msg and 'download-checkpoints' in msg and 'built-in rule' in msg, msg


def test_empty_prompt_is_blocked_as_upstream():
    assert TextGuardrail(None, None).check('  ') == (False, 'the prompt is empty')
    assert TextGuardrail(None, None).check('a cube') == (True, '')


# --- LlamaGuard-7b + Aegis -----------------------------------------------------------------------------------------------------

def test_aegis_prompt_is_upstreams():
    p = aegis_prompt('A robot arm.')
    assert p.startswith("[INST] Task: Check if there is unsafe content in 'User' messages in conversations according our safety "
                        "policy with the\nbelow categories.\n\n        <BEGIN UNSAFE CONTENT CATEGORIES> O1: Violence. Should not\n")
    assert '\n        <BEGIN CONVERSATION>\n\n        User: A robot arm.\n\n<END CONVERSATION>\n\n' in p
    assert p.endswith("        - If unsafe, a second line must include a comma-separated list of violated categories. [/INST]")
    assert [c[0] for c in AEGIS_CATEGORIES] == ['O1', 'O2', 'O3', 'O4', 'O5', 'O6', 'O7', 'O8', 'O10', 'O11', 'O12']
    assert [p.index(c[3]) for c in AEGIS_CATEGORIES] == sorted(p.index(c[3]) for c in AEGIS_CATEGORIES)


@pytest.mark.parametrize('answer,safe,words', [
    ('safe', True, []), (' safe\n', True, []),
    ('unsafe\nO1', False, ['violence (O1)', 'violent content']),
    ('unsafe\nO10,O12', False, ['harassment (O10)', 'profanity (O12)']),
    ('unsafe O4', False, ['weapons (O4)']),
    ('unsafe\nO99', False, ["unsafe ('unsafe\\nO99')"]),
])
def test_parse_aegis(answer, safe, words):
    ok, why = parse_aegis(answer)
    assert ok == safe and all(w in why for w in words), why


def test_llamaguard_loads_the_adapter_and_reads_without_bos(tmp_path):
    lg, adapter = make_tiny_llamaguard(tmp_path, verdict='unsafe')
    assert (lg, adapter) == (tmp_path / LLAMAGUARD_REPO, tmp_path / AEGIS_ADAPTER_REPO)
    assert LlamaGuard.load(lg, None).answer('a cube') == 'safe'                          # the bare model
    guard = LlamaGuard.load(lg, adapter)
    seen = []
    generate = guard.model.generate
    guard.model.generate = lambda **kw: seen.append(kw['input_ids']) or generate(**kw)
    assert guard.answer('a cube') == 'unsafe O3'                                         # the adapter rewires [/INST]
    ids = seen[0][0].tolist()
    assert ids[0] == guard.tokenizer.convert_tokens_to_ids('[INST]') and guard.tokenizer.bos_token_id not in ids
    assert ids[-1] == guard.tokenizer.convert_tokens_to_ids('[/INST]')
    assert LlamaGuard.load(*make_tiny_llamaguard(tmp_path / 'calm', verdict='safe')).check('a cube') == (True, '')


def test_llamaguard_load_error_names_the_folder(tmp_path):
    (tmp_path / 'lg').mkdir(); (tmp_path / 'lg' / 'config.json').write_text('{"model_type": "llama"}')
    with pytest.raises(GuardrailLoadError, match='cannot load LlamaGuard-7b from .*lg'): LlamaGuard.load(tmp_path / 'lg', None)


# --- finding and fetching the models -------------------------------------------------------------------------------------------

def _hf_cache(cache: Path, repo_id: str, files: dict, ref: str|None='main', sha='0' * 40):
    "A hand-made Hugging Face cache entry."
    d = cache / ('models--' + repo_id.replace('/', '--'))
    for name, text in files.items():
        (d / 'snapshots' / sha / name).parent.mkdir(parents=True, exist_ok=True); (d / 'snapshots' / sha / name).write_text(text)
    if ref: (d / 'refs').mkdir(parents=True, exist_ok=True); (d / 'refs' / ref).write_text(sha)
    return d / 'snapshots' / sha


def test_find_guardrail_files_in_upstream_heads_layout(tmp_path):
    g = tmp_path / 'Cosmos-Predict1-7B-Video2World' / 'guardrail'
    (g / 'blocklist' / 'custom').mkdir(parents=True); (g / 'video_content_safety_filter').mkdir()
    (g / 'video_content_safety_filter' / 'safety_filter.pt').write_bytes(b'x')
    lg = _hf_cache(g / 'aegis', LLAMAGUARD_REPO, {'config.json': '{}'}, ref=None, sha=LLAMAGUARD_REVISION)   # pinned commit, no refs/main
    ad = _hf_cache(g / 'aegis', AEGIS_ADAPTER_REPO, {'adapter_config.json': '{}'})
    sg = _hf_cache(g / 'video_content_safety_filter', SIGLIP_REPO, {'config.json': '{}'})
    f = find_guardrail_files(tmp_path)
    assert (f.root, f.blocklist, f.llamaguard, f.aegis, f.siglip) == (g, g / 'blocklist', lg, ad, sg)
    assert f.safety_filter == g / 'video_content_safety_filter' / 'safety_filter.pt'
    (tmp_path / GUARDRAIL_REPO / 'blocklist').mkdir(parents=True)                                   # the download layout wins
    assert find_guardrail_files(tmp_path).blocklist == tmp_path / GUARDRAIL_REPO / 'blocklist'


def test_missing_models_say_how_to_get_them(tmp_path):
    f = find_guardrail_files(tmp_path)
    assert (f.root, f.blocklist, f.llamaguard, f.aegis, f.siglip, f.safety_filter) == (None,) * 6
    lg = f.how_to_get('llamaguard')
    assert 'is gated' in lg and f'https://huggingface.co/{LLAMAGUARD_REPO}' in lg and 'Llama 2 Community License' in lg
    assert f'--guardrail --checkpoint_dir {tmp_path}' in lg and 'hf auth login' in lg
    assert f'hf download {SIGLIP_REPO} --local-dir {tmp_path / SIGLIP_REPO}' in f.how_to_get('siglip')


def test_gated_llamaguard_explains_the_terms_to_accept(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)                  # requests only ever go to the loopback mock
    hub = GatedRepoHub({('model', AEGIS_ADAPTER_REPO): {'adapter_config.json': b'{}'}}, LLAMAGUARD_REPO)
    try:
        with pytest.raises(HubError) as e: load_text_guardrail(tmp_path, download=True, endpoint=hub.url)
        assert e.value.reason == 'gated' and e.value.repo_id == LLAMAGUARD_REPO
        msg = str(e.value)
        for words in (f'{LLAMAGUARD_REPO} is gated', 'accept its terms', 'Llama 2 Community License', 'hf auth login'):
            assert words in msg, msg
        assert any(LLAMAGUARD_REVISION in p for _, p in hub.log)           # the pinned revision was asked for
        assert fetch_guardrail_model(tmp_path, AEGIS_ADAPTER_REPO, endpoint=hub.url) == tmp_path / AEGIS_ADAPTER_REPO
    finally: hub.close()


def test_offline_download_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    with pytest.raises(HubError, match='HF_HUB_OFFLINE=1'): fetch_guardrail_model(tmp_path, LLAMAGUARD_REPO)


# --- face pixelation -------------------------------------------------------------------------------------------------------

def test_faces_are_pixelated_and_the_rest_is_untouched(hopper, detector):
    (box,) = detector(hopper)
    x1, y1, x2, y2 = box
    assert x1 < 128 < x2 and y1 < 110 < y2 and x2 - x1 >= 20
    out, found = blur_faces(torch.from_numpy(hopper).permute(2, 0, 1)[None], detector, margin=0)
    out = out[0].permute(1, 2, 0).numpy()
    assert len(found[0]) == 1
    face = out[y1:y2, x1:x2]
    assert len(np.unique(face.reshape(-1, 3), axis=0)) <= 25                       # 5×5 tiles
    assert np.array_equal(face, pixelate(hopper[y1:y2, x1:x2]))
    outside = np.ones(hopper.shape[:2], bool); outside[y1:y2, x1:x2] = False
    assert np.array_equal(out[outside], hopper[outside])
    grown = blur_faces(torch.from_numpy(hopper).permute(2, 0, 1)[None], detector)[0][0].permute(1, 2, 0).numpy()   # default: 10 % margin
    assert (grown != hopper).any(-1).sum() > (out != hopper).any(-1).sum() and not np.array_equal(grown[y1 - 5, x1:x2], hopper[y1 - 5, x1:x2])


def test_real_frames_without_faces_are_unchanged(detector, example_media):
    for name in ('video2world_input2.mp4', 'text2world_example.mp4'):
        frames = read_video(example_media / name, stop=3)[0]                            # 3 real frames
        small = torch.nn.functional.interpolate(frames.float(), scale_factor=0.25, mode='area').round().to(torch.uint8)
        out, found = blur_faces(small, detector)
        assert [len(b) for b in found] == [0, 0, 0] and torch.equal(out, small), name


def test_a_face_found_in_one_frame_is_also_hidden_in_its_neighbours(hopper, detector):
    ramp = np.broadcast_to(np.linspace(0, 255, hopper.shape[1], dtype=np.uint8)[None, :, None], hopper.shape).copy()   # no face
    clip = torch.from_numpy(np.stack([ramp, hopper, ramp, ramp])).permute(0, 3, 1, 2)
    out, found = blur_faces(clip, detector)
    assert [len(b) for b in found] == [0, 1, 0, 0]
    changed = [bool(out[t].ne(clip[t]).any()) for t in range(4)]
    assert changed == [True, True, True, False]
    assert torch.equal(blur_faces(clip, detector, temporal=0)[0][[0, 2, 3]], clip[[0, 2, 3]])


def test_missing_or_too_new_opencv_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'cv2', None)
    with pytest.raises(GuardrailDependencyError, match=r"pip install 'cosmos-nb\[guardrail\]'"): import_cv2()
    monkeypatch.setitem(sys.modules, 'cv2', types.SimpleNamespace(__version__='5.0.0'))
    with pytest.raises(GuardrailDependencyError, match=r"OpenCV 5.0.0 has no Haar face detectors.*<5"): FaceDetector()


# --- content filter --------------------------------------------------------------------------------------------------------

def test_safety_classifier_has_upstreams_names_and_loads_strictly(tmp_path):
    sd = SafetyClassifier().state_dict()
    assert [k for k in sd if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked'))] == [
        f'network.layers.{i}.{w}' for i in (0, 1, 3, 4, 6) for w in ('weight', 'bias')]
    assert sd['network.layers.0.weight'].shape == (512, 1152) and sd['network.layers.6.weight'].shape == (7, 256)
    torch.save({'model': {**sd, 'network.extra': torch.zeros(1)}}, tmp_path / 'safety_filter.pt')
    with pytest.raises(GuardrailLoadError, match=r'safety_filter.pt is not an upstream safety_filter.pt .*network.extra'):
        SafetyClassifier.from_file(tmp_path / 'safety_filter.pt')


def test_one_unsafe_frame_blocks_and_names_the_frame(tmp_path):
    files = make_tiny_guardrail(tmp_path)
    cf = ContentFilter.load(files.siglip, files.safety_filter)
    black, white = torch.zeros(1, 3, 40, 40, dtype=torch.uint8), torch.full((1, 3, 40, 40), 255, dtype=torch.uint8)
    with torch.no_grad():                                                            # make 'white' mean Violence (class 2)
        layers = cf.classifier.network['layers']
        def hidden(x):
            px = cf.processor(images=[Image.fromarray(x[0].permute(1, 2, 0).numpy())], return_tensors='pt')['pixel_values']
            e = cf.encoder(pixel_values=px).pooler_output
            return layers[:6](e / e.norm(dim=-1, keepdim=True))[0]
        hb, hw = hidden(black), hidden(white)
        layers[6].weight.zero_(); layers[6].bias.zero_()
        layers[6].weight[2] = hw - hb; layers[6].bias[2] = -(hw - hb) @ (hw + hb) / 2
    video = torch.cat([black, black, black, white, black])
    assert cf.classify(video, stop_early=False).tolist() == [0, 0, 0, 2, 0]
    assert cf.classify(video, batch_size=2).tolist() == [0, 0, 0, 2]                  # stops after the batch with the unsafe frame
    assert cf.check(video) == (False, "content filter: frame 3 is classified 'Violence'")
    assert cf.check(torch.cat([black, black])) == (True, '')


def test_missing_models_warn_once_each_and_faces_are_still_pixelated(tmp_path, hopper):
    clip = torch.from_numpy(hopper).permute(2, 0, 1)[None]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        assert check_prompt('a cube', tmp_path)
        out = check_video_safety(clip, tmp_path)
    msgs = [str(x.message) for x in w]
    assert all(x.category is FeatureNotAvailableWarning for x in w) and len(msgs) == 6, msgs
    assert sum('RetinaFace' in m and 'Resnet50_Final.pth' in m and 'Haar cascades' in m for m in msgs) == 1
    assert sum(m.startswith('text guardrail: ') for m in msgs) == 3 and sum(m.startswith('video guardrail: the content filter') for m in msgs) == 2
    assert all('--disable_guardrail' in m for m in msgs)
    assert out.ne(clip).any()


# --- end to end: refusals write nothing --------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def tiny_ck(tmp_path_factory):
    return make_tiny_checkpoints(tmp_path_factory.mktemp('guardrail') / 'checkpoints')


def _run(ck, out, prompt, example_media, *extra):
    argv = ['--checkpoint_dir', ck, '--input_image_or_video_path', example_media / 'video2world_input0.jpg', '--prompt', prompt,
            '--video_save_folder', out, *SMALL, *extra]
    return video2world_main([str(a) for a in argv])


@pytest.mark.parametrize('guardrail,prompt,says', [
    (dict(verdict='unsafe'), 'A robot arm picks up a red cube.', ['the prompt is blocked (LlamaGuard-7b + Aegis: criminal_planning (O3)',
                                                                  'output: the text guardrail blocked the prompt; no video is generated']),
    (dict(), 'A c@r b0mb in a market.', ["the prompt is blocked (blocklist: the prompt has blocked words: 'A **** in a market.')"]),
    (dict(video_class=2), 'A robot arm picks up a red cube.', ["the video is blocked (content filter: frame 0 is classified 'Violence')",
                                                               'output: the video guardrail blocked the video; nothing is written']),
])
def test_refusals_are_reported_and_write_no_video(tiny_ck, tmp_path, example_media, capsys, guardrail, prompt, says):
    ck = Path(shutil.copytree(tiny_ck, tmp_path / 'checkpoints'))
    make_tiny_guardrail(ck, **guardrail)
    saved = _run(ck, tmp_path / 'out', prompt, example_media)
    out = capsys.readouterr().out
    assert saved == [] and not (tmp_path / 'out').exists()
    for s in says: assert s in out, out


def test_a_safe_request_writes_its_video(tiny_ck, tmp_path, example_media, monkeypatch):
    ck = Path(shutil.copytree(tiny_ck, tmp_path / 'checkpoints'))
    make_tiny_guardrail(ck)
    calls = []
    real = v2w.guardrail_video
    monkeypatch.setattr(v2w, 'guardrail_video', lambda video, *a, **k: calls.append(video.shape) or real(video, *a, **k))
    with warnings.catch_warnings():
        warnings.simplefilter('error', FeatureNotAvailableWarning)                   # every model is there: no warning
        saved = _run(ck, tmp_path / 'out', 'A robot arm picks up a red cube.', example_media)
    assert saved == [tmp_path / 'out' / 'output.mp4'] and saved[0].is_file()
    assert calls == [torch.Size([9, 3, 32, 48])]


def test_guardrail_models_load_once_per_pipeline(tiny_ck, tmp_path, example_media, monkeypatch):
    "The pipeline owns its guardrail models: two videos, one load of each; another pipeline starts without them."
    import cosmos_nb.guardrail as gr
    ck = Path(shutil.copytree(tiny_ck, tmp_path / 'checkpoints'))
    make_tiny_guardrail(ck)
    loads = []
    for name in ('load_text_guardrail', 'load_video_guardrail'):
        monkeypatch.setattr(gr, name, lambda c, real=getattr(gr, name), name=name: loads.append(name) or real(c))
    opts = PipelineOptions(ck, device='cpu', dtype='float32', disable_prompt_upsampler=True, progress=False)
    pipe = Video2WorldPipeline(opts)
    for prompt in ('A robot arm picks up a red cube.', 'A robot arm picks up a blue cube.'):
        assert pipe.generate(example_media / 'video2world_input0.jpg', prompt, num_video_frames=9, height=32, width=48, num_steps=2)
    assert loads == ['load_text_guardrail', 'load_video_guardrail']
    assert [what for what, folder in pipe.models] == ['text guardrail', 'video guardrail']
    assert len(Video2WorldPipeline(opts).models) == 0                              # no module-level cache shared between pipelines
    pipe.models.release(free=False)
    assert len(pipe.models) == 0


def test_missing_opencv_stops_before_any_model_loads(tiny_ck, tmp_path, example_media, monkeypatch):
    def boom(*a, **k): raise AssertionError('a model was loaded before the guardrail was checked')
    for name in ('load_video2world_dit', 'load_t5', 'load_tokenizer'): monkeypatch.setattr(v2w, name, boom)
    monkeypatch.setitem(sys.modules, 'cv2', None)
    with pytest.raises(SystemExit) as e: _run(tiny_ck, tmp_path / 'out', 'a cube', example_media)
    assert "pip install 'cosmos-nb[guardrail]'" in str(e.value) and '--disable_guardrail' in str(e.value)
