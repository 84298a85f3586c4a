"""Export a Transformer student as a Hugging Face model folder (``ngteach export``).

The Transformer student (student/model.py) is, layer for layer, GPT-NeoX with sequential
residuals: pre-norm LayerNorms, full rotary positions (base 10000, the two halves of each
head rotated as pairs), biased attention and feed-forward layers with exact GELU, a final
LayerNorm and an output layer without bias, tied to the embeddings when the student's
are. So its weights map one to one onto ``GPTNeoXForCausalLM``, whose logits are the
student's (up to float rounding; tests/test_export.py checks them), and
``transformers.AutoModelForCausalLM.from_pretrained(DIR)`` loads the folder.

What does not map, refused with one line: an LSTM student; a Transformer with a memory
(Transformer-XL, the large size: GPT-NeoX has no segment memory); and a Transformer saved
before students lost their output bias (``decoder_bias``), whose logits GPT-NeoX cannot add.

A word-level vocabulary goes with it as a ``tokenizers`` WordLevel tokenizer (split on
whitespace, unknown words to ``<unk>``), which ``AutoTokenizer`` loads. The student read
each line followed by ``<eos>``, and a text with ``<eos>`` in front: give it the same.
A sentencepiece vocabulary is copied as ``tokenizer.model`` (with ``vocab.txt``).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from corpora import NgteachError
from corpora.files import replace_dir, temp_dir, writing

from .model import StudentConfig, TransformerStudent
from .train import RunConfig, load_student, run_model

ROPE_BASE = 10000.0  # student/model.py's _rotate


def check_exportable(run_dir: Path, student: StudentConfig) -> None:
    if student.kind != "transformer":
        raise NgteachError(f"{run_dir}: an {student.kind} student; only Transformer students export to Hugging Face "
                           "(as GPT-NeoX)")
    if student.memory:
        raise NgteachError(f"{run_dir}: a Transformer with a memory of {student.memory} tokens (Transformer-XL), "
                           "which GPT-NeoX has no equivalent for")
    if student.decoder_bias:
        raise NgteachError(f"{run_dir}: a Transformer with a bias on its output logits (trained before students "
                           "lost it), which GPT-NeoX has no place for")


def neox_config(student: StudentConfig, vocab_size: int, eos_id: int):
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=vocab_size, hidden_size=student.width, num_hidden_layers=student.layers,
        num_attention_heads=student.heads, intermediate_size=student.inner, hidden_act="gelu",
        max_position_embeddings=student.window, layer_norm_eps=1e-5, use_parallel_residual=False,
        attention_bias=True, tie_word_embeddings=student.tie_weights, hidden_dropout=0.0, attention_dropout=0.0,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_BASE, "partial_rotary_factor": 1.0},
        bos_token_id=eos_id, eos_token_id=eos_id, architectures=["GPTNeoXForCausalLM"])


def neox_state_dict(model: TransformerStudent) -> dict[str, torch.Tensor]:
    """The student's weights under GPT-NeoX's names and layouts."""
    heads, width = model.config.heads, model.config.width
    weights = {"gpt_neox.embed_in.weight": model.embed.weight,
               "gpt_neox.final_layer_norm.weight": model.norm.weight,
               "gpt_neox.final_layer_norm.bias": model.norm.bias,
               "lm_head.weight": model.decoder.weight}
    for i, block in enumerate(model.blocks):
        layer = f"gpt_neox.layers.{i}."
        for name in ("weight", "bias"):
            # GPT-NeoX's fused projection gives each head its query, key and value in turn
            q = getattr(block.query, name)
            k, v = getattr(block.key_value, name).chunk(2, 0)
            fused = torch.stack([t.unflatten(0, (heads, width // heads)) for t in (q, k, v)], 1).flatten(0, 2)
            weights |= {layer + f"attention.query_key_value.{name}": fused,
                        layer + f"attention.dense.{name}": getattr(block.out, name),
                        layer + f"input_layernorm.{name}": getattr(block.norm_attention, name),
                        layer + f"post_attention_layernorm.{name}": getattr(block.norm_ff, name),
                        layer + f"mlp.dense_h_to_4h.{name}": getattr(block.ff[0], name),
                        layer + f"mlp.dense_4h_to_h.{name}": getattr(block.ff[2], name)}
    return {name: tensor.detach().clone().contiguous() for name, tensor in weights.items()}


def word_tokenizer(tokens: list[str], unk: str, eos: str):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    inner = Tokenizer(models.WordLevel({token: i for i, token in enumerate(tokens)}, unk_token=unk))
    inner.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=inner, unk_token=unk, eos_token=eos, bos_token=eos)


def export_hf(run_dir: Path, out: Path) -> Path:
    """Write ``run_dir``'s best Transformer student as a Hugging Face model folder at
    ``out`` (built aside, then renamed into place)."""
    from transformers import GPTNeoXForCausalLM

    run_dir, out = Path(run_dir), Path(out)
    config = RunConfig.load(run_dir / "config.json")
    check_exportable(run_dir, config.student)
    if out.exists() and not (out / "config.json").is_file():
        raise NgteachError(f"{out}: exists and is not a Hugging Face model folder; remove it or choose another --out")
    vocabulary = run_model(config, run_dir)
    vocab = vocabulary.vocab
    student = load_student(run_dir, config, len(vocab)).eval()
    network = GPTNeoXForCausalLM(neox_config(config.student, len(vocab), vocab.eos_id))
    network.load_state_dict(neox_state_dict(student), strict=True)
    out.resolve().parent.mkdir(parents=True, exist_ok=True)
    work = temp_dir(out.resolve().parent, f".{out.name}.")
    try:
        with writing(out, "the Hugging Face model folder"):
            network.save_pretrained(work)
            if vocabulary.meta["tokenizer"]["kind"] == "word":
                word_tokenizer(list(vocab.tokens), vocab.tokens[vocab.unk_id], vocab.tokens[vocab.eos_id]
                               ).save_pretrained(work)
            else:
                shutil.copy(vocabulary.directory / "tokenizer.model", work / "tokenizer.model")
            shutil.copy(vocabulary.directory / "vocab.txt", work / "vocab.txt")
        replace_dir(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out
