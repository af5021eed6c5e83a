"""modelops engine builder: fetch, verify, export, build, gate, profile and publish an engine."""

from modelops_contract import BUILDER_VERSION

__version__ = BUILDER_VERSION
