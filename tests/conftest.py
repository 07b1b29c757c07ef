import os
# Never reach for the Hugging Face Hub in tests: without this every cache miss costs ~23 s of retries offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
# the real media beside the checkout; COSMOS_NB_SHARED_DATA points elsewhere (the GPU machine gets a copy carried with the repo)
SHARED_DATA = Path(os.environ.get("COSMOS_NB_SHARED_DATA", ROOT.parent / "shared" / "data"))

@pytest.fixture(scope="session")
def shared_data() -> Path:
    "The real upstream media in ../shared/data (read-only)."
    assert SHARED_DATA.is_dir(), f"{SHARED_DATA} is missing: tests need the shared media beside the checkout"
    return SHARED_DATA


@pytest.fixture
def online(monkeypatch):
    "Let huggingface_hub make requests (in tests they only ever go to the loopback mock, `hub_mock.MockHub`)."
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def offline(monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
