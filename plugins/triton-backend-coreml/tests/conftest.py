"""Fixtures for the coreml backend's tests: the Core ML models are built once per session
(coremltools takes seconds to import and convert) into read-only model folders."""

from __future__ import annotations

from pathlib import Path

import coreml_backend_helpers as h
import pytest


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("coreml-models")
    built: dict[str, Path] = {}

    def folder(name: str) -> Path:
        built[name] = root / name
        return root / name / "1"

    h.relu_range(folder("relu_range"))
    h.relu_enumerated(folder("relu_enum"))
    h.add_fixed(folder("add_fixed"))
    h.image_mean(folder("image_rgb"))
    h.image_mean(folder("image_bgr"), color="BGR")
    h.image_mean(folder("image_gray"), color="GRAYSCALE")
    h.classifier(folder("classifier"))
    h.stateful_accumulator(folder("stateful"))
    h.nn_double(folder("nn_double"))
    h.nn_classifier(folder("nn_classifier"))
    h.nn_image_sizes(folder("nn_image_sizes"))
    return built


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"
