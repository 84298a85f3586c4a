"""The students: causality, the Transformer's memory, sizes."""
from __future__ import annotations

import pytest
import torch

from corpora import NgteachError
from student.model import build_student, student_config


def model_of(kind: str, **overrides):
    torch.manual_seed(0)
    config = student_config(kind, "tiny", dropout=0.0, dropout_embedding=0.0, **overrides)
    return build_student(config, 50).eval()


@pytest.mark.parametrize("kind, overrides", [("lstm", {}), ("transformer", {}), ("transformer", {"memory": 8})])
def test_a_position_never_sees_the_future(kind, overrides):
    model = model_of(kind, **overrides)
    tokens = torch.randint(0, 50, (2, 12))
    changed = tokens.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 50
    with torch.no_grad():
        before, _ = model(tokens)
        after, _ = model(changed)
    torch.testing.assert_close(before[:, :7], after[:, :7])
    assert not torch.allclose(before[:, 7:], after[:, 7:])


def test_transformer_memory_equals_reading_both_segments_at_once():
    """Segment 2 read with a memory of segment 1 gives the logits that one pass over both
    segments gives: the memory holds exactly the layer inputs that pass would compute."""
    model = model_of("transformer", memory=10, window=10)
    tokens = torch.randint(0, 50, (3, 20))
    with torch.no_grad():
        whole, _ = model(tokens)
        first, memory = model(tokens[:, :10])
        second, _ = model(tokens[:, 10:], memory)
    torch.testing.assert_close(first, whole[:, :10], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(second, whole[:, 10:], rtol=1e-4, atol=1e-4)


def test_without_memory_segments_are_independent():
    model = model_of("transformer")
    tokens = torch.randint(0, 50, (2, 10))
    with torch.no_grad():
        alone, state = model(tokens)
        assert state is None
        again, _ = model(tokens, state)
    torch.testing.assert_close(alone, again)


def test_memory_keeps_the_last_tokens_only():
    model = model_of("transformer", memory=4)
    with torch.no_grad():
        _, memory = model(torch.randint(0, 50, (2, 10)))
        _, memory = model(torch.randint(0, 50, (2, 3)), memory)
    assert len(memory) == model.config.layers and all(m.shape == (2, 4, model.config.width) for m in memory)


@pytest.mark.parametrize("overrides, mentions", [({"width": 30, "heads": 4}, "--heads"), ({"memory": -1}, "--memory"),
                                                 ({"dropout": 1.0}, "--dropout"), ({"layers": 0}, "--layers")])
def test_impossible_sizes_are_refused(overrides, mentions):
    with pytest.raises(NgteachError, match=mentions):
        student_config("transformer", "tiny", **overrides)


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_sampling_with_top_k_1_is_the_greedy_continuation(kind):
    """top_k 1 draws the argmax, found here by reading the whole text again at every step."""
    from student.generate import sample

    model = model_of(kind, window=6)
    prompt = [5, 9, 2]
    drawn = sample(model, student_config(kind, "tiny", window=6), prompt, 10, before=0, top_k=1, seed=3)
    tokens = [0, *prompt]
    with torch.no_grad():
        for _ in range(10):
            context = tokens if kind == "lstm" else tokens[-6:]
            logits, _ = model(torch.tensor([context]))
            tokens.append(int(logits[0, -1].argmax()))
    assert drawn == tokens[4:]


def test_sampling_is_repeatable_by_seed_and_keeps_to_the_top_k():
    from student.generate import sample

    model = model_of("lstm")
    config = student_config("lstm", "tiny")
    first = sample(model, config, [1, 2], 40, before=0, temperature=1.5, top_k=3, seed=7)
    assert first == sample(model, config, [1, 2], 40, before=0, temperature=1.5, top_k=3, seed=7)
    assert first != sample(model, config, [1, 2], 40, before=0, temperature=1.5, top_k=3, seed=8)
    tokens = [0, 1, 2, *first]
    with torch.no_grad():
        logits, _ = model(torch.tensor([tokens[:-1]]))
    top3 = logits[0, 2:].topk(3).indices  # the three most probable words before each drawn one
    assert all(token in allowed for token, allowed in zip(first, top3.tolist()))
    with pytest.raises(NgteachError, match="--temperature must be positive, not 0"):
        sample(model, config, [1], 3, before=0, temperature=0)
