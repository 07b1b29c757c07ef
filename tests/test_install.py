"""The Makefile's system-package step as a user without root meets it, and the install notes in pyproject.toml.

`make` runs for real with a PATH that has no ffmpeg or chromium, and stand-ins for `id`, `sudo` and `apt-get` that log their
calls: a non-root user whose sudo asks for a password (the stand-in sleeps as a password prompt would wait), one with
passwordless sudo, and root."""
import os, re, shutil, signal, subprocess, time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAKE = shutil.which('make')
FFMPEG_WAYS = ('apt-get install ffmpeg', 'conda install -c conda-forge ffmpeg', 'module load ffmpeg')


def _script(path: Path, body: str):
    path.write_text('#!/bin/bash\n' + body + '\n'); path.chmod(0o755)


def make(tmp: Path, *args, uid=1000, sudo='password', timeout=60):
    "Run make in the repo with the stand-ins; returns (exit code, stdout, stderr, logged calls). Fails the test if it hangs."
    bin_, log = tmp / 'bin', tmp / 'calls.log'
    bin_.mkdir(exist_ok=True); log.write_text('')
    _script(bin_ / 'id', f'[ "$1" = -u ] && echo {uid} || echo "uid={uid}(user)"')
    _script(bin_ / 'apt-get', f'echo "apt-get $*" >> {log}')
    if sudo == 'password':   # `sudo -n` refuses; plain sudo prompts for a password, i.e. waits forever in a batch job
        _script(bin_ / 'sudo', f'echo "sudo $*" >> {log}; [ "$1" = -n ] && {{ echo "sudo: a password is required" >&2; exit 1; }}\n'
                               'echo "[sudo] password for user: " >&2; exec /bin/sleep 600')
    else: _script(bin_ / 'sudo', f'echo "sudo $*" >> {log}; [ "$1" = -n ] && shift; "$@"')
    env = {'PATH': str(bin_), 'HOME': str(tmp), 'LANG': 'C.UTF-8'}
    p = subprocess.Popen([MAKE, '--no-print-directory', *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try: out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL); p.communicate()
        pytest.fail(f'make {" ".join(args)} hung for {timeout} s (waiting on a sudo password prompt?): {log.read_text()}')
    return p.returncode, out, err, log.read_text().splitlines()


@pytest.mark.parametrize('target', ['system-deps', 'demo', 'test'])
def test_non_root_without_ffmpeg_says_how_to_get_it_and_stops(tmp_path, target):
    t0 = time.monotonic()
    rc, out, err, calls = make(tmp_path, target, f'VENV={tmp_path}/venv')
    assert rc != 0 and time.monotonic() - t0 < 30
    assert 'missing: ffmpeg' in err and 'sudo asks for a password' in err, err
    for way in FFMPEG_WAYS: assert way in err, (way, err)
    assert calls == ['sudo -n true']                               # asked without prompting; apt-get never ran
    assert not (tmp_path / 'venv').exists()                       # stopped before installing anything
    assert ('Chromium' in err) == (target == 'test')              # only the tests need Chromium, and only they say so


def test_root_installs_ffmpeg_with_apt_get_and_only_the_tests_add_chromium(tmp_path):
    rc, out, _, calls = make(tmp_path, 'system-deps', uid=0)
    assert rc == 0 and 'installing: ffmpeg (apt-get)' in out
    assert calls == ['apt-get update -qq', 'apt-get install -y -qq ffmpeg']
    rc, out, _, calls = make(tmp_path, 'system-deps-test', uid=0)
    assert rc == 0 and calls == ['apt-get update -qq', 'apt-get install -y -qq ffmpeg chromium']


def test_passwordless_sudo_installs_without_a_prompt(tmp_path):
    rc, _, _, calls = make(tmp_path, 'system-deps', sudo='nopasswd')
    assert rc == 0
    assert calls == ['sudo -n true', 'sudo -n apt-get update -qq', 'apt-get update -qq', 'sudo -n apt-get install -y -qq ffmpeg',
                     'apt-get install -y -qq ffmpeg']


def test_demo_does_not_involve_chromium(tmp_path):
    rc, demo, _, calls = make(tmp_path, '-n', 'demo', uid=0)
    assert rc == 0 and calls == []                                # -n: printed, not run
    assert 'ffmpeg' in demo and 'chromium' not in demo.lower()
    rc, test, _, _ = make(tmp_path, '-n', 'test', uid=0)
    assert rc == 0 and 'chromium' in test


def test_slurm_up_without_root_skips_instead_of_prompting(tmp_path):
    rc, out, _, calls = make(tmp_path, 'slurm-up')
    assert rc == 0 and 'real-SLURM tests will skip' in out
    assert calls == ['sudo -n true']


def test_pyproject_names_only_make_targets_that_exist(tmp_path):
    "(test_standalone checks that no file, pyproject.toml included, names a path outside the checkout.)"
    text = (ROOT / 'pyproject.toml').read_text()
    targets = set(re.findall(r'`make ([\w-]+)`', text))
    assert 'test-slow' in targets
    for t in targets:
        rc, out, err, _ = make(tmp_path, '-n', t, uid=0)
        assert rc == 0, (t, err)
    assert re.search(r'pytest tests -m slow$', make(tmp_path, '-n', 'test-slow', uid=0)[1], re.M)
