"""The command line: routing, rendering and progress; the only place that prints."""
