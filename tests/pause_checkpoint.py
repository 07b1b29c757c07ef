"""Run a script or a module with a checkpoint writer that stalls half-way through a file: the kill tests' worst moment.

    python tests/pause_checkpoint.py ITERATION SECONDS (SCRIPT.py | MODULE) [ARGS...]

It replaces `cosmos_nb.checkpoint.write_checkpoint_file` (the function `write_checkpoint` writes every file with) by one
that, for the second file of checkpoint ITERATION, writes half its bytes to the hidden temp file, flushes them to disk and
sleeps SECONDS before writing the rest: a SIGKILL then leaves a complete first file, a partial temp file and no manifest.
Works under torchrun too (`torchrun ... tests/pause_checkpoint.py 9 120 cosmos_nb.train -- ...`): only rank 0 writes."""
import io, os, runpy, sys, time

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


if __name__ == '__main__':
    iteration, seconds, target, *args = sys.argv[1:]
    install(int(iteration), float(seconds))
    sys.argv = [target, *args]
    if target.endswith('.py'): runpy.run_path(target, run_name='__main__')
    else: runpy.run_module(target, run_name='__main__', alter_sys=True)
