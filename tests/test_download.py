"Downloads against a loopback stand-in for the Hub, offline errors, and HD-VILA clipping on local videos."
import json, shutil, urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import pytest
from huggingface_hub import constants
from cosmos_nb.data import DatasetLayout, make_synthetic_dataset
from cosmos_nb.download import (HDVILA_JSONL, HDVILA_REPO, NEMO_ASSETS_PROMPT, NEMO_ASSETS_REPO, DownloadError, HubError,
                                clip_video, download_hdvila, download_hdvila_main, download_nemo_assets, hdvila_selection,
                                hub_file, hub_snapshot)
from cosmos_nb.video import read_video, video_info
from hub_mock import MockHub



@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    "Two tiny real mp4 files (bytes)."
    lay = make_synthetic_dataset(tmp_path_factory.mktemp("src"), n_videos=2, num_frames=5, size=(16, 16), toy_t5=False)
    return [lay.video(s).read_bytes() for s in lay.stems()]


@pytest.fixture
def hub(clips):
    h = MockHub({("dataset", NEMO_ASSETS_REPO): {"nemo_diffusion_example_data/robot_a.mp4": clips[0],
                                                 "nemo_diffusion_example_data/robot_b.mp4": clips[1], "README.md": b"readme"},
                 ("dataset", HDVILA_REPO): {HDVILA_JSONL: b'{"url": "u"}\n'},
                 ("model", "gated/model"): {}, ("model", "org/model"): {"config.json": b"{}"}})
    yield h
    h.close()


# --- Hub errors ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call,reason,words", [
    (lambda u: hub_snapshot("gated/model", endpoint=u), "gated", ["gated/model", "accept its terms", "hf auth login"]),
    (lambda u: hub_file("gated/model", "config.json", endpoint=u), "gated", ["gated/model", "accept its terms"]),
    (lambda u: hub_snapshot("nobody/nothing", endpoint=u), "not_found", ["nobody/nothing", "check the name"]),
    (lambda u: hub_snapshot("org/model", revision="v9", endpoint=u), "revision", ["org/model", "'v9'"]),
    (lambda u: hub_file("org/model", "weights.bin", endpoint=u), "missing_file", ["org/model", "weights.bin"]),
])
def test_hub_errors(online, hub, call, reason, words):
    with pytest.raises(HubError) as e:
        call(hub.url)
    assert e.value.reason == reason, str(e.value)
    for w in words: assert w in str(e.value)


def test_offline_errors(offline, tmp_path):
    for call in (lambda: hub_snapshot(NEMO_ASSETS_REPO, repo_type="dataset", local_dir=tmp_path / "x"),
                 lambda: hub_file("org/model", "config.json", cache_dir=tmp_path)):
        with pytest.raises(HubError) as e:
            call()
        assert e.value.reason == "offline" and "HF_HUB_OFFLINE" in str(e.value)


def test_unreachable_hub(online, tmp_path):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = srv.server_port; srv.server_close()   # a port nobody listens on
    with pytest.raises(HubError) as e:
        hub_snapshot("org/model", cache_dir=tmp_path, endpoint=f"http://127.0.0.1:{port}")
    assert e.value.reason == "unreachable" and "internet connection" in str(e.value)


# --- Cosmos-NeMo-Assets -------------------------------------------------------------------------------------------------------

def test_nemo_assets_download_and_resume(online, hub, tmp_path):
    lay = download_nemo_assets(tmp_path / "nemo", endpoint=hub.url)
    assert lay.stems() == ["robot_a", "robot_b"] and lay.stems("captions") == ["robot_a", "robot_b"]
    assert lay.caption("robot_a").read_text() == NEMO_ASSETS_PROMPT
    assert video_info(lay.video("robot_b")).num_frames == 5
    raw = lay.videos_orig / "nemo_diffusion_example_data" / "robot_a.mp4"
    assert raw.stat().st_ino == lay.video("robot_a").stat().st_ino          # hard link: one copy on disk
    assert not (lay.videos_orig / "README.md").exists()                    # only *.mp4
    lay.caption("robot_b").write_text("my caption")
    hub.log.clear()
    download_nemo_assets(tmp_path / "nemo", prompt="other", endpoint=hub.url)
    assert not [p for m, p in hub.log if "/resolve/" in p]                  # nothing downloaded again
    assert lay.caption("robot_b").read_text() == "my caption" and lay.caption("robot_a").read_text() == NEMO_ASSETS_PROMPT


def test_nemo_assets_offline_after_download_still_works(online, hub, tmp_path, monkeypatch):
    download_nemo_assets(tmp_path / "nemo", endpoint=hub.url)
    shutil.rmtree(tmp_path / "nemo" / "videos")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert DatasetLayout(tmp_path / "nemo").stems() == []
    assert download_nemo_assets(tmp_path / "nemo").stems() == ["robot_a", "robot_b"]


def test_gated_dataset_points_to_its_page(online):
    h = MockHub({("dataset", "gated/x"): {}})
    try:
        with pytest.raises(HubError) as e:
            hub_snapshot("gated/x", repo_type="dataset", endpoint=h.url)
        assert "datasets/gated/x" in str(e.value)   # the page where the terms are accepted
    finally: h.close()


# --- HD-VILA ------------------------------------------------------------------------------------------------------------------

def _line(vid, k, a, b, caption="c"):
    return dict(video_id=vid, url=f"https://www.youtube.com/watch?v={vid}", clip_id=f"{vid}.{k}.mp4",
                span_start=a, span_end=b, caption=caption)


@pytest.fixture
def source_video(tmp_path, example_media):
    return shutil.copy(example_media / "text2world_example.mp4", tmp_path / "src.mp4")   # 121 frames, 24 fps


def test_selection_first_clip_per_video(tmp_path):
    p = tmp_path / "m.jsonl"
    lines = [_line("aaaaaaaaaaa", 0, "0", "1"), _line("aaaaaaaaaaa", 1, "1", "2"), _line("bbbbbbbbbbb", 5, "0", "1")]
    p.write_text("\n".join(json.dumps(l) for l in lines) + "\n\n")
    assert [c["clip_id"] for c in hdvila_selection(p)] == ["aaaaaaaaaaa.0.mp4", "bbbbbbbbbbb.5.mp4"]
    p.write_text("{broken\n")
    with pytest.raises(DownloadError, match="m.jsonl:1"): list(hdvila_selection(p))


def test_unavailable_videos_skipped_network_error_stops(tmp_path, source_video):
    root = tmp_path / "hd"; root.mkdir()
    ids = ["aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc"]
    (root / HDVILA_JSONL).write_text("\n".join(json.dumps(_line(v, 0, "00:00:00.5", "00:00:01.5")) for v in ids))
    def fetch(url, path):
        if "bbb" in url: raise ValueError("Video unavailable (simulated)")
        shutil.copy(source_video, path)
    lay = download_hdvila(root, n_videos=2, fetch=fetch, do_clip=False)
    assert sorted(p.name for p in lay.videos_orig.iterdir()) == ["aaaaaaaaaaa.mp4", "ccccccccccc.mp4"]
    assert lay.stems("captions") == ["aaaaaaaaaaa.0", "ccccccccccc.0"]
    def offline(url, path):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    shutil.rmtree(lay.videos_orig)
    with pytest.raises(DownloadError, match="needs internet access"):
        download_hdvila(root, n_videos=2, fetch=offline, do_clip=False)
    def half(url, path):   # writes part of the file, then dies: nothing with the final name may remain
        path.write_bytes(b"partial"); raise urllib.error.URLError("connection reset")
    with pytest.raises(DownloadError):
        download_hdvila(root, n_videos=2, fetch=half, do_clip=False)
    assert list(lay.videos_orig.iterdir()) == []
    with pytest.raises(DownloadError, match="pytubefix"):
        download_hdvila(root, n_videos=2, fetch=lambda u, p: (_ for _ in ()).throw(KeyError("streamingData")), do_clip=False)


def test_jsonl_fetched_from_hub_when_missing(online, hub, tmp_path):
    root = tmp_path / "hd"
    with pytest.raises(KeyError):   # the mock's one line has no video_id: proves the file came from the Hub
        download_hdvila(root, n_videos=1, fetch=lambda u, p: None, endpoint=hub.url, do_clip=False)
    assert (root / HDVILA_JSONL).read_bytes() == b'{"url": "u"}\n'


def test_clips_pair_by_video_id_and_resume(tmp_path, source_video):
    lay = DatasetLayout(tmp_path / "hd")
    lay.videos_orig.mkdir(parents=True); lay.metas.mkdir()
    shutil.copy(source_video, lay.videos_orig / "zzzzzzzzzzz.mp4")
    (lay.videos_orig / "aaaaaaaaaaa.mp4").write_bytes(b"an unrelated file sorting first")
    lay.meta("zzzzzzzzzzz.4").write_text(json.dumps(_line("zzzzzzzzzzz", 4, "00:00:02.000", "00:00:02.500")))
    lay.meta("yyyyyyyyyyy.0").write_text(json.dumps(_line("yyyyyyyyyyy", 0, "0", "1")))   # its video was never downloaded
    (lay.metas / "other.json").write_text('{"not": "hdvila"}')
    download_hdvila_main(["--dataset_path", str(lay.root), "--do_clip", "--backend", "torchcodec"])
    assert lay.stems() == ["zzzzzzzzzzz.4"]
    clip, info = read_video(lay.video("zzzzzzzzzzz.4"))
    ref, _ = read_video(source_video, start=48, stop=60)
    assert info.num_frames == 12 and (clip.float() - ref.float()).abs().mean() < 3
    mtime = lay.video("zzzzzzzzzzz.4").stat().st_mtime_ns
    download_hdvila(lay.root, do_download=False, backend="ffmpeg")
    assert lay.video("zzzzzzzzzzz.4").stat().st_mtime_ns == mtime


def test_clip_backends_and_failures(tmp_path, source_video, monkeypatch):
    a = video_info(clip_video(source_video, tmp_path / "a.mp4", 0.5, 1.0, backend="ffmpeg"))
    b = video_info(clip_video(source_video, tmp_path / "b.mp4", 0.5, 1.0, backend="torchcodec"))
    assert a.num_frames == b.num_frames == 12 and a.size == b.size == (704, 1280)
    with pytest.raises(DownloadError, match="holds no frames"):
        clip_video(source_video, tmp_path / "c.mp4", 10.0, 11.0, backend="torchcodec")
    bad = tmp_path / "bad.mp4"; bad.write_bytes(b"garbage")
    with pytest.raises(DownloadError, match="ffmpeg could not cut"):
        clip_video(bad, tmp_path / "d.mp4", 0, 1, backend="ffmpeg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4", "bad.mp4", "src.mp4"]   # no partial files
    with pytest.raises(DownloadError, match="not found"): clip_video(tmp_path / "none.mp4", tmp_path / "e.mp4", 0, 1)
    with pytest.raises(ValueError, match="backend"): clip_video(source_video, tmp_path / "e.mp4", 0, 1, backend="opencv")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DownloadError, match="not on PATH"): clip_video(source_video, tmp_path / "e.mp4", 0, 1, backend="ffmpeg")
    assert video_info(clip_video(source_video, tmp_path / "f.mp4", 0, 0.5)).num_frames == 12   # auto -> torchcodec
