"""Export a trained model for a site (``sb3-microgrid export``) and run it without the training stack.

:class:`OnnxPolicy` needs onnxruntime and numpy only; the exporter (:func:`export_model` in
:mod:`sb3_microgrid.export.onnx_export`) needs torch and Stable-Baselines3 and is imported on first use.
"""

from __future__ import annotations

from typing import Any

from .onnx_policy import MANIFEST, ManifestError, ObservationShapeError, OnnxPolicy, RecurrentPolicyError, read_manifest, scenario_fingerprint

_EXPORTER = ("ExportError", "export_model")


def __getattr__(name: str) -> Any:
    if name in _EXPORTER:
        from . import onnx_export

        return getattr(onnx_export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MANIFEST", "ManifestError", "ObservationShapeError", "OnnxPolicy", "RecurrentPolicyError", "read_manifest", "scenario_fingerprint", *_EXPORTER]
