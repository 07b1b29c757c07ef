"""A dataset folder with good clips and one of every kind of damage, walked by every entry point (validation, the training
dataset, cache-latents, previews): bad items are skipped with a warning naming them, good ones are all kept, and no kept
item ever pairs one clip's frames (or latent) with another clip's text."""
import json, os, pickle, struct, warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from cosmos_nb.data import (DatasetLayout, VideoDataset, load_t5_pickle, pad_t5_embedding, save_t5_pickle,
                            toy_text_embedding, validate_dataset, window_starts)
from cosmos_nb.video import VideoError, read_video, resize_video, video_info, write_video
from cosmos_nb.latent_cache import LatentCacheDataset

EXPERIMENT, NUM_FRAMES, SIZE = 'video2world_tiny_full_synthetic', 17, (32, 32)   # the tiny recipe's windows
# good clips: a distinct constant colour and frame count each, so any item's frames say which clip they came from
GOOD = {'good_a': ((200, 40, 40), 17), 'good_b': ((40, 200, 40), 19), 'good_c': ((40, 40, 200), 18)}
# clips whose video is fine but whose text side is broken (also a distinct colour each)
TEXT_BAD = {'unsafe_pickle': (200, 200, 40), 'corrupt_pickle': (200, 40, 200), 'no_pickle': (40, 200, 200), 'no_meta': (120, 120, 120)}
ALWAYS_BAD = {'unsafe_pickle', 'corrupt_pickle', 'no_pickle', 'no_meta', 'empty', 'not_video'}


# --- a real clip that opens but stops decoding part-way ---------------------------------------------------------------

def _boxes(b, start=0, end=None):
    "Top-level (kind, offset, header size, size) of the MP4 boxes in b[start:end]."
    i, end = start, len(b) if end is None else end
    while i < end:
        size, kind = struct.unpack('>I4s', b[i:i + 8]); hdr = 8
        if size == 1: size, hdr = struct.unpack('>Q', b[i + 8:i + 16])[0], 16
        elif size == 0: size = end - i
        yield kind.decode('latin1'), i, hdr, size
        i += size

def _shift_chunk_offsets(b: bytearray, start, end, delta):
    for kind, i, hdr, size in _boxes(b, start, end):
        if kind in ('moov', 'trak', 'mdia', 'minf', 'stbl', 'edts'): _shift_chunk_offsets(b, i + hdr, i + size, delta)
        elif kind in ('stco', 'co64'):
            w, fmt = (4, '>I') if kind == 'stco' else (8, '>Q')
            for k in range(struct.unpack('>I', b[i + hdr + 4:i + hdr + 8])[0]):
                o = i + hdr + 8 + k * w
                b[o:o + w] = struct.pack(fmt, struct.unpack(fmt, b[o:o + w])[0] + delta)

def truncated_mp4(src: Path, min_frames: int) -> bytes:
    """`src` with its index (moov) moved before the frames (as `-movflags +faststart` does), then cut at the end: the file
    opens, counts fewer frames, and the last counted frame fails to decode."""
    data = src.read_bytes()
    top = {k: (i, s) for k, i, _, s in _boxes(data)}
    (mi, ms), di = top['moov'], top['mdat'][0]
    assert mi > di, 'expected the index after the frames (moov at the end)'
    moov = bytearray(data[mi:mi + ms]); _shift_chunk_offsets(moov, 0, len(moov), ms)
    fast = data[:di] + bytes(moov) + data[di:mi]
    path = Path(os.environ.get('TMPDIR', '/tmp'))/f'cut_probe_{os.getpid()}.mp4'
    def frames(cut: int) -> int:
        path.write_bytes(fast[:cut])
        try: return video_info(path).num_frames
        except VideoError: return 0
        finally: path.unlink(missing_ok=True)
    lo, hi = di + ms, len(fast)                # the shortest cut that still counts min_frames frames (bisection)
    assert frames(hi) >= min_frames
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if frames(mid) >= min_frames: hi = mid
        else: lo = mid
    return fast[:hi]


def _own_embedding(stem): return toy_text_embedding(f'caption of {stem}')

@pytest.fixture(scope='module')
def damaged(tmp_path_factory, example_media):
    root = tmp_path_factory.mktemp('damaged')/'ds'
    lay = DatasetLayout(root)
    lay.videos.mkdir(parents=True); lay.metas.mkdir(); lay.t5.mkdir()
    def clip(stem, color, n): write_video(lay.video(stem), torch.tensor(color, dtype=torch.uint8)[None, :, None, None].expand(n, 3, *SIZE), 24)
    for stem, (color, n) in GOOD.items(): clip(stem, color, n)
    for stem, color in TEXT_BAD.items(): clip(stem, color, NUM_FRAMES)
    lay.video('truncated').write_bytes(truncated_mp4(example_media/'text2world_example.mp4', NUM_FRAMES + 4))   # 5 windows: the first decode, the last do not
    lay.video('empty').write_bytes(b'')
    lay.video('not_video').write_text('this is a text file named .mp4\n')
    for stem in [*GOOD, *TEXT_BAD, 'truncated', 'empty', 'not_video']:
        if stem != 'no_meta': lay.caption(stem).write_text(f'caption of {stem}')
        if stem not in ('no_pickle', 'no_meta'): save_t5_pickle(lay.embedding(stem), [_own_embedding(stem)])
    class Shell:
        def __reduce__(self): return (os.system, (f'touch {root}/pwned',))
    lay.embedding('unsafe_pickle').write_bytes(pickle.dumps([Shell()]))
    good = lay.embedding('corrupt_pickle').read_bytes(); lay.embedding('corrupt_pickle').write_bytes(good[:len(good) // 2])
    return lay


def _window_ok(lay, stem, start):
    try: read_video(lay.video(stem), frame_ids=list(range(start, start + NUM_FRAMES))); return True
    except VideoError: return False

@pytest.fixture(scope='module')
def expected(damaged):
    "The windows every skipping consumer must keep: all of the good clips', and the truncated clip's that decode."
    n = video_info(damaged.video('truncated')).num_frames
    trunc = [(s, _window_ok(damaged, 'truncated', s)) for s in window_starts(n, NUM_FRAMES)]
    assert any(ok for _, ok in trunc) and not all(ok for _, ok in trunc), trunc   # the cut really fails part-way
    keep = sorted([(stem, s) for stem, (_, n) in GOOD.items() for s in window_starts(n, NUM_FRAMES)] +
                  [('truncated', s) for s, ok in trunc if ok])
    return dict(keep=keep, trunc_bad=[('truncated', s) for s, ok in trunc if not ok])


def _own_frames(lay, stem, start):
    "uint8 [3, T, H, W] of a window read straight from its own file, at the recipe's size."
    frames, _ = read_video(lay.video(stem), frame_ids=list(range(start, start + NUM_FRAMES)))
    return resize_video(frames, SIZE).permute(1, 0, 2, 3)

def _check_pair(lay, stem, start, video, emb):
    "video (3, T, H, W) uint8 comes from `stem`'s own clip and emb (padded) is `stem`'s own pickle."
    own = _own_frames(lay, stem, start)
    assert (video.float() - own.float()).abs().max() <= 1, f'{stem}@{start}: frames are not its own'
    if stem in GOOD:   # and the colour says so, independently of the decoder
        assert torch.allclose(video.float().mean((1, 2, 3)), torch.tensor(GOOD[stem][0]).float(), atol=3), stem
    ref = pad_t5_embedding(load_t5_pickle(lay.embedding(stem))[0], emb.shape[0])[0]
    assert torch.equal(emb, ref), f'{stem}@{start}: text embedding is not its own'


def _messages(w): return [str(x.message) for x in w]

def _named(msgs, stem): return [m for m in msgs if f'{stem}.mp4' in m or f'{stem}.pickle' in m or f'{stem}:' in m]


# --- validate_dataset ----------------------------------------------------------------------------------------------------------

def test_validate_names_every_bad_item_why_and_fix(damaged):
    rep = validate_dataset(damaged.root, num_frames=NUM_FRAMES)
    assert rep.usable == sorted(GOOD)
    for stem in ALWAYS_BAD | {'truncated'}:
        probs = rep[stem].problems
        assert probs, stem
        text = ' '.join(probs)
        if stem in ('unsafe_pickle', 'corrupt_pickle', 'no_pickle', 'no_meta'): assert 'cosmos-nb t5-embed' in text, text
        else: assert 're-encode' in text and 'delete' in text, text
    assert 'refusing to load global' in ' '.join(rep['unsafe_pickle'].problems)
    assert 'write a caption' in ' '.join(rep['no_meta'].problems)
    assert not (damaged.root/'pwned').exists()


# --- the training dataset (substitutes whole items) -----------------------------------------------------------------------

def test_training_dataset_skips_up_front_and_substitutes_whole_items(damaged, expected):
    with pytest.warns(UserWarning) as w:
        ds = VideoDataset(damaged.root, num_frames=NUM_FRAMES, video_size=SIZE)
    msg = _messages(w)[0]
    assert sorted(ds.skipped) == sorted(ALWAYS_BAD), ds.skipped   # refused pickles are found at construction too
    for stem in ALWAYS_BAD: assert f'  {stem}: ' in msg
    assert 'cosmos-nb t5-embed' in ds.skipped['unsafe_pickle'] and 'cosmos-nb t5-embed' in ds.skipped['corrupt_pickle']
    assert 're-encode' in ds.skipped['empty'] and 're-encode' in ds.skipped['not_video']
    keys = [ds.locate(i) for i in range(len(ds))]
    assert sorted(keys) == sorted(expected['keep'] + expected['trunc_bad'])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        items = [ds[i] for i in range(len(ds))]
    msgs = _messages(w)
    assert len(msgs) == 1 and 'truncated.mp4' in msgs[0] and 'instead' in msgs[0], msgs   # one warning per bad file
    for key, item in zip(keys, items):
        name = item['video_name']
        stem, start = Path(name['video_path']).stem, int(name['start_frame_id'])
        assert Path(name['t5_embedding_path']).stem == stem
        _check_pair(damaged, stem, start, item['video'], item['t5_text_embeddings'])   # the whole item is one clip's
        assert ((stem, start) == key) == (key not in expected['trunc_bad'])           # substituted exactly when bad
    substitute = Path(items[keys.index(expected['trunc_bad'][0])]['video_name']['video_path']).name
    assert substitute != 'truncated.mp4' and substitute in msgs[0]                   # and names what it trains on instead


def test_good_items_skip_never_substitute(damaged, expected):
    from cosmos_nb.data import GoodItems
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        ds = VideoDataset(damaged.root, num_frames=NUM_FRAMES, video_size=SIZE)
        it = GoodItems(ds, range(len(ds)), batch_size=2)
        seen = [(i, b) for i, b in it]
    kept = [ds.locate(i) for idx, _ in seen for i in idx]
    assert kept == expected['keep']
    assert sorted(it.skipped) == expected['trunc_bad'] and all('truncated.mp4' in m for m in it.skipped.values())
    assert _named(_messages(w), 'truncated')
    for idx, batch in seen:
        for b, i in enumerate(idx):
            stem, start = ds.locate(i)
            assert batch['video_name']['video_path'][b].endswith(f'{stem}.mp4') and batch['video_name']['start_frame_id'][b] == str(start)
            _check_pair(damaged, stem, start, batch['video'][b], batch['t5_text_embeddings'][b])


# --- cache-latents -------------------------------------------------------------------------------------------------------------

def test_cache_latents_skips_bad_items_and_keeps_every_pair(damaged, expected, tmp_path):
    from cosmos_nb import latent_cache as LC
    from cosmos_nb.checkpoint import load_file
    from cosmos_nb.diffusion import Video2WorldDiffusion
    from cosmos_nb.experiments import get_experiment
    from cosmos_nb.tokenizer import make_tokenizer
    over = [f'data.dataset_dir={damaged.root}']
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        cache = LC.cache_latents(EXPERIMENT, over, tmp_path/'cache')
    msgs = _messages(w)
    for stem in ALWAYS_BAD | {'truncated'}: assert _named(msgs, stem), (stem, msgs)
    assert [m for m in msgs if 'unsafe_pickle.pickle' in m and 'cosmos-nb t5-embed' in m]
    index = json.loads((cache/'index.json').read_text())
    assert [tuple(x) for x in index['items']] == expected['keep'] and index['count'] == len(expected['keep'])
    assert sorted((s['stem'], s['start']) for s in index['skipped']) == expected['trunc_bad']
    assert sorted(index['skipped_videos']) == sorted(ALWAYS_BAD)
    assert all('truncated.mp4' in s['why'] and 're-encode' in s['why'] for s in index['skipped'])
    cfg = get_experiment(EXPERIMENT, over)
    enc = Video2WorldDiffusion(torch.nn.Identity(), make_tokenizer('tiny'), cfg.diffusion)
    cached = LatentCacheDataset(cache, cfg)
    assert len(cached) == len(expected['keep'])
    for k, (stem, start) in enumerate(expected['keep']):
        f = load_file(cache/index['files'][k])
        assert (f['stem'], f['start']) == (stem, start)
        assert torch.equal(f['latent'], enc.encode(_own_frames(damaged, stem, start)[None])[0]), f'{stem}@{start}: latent of another clip'
        assert np.array_equal(f['t5'].numpy(), load_t5_pickle(damaged.embedding(stem))[0]), f'{stem}@{start}: text of another clip'
        assert torch.equal(cached[k]['latent'], f['latent'].float())
    # a second run continues: nothing cached is encoded again, the index is the same
    mtimes = {p.name: p.stat().st_mtime_ns for p in cache.glob('0*.pt')}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        LC.cache_latents(EXPERIMENT, over, cache)
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob('0*.pt')} == mtimes
    assert json.loads((cache/'index.json').read_text())['items'] == index['items']


def test_cache_latents_command_line(damaged, expected, tmp_path, capsys):
    from cosmos_nb import latent_cache as LC
    with pytest.raises(SystemExit) as e: LC.cache_latents_main(['--experiment', 'nope'])
    err = capsys.readouterr().err
    assert e.value.code == 2 and 'Traceback' not in err and EXPERIMENT in err   # one line that lists the registered names
    assert err.strip().splitlines() == [l for l in err.strip().splitlines() if l.startswith("cosmos-nb cache-latents: unknown experiment 'nope'")] != []
    with pytest.raises(SystemExit): LC.cache_latents_main(['--help'])
    help_text = capsys.readouterr().out
    assert '--batch_size' in help_text and '--batch-size' not in help_text
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        out = LC.cache_latents_main(['--experiment', EXPERIMENT, '--out', str(tmp_path/'c'), '--batch-size', '2',
                                    f'data.dataset_dir={damaged.root}'])   # the old spelling still works
    assert json.loads((out/'index.json').read_text())['count'] == len(expected['keep'])
    with pytest.raises(SystemExit):
        LC.cache_latents_main(['--experiment', EXPERIMENT, f'data.dataset_dir={tmp_path/"nowhere"}'])
    err = capsys.readouterr().err
    assert 'Traceback' not in err and 'nowhere' in err


# --- previews ------------------------------------------------------------------------------------------------------------------

def test_previews_skip_bad_items_and_keep_identity(damaged, expected):
    from cosmos_nb import train as T
    from cosmos_nb.experiments import get_experiment
    cfg = get_experiment(EXPERIMENT, [f'data.dataset_dir={damaged.root}'])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        items = T.preview_items(cfg, n=len(expected['keep']) + len(expected['trunc_bad']))
    assert [(it['stem'], it['start']) for it in items] == expected['keep']   # every good window, no bad one
    assert _named(_messages(w), 'truncated')
    for it in items:
        own = _own_frames(damaged, it['stem'], it['start'])
        assert (it['frames'][0, :, :1].float() - own[:, :1].float()).abs().max() <= 1
        assert torch.equal(it['emb'][0], pad_t5_embedding(load_t5_pickle(damaged.embedding(it['stem']))[0], cfg.data.text_tokens)[0])
        assert it['caption'] == f'caption of {it["stem"]}'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        two = T.preview_items(cfg, n=2)
    assert len(two) == 2 and all((it['stem'], it['start']) in expected['keep'] for it in two)


# --- the clip browser ---------------------------------------------------------------------------------------------------------

def test_clip_browser_shows_each_clip_from_its_own_files(damaged):
    from cosmos_nb.widgets import ClipBrowser
    cb = ClipBrowser(damaged.root, max_width=64)
    for stem in cb.stems:                                   # every clip, good or bad, without an exception
        cb.dropdown.value = stem
        d = cb.details.value
        assert (cb.caption.value == f'<i>caption of {stem}</i>') == (stem != 'no_meta'), stem
        if stem in ('truncated', 'empty', 'not_video'):
            assert f'{stem}.mp4' in d and 're-encode' in d and cb.video.value == b'', (stem, d)
        else: assert cb.video.value != b'' and 'frames' in d, (stem, d)
        if stem in ('unsafe_pickle', 'corrupt_pickle'): assert 'unusable' in d and 'cosmos-nb t5-embed' in d, d
        elif stem in ('no_pickle', 'no_meta'): assert 'missing' in d, d
        else: assert 'T5 embedding: yes' in d, d
    assert not (damaged.root/'pwned').exists()


# --- training ---------------------------------------------------------------------------------------------------------------

def test_training_runs_on_the_damaged_folder(damaged, expected, tmp_path, monkeypatch):
    "`train` on the folder: the bad items are named in warnings, it trains, and its preview prompts are good windows with their own captions."
    from cosmos_nb import train as T
    monkeypatch.setenv('OUTPUT_ROOT', str(tmp_path))
    n = torch.get_num_threads(); torch.set_num_threads(1)
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            out = T.train('video2world_tiny_lora_synthetic', [f'data.dataset_dir={damaged.root}', 'trainer.max_iter=2',
                                                              'trainer.sample_every=2', 'trainer.sample_steps=2'])
    finally: torch.set_num_threads(n)
    assert out['iteration'] == 2
    msgs = _messages(w)
    for stem in ALWAYS_BAD: assert _named(msgs, stem), stem
    prompts = json.loads((Path(out['run_dir'])/'samples'/'prompts.json').read_text())
    assert len(prompts) == 2
    for p in prompts: assert (p['stem'], p['start']) in expected['keep'] and p['caption'] == f'caption of {p["stem"]}'
