"""xautodl: GDAS / DARTS neural architecture search on the NAS-Bench-201 and NASNet spaces."""
__version__ = "2.0.0.dev0"
