"""modelops engine builder: fetch, verify, export, build, gate, profile and publish an engine."""

__version__ = "0.1.0"
