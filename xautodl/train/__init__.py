"""The one supervised training loop (`loop`); its entry points are `xautodl.commands.basic_main` (NASNet-space
evaluation nets) and `xautodl.commands.train_a_net` (NAS-Bench-201 archs)."""
