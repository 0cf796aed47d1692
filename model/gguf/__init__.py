"""GGUF files (llama.cpp's format) of Llama-architecture models, converted to our checkpoints.

A GGUF holds everything in one file: the architecture as metadata keys, the tokenizer, and the
weights, most of them quantized. Each job has its module:

    metadata.py   open the file, its config and its card (name, licence, provenance)
    weights.py    dequantize to float32 and undo llama.cpp's layout
    tokenizer.py  its byte-level BPE as a tiktoken Encoding
    cache.py      convert once into the cache; later loads read the converted checkpoint

    gpt, tokenizer, card = load_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")

Weights become float32, since CPUs without AVX-512/AMX have no fast bf16 or fp16 matmul.
"""

from .cache import CONVERTED, convert_gguf, converted_dir, load_gguf, load_or_convert
from .metadata import gguf_config, open_gguf
from .tokenizer import gguf_tokenizer
from .weights import gguf_state_dict

__all__ = ["CONVERTED", "convert_gguf", "converted_dir", "gguf_config", "gguf_state_dict",
           "gguf_tokenizer", "load_gguf", "load_or_convert", "open_gguf"]
