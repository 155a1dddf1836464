"""RANDOM-NAS (random search with parameter sharing, RSPS) architecture search on the NAS-Bench-201 space.

Usage: python exps/NAS-Bench-201-algos/RANDOM-NAS.py --dataset cifar10 --track_running_stats 1 --rand_seed -1 [flags]
(see `--help`; the driver is scripts-search/algos/RANDOM-NAS.sh).
"""
from xautodl.commands.search import main

if __name__ == "__main__":
    main("RANDOM-NAS")
