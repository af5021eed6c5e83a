"""The CPU serving path: a Triton python-backend model that runs the ONNX graph with ONNX Runtime.

`model.py` is not imported by the builder: the pipeline copies it beside `model.onnx` into
`repository/<model>/1/`, and Triton's python-backend stub imports it there. `MODEL_PY` is its path.
"""

from __future__ import annotations

from pathlib import Path

MODEL_PY = Path(__file__).with_name("model.py")
