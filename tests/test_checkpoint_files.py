"""A file that is not a checkpoint is called that; only a real pickle with foreign globals mentions --trust-pickle."""

from __future__ import annotations

import pickle
import random
import zipfile

import pytest
import torch

from pruneport import cli
from pruneport.methods.checkpoint import CheckpointError, safe_torch_load
from pruneport.methods.pickle_scan import inspect_checkpoint_file


class Gadget:
    """A class a weights-only load refuses to import."""

    def __init__(self) -> None:
        self.value = 3


def random_file(path, seed: int, first: bytes = b""):
    rng = random.Random(seed)
    path.write_bytes(first + bytes(rng.getrandbits(8) for _ in range(4096)))
    return path


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes_are_not_a_checkpoint(tmp_path, seed):
    path = random_file(tmp_path / "model.pt", seed, first=b"\x80" if seed % 2 else b"")
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint") as err:
        safe_torch_load(path)
    assert "--trust-pickle" not in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"hello, this is a text file\nwith two lines\n", "neither a zip archive nor a pickle"),
        (b"PK\x03\x04 truncated zip", "damaged zip archive"),
    ],
    ids=["empty", "text", "broken-zip"],
)
def test_other_files_are_not_a_checkpoint(tmp_path, content, reason):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"not a PyTorch checkpoint: .*{reason}") as err:
        safe_torch_load(path)
    assert "--trust-pickle" not in str(err.value)


def test_a_zip_without_torch_data_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hi")
    with pytest.raises(CheckpointError, match="zip archive without the data.pkl"):
        safe_torch_load(path)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_pickle_with_foreign_globals_names_them_and_needs_trust(tmp_path, legacy):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2), "extra": Gadget()}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match=r"pickled Python objects \(tests\.test_checkpoint_files\.Gadget\)"):
        safe_torch_load(path)
    loaded = safe_torch_load(path, trust_pickle=True)
    assert loaded["extra"].value == 3


def test_a_plain_pickle_names_its_globals(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"g": Gadget()}, protocol=4))
    assert inspect_checkpoint_file(path).unsafe_globals == ["tests.test_checkpoint_files.Gadget"]
    with pytest.raises(CheckpointError, match="Gadget.*--trust-pickle"):
        safe_torch_load(path)


def test_a_weights_only_checkpoint_loads(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.arange(3)}, path)
    assert inspect_checkpoint_file(path).kind == "zip" and inspect_checkpoint_file(path).unsafe_globals == []
    assert safe_torch_load(path)["w"].tolist() == [0, 1, 2]


def test_export_of_random_bytes_is_one_line_and_writes_nothing(capsys, tmp_path):
    path = random_file(tmp_path / "model.pt", 0)
    code = cli.main(["export", "--method", "ltp", str(path), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "not a PyTorch checkpoint" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()
