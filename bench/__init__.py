"""The benchmarks: against peers (benchmark.py), on real handwriting and numbers, the API under load,
the serving footprint and the page in the browser; each a script that writes its tables here. The
tests import their pure parts from this package."""
