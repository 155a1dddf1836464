"""Test launcher: imports torch and xautodl once, then for each request line (JSON: script, argv, cwd, env,
output) forks a process that runs the entry script as `python script argv...` would, its output going to `output`.
Prints {"pid": ...} when a run starts and {"exit": status} when it ends (-9: SIGKILL).

CRASH_AT in a request's env makes the run SIGKILL itself:
  step:N               right after the N-th SGD step of the run (mid-epoch)
  pause:N              block after the N-th SGD step until killed from outside
  temp-written:FILE@E  FILE's epoch-E checkpoint is complete in its temporary file, not yet renamed
  prev-kept:FILE@E     FILE's current checkpoint is kept as FILE.prev, the epoch-E one not yet renamed
"""
import json
import os
import runpy
import signal
import sys
import traceback

# Imported once here so that every forked run starts warm (the digits data, TensorBoard, the entry points).
import sklearn.datasets  # noqa: F401
import torch
import torch._dynamo
import torch.utils.tensorboard
from torch.optim.optimizer import register_optimizer_step_post_hook

import xautodl.runtime.checkpoint as checkpoint
import xautodl.commands.search  # noqa: F401
import xautodl.commands.train_a_net  # noqa: F401


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def after_sgd_steps(count, action):
    done = [0]

    def hook(optimizer, args, kwargs):
        if isinstance(optimizer, torch.optim.SGD):
            done[0] += 1
            if done[0] == count:
                action()

    register_optimizer_step_post_hook(hook)


def while_writing(moment, file_name, epoch):
    write_temporary, keep_previous = checkpoint._write_verified_temporary, checkpoint._keep_as_previous
    watched = [False]

    def write(target, payload):
        tmp = write_temporary(target, payload)
        watched[0] = target.name == file_name and payload.get("epoch") == epoch
        if moment == "temp-written" and watched[0]:
            die()
        return tmp

    def keep(target):
        keep_previous(target)
        if moment == "prev-kept" and watched[0]:
            die()

    checkpoint._write_verified_temporary, checkpoint._keep_as_previous = write, keep


def install_crash(crash_at):
    kind, _, where = crash_at.partition(":")
    if kind == "step":
        after_sgd_steps(int(where), die)
    elif kind == "pause":
        after_sgd_steps(int(where), signal.pause)
    elif kind in ("temp-written", "prev-kept"):
        name, _, epoch = where.partition("@")
        while_writing(kind, name, int(epoch))


def run(request):
    os.chdir(request["cwd"])
    os.environ.update(request["env"])
    output = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(output, 1)
    os.dup2(output, 2)
    install_crash(os.environ.get("CRASH_AT", ""))
    sys.argv = [request["script"], *request["argv"]]
    try:
        runpy.run_path(request["script"], run_name="__main__")
        status = 0
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


torch.set_num_threads(1)
for line in sys.stdin:
    request = json.loads(line)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        run(request)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"exit": os.waitstatus_to_exitcode(status)}), flush=True)
