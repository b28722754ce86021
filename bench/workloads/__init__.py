"""The benchmark workloads, one module each; ``bench/run.py`` lists and runs them."""
