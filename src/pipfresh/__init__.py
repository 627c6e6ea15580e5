"""Run pip with a managed, ABI-partitioned cache: fresh resolution, full reuse."""

__version__ = "0.1.0"
