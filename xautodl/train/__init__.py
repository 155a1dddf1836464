"""The one supervised training loop (`loop`), its optimisers, schedules and meters, and the training entry points
(`nb201`: train-a-net on NAS-Bench-201, `nasnet_main`: NASNet-space evaluation nets)."""
