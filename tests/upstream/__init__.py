"""The fake Civitai and Hugging Face used by tests, benchmarks and `make demo`."""

from tests.upstream.catalogue import build_demo_catalogue
from tests.upstream.server import CivitaiModel, CivitaiVersion, FakeUpstream, Fault, HfRepo, StoredFile

__all__ = [
    "CivitaiModel",
    "CivitaiVersion",
    "FakeUpstream",
    "Fault",
    "HfRepo",
    "StoredFile",
    "build_demo_catalogue",
]
