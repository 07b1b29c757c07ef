import os
# Never reach for the Hugging Face Hub in tests: without this every cache miss costs ~23 s of retries offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
# upstream's example media, shipped inside the package (cosmos_nb/assets/media/README.md says where they come from)
EXAMPLE_MEDIA = ROOT / "cosmos_nb" / "assets" / "media"

@pytest.fixture(scope="session")
def example_media() -> Path:
    "The real upstream media in cosmos_nb/assets/media (read-only: tests copy before they cut or corrupt)."
    assert EXAMPLE_MEDIA.is_dir(), f"{EXAMPLE_MEDIA} is missing: the checkout is incomplete"
    return EXAMPLE_MEDIA


@pytest.fixture
def online(monkeypatch):
    "Let huggingface_hub make requests (in tests they only ever go to the loopback mock, `hub_mock.MockHub`)."
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def offline(monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
