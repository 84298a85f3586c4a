"""corpora: text -> token ids and vocabulary (the first stage of ngteach)."""
from .errors import NgteachError
from .text import EOS, UNK, check_corpus, read_blocks, scan_words
from .tokenizers import WordTokenizer, load_tokenizer
from .vocab import Vocabulary

__all__ = [
    "EOS",
    "UNK",
    "NgteachError",
    "Vocabulary",
    "WordTokenizer",
    "check_corpus",
    "load_tokenizer",
    "read_blocks",
    "scan_words",
]
