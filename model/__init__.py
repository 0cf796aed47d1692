"""The model package: a GPT, its tokenizers, checkpoints and the decoding pipeline.

It knows nothing of any user interface: the app and the training scripts build on it.
"""

from .config import GPTConfig
from .decode import generate
from .gpt import GPT
from .loading import load_model
from .snapshots import list_snapshots

__all__ = ["GPT", "GPTConfig", "generate", "list_snapshots", "load_model"]
