"Edge cases of cosmos_nb.video beyond the notebook's examples."
import subprocess
import pytest, torch
from cosmos_nb.video import read_video, write_video, video_info, VideoError, encode_mp4, resize_video

def _ffmpeg(args): subprocess.run(["ffmpeg", "-y", "-loglevel", "error", *args], check=True)

def test_synthetic_roundtrip_keeps_pixels(tmp_path):
    # a smooth gradient survives H.264 nearly unchanged; frame count, fps and size exactly
    t = torch.linspace(0, 1, 64)
    frame = (torch.stack([t[None].expand(48, 64), t[:, None].expand(64, 48).T, 0.5*torch.ones(48, 64)]) * 255).to(torch.uint8)
    video = torch.stack([frame.roll(i, -1) for i in range(10)])
    p = write_video(tmp_path/"g.mp4", video, fps=12.5)
    back, info = read_video(p)
    assert (info.num_frames, info.fps, info.size) == (10, 12.5, (48, 64))
    assert (back.float() - video.float()).abs().mean() < 4

def test_ffmpeg_made_clip_strided_and_cthw(tmp_path):
    _ffmpeg(["-f", "lavfi", "-i", "testsrc=size=160x96:rate=24", "-frames:v", "30", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(tmp_path/"t.mp4")])
    a, info = read_video(tmp_path/"t.mp4", 3, 30, 9, layout="CTHW")
    assert a.shape == (3, 3, 96, 160) and info.num_frames == 30
    b, _ = read_video(tmp_path/"t.mp4", frame_ids=[3, 12, 21])
    assert torch.equal(a.permute(1, 0, 2, 3), b)

def test_truncated_file_names_the_file(tmp_path, example_media):
    src = (example_media/"video2world_input2.mp4").read_bytes()
    p = tmp_path/"half.mp4"; p.write_bytes(src[: len(src)//3])
    with pytest.raises(VideoError) as e:
        read_video(p)
    assert "half.mp4" in str(e.value)

def test_bad_layout_and_directory(tmp_path, example_media):
    with pytest.raises(ValueError, match="layout"): read_video(example_media/"video2world_input2.mp4", layout="HWC")
    with pytest.raises(VideoError, match="directory"): video_info(tmp_path)

def test_rgba_png_is_composited_over_white(tmp_path):
    from PIL import Image
    im = Image.new("RGBA", (8, 6), (255, 0, 0, 0)); im.save(tmp_path/"a.png")
    v, info = read_video(tmp_path/"a.png")
    assert v.shape == (1, 3, 6, 8) and info.fps == 0 and int(v.min()) == 255

def test_resize_real_4k_clip_to_model_size(example_media):
    v, _ = read_video(example_media/"video2world_input1.mp4")
    r = resize_video(v, (704, 1280), "bicubic")
    assert r.shape == (9, 3, 704, 1280) and r.dtype == torch.uint8
    # stretching preserves the mean colour closely
    assert abs(r.float().mean() - v.float().mean()) < 1.0

def test_encode_mp4_bytes_decode(tmp_path):
    data = encode_mp4(torch.zeros(3, 16, 32, 32, dtype=torch.uint8), fps=8, layout="CTHW")
    assert data[4:8] == b"ftyp"
    (tmp_path/"x.mp4").write_bytes(data)
    assert video_info(tmp_path/"x.mp4").num_frames == 16
