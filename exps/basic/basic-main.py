"""Train a NASNet-space evaluation network: a published genotype or a searched one.

Usage: python exps/basic/basic-main.py --dataset cifar10 --model_config configs/archs/NAS-CIFAR-GDAS_V1.config
       --optim_config configs/opts/NAS-CIFAR.config --batch_size 96 --rand_seed -1 [flags]
(see `--help`; the drivers are scripts/nas-infer-train.sh and scripts/retrain-searched-net.sh).
"""
from xautodl.commands.basic_main import main

if __name__ == "__main__":
    main()
