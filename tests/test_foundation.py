"Foundation checks that don't belong in the docs: layout, packaging, the console script, the smoke job end to end."
import subprocess, sys, tomllib
from pathlib import Path
import pytest
from conftest import ROOT

ALLOWED_TOP = {"nbs", "cosmos_nb", "slurm", "tests", "settings.ini", "pyproject.toml", "README.md",
               ".ci", "Makefile", "bench", "BENCHMARKS.md", ".gitignore"}

def test_top_level_layout_is_exactly_the_agreed_one():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    top = {p.split("/")[0] for p in tracked}
    assert top <= ALLOWED_TOP, f"unexpected top-level entries: {sorted(top - ALLOWED_TOP)}"
    assert {"nbs", "cosmos_nb", "tests", "settings.ini", "pyproject.toml", "README.md"} <= top

def test_pyproject_declares_nbdev3_config_deps_and_entry_point():
    pp = tomllib.loads((ROOT/"pyproject.toml").read_text())
    assert "nbdev" in pp["tool"], "nbdev 3 needs [tool.nbdev] in pyproject.toml"
    deps = " ".join(pp["project"]["dependencies"])
    for name in ["torch", "torchcodec", "transformers", "peft", "huggingface_hub", "matplotlib", "ipywidgets", "submitit"]:
        assert name in deps, f"{name} missing from dependencies"
    assert pp["project"]["scripts"]["cosmos-nb"] == "cosmos_nb.cli:main"
    assert any(d.startswith("nbdev") for d in pp["project"]["optional-dependencies"]["dev"])

def test_every_notebook_has_a_title_and_exports_a_module():
    import json
    for nb in sorted((ROOT/"nbs").glob("[0-9]*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        first = "".join(cells[0]["source"])
        assert first.startswith("#| default_exp "), f"{nb.name}: first cell must be #| default_exp"
        mod = first.split()[-1]
        assert (ROOT/"cosmos_nb"/f"{mod}.py").is_file(), f"{nb.name} exports {mod} but cosmos_nb/{mod}.py is missing"
        md = [("".join(c["source"])) for c in cells if c["cell_type"] == "markdown"]
        assert md and md[0].startswith("# ") and "\n> " in md[0], f"{nb.name}: needs an H1 title and a '>' summary"

def test_docs_sidebar_lists_every_notebook_and_only_existing_ones():
    import re
    listed = set(re.findall(r"^\s*- ([\w/.-]+\.ipynb)\s*$", (ROOT/"nbs"/"sidebar.yml").read_text(), re.M))
    present = {str(p.relative_to(ROOT/"nbs")) for p in (ROOT/"nbs").rglob("*.ipynb")
               if not any(part.startswith(("_", ".")) for part in p.relative_to(ROOT/"nbs").parts)}
    assert listed == present, f"nbs/sidebar.yml: missing {sorted(present - listed)}, not found {sorted(listed - present)}"

def test_console_script_runs_the_quick_smoke_job(tmp_path, example_media):
    exe = Path(sys.executable).parent/"cosmos-nb"
    assert exe.exists(), "the cosmos-nb console script is not installed (pip install -e .)"
    out = subprocess.run([str(exe), "demo", "--quick", "--input", str(example_media/"text2world_example.mp4"), "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    from cosmos_nb.video import video_info
    from PIL import Image
    info = video_info(tmp_path/"smoke.mp4")
    assert (info.num_frames, info.size) == (33, (176, 320))
    assert Image.open(tmp_path/"smoke_sheet.png").size[0] > 0
    assert "wrote" in out.stdout

def test_python_dash_m_cli_is_the_console_script():
    out = subprocess.run([sys.executable, "-m", "cosmos_nb.cli", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0 and "usage: cosmos-nb COMMAND" in out.stdout and "video2world" in out.stdout

def test_console_script_help_lists_commands_and_rejects_unknown():
    exe = Path(sys.executable).parent/"cosmos-nb"
    h = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert h.returncode == 0 and "demo" in h.stdout
    bad = subprocess.run([str(exe), "frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown command" in bad.stderr


def test_console_script_runs_the_cpu_demo_end_to_end(tmp_path):
    "The main job's code path at toy length: data, tiny T5, the shipped base, LoRA, generation, pictures, summary."
    import json
    exe = Path(sys.executable).parent/"cosmos-nb"
    out = subprocess.run([str(exe), "demo", "--out", str(tmp_path), "--lora_iters", "10", "--n_videos", "4",
                          "--n_heldout", "2", "--steps", "3"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    s = json.loads((tmp_path/"summary.json").read_text())
    assert len(s["videos"]) == 2 and all(Path(v).is_file() for v in s["videos"])
    from cosmos_nb.video import video_info
    assert video_info(s["videos"][0]).num_frames == 17
    for k in ("heldout_mse_base", "heldout_mse_lora", "heldout_mse_copy_last", "loss_lora_first", "loss_lora_last"):
        assert isinstance(s[k], float) and s[k] == s[k], k           # a real number, not NaN
    assert (tmp_path/"contact_sheet.png").stat().st_size > 0 and (tmp_path/"loss_curve.png").stat().st_size > 0
    assert "held-out continuation error" in out.stdout and "contact sheet:" in out.stdout


def test_console_script_pretrains_a_demo_base_and_post_trains_it(tmp_path):
    "`cosmos-nb demo --pretrain` (how the shipped base was made) writes a base folder that `--base FOLDER` post-trains."
    exe = Path(sys.executable).parent/"cosmos-nb"
    pre = subprocess.run([str(exe), "demo", "--pretrain", "--out", str(tmp_path/"pre"), "--base_iters", "3",
                          "--base_videos", "4", "--base_batch_size", "2"], capture_output=True, text=True, timeout=600)
    assert pre.returncode == 0, pre.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path/"pre"/"base").iterdir()) == ["info.json", "mean_std.pt", "model.pt"]
    out = subprocess.run([str(exe), "demo", "--out", str(tmp_path/"demo"), "--base", str(tmp_path/"pre"/"base"), "--lora_iters", "2",
                          "--n_videos", "4", "--n_heldout", "1", "--steps", "2"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert str(tmp_path/"pre"/"base") in out.stdout
