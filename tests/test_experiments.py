"The experiments table in nbs/08_experiments.ipynb and the registry agree, both ways; upstream's values are registered."
import json, re
from conftest import ROOT
from cosmos_nb.experiments import describe_experiments, get_experiment, list_experiments


def notebook_table() -> dict[str, dict]:
    "The rows of the markdown table under '## Every registered experiment', keyed by experiment name."
    cells = json.loads((ROOT/'nbs'/'08_experiments.ipynb').read_text())['cells']
    text = next(''.join(c['source']) for c in cells if c['cell_type'] == 'markdown' and
                ''.join(c['source']).startswith('## Every registered experiment'))
    rows = [[x.strip() for x in line.strip().strip('|').split('|')] for line in text.splitlines() if line.startswith('| `')]
    assert rows, 'no table rows found'
    return {name.strip('`'): dict(gpus=gpus, frames=int(frames), size=size, purpose=purpose)
            for name, gpus, frames, size, purpose in rows}


def test_notebook_table_lists_exactly_the_registry_with_its_values():
    table, registry = notebook_table(), {r.pop('name'): r for r in describe_experiments()}
    assert sorted(table) == sorted(registry) == list_experiments(), \
        f'in the table only: {sorted(set(table) - set(registry))}; registered only: {sorted(set(registry) - set(table))}'
    for name, row in registry.items(): assert table[name] == row, f'{name}: table {table[name]} != registry {row}'


def test_upstream_low_memory_recipes_use_upstreams_config_values():
    want = {'': (8, 121, (720, 1280), True, 8), '_4gpu_80gb': (4, 121, (384, 384), True, 8),
            '_8gpu_40gb': (8, 25, (384, 384), False, 8), '_4gpu_40gb': (4, 25, (192, 192), False, 0)}
    for suffix, (gpus, frames, size, ema, workers) in want.items():
        c = get_experiment(f'video2world_7b_example_cosmos_nemo_assets{suffix}')
        row = next(r for r in describe_experiments() if r['name'] == c.job.name)
        assert (int(row['gpus'][0]), c.data.num_frames, c.data.video_size, c.ema.enabled, c.data.num_workers) == (gpus, frames, size, ema, workers)
        assert (c.parallel.data_parallel, c.trainer.max_iter, c.checkpoint.save_iter, c.scheduler.warm_up_steps) == ('fsdp', 2000, 200, 2500)
        assert c.optimizer.lr == 2**-14.3 and c.data.dataset_dir == 'datasets/cosmos_nemo_assets' and not c.lora.enabled
