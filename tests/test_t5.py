"T5 embedding edge cases: safe loading, batching, truncation, bf16, resume after a crash, the command line."
import os, pickle, subprocess
import numpy as np
import pytest, torch
from cosmos_nb.data import DatasetLayout
from cosmos_nb.t5 import (T5LoadError, T5_MODEL, embed_dataset, encode_prompts, load_t5, load_t5_pickle, make_tiny_t5,
                          resolve_t5, t5_embed_main)
from cosmos_nb.data import T5PickleError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = make_tiny_t5(tmp_path_factory.mktemp("t5") / "tiny", d_model=16)
    tok, enc = load_t5(path, device="cpu")
    return path, tok, enc


def _captions(root, caps):
    lay = DatasetLayout(root)
    lay.metas.mkdir(parents=True, exist_ok=True)
    for i, c in enumerate(caps): lay.caption(f"c{i:02d}").write_text(c)
    return lay


def test_malicious_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    class Shell:
        def __reduce__(self): return (os.system, (f"touch {marker}",))
    class Popen:
        def __reduce__(self): return (subprocess.Popen, (["touch", str(marker)],))
    for evil in (Shell(), Popen()):
        p = tmp_path / "emb.pickle"
        p.write_bytes(pickle.dumps([evil]))
        with pytest.raises(T5PickleError) as e:
            load_t5_pickle(p)
        assert "refusing to load global" in str(e.value) and "emb.pickle" in str(e.value) and "t5-embed" in str(e.value)
    assert not marker.exists()


def test_batch_equals_one_at_a_time(tiny):
    _, tok, enc = tiny
    caps = ["a red circle", "a video of sks teal robot moves from left to right on the blue square", "green"]
    batched = encode_prompts(caps, tok, enc)
    for c, b in zip(caps, batched):
        alone = encode_prompts([c], tok, enc)[0]
        assert alone.shape == b.shape and alone.dtype == np.float16
        np.testing.assert_allclose(alone.astype(np.float32), b.astype(np.float32), atol=2e-3)


def test_truncation_keeps_max_length_tokens(tiny):
    _, tok, enc = tiny
    long = " ".join(["robot"] * 40)
    e = encode_prompts([long, "red"], tok, enc, max_length=12)
    assert [x.shape[0] for x in e] == [12, 2]


def test_bf16_close_to_fp32(tiny):
    path, tok, enc = tiny
    _, enc16 = load_t5(path, device="cpu", bf16=True)
    a = encode_prompts(["a red circle moves"], tok, enc)[0].astype(np.float32)
    b = encode_prompts(["a red circle moves"], tok, enc16)[0].astype(np.float32)
    assert b.dtype == np.float32 and np.abs(a - b).max() < 0.1 and not np.array_equal(a, b)


def test_crash_midway_leaves_whole_files_and_resumes(tmp_path, tiny):
    _, tok, enc = tiny
    lay = _captions(tmp_path, [f"red circle {'robot ' * i}" for i in range(10)])
    calls = []
    class Flaky(torch.nn.Module):   # a wrapper that dies on its third batch
        def __init__(self): super().__init__(); self.enc = enc
        def forward(self, **kw):
            calls.append(kw["input_ids"].shape[0])
            if len(calls) == 3: raise RuntimeError("CUDA out of memory (simulated)")
            return self.enc(**kw)
    with pytest.raises(RuntimeError, match="simulated"):
        embed_dataset(tmp_path, tok, Flaky(), batch_size=3, progress=False)
    written = sorted(p.name for p in lay.t5.iterdir())
    assert len(written) == 6 and all(not n.startswith(".") for n in written)
    for n in written: load_t5_pickle(lay.t5 / n)
    calls.clear()
    done = embed_dataset(tmp_path, tok, Flaky(), batch_size=3, progress=False)
    assert len(done) == 4 and calls == [3, 1] and len(list(lay.t5.iterdir())) == 10
    assert embed_dataset(tmp_path, tok, enc, progress=False, overwrite=True) == lay.stems("captions")


def test_resolve_prefers_upstream_checkpoint_folder(tmp_path):
    assert resolve_t5(T5_MODEL, tmp_path) == T5_MODEL
    (tmp_path / T5_MODEL).mkdir(parents=True)
    (tmp_path / T5_MODEL / "config.json").write_text("{}")
    assert resolve_t5(T5_MODEL, tmp_path) == str(tmp_path / T5_MODEL)
    assert resolve_t5(str(tmp_path), "elsewhere") == str(tmp_path)


def test_missing_model_offline_is_one_clear_error(tmp_path):
    with pytest.raises(T5LoadError) as e:
        load_t5(T5_MODEL, device="cpu", checkpoint_dir=tmp_path)
    assert "google-t5/t5-11b" in str(e.value) and "hf download" in str(e.value)


def test_cli_errors_and_device(tmp_path, tiny, capsys):
    path, _, _ = tiny
    with pytest.raises(SystemExit): t5_embed_main([str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit): t5_embed_main([str(tmp_path / "empty")])
    assert "no captions" in capsys.readouterr().err
    _captions(tmp_path / "ds", ["a red circle", "green square"])
    done = t5_embed_main([str(tmp_path / "ds"), "--model", str(path), "--device", "cpu", "--bf16", "--batch_size", "1",
                          "--max_length", "3", "--no_progress"])
    assert done == ["c00", "c01"]
    assert load_t5_pickle(DatasetLayout(tmp_path / "ds").embedding("c00"))[0].shape == (3, 16)


def test_unreadable_embeddings_are_recomputed_never_reported_done(tmp_path, tiny, capsys):
    "An embedding that cannot be loaded (refused by the safe unpickler, cut short) counts as missing: recomputed, with a warning."
    path, _, _ = tiny
    cli = [str(tmp_path), "--model", str(path), "--device", "cpu", "--no_progress"]
    lay = _captions(tmp_path, ["a red circle", "green square", "blue"])
    assert t5_embed_main(cli) == ["c00", "c01", "c02"]
    good = {s: load_t5_pickle(lay.embedding(s))[0] for s in ("c01", "c02")}
    class Shell:
        def __reduce__(self): return (os.system, (f"touch {tmp_path}/pwned",))
    lay.embedding("c01").write_bytes(pickle.dumps([Shell()]))
    lay.embedding("c02").write_bytes(lay.embedding("c02").read_bytes()[:30])
    capsys.readouterr()
    with pytest.warns(UserWarning) as w:
        done = t5_embed_main(cli)
    out, msgs = capsys.readouterr().out, [str(x.message) for x in w]
    assert done == ["c01", "c02"] and "already have embeddings" not in out and "wrote 2 embeddings" in out
    assert [m for m in msgs if "c01.pickle" in m and "refusing to load global" in m and "computing it again" in m]
    assert [m for m in msgs if "c02.pickle" in m and "computing it again" in m]
    for s, e in good.items(): np.testing.assert_array_equal(load_t5_pickle(lay.embedding(s))[0], e)
    assert not (tmp_path / "pwned").exists()
    assert t5_embed_main(cli) == [] and "all 3 captions already have embeddings" in capsys.readouterr().out


def test_video_without_caption_is_named(tmp_path, tiny):
    path, _, _ = tiny
    lay = _captions(tmp_path, ["a red circle"])
    lay.videos.mkdir()
    for s in ("c00", "silent"): lay.video(s).write_bytes(b"")
    with pytest.warns(UserWarning, match=r"no caption.*videos/silent\.mp4.*--prompt"):
        assert t5_embed_main([str(tmp_path), "--model", str(path), "--device", "cpu", "--no_progress"]) == ["c00"]


def test_every_option_has_help(capsys):
    with pytest.raises(SystemExit): t5_embed_main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag, words in [("--batch_size", "captions per encoder call (default: 16)"), ("--max_length", "(default: 512"),
                        ("--no_progress", "progress bar")]:
        assert f"{flag} " in out and words in out.split(flag, 2)[-1][:200], (flag, out)
