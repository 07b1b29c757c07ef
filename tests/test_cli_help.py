"Every `cosmos-nb` subcommand's --help: each flag is explained, each default said once and in shell terms (issue 18 §4)."
import argparse, importlib
import pytest
from cosmos_nb.cli import COMMANDS


def help_text(cmd: str, capsys, monkeypatch) -> str:
    "What `cosmos-nb CMD --help` prints, unwrapped (a wide terminal)."
    monkeypatch.setenv('COLUMNS', '300')
    mod, fn, _ = COMMANDS[cmd]
    with pytest.raises(SystemExit) as e: getattr(importlib.import_module(mod), fn)(['--help'])
    assert e.value.code == 0
    return capsys.readouterr().out


def parser_of(cmd: str, monkeypatch) -> argparse.ArgumentParser:
    "The parser a subcommand builds: taken from its parse call, which then stops the command before it does anything."
    seen = []
    def grab(self, *a, **kw): seen.append(self); raise SystemExit(0)
    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', grab)
    monkeypatch.setattr(argparse.ArgumentParser, 'parse_known_args', grab)
    mod, fn, _ = COMMANDS[cmd]
    with pytest.raises(SystemExit): getattr(importlib.import_module(mod), fn)([])
    assert seen, f'{cmd}: no argparse parser was used'
    return seen[0]


@pytest.mark.parametrize('cmd', sorted(COMMANDS))
def test_every_flag_has_help_and_says_its_default_once(cmd, monkeypatch):
    p = parser_of(cmd, monkeypatch)
    fmt = p._get_formatter()
    for a in p._actions:
        if isinstance(a, argparse._HelpAction) or a.help == argparse.SUPPRESS: continue   # -h; deliberately hidden aliases
        name = '/'.join(a.option_strings) or a.dest
        assert a.help and a.help.strip(), f'cosmos-nb {cmd} {name}: no help text'
        shown = fmt._expand_help(a)                                     # the help as --help prints it, defaults filled in
        assert shown.count('(default') <= 1, f'cosmos-nb {cmd} {name}: default said twice: {shown!r}'


def test_submit_help(capsys, monkeypatch):
    out = help_text('submit', capsys, monkeypatch)
    assert '--nodes NODES' in out and 'nodes; more than 1 needs SLURM (default: 1)' in out
    assert 'slurm (sbatch) or local (this machine, no SLURM)' in out


def test_download_help_shows_defaults(capsys, monkeypatch):
    from cosmos_nb.download import NEMO_ASSETS_PROMPT
    out = help_text('download-hdvila', capsys, monkeypatch)
    assert 'distinct YouTube videos to download (default: 128)' in out and '(default: auto)' in out
    out = help_text('download-nemo-assets', capsys, monkeypatch)
    assert f'caption for every video (default: {NEMO_ASSETS_PROMPT!r})' in out


def test_video2world_device_default_said_once(capsys, monkeypatch):
    out = help_text('video2world', capsys, monkeypatch)
    line = next(l for l in out.splitlines() if l.lstrip().startswith('--device'))
    assert line.rstrip().endswith('cuda, cuda:1 or cpu (default: cuda when available)'), line
    assert '(default: 35)' in out                                      # the other flags still show their defaults


def test_video2world_lora_path_is_repeatable_and_says_so(capsys, monkeypatch):
    out = help_text('video2world', capsys, monkeypatch)
    flat = ' '.join(out.split())
    assert "--lora_path PATH[:WEIGHT] adapter-only LoRA file or PEFT folder" in flat
    assert 'PATH:WEIGHT scales it (default weight 1); repeat the flag for several --lora_unmerged' in flat   # its default said once
    assert '--lora_unmerged' in out
    p = parser_of('video2world', monkeypatch)
    act = next(a for a in p._actions if '--lora_path' in a.option_strings)
    assert isinstance(act, argparse._AppendAction) and act.default is None       # given once per adapter, nothing appended to a default
