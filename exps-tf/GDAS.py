"""GDAS on the NAS-Bench-201 space in TensorFlow; DARTS-V1 with --tau_max -1 --tau_min -1.

Usage: python exps-tf/GDAS.py --dataset cifar10 --track_running_stats 1 --rand_seed -1 [flags] (see `--help`).
Needs the tf extra: pip install -e ".[tf]". The command is xautodl/commands/search_tf.py.
"""
from xautodl.commands.search_tf import main

if __name__ == "__main__":
    main()
