"""The torch-free runtime: texts in, the reference's predictions out; bad input gets a clear error."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from pruneport.export.manifest import NotAnExportError
from pruneport.runtime import ModelLoadError, TextTooLongError, load
from pruneport.runtime.text import TextEncoder, pad_batch

TEXTS = [
    "the movie was great",
    "a boring , long and dark film with a very bad ending and not a single good scene",
    "fun",
    ("the plot was good", "but the actor was awful"),
    "some music , some love , some hate",
]


@pytest.fixture(scope="module")
def classifier(tiny_ltp_export):
    return load(tiny_ltp_export, batch_size=2)


def reference_outputs(loaded, texts):
    encoder = TextEncoder(loaded.tokenizer_json, loaded.max_length, loaded.model.config.pad_token_id)
    encoded = encoder.encode(texts)
    logits, tokens = [], []
    with torch.no_grad():
        for ids, types in zip(encoded.ids, encoded.type_ids, strict=True):
            feeds = pad_batch([ids], [types], encoder.pad_token_id, True)
            out = loaded.model(*[torch.from_numpy(feeds[n]) for n in loaded.model.input_names])
            logits.append(out[0].numpy()[0])
            tokens.append(out[1].numpy()[0])
    return np.stack(logits), np.stack(tokens)


def test_predict_matches_the_reference_in_input_order(classifier, tiny_ltp_loaded):
    result = classifier.predict(TEXTS)
    logits, tokens = reference_outputs(tiny_ltp_loaded, TEXTS)
    np.testing.assert_allclose(result.logits, logits, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(result.tokens_per_layer, tokens)
    assert result.labels == [tiny_ltp_loaded.label_names[i] for i in logits.argmax(-1)]
    np.testing.assert_allclose(result.probabilities.sum(-1), 1.0, atol=1e-6)
    assert result.tokens_per_layer.shape == (len(TEXTS), 3)


def test_batching_never_changes_a_result(classifier):
    together = classifier.predict(TEXTS, batch_size=4)
    for i, text in enumerate(TEXTS):
        alone = classifier.predict(text)
        np.testing.assert_allclose(alone.logits[0], together.logits[i], atol=1e-5, rtol=0)
        np.testing.assert_array_equal(alone.tokens_per_layer[0], together.tokens_per_layer[i])


def test_text_pairs_use_token_types(classifier):
    encoded = classifier.encoder.encode([("the plot", "was good")])
    assert encoded.type_ids[0] == [0, 0, 0, 0, 1, 1, 1]


def test_empty_text_is_a_clear_error(classifier):
    with pytest.raises(ValueError, match="text 1 is empty"):
        classifier.predict(["fine", "   "])
    with pytest.raises(ValueError, match="no texts"):
        classifier.predict([])


def test_over_long_text_is_truncated_with_a_warning_or_refused(classifier):
    long_text = " ".join(["good movie"] * 40)  # 80 words, the model takes 32 tokens
    with pytest.warns(UserWarning, match="truncated"):
        result = classifier.predict([long_text, "fun"])
    assert result.tokens_per_layer[0, 0] == 32
    with pytest.raises(TextTooLongError, match="more than the model's maximum 32"):
        classifier.predict(long_text, truncate=False)
    with pytest.raises(ValueError, match="exceeds the model's maximum"):
        classifier.run_feeds(pad_batch([[2] * 40], [[0] * 40], 0, True))


def test_missing_and_corrupt_model_files(tiny_ltp_export, tmp_path):
    with pytest.raises(NotAnExportError):
        load(tmp_path / "nothing-here")
    with pytest.raises(NotAnExportError, match="no pruneport.json"):
        load(tmp_path)
    broken = shutil.copytree(tiny_ltp_export, tmp_path / "broken")
    (broken / "model.onnx").write_bytes(b"\x08\x07garbage that is not a protobuf model")
    with pytest.raises(ModelLoadError, match="cannot load"):
        load(broken)
    (broken / "model.onnx").unlink()
    with pytest.raises(ModelLoadError, match="not found"):
        load(broken)


def test_runtime_never_imports_torch_or_transformers(tiny_ltp_export):
    """In a process where importing torch or transformers fails, the runtime still loads and predicts."""
    script = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "transformers"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        from pruneport.runtime import load
        result = load({str(tiny_ltp_export)!r}).predict(["the movie was great", ("a", "b")])
        assert len(result.labels) == 2, result
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
        assert not loaded, loaded
        print("ok", result.tokens_per_layer.tolist())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")
