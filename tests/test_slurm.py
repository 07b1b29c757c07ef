"""cosmos_nb.slurm against a real SLURM cluster (slurm/ci/up.sh: slurmctld + 2 slurmd + slurmdbd/MariaDB on this machine),
and against submitit's local executor. Nothing is mocked: jobs run `tests/slurm_toy_trainer.py:train`, a two-rank gloo
trainer that checkpoints like the real one.

The cluster fixture runs `bash slurm/ci/up.sh` (idempotent; installs Debian packages when missing, needs root) and stops the
cluster at the end if it started it. It skips the SLURM tests only when that is impossible here (not root, no apt-get).
"""
import json, os, re, subprocess, sys, time
from pathlib import Path
import pytest, torch
from conftest import ROOT
from cosmos_nb import slurm as S
from cosmos_nb.slurm import SubmitError, submit, plan_job, load_profile, attach, JobMonitor, submit_main

TESTS = Path(__file__).resolve().parent
TOY = 'slurm_toy_trainer:train'
CI_DIR = Path(os.environ.get('SLURM_CI_DIR', '/tmp/cosmos-nb-slurm'))

@pytest.fixture(scope='session', autouse=True)
def toy_on_pythonpath():
    "The jobs' Python (a new process, on SLURM and locally) must import the toy trainer: sbatch/local pass the environment on."
    old = os.environ.get('PYTHONPATH')
    os.environ['PYTHONPATH'] = os.pathsep.join([str(TESTS)] + ([old] if old else []))
    yield
    if old is None: os.environ.pop('PYTHONPATH')
    else: os.environ['PYTHONPATH'] = old

@pytest.fixture(scope='session')
def cluster():
    "A running loopback SLURM cluster (started here unless one is up already); yields its number of nodes."
    env = dict(os.environ, SLURM_CI_DIR=str(CI_DIR))
    started_here = False
    if os.geteuid() == 0:
        r = subprocess.run(['bash', str(ROOT/'slurm/ci/up.sh')], capture_output=True, text=True, env=env, timeout=900)
        if r.returncode in (77, 78): pytest.skip(f'slurm/ci/up.sh cannot run here: {r.stderr.strip()}')
        assert r.returncode == 0, f'slurm/ci/up.sh failed (rc {r.returncode}):\n{r.stdout}\n{r.stderr}'
        started_here = 'already up' not in r.stderr
        os.environ['SLURM_CONF'] = re.search(r'export SLURM_CONF=(\S+)', r.stdout).group(1)
    elif not os.environ.get('SLURM_CONF'):
        pytest.skip('real-SLURM tests need root (to run slurm/ci/up.sh) or a running test cluster in $SLURM_CONF')
    info = subprocess.run(['sinfo', '-h', '-N', '-o', '%N'], capture_output=True, text=True)
    assert info.returncode == 0, f'SLURM does not answer: {info.stderr}'
    yield len(info.stdout.split())
    if started_here: subprocess.run(['bash', str(ROOT/'slurm/ci/down.sh')], env=env, capture_output=True)

def toy_overrides(run_dir, **kw):
    cfg = {'trainer.max_iter': 30, 'trainer.save_iter': 10, 'job.run_dir': run_dir, **kw}
    return [f'{k}={v}' for k, v in cfg.items()]

def slurm_toy(tmp, name, tasks=2, **kw):
    return submit('toy', toy_overrides(tmp/name, **kw), gpus_per_node=0, tasks_per_node=tasks, profile='ci', cluster='slurm',
                  folder=tmp/'logs'/'%j', target=TOY)

@pytest.fixture(scope='module')
def cpu_run(cluster, tmp_path_factory):
    "The reference: a 2-task CPU job on SLURM, never interrupted."
    tmp = tmp_path_factory.mktemp('slurm')
    job = slurm_toy(tmp, 'plain')
    return job, job.results(timeout=180), tmp/'plain'

def scontrol_job(job_id) -> dict:
    out = subprocess.run(['scontrol', 'show', 'job', str(job_id)], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r'(\w+)=(\S+)', out))

# ---------------------------------------------------------------------------------------------------------- real SLURM
def test_two_task_cpu_job_trains_checkpoints_and_reports(cpu_run):
    job, res, run = cpu_run
    assert [r['rank'] for r in res] == [0, 1] and {r['world_size'] for r in res} == {2}
    assert [r['local_rank'] for r in res] == [0, 1] and {r['local_world_size'] for r in res} == {2}
    assert len({r['master'] for r in res}) == 1 and res[0]['master'].split(':')[0] == res[0]['slurm_node']
    assert all(r['iteration'] == 30 and r['resumed_from'] == 0 and r['attempt'] == 0 for r in res)
    assert all(torch.equal(a, b) for a, b in zip(res[0]['weights'], res[1]['weights']))        # gradients were averaged
    assert sorted(p.name for p in run.glob('iter_*.pt')) == [f'iter_{n:09d}.pt' for n in (10, 20, 30)]
    assert (run/'latest_checkpoint.txt').read_text() == 'iter_000000030.pt'
    ck = torch.load(run/'iter_000000030.pt', weights_only=True)
    assert ck['iteration'] == 30 and torch.equal(ck['model']['weight'], res[0]['weights'][0])
    assert job.status() == 'COMPLETED' and job.restarts == 0 and [e['event'] for e in job.events()] == ['start']
    assert 'Job completed successfully' in job.tail(5) and '[rank 1] iteration 30' in job.tail(40, task=1)
    script = job.job.paths.submission_file.read_text()
    assert '--ntasks-per-node=2' in script and '--requeue' in script and 'gpus' not in script
    assert job.result()['loss'] == res[0]['loss']

def test_preempted_job_requeues_and_resumes_from_its_checkpoint(cpu_run, tmp_path):
    _, ref, _ = cpu_run
    run = tmp_path/'preempted'
    job = slurm_toy(tmp_path, 'preempted', **{'trainer.sleep': 0.2})
    t0 = time.time()
    while not (run/'latest_checkpoint.txt').exists():                   # let it save at least one checkpoint
        assert time.time() - t0 < 120, f'no checkpoint after 120 s; log:\n{job.tail(30)}'
        time.sleep(0.2)
    job._interrupt()                                                    # SIGTERM + SIGUSR2, as a preemption
    while True:                                                         # requeued: PENDING until its BeginTime (~2 min)...
        info = scontrol_job(job.job_id)
        if info['Restarts'] == '1' and info['JobState'] in ('PENDING', 'RUNNING', 'COMPLETED'): break
        assert time.time() - t0 < 180, f'not requeued: {info}'
        time.sleep(0.3)
    if info['JobState'] == 'PENDING':                                   # ...so start it now
        subprocess.run(['scontrol', 'update', f'JobId={job.job_id}', 'StartTime=now'], check=True)
    res = job.results(timeout=180)
    assert all(r['resumed_from'] in (10, 20) for r in res), [r['resumed_from'] for r in res]
    assert all(r['attempt'] == 1 and r['slurm_restarts'] == 1 and r['iteration'] == 30 for r in res)
    assert all(r['overrides'][-1] == 'trainer.resume=auto' for r in res)
    assert job.restarts == 1 and [e['event'] for e in job.events()] == ['start', 'requeue', 'start']
    for a, b in zip(res[0]['weights'], ref[0]['weights']): assert torch.equal(a, b)   # same end state as never interrupted
    assert (run/'latest_checkpoint.txt').read_text() == 'iter_000000030.pt'

def test_multi_node_job_one_task_per_gpu_from_the_cli(cluster, tmp_path, capsys):
    if cluster < 2: pytest.skip('the CI cluster has one node (SLURM_CI_NODES=1 or /etc/hosts not writable)')
    job = submit_main(['--experiment', 'smoke', '--profile', 'ci', '--cluster', 'slurm', '--nodes', '2', '--gpus_per_node', '2',
                       '--target', 'cosmos_nb.slurm:check_distributed', '--folder', str(tmp_path/'%j'), 'a=1'])
    assert f'submitted job {job.job_id} (slurm)' in capsys.readouterr().out
    res = job.results(timeout=180)
    assert [r['rank'] for r in res] == [0, 1, 2, 3] and [r['local_rank'] for r in res] == [0, 1, 0, 1]
    assert {r['world_size'] for r in res} == {4} and {r['rank_sum'] for r in res} == {6.0}
    nodes = [r['node'] for r in res]
    assert nodes[0] == nodes[1] != nodes[2] == nodes[3]                 # two tasks on each of two nodes
    assert {r['master'].split(':')[0] for r in res} == {nodes[0]}       # MASTER_ADDR: the first node, for every rank
    assert {r['cuda_visible_devices'] for r in res} == {'0,1'}          # each task sees its node's 2 (fake) GPUs, like torchrun
    assert res[0]['overrides'] == ['a=1']
    assert '--gpus-per-node=2' in job.job.paths.submission_file.read_text()

def test_failed_job_raises_its_traceback(cluster, tmp_path):
    job = slurm_toy(tmp_path, 'fails', tasks=1, **{'trainer.fail_at': 2})
    with pytest.raises(S.FailedJobError, match='toy failure at iteration 2'): job.result(timeout=180)
    assert job.status() == 'FAILED'

def test_monitor_attach_and_idempotent_up(cpu_run):
    job, res, _ = cpu_run
    m = JobMonitor(job, n=3)
    assert m.state == 'COMPLETED' and job.job_id in m.header.value and 'Job completed' in m.log.value
    again = attach(job.folder)
    assert (again.job_id, again.cluster, again.plan.world_size) == (job.job_id, 'slurm', 2)
    assert again.status() == 'COMPLETED' and again.results()[1]['rank'] == 1
    r = subprocess.run(['bash', str(ROOT/'slurm/ci/up.sh')], capture_output=True, text=True, env=dict(os.environ, SLURM_CI_DIR=str(CI_DIR)))
    assert r.returncode == 0 and 'already up' in r.stderr

# ------------------------------------------------------------------------------------------------------ local executor
def test_local_executor_runs_the_same_call(tmp_path):
    job = submit('toy', toy_overrides(tmp_path/'run'), gpus_per_node=0, tasks_per_node=2, cluster='local',
                 folder=tmp_path/'logs'/'%j', target=TOY)
    assert job.plan.profile.name == 'local'
    res = job.results(timeout=180)
    assert [r['rank'] for r in res] == [0, 1] and {r['world_size'] for r in res} == {2}
    assert all(r['iteration'] == 30 and r['resumed_from'] == 0 for r in res)
    assert (tmp_path/'run'/'latest_checkpoint.txt').read_text() == 'iter_000000030.pt'
    assert job.status() == 'COMPLETED' and job.restarts == 0

def test_cluster_none_picks_local_without_slurm(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('PATH', str(tmp_path))                         # no sbatch anywhere
    assert S.pick_cluster(None) == 'local'
    (tmp_path/'sbatch').write_text('#!/bin/sh\nexit 0\n'); (tmp_path/'sinfo').write_text('#!/bin/sh\necho down >&2; exit 1\n')
    for f in ('sbatch', 'sinfo'): (tmp_path/f).chmod(0o755)
    assert S.pick_cluster(None) == 'local'
    err = capsys.readouterr().err
    assert 'SLURM does not answer (down)' in err and 'To insist: --cluster slurm' in err   # the shell user's flag first
    (tmp_path/'sinfo').write_text('#!/bin/sh\necho debug\n')
    assert S.pick_cluster(None) == 'slurm'
    with pytest.raises(SubmitError, match='sbatch/srun are not on PATH.*--cluster local'):    # no srun: refused before submitting
        submit('x', cluster='slurm', profile='ci', gpus_per_node=0, target='os.path:join', folder=tmp_path/'%j')
    monkeypatch.setenv('COLUMNS', '300')
    (tmp_path/'sinfo').write_text('#!/bin/sh\necho down >&2; exit 1\n')
    plan = submit_main(['--experiment', 'x', '--dry_run', '--profile', 'ci', '--gpus_per_node', '0', '--target', 'os.path:join'])
    assert plan.cluster == 'local' and '--cluster slurm' in capsys.readouterr().err and "cluster='slurm' to insist" not in err

# ---------------------------------------------------------------------------------------------------------- bad input
def test_bad_requests_fail_before_submission(tmp_path):
    logs = tmp_path/'logs'
    def req(**kw):
        kw = {'experiment': 'toy', 'profile': 'ci', 'cluster': 'local', 'gpus_per_node': 0, 'target': TOY, 'folder': logs/'%j', **kw}
        return submit(**kw)
    with pytest.raises(SubmitError, match=r"unknown SLURM profile 'nope'; known profiles: \[.*'ci'.*'example'.*'local'"): req(profile='nope')
    with pytest.raises(SubmitError, match=r"gpus_per_node=3, but a node of profile 'ci' .* has 2 GPU\(s\)"): req(cluster='slurm', gpus_per_node=3)
    with pytest.raises(SubmitError, match="multi-node jobs need SLURM"): req(nodes=2)
    if torch.cuda.device_count() == 0:
        with pytest.raises(SubmitError, match=r"profile 'local' .* has 0 GPU\(s\): use gpus_per_node=0"): req(profile=None, gpus_per_node=1)
    with pytest.raises(SubmitError, match='key=value'): req(overrides=['trainer.max_iter'])
    with pytest.raises(SubmitError, match='one task per GPU'): req(cluster='slurm', gpus_per_node=2, tasks_per_node=1)
    with pytest.raises(SubmitError, match="unknown sbatch option"): req(partiton='debug')
    with pytest.raises(SubmitError, match='as arguments'): req(ntasks_per_node=4)
    with pytest.raises(SubmitError, match="target module 'no_such_module'"): req(target='no_such_module:train')
    with pytest.raises(SubmitError, match="must look like 'package.module:function'"): req(target='slurm_toy_trainer.train')
    with pytest.raises(SubmitError, match="cluster must be"): req(cluster='pbs')
    with pytest.raises(SubmitError, match="3 CPUs, but a node of profile 'ci' has 2"): req(tasks_per_node=3)
    def registry(name, overrides): raise KeyError(f'unknown experiment {name!r}; registered experiments: a, b')
    with pytest.raises(SubmitError, match="unknown experiment 'toy'.*registered experiments: a, b"): req(check_experiment=registry)
    # the default trainer target builds the config with cosmos_nb.experiments.get_experiment(name, overrides), as the trainer will
    with pytest.raises(SubmitError, match="unknown experiment 'toy'.*registered experiments: .*video2world_7b_example_hdvila"):
        req(target=S.DEFAULT_TARGET)
    tiny = dict(target=S.DEFAULT_TARGET, experiment='video2world_tiny_full_synthetic')
    with pytest.raises(SubmitError, match="unknown config key 'trainer.maxiter'"): req(overrides=['trainer.maxiter=3'], **tiny)
    with pytest.raises(SubmitError, match="bad override value: trainer.max_iter: 'three' is not an integer"): req(overrides=['trainer.max_iter=three'], **tiny)
    assert plan_job(overrides=['trainer.max_iter=3'], profile='ci', cluster='local', gpus_per_node=0, folder=logs/'%j', **tiny).world_size == 1
    seen = []
    plan_job('toy', ['a=1'], profile='ci', cluster='local', gpus_per_node=0, target=TOY, check_experiment=lambda *a: seen.append(a))
    assert seen == [('toy', ['a=1'])]
    assert not logs.exists()                                            # nothing was submitted
    assert submit_main_exit(['--experiment', 'toy', '--profile', 'nope']) == 2

def submit_main_exit(argv):
    try: submit_main(argv)
    except SystemExit as e: return e.code

def test_default_target_without_registry_module_is_not_checked(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'cosmos_nb.experiments', None)     # `import` raises ModuleNotFoundError, as before issue 8
    plan = plan_job('anything', profile='example', cluster='slurm', folder=tmp_path/'%j')
    assert plan.target == 'cosmos_nb.train:train' and plan.world_size == 8

def test_profiles_parse_and_bad_profiles_are_named(tmp_path):
    for name in ('example', 'local', 'ci'):
        p = load_profile(name)
        assert p.path == ROOT/'slurm'/'profiles'/f'{name}.ini'
    ex = load_profile('example')
    assert ex.setup == ['module load cuda/12.4', 'source $HOME/miniforge3/bin/activate cosmos-nb', 'export OMP_NUM_THREADS=8',
                        'export NCCL_ASYNC_ERROR_HANDLING=1']
    assert ex.srun_args == [] and ex.sbatch == {} and ex.job['cpus_per_task'] == 12
    bad = tmp_path/'bad.ini'
    bad.write_text('[node]\ngpus = eight\n')
    with pytest.raises(SubmitError, match=r'bad.ini: \[node\] gpus must be a number'): load_profile(bad)
    bad.write_text('[job]\npartition = x\n')
    with pytest.raises(SubmitError, match=r'\[node\] gpus is missing'): load_profile(bad)
    bad.write_text('[node]\ngpus = 4\n[slurm]\npartition = x\n')
    with pytest.raises(SubmitError, match=r'unknown section \[slurm\]'): load_profile(bad)
    good = tmp_path/'mine.ini'
    good.write_text('[node]\ngpus = 4\n[job]\npartition = a100  # inline comment\n[srun]\nargs = --container-image=/x.sqsh '
                    '--container-mounts=/a:/a\n[sbatch]\nmail-type = END\nhint = nomultithread\n')
    plan = plan_job('x', profile=good, cluster='slurm', target='os.path:join', folder=tmp_path/'%j')
    script = plan.sbatch_script()
    for s in ['--partition=a100', '--mail-type=END', '--hint=nomultithread', '--container-image=/x.sqsh', '--ntasks-per-node=4',
              '--gpus-per-node=4']: assert s in script, s
    readme = (ROOT/'slurm'/'README.md').read_text().split('### Filling one in')[1]
    (tmp_path/'readme.ini').write_text(readme.split('```ini')[1].split('```')[0])    # the README's profile is a valid one
    doc = load_profile(tmp_path/'readme.ini')
    assert (doc.gpus, doc.cpus, doc.job['account'], doc.job['exclusive'], doc.sbatch) == (8, 96, 'my_project', True, {'mail-type': 'END,FAIL'})
    assert 'python' not in doc.job and doc.srun_args[0] == '--container-image=/shared/images/cosmos-nb.sqsh'
    env = dict(os.environ, COSMOS_NB_PROFILES=str(tmp_path))
    out = subprocess.run([sys.executable, '-c', 'from cosmos_nb.slurm import list_profiles; print(sorted(list_profiles()))'],
                         env=env, capture_output=True, text=True, cwd=tmp_path)
    assert "'bad'" in out.stdout and "'mine'" in out.stdout and "'example'" in out.stdout

# ------------------------------------------------------------------------------- the real trainer (cosmos_nb.train:train)
@pytest.mark.slow
def test_real_trainer_tiny_lora_on_slurm_preempted_and_resumed(cluster, tmp_path, monkeypatch):
    "End to end with the default target: 2 CPU ranks of `video2world_tiny_lora_synthetic`, preempted once, resumed."
    from cosmos_nb.data import make_synthetic_dataset
    make_synthetic_dataset(tmp_path/'synthetic', n_videos=4, num_frames=17, size=(32, 32))
    monkeypatch.setenv('OUTPUT_ROOT', str(tmp_path/'out'))              # settings.ini's output_root, for the job too
    job = submit('video2world_tiny_lora_synthetic', ['trainer.max_iter=60', 'checkpoint.save_iter=5',
                 f'data.dataset_dir={tmp_path/"synthetic"}'], gpus_per_node=0, tasks_per_node=2, profile='ci', cluster='slurm',
                 folder=tmp_path/'logs'/'%j')
    ckpts = tmp_path/'out'/'posttraining'/'diffusion_video2world'/'video2world_tiny_lora_synthetic'/'checkpoints'
    t0 = time.time()
    while not (ckpts/'latest_checkpoint.txt').exists():
        assert time.time() - t0 < 300 and not job.job.done(), f'no checkpoint; log:\n{job.tail(30)}'
        time.sleep(0.2)
    job._interrupt()
    while True:
        info = scontrol_job(job.job_id)
        if info['Restarts'] == '1' and info['JobState'] in ('PENDING', 'RUNNING', 'COMPLETED'): break
        assert time.time() - t0 < 400, f'not requeued: {info}'
        time.sleep(0.3)
    if info['JobState'] == 'PENDING': subprocess.run(['scontrol', 'update', f'JobId={job.job_id}', 'StartTime=now'], check=True)
    res = job.results(timeout=600)
    assert [r['rank'] for r in res] == [0, 1] and res[0]['iteration'] == 60 and res[0]['resumed_from'] > 0
    assert job.restarts == 1 and (ckpts/'latest_checkpoint.txt').read_text().strip() == 'iter_000000060.pt'

# ------------------------------------------------------------------------------- what pages and messages show (issue 18 §1)
def test_pages_and_messages_show_no_machine_paths(tmp_path, monkeypatch):
    "Profiles, plans and errors name files relative to where the reader is; only the batch script itself keeps full paths."
    from cosmos_nb.slurm import shorten_paths, shown_path
    monkeypatch.chdir(ROOT)
    ex = load_profile('example')
    assert '| file | `slurm/profiles/example.ini` |' in ex._repr_markdown_() and "path='slurm/profiles/example.ini'" in repr(ex)
    monkeypatch.chdir(ROOT/'nbs')                                       # a notebook's working directory: inside the checkout
    assert '`../slurm/profiles/example.ini`' in ex._repr_markdown_()
    plan = plan_job('x', profile='example', cluster='slurm', target='os.path:join', folder=tmp_path/'%j')
    assert shown_path(tmp_path/'%j') == '$TMPDIR/' + str((tmp_path/'%j').relative_to(Path(tempfile_dir()).resolve()))
    for text in (repr(plan), plan._repr_markdown_()):
        assert str(ROOT) not in text and str(tmp_path) not in text and '$TMPDIR/' in text, text
    with pytest.raises(SubmitError) as e: load_profile('nope')
    assert str(ROOT) not in str(e.value) and '(searched ../slurm/profiles)' in str(e.value)
    with pytest.raises(SubmitError) as e: plan_job('x', gpus_per_node=9, profile='example', cluster='slurm', target='os.path:join')
    assert "profile 'example' (../slurm/profiles/example.ini) has 8 GPU(s)" in str(e.value)
    script = plan.sbatch_script()
    assert str(tmp_path) in script                                      # the file SLURM runs has the real folder
    shown = shorten_paths(script)
    assert str(tmp_path) not in shown and str(ROOT) not in shown and '$TMPDIR/' in shown and '#SBATCH --requeue' in shown


def tempfile_dir() -> str:
    import tempfile
    return tempfile.gettempdir()
