"""bmbench: honest benchmarks for classifying blood and bone-marrow cell images."""

__version__ = "0.1.0"
