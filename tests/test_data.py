"Edge cases of cosmos_nb.data beyond the notebook's examples."
import json, pickle, random, shutil, warnings
import numpy as np
import pytest, torch
import torch.multiprocessing as mp
from cosmos_nb.data import (DatasetLayout, T5PickleError, VideoDataset, load_t5_pickle, make_dataloader, make_sampler,
                            iterate_epochs, make_synthetic_dataset, pad_t5_embedding, save_t5_pickle, toy_text_embedding,
                            validate_dataset, window_starts, MOTIONS)
from cosmos_nb.video import read_video, video_info


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    "8 clips of 17 frames at 32x48, toy embeddings."
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn"), n_videos=8, num_frames=17, size=(32, 48), seed=3)


def _quiet_dataset(root, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return VideoDataset(root, **kw)


# --- windows -------------------------------------------------------------------------------------------------------------

def _upstream_window_ids(n, T, si, sfi):
    "upstream's `_load_and_process_video_path` loop, literally"
    out = []
    for s in range(0, n, sfi):
        ids, c = [], s
        while c <= n - 1:
            ids.append(c)
            if len(ids) == T: break
            c += si
        if len(ids) == T: out.append(ids)
    return out


def test_window_starts_match_upstream_on_random_cases():
    rng = random.Random(0)
    for _ in range(300):
        n, T, si, sfi = rng.randint(0, 80), rng.randint(1, 30), rng.randint(1, 4), rng.randint(1, 5)
        ids = _upstream_window_ids(n, T, si, sfi)
        assert list(window_starts(n, T, si, sfi)) == [w[0] for w in ids], (n, T, si, sfi)


def test_dataset_strided_windows_are_the_upstream_frames(synth):
    ds = _quiet_dataset(synth.root, sequence_interval=2, num_frames=5, video_size=(32, 48), start_frame_interval=3)
    assert len(ds) == 8 * len(window_starts(17, 5, 2, 3))
    stem, start = ds.locate(5)
    item = ds[5]
    ref, _ = read_video(synth.video(stem), frame_ids=list(range(start, start + 10, 2)))
    assert torch.equal(item["video"], ref.permute(1, 0, 2, 3))   # same size: no resize, exact frames
    assert item["video_name"]["start_frame_id"] == str(start)


def test_samples_sorted_by_video_then_start(synth):
    ds = _quiet_dataset(synth.root, num_frames=9, video_size=(32, 48), start_frame_interval=2)
    keys = [ds.locate(i) for i in range(len(ds))]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    with pytest.raises(IndexError): ds.locate(len(ds))


# --- embeddings -------------------------------------------------------------------------------------------------------------

def test_numpy1_style_pickle_loads(tmp_path):
    # upstream pickles written with numpy 1 name numpy.core.multiarray._reconstruct
    data = pickle.dumps([np.ones((4, 6), np.float16)], protocol=2)
    assert b"numpy._core.multiarray" in data
    p = tmp_path / "old.pickle"
    p.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no DeprecationWarning from importing numpy.core
        assert load_t5_pickle(p)[0].shape == (4, 6)


@pytest.mark.parametrize("obj,msg", [
    ([np.ones((4, 6), np.int64)], "float arrays"),
    ([np.ones((2, 4, 6), np.float16)], "float arrays"),
    ([np.ones((0, 6), np.float16)], "float arrays"),
    ([np.ones((2, 6), np.float16), np.ones((2, 5), np.float16)], "different widths"),
    ([], "non-empty list"),
    (np.ones((4, 6), np.float16), "non-empty list"),
    ([np.array([{"a": 1}], dtype=object)], "float arrays"),
])
def test_wrong_pickles_refused(tmp_path, obj, msg):
    p = tmp_path / "x.pickle"
    p.write_bytes(pickle.dumps(obj))
    with pytest.raises(T5PickleError, match=msg):
        load_t5_pickle(p)


def test_code_running_pickles_refused(tmp_path):
    marker = tmp_path / "ran"
    class Exec:
        def __reduce__(self): return (exec, (f"open({str(marker)!r}, 'w').close()",))
    class Nested:   # hidden inside an ndarray's state would still need a global: refused
        def __reduce__(self): return (shutil.rmtree, (str(tmp_path),))
    for obj in ([Exec()], [np.ones((2, 2), np.float32), Nested()], {"x": Exec()}):
        p = tmp_path / "evil.pickle"
        p.write_bytes(pickle.dumps(obj))
        with pytest.raises(T5PickleError, match="refusing to load global"):
            load_t5_pickle(p)
    assert not marker.exists() and tmp_path.exists()


def test_truncated_and_missing_pickles(tmp_path):
    p = tmp_path / "t.pickle"
    save_t5_pickle(p, [np.ones((3, 8), np.float16)])
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(T5PickleError, match="t.pickle"): load_t5_pickle(p)
    with pytest.raises(T5PickleError, match="file not found"): load_t5_pickle(tmp_path / "none.pickle")


def test_pad_512_tokens_exactly_and_mask():
    e, m = pad_t5_embedding(np.ones((512, 16), np.float16))
    assert e.dtype == torch.float32 and int(m.sum()) == 512
    e, m = pad_t5_embedding(torch.arange(6.).reshape(3, 2), max_length=5)
    assert e.tolist() == [[0, 1], [2, 3], [4, 5], [0, 0], [0, 0]] and m.tolist() == [1, 1, 1, 0, 0]


def test_toy_embedding_is_stable_across_processes():
    # sha256-seeded, not Python's salted hash(): a known value pins it
    a = toy_text_embedding("red", dim=4)
    assert a.shape == (2, 4) and a.dtype == np.float16
    assert a[0].tolist() == [0.1339111328125, 0.434814453125, 0.0770263671875, 0.0032825469970703125]
    assert np.array_equal(a, toy_text_embedding("RED!", dim=4))


# --- synthetic data -------------------------------------------------------------------------------------------------------

def _centroid_track(path, color_channel):
    v, _ = read_video(path)
    v = v.float()
    mask = (v[:, color_channel] - v.mean(1)) > 40                   # T, H, W: pixels dominated by that channel
    ys, xs = torch.arange(v.shape[2]).float(), torch.arange(v.shape[3]).float()
    n = mask.sum((1, 2)).clamp(min=1)
    return (mask.sum(2) * ys).sum(1) / n, (mask.sum(1) * xs).sum(1) / n


def test_synthetic_caption_describes_motion(tmp_path):
    lay = make_synthetic_dataset(tmp_path, n_videos=30, num_frames=9, size=(48, 64), seed=1, toy_t5=False)
    checked = 0
    for stem in lay.stems():
        meta = json.loads(lay.meta(stem).read_text())
        assert lay.caption(stem).read_text() == meta["caption"]
        assert meta["color"] in meta["caption"] and meta["shape"] in meta["caption"] and meta["motion"] in meta["caption"]
        if meta["color"] not in ("red", "green", "blue"): continue   # pure-channel colours are easy to segment
        if (meta["color"], meta["background"]) == ("blue", "navy"): continue
        cy, cx = _centroid_track(lay.video(stem), ("red", "green", "blue").index(meta["color"]))
        (fy0, fx0), (fy1, fx1) = MOTIONS[meta["motion"]]
        dy, dx = float(cy[-1] - cy[0]), float(cx[-1] - cx[0])
        assert np.sign(round(dy)) == np.sign(fy1 - fy0) and np.sign(round(dx)) == np.sign(fx1 - fx0), (stem, meta["motion"], dy, dx)
        checked += 1
    assert checked >= 5
    assert not lay.t5.exists()


def test_synthetic_is_deterministic_and_checks_size(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", n_videos=3, num_frames=3, size=(16, 16), seed=7)
    b = make_synthetic_dataset(tmp_path / "b", n_videos=3, num_frames=3, size=(16, 16), seed=7)
    assert [a.caption(s).read_text() for s in a.stems()] == [b.caption(s).read_text() for s in b.stems()]
    assert video_info(a.video("synthetic_0000")).fps == 24.0
    with pytest.raises(ValueError, match="even"):
        make_synthetic_dataset(tmp_path / "c", n_videos=1, size=(15, 16))


# --- validation -------------------------------------------------------------------------------------------------------------

def test_validate_notes_and_errors(tmp_path, synth):
    root = shutil.copytree(synth.root, tmp_path / "d")
    lay = DatasetLayout(root)
    lay.caption("synthetic_0000").write_text("  \n")
    lay.meta("synthetic_0001").write_text("{not json")
    lay.caption("synthetic_0002").unlink()
    save_t5_pickle(lay.embedding("synthetic_0003"), [np.ones((600, 8), np.float16)])
    rep = validate_dataset(root)
    assert rep["synthetic_0000"].notes == ["empty caption"] and rep["synthetic_0000"].usable
    assert "not valid JSON" in rep["synthetic_0001"].notes[0] and rep["synthetic_0001"].usable
    assert rep["synthetic_0002"].notes[0].startswith("no caption") and rep["synthetic_0002"].usable
    assert "600 tokens" in rep["synthetic_0003"].problems[0]
    assert rep["synthetic_0004"].num_frames == 17 and rep["synthetic_0004"].size == (32, 48) and rep["synthetic_0004"].n_tokens > 1
    assert "| synthetic_0003 |" in rep._repr_markdown_()
    with pytest.raises(FileNotFoundError, match="no videos/"): validate_dataset(lay.metas)
    with pytest.raises(FileNotFoundError, match="does not exist"): validate_dataset(tmp_path / "nope")


# --- dataset robustness ----------------------------------------------------------------------------------------------------

def test_real_clip_fps_and_resize(tmp_path, example_media):
    lay = DatasetLayout(tmp_path)
    lay.videos.mkdir()
    shutil.copy(example_media / "video2world_input2.mp4", lay.video("real"))   # 1920x1080, 25 fps, 9 frames
    save_t5_pickle(lay.embedding("real"), [toy_text_embedding("a real clip")])
    item = VideoDataset(tmp_path, num_frames=9, video_size=(72, 128))[0]
    assert item["fps"] == 25.0 and item["video"].shape == (3, 9, 72, 128) and item["video"].dtype == torch.uint8
    src, _ = read_video(lay.video("real"))
    ref = torch.nn.functional.interpolate(src.float(), (72, 128), mode="bilinear", antialias=True)   # upstream's float resize
    diff = item["video"].permute(1, 0, 2, 3).float() - ref
    assert diff.abs().max() <= 1 and diff.abs().mean() < 0.3        # rounded (upstream truncates: mean -0.5)


def test_frames_at_video_size_pass_through_untouched(synth):
    item = _quiet_dataset(synth.root, num_frames=17, video_size=(32, 48))[0]
    src, _ = read_video(synth.video(synth.stems()[0]))
    assert torch.equal(item["video"], src.permute(1, 0, 2, 3))


def test_one_warning_lists_every_skipped_video(tmp_path, synth):
    root = shutil.copytree(synth.root, tmp_path / "d")
    lay = DatasetLayout(root)
    lay.embedding("synthetic_0000").unlink()
    lay.video("synthetic_0001").write_bytes(b"<html>not a video</html>")
    with pytest.warns(UserWarning) as w:
        ds = VideoDataset(root, num_frames=9, video_size=(32, 48))
    assert len(w) == 1 and "synthetic_0000" in str(w[0].message) and "synthetic_0001" in str(w[0].message)
    assert len(ds.stems) == 6 and "2 skipped" in repr(ds)
    with pytest.raises(ValueError, match="no usable training windows"):
        _quiet_dataset(root, num_frames=18, video_size=(32, 48))   # every clip has 17 frames


def test_file_broken_after_construction_is_replaced(tmp_path, synth):
    root = shutil.copytree(synth.root, tmp_path / "d")
    ds = _quiet_dataset(root, num_frames=17, video_size=(32, 48))   # one window per video
    lay = DatasetLayout(root)
    lay.video("synthetic_0002").write_bytes(lay.video("synthetic_0002").read_bytes()[:200])
    save_t5_pickle(lay.embedding("synthetic_0005"), [np.ones((513, 1024), np.float16)])   # too many tokens to pad
    with pytest.warns(UserWarning) as w:
        names = [ds[i]["video_name"]["video_path"] for i in range(len(ds))]
    assert len(w) == 2
    assert names[2].endswith("synthetic_0003.mp4") and names[5].endswith("synthetic_0006.mp4")   # the next good video
    assert [ds[2]["video_name"]["video_path"] for _ in range(2)] == [names[2]] * 2                # deterministic


def test_all_videos_broken_mid_epoch_raises(tmp_path, synth):
    root = shutil.copytree(synth.root, tmp_path / "d")
    ds = _quiet_dataset(root, num_frames=17, video_size=(32, 48))
    for p in DatasetLayout(root).videos.iterdir(): p.write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="every video failed"):
            ds[0]


# --- sampler and loader -----------------------------------------------------------------------------------------------------

def test_loader_shards_and_reshuffles(synth):
    ds = _quiet_dataset(synth.root, num_frames=9, video_size=(32, 48), start_frame_interval=4)   # 8 videos x 3 windows
    def order(rank, epoch):
        dl = make_dataloader(ds, batch_size=2, num_workers=0, num_replicas=2, rank=rank)
        return [tuple(zip(b["video_name"]["video_path"], b["video_name"]["start_frame_id"]))
                for _, b in iterate_epochs(dl, start_epoch=epoch, epochs=1)]
    r0, r1 = order(0, 0), order(1, 0)
    s0, s1 = {k for b in r0 for k in b}, {k for b in r1 for k in b}
    assert len(r0) == len(r1) == 6 and not s0 & s1 and len(s0 | s1) == 24
    assert order(0, 1) != r0 and order(0, 1) == order(0, 1)


def _dist_worker(rank, world, init, out):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    s = make_sampler(list(range(10)))
    orders = []
    for e in range(2):
        s.set_epoch(e); orders.append(list(s))
    out.put((rank, dist.get_world_size(), orders))
    dist.destroy_process_group()


def _run_dist_workers(store: str):
    "Both ranks' results, or None if gloo failed to connect (a known CPU flake: retried by the caller)."
    import queue
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_dist_worker, args=(r, 2, f"file://{store}", q)) for r in range(2)]
    for p in procs: p.start()
    try: res = dict((r, (w, o)) for r, w, o in (q.get(timeout=120) for _ in procs))
    except queue.Empty: res = None
    for p in procs:
        p.join(30)
        if p.is_alive(): p.kill()
    return res


def test_sampler_reads_world_from_torch_distributed(tmp_path):
    res = None
    for attempt in range(3):
        res = _run_dist_workers(f"{tmp_path}/store{attempt}")
        if res is not None: break
    assert res is not None, "2 gloo processes never connected (3 attempts)"
    assert res[0][0] == res[1][0] == 2
    (_, (a0, a1)), (_, (b0, b1)) = res[0], res[1]
    assert sorted(a0 + b0) == list(range(10)) and sorted(a1 + b1) == list(range(10))
    assert (a0, b0) != (a1, b1)


def test_workers_pin_memory_flag_and_batches(synth):
    ds = _quiet_dataset(synth.root, num_frames=9, video_size=(32, 48), start_frame_interval=8)
    dl = make_dataloader(ds, batch_size=3, num_workers=2, pin_memory=False)
    assert dl.num_workers == 2 and dl.persistent_workers and not dl.pin_memory and dl.drop_last
    seen = [(e, b) for e, b in iterate_epochs(dl, epochs=2)]
    assert len(seen) == 2 * (len(ds) // 3)
    assert all(b["video"].shape == (3, 3, 9, 32, 48) for _, b in seen)
    def order(e): return [k for f, b in seen if f == e for k in zip(b["video_name"]["video_path"], b["video_name"]["start_frame_id"])]
    assert order(0) != order(1)   # persistent workers still get the new epoch's permutation
    assert make_dataloader(ds, num_workers=0).pin_memory == torch.cuda.is_available()


def test_text_tokens_pads_shorter_and_cuts_longer_captions(tmp_path, synth):
    "`data.text_tokens` below upstream's 512 (tiny CPU runs): embeddings are padded to it, longer ones cut; the mask says which are real."
    ds = _quiet_dataset(synth.root, num_frames=9, video_size=(32, 48))
    full = ds[0]
    short = VideoDataset(synth.root, num_frames=9, video_size=(32, 48), text_tokens=4)[0]
    n = int(full["t5_text_mask"].sum())
    assert full["t5_text_embeddings"].shape == (512, 1024) and n > 4
    assert short["t5_text_embeddings"].shape == (4, 1024) and short["t5_text_mask"].tolist() == [1, 1, 1, 1]
    assert torch.equal(short["t5_text_embeddings"], full["t5_text_embeddings"][:4])
