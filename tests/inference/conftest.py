"""The model bundle of :mod:`tests.bundles` (converted official-format tiny checkpoints), built
once per session for the pipeline and predict tests."""

from __future__ import annotations

import pytest

from tests.bundles import official_bundle


@pytest.fixture(scope="session")
def official_bundle_dir(tmp_path_factory):
    return official_bundle(tmp_path_factory.mktemp("official"))


@pytest.fixture(scope="session")
def pipe(official_bundle_dir):
    from c2ser import Pipeline

    return Pipeline.from_pretrained(official_bundle_dir, device="cpu", batch_size=4)
