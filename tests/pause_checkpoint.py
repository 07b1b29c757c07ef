"""Run a script or a module with a checkpoint writer that stalls half-way through a file: the kill tests' worst moment.

    python tests/pause_checkpoint.py ITERATION SECONDS (SCRIPT.py | MODULE) [ARGS...]

It replaces `cosmos_nb.checkpoint.write_checkpoint_file` (the function `write_checkpoint` writes every file with) by one
that, for the second file of checkpoint ITERATION, writes half its bytes to the hidden temp file, flushes them to disk and
sleeps SECONDS before writing the rest: a SIGKILL then leaves a complete first file, a partial temp file and no manifest.
For sharded (DCP) checkpoints it also replaces `cosmos_nb.checkpoint.dcp_writer`: the save of checkpoint ITERATION stalls
after every rank has written its shard into the temp folder `.iter_N_dcp.tmp/`, before rank 0 writes DCP's `.metadata`
(it puts a file `PAUSED` into that folder first); with an asynchronous save, training goes on meanwhile.
Works under torchrun too (`torchrun ... tests/pause_checkpoint.py 9 120 cosmos_nb.train -- ...`): only rank 0 writes."""
import io, os, re, runpy, sys, time
from pathlib import Path

import torch

import cosmos_nb.checkpoint as ck
from cosmos_nb.config import atomic_write


def install(iteration: int, seconds: float):
    "Make `write_checkpoint` stall `seconds` half-way through the second file of checkpoint `iteration`."
    real, seen = ck.write_checkpoint_file, []
    def paused(obj, path):
        parsed = ck.parse_checkpoint_name(path)
        if not parsed or parsed[0] != iteration: return real(obj, path)
        seen.append(path)
        if len(seen) != 2 or callable(obj): return real(obj, path)
        buf = io.BytesIO(); torch.save(obj, buf); data = buf.getvalue()
        with atomic_write(path, 'wb') as f:
            f.write(data[:len(data) // 2]); f.flush(); os.fsync(f.fileno())
            time.sleep(seconds)
            f.write(data[len(data) // 2:])
    ck.write_checkpoint_file = paused

    real_writer = ck.dcp_writer
    def paused_writer(folder):
        w = real_writer(folder)
        m = re.fullmatch(r'\.iter_(\d{9})_dcp\.tmp', Path(folder).name)
        if not m or int(m[1]) != iteration: return w
        finish = w.finish
        def stalled(metadata, results):     # rank 0, once every rank's shard is written
            (Path(folder)/'PAUSED').write_text('')
            time.sleep(seconds)
            return finish(metadata, results)
        w.finish = stalled
        return w
    ck.dcp_writer = paused_writer


if __name__ == '__main__':
    iteration, seconds, target, *args = sys.argv[1:]
    install(int(iteration), float(seconds))
    sys.argv = [target, *args]
    if target.endswith('.py'): runpy.run_path(target, run_name='__main__')
    else: runpy.run_module(target, run_name='__main__', alter_sys=True)
