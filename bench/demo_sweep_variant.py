"usage: variant.py NAME OUT MODE [size_field=int ...] [-- experiment overrides]"
import sys, json, torch, types
try: import ipywidgets
except ImportError:   # the device lacks ipywidgets; the demo only needs widgets' plain functions
    W = types.ModuleType('ipywidgets'); W.VBox = W.HBox = object; sys.modules['ipywidgets'] = W
import cosmos_nb.demo as D
from pathlib import Path
from cosmos_nb.config import apply_overrides, atomic_write
from cosmos_nb.tokenizer import make_tokenizer
from cosmos_nb.video import read_video, to_unit
args = sys.argv[1:]
ov = args[args.index('--') + 1:] if '--' in args else []
args = args[:args.index('--')] if '--' in args else args
name, out, mode = args[:3]
extra = {k: (float(v) if '.' in v else int(v)) for k, v in (a.split('=') for a in args[3:])}
def fit(dataset_dir, path, num_frames=17, min_std=0.02):
    tok = make_tokenizer('wavelet', normalized=False)
    with torch.no_grad():
        z = torch.cat([tok.encode(to_unit(read_video(p, 0, num_frames, layout='CTHW')[0])[None])
                       for p in sorted(Path(dataset_dir, 'videos').glob('*.mp4'))])
    std, mean = torch.std_mean(z, dim=(0, 3, 4), correction=0)
    if mode == 'global': std = torch.full_like(std, std.max().item())
    elif mode.startswith('rel'): std = std.clamp_min(float(mode[3:]) * std.max().item())
    elif mode == 'scale2': std = std.clamp_min(min_std) * 2
    else: std = std.clamp_min(min_std)
    with atomic_write(path, 'wb') as f: torch.save((mean.flatten(), std.flatten()), f)
    return Path(path)
D.fit_latent_stats = fit
import shutil
pre = Path(__file__).parent/'data'/'datasets'   # optional pre-made 24-clip datasets (none in the repo: made on the fly)
if pre.exists() and 'n_videos' not in extra and 'n_heldout' not in extra:   # pre-made datasets with T5 embeddings: no transformers needed
    Path(out).mkdir(parents=True, exist_ok=True)
    if not (Path(out)/'datasets').exists(): shutil.copytree(pre, Path(out)/'datasets')
    D.make_synthetic_dataset = lambda *a, **k: None
    D.make_tiny_t5 = lambda *a, **k: None
    D.load_t5 = lambda *a, **k: (None, None)
    D.embed_dataset = lambda *a, **k: None
_common = D.demo_common
D.demo_common = lambda cfg: apply_overrides(_common(cfg), ov)   # the variant's overrides on top of the demo's settings
dev = 'cuda' if extra.pop('cuda', 0) else 'cpu'
s = D.run_demo(out, 'tiny', device=dev, **extra)
r = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items() if k.startswith(('heldout_mse', 'loss', 'seconds'))}
print('RESULT', name, json.dumps(r))
with open(Path(out)/'result.json', 'w') as f: json.dump(dict(name=name, mode=mode, extra=extra, ov=ov, **r), f)
