"""Token data (`--data` token files, `--tokenizer`): read as written, memory-mapped, the vocabulary from the
data, and a search trained on each through the CLI with two ranks."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import LADDER, MICRO, run_cli, write_space

from moesearch.cli import cli
from moesearch.core import corpus, costs, results, space, tokenize
from moesearch.core.errors import InputError

IDS = np.random.default_rng(0).integers(0, 700, 30_000)  # a vocabulary above a byte's, below uint16's end


def _npy(path, ids, dtype):
    np.save(path, ids.astype(dtype))


def _raw(path, ids, dtype):  # nanoGPT: the ids and nothing else
    ids.astype(np.uint16).tofile(path)


def _shard(path, ids, dtype, version=None):  # modded-nanogpt / llm.c: 256 int32s, then the ids
    header = np.zeros(256, "<i4")
    header[:3] = corpus.HEADER_MAGIC, version or {np.uint16: 1, np.uint32: 2}[dtype], len(ids)
    path.write_bytes(header.tobytes() + ids.astype(dtype).tobytes())


KINDS = {
    "npy uint16": ("t.npy", _npy, np.uint16),
    "npy uint32": ("t.npy", _npy, np.uint32),
    "npy int64": ("t.npy", _npy, np.int64),
    "raw bin (nanoGPT)": ("t.bin", _raw, np.uint16),
    "bin with header v1 (uint16)": ("t.bin", _shard, np.uint16),
    "bin with header v2 (uint32)": ("t.bin", _shard, np.uint32),
}


@pytest.mark.parametrize("kind", KINDS)
def test_each_token_file_kind_reads_the_ids_it_holds_memory_mapped(tmp_path, kind):
    name, write, dtype = KINDS[kind]
    write(tmp_path / name, IDS, dtype)
    loaded = corpus.load(str(tmp_path / name))
    assert loaded.tokens and loaded.vocab_size == IDS.max() + 1
    assert isinstance(loaded.train.stream, np.memmap)  # mapped where it is: never read whole
    whole = np.arange(len(loaded.train))
    held = np.arange(len(loaded.val))
    assert np.array_equal(
        np.sort(
            np.concatenate([loaded.train.windows(whole[:1], len(whole))[0], loaded.val.windows(held[:1], len(held))[0]])
        ),
        np.sort(IDS),
    )


def test_several_shards_are_one_stream_without_a_copy_and_windows_cross_their_boundary(tmp_path):
    _shard(tmp_path / "a_000.bin", IDS[:10_000], np.uint16)
    _shard(tmp_path / "a_001.bin", IDS[10_000:], np.uint16)
    joined = corpus.load(str(tmp_path / "a_*.bin"))
    assert isinstance(joined.train.stream, corpus.Shards)
    starts = np.array([9_990, 0, 25_000])
    assert np.array_equal(joined.train.stream[starts[:, None] + np.arange(20)], IDS[starts[:, None] + np.arange(20)])
    assert joined.vocab_size == IDS.max() + 1 and len(joined.train) + len(joined.val) == len(IDS)


def test_the_facts_of_token_files_are_counted_once_and_again_when_a_file_changes(tmp_path):
    path = tmp_path / "t.npy"
    _npy(path, IDS, np.uint16)
    first = corpus.load(str(path))
    assert corpus.load(str(path)).sha256 == first.sha256
    _npy(path, np.append(IDS, 900), np.uint16)
    again = corpus.load(str(path))
    assert again.sha256 != first.sha256 and again.vocab_size == 901


BAD = {
    "a shard cut short": (lambda p: _shard(p / "t.bin", IDS, np.uint16) or _cut(p / "t.bin"), "cut short"),
    "an unknown header version": (lambda p: _shard(p / "t.bin", IDS, np.uint16, version=3), "header version 3"),
    "a raw bin of odd size": (lambda p: (p / "t.bin").write_bytes(b"abc"), "odd size"),
    "a 2-d array": (lambda p: np.save(p / "t.npy", IDS.reshape(2, -1)), "one dimension"),
    "a float array": (lambda p: np.save(p / "t.npy", IDS.astype(float)), "integer token ids"),
    "negative ids": (lambda p: np.save(p / "t.npy", IDS - 5), "negative token ids"),
    "text beside token files": (
        lambda p: np.save(p / "t.npy", IDS.astype(np.uint16)) or (p / "notes.txt").write_text("hi"),
        "mixes token files (t.npy) and text (notes.txt)",
    ),
}


def _cut(path):
    path.write_bytes(path.read_bytes()[:-2])


@pytest.mark.parametrize("case", BAD)
def test_a_bad_token_file_is_refused_in_one_line_naming_data(tmp_path, case):
    make, expected = BAD[case]
    folder = tmp_path / "data"
    folder.mkdir()
    make(folder)
    with pytest.raises(InputError) as refused:
        corpus.load(str(folder))
    assert str(refused.value).startswith("--data: ") and expected in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.fixture(scope="module")
def text_and_tokenizer(tmp_path_factory):
    """A text of the standard library's source and a 500-token byte-level BPE trained on it, here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    folder = tmp_path_factory.mktemp("tok")
    text = "\n".join(p.read_text() for p in corpus.files(None)[:12])
    (folder / "text.txt").write_text(text)
    made = Tokenizer(models.BPE())
    made.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    made.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    made.train_from_iterator([text], trainer)
    made.save(str(folder / "tokenizer.json"))
    return folder


def test_text_is_tokenized_once_into_a_file_keyed_by_both_hashes(text_and_tokenizer, tmp_path, monkeypatch):
    from tokenizers import Tokenizer

    folder = text_and_tokenizer
    text, tok = str(folder / "text.txt"), str(folder / "tokenizer.json")
    loaded_tok = tokenize.load(tok)
    monkeypatch.setattr(tokenize, "_CHUNK", 4096)  # several pieces, each cut at a newline
    made = tokenize.tokenized(text, loaded_tok, tmp_path)
    loaded = corpus.load(str(made))
    ids = np.asarray(loaded.train.stream)
    assert loaded.tokens and ids.dtype == np.uint16
    # the tokenizer's ids of the whole text, in order: byte-level BPE gives the text back
    assert Tokenizer.from_file(tok).decode(ids.tolist(), skip_special_tokens=False) == (folder / "text.txt").read_text()
    stamp = made.stat().st_mtime_ns
    assert tokenize.tokenized(text, loaded_tok, tmp_path) == made and made.stat().st_mtime_ns == stamp  # once
    other = folder / "other.json"
    other.write_text((folder / "tokenizer.json").read_text() + "\n")  # the same tokenizer, other bytes
    assert tokenize.tokenized(text, tokenize.load(str(other)), tmp_path) != made  # another tokenizer, another file
    assert loaded_tok.vocab == 500


def test_a_missing_tokenizers_package_names_the_extra(text_and_tokenizer, monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # as if not installed
    with pytest.raises(InputError, match=r"--tokenizer: the tokenizers package is not installed.*\[tokenizer\]"):
        tokenize.load(str(text_and_tokenizer / "tokenizer.json"))


def test_the_vocabulary_comes_from_the_data_and_a_larger_one_pads_it():
    tiny = space.load("tiny")
    assert tiny.model.vocab_size is None and tiny.model.vocab == corpus.VOCAB_SIZE  # text read as bytes
    assert tiny.with_vocab(700).model.vocab_size == 700
    padded = tiny.model_copy(update={"model": tiny.model.model_copy(update={"vocab_size": 768})})
    assert padded.with_vocab(700).model.vocab_size == 768
    with pytest.raises(InputError, match=r"model.vocab_size: 768 is smaller than the data's vocabulary \(800"):
        padded.with_vocab(800)
    layers = ["gelu"] * tiny.model.n_layers
    grown = (
        costs.costs(tiny.with_vocab(700).model, layers, 4).params_total
        - costs.costs(tiny.model, layers, 4).params_total
    )
    assert grown == (700 - 256) * tiny.model.d_model  # one tied embedding table


@pytest.mark.parametrize(
    "args, expected",
    [
        (lambda t: ["--data", str(t / "t.npy"), "--tokenizer", str(t / "tokenizer.json")], "holds token files already"),
        (lambda t: ["--tokenizer", str(t / "none.json")], "--tokenizer: cannot read"),
        (lambda t: ["--tokenizer", str(t / "tokenizer.json")], "is not a Hugging Face tokenizer file"),
        (
            lambda t: [
                str(write_space(t, MICRO.replace("[model]\n", "[model]\nvocab_size = 300\n"))),
                "--data",
                str(t / "t.npy"),
            ],
            "model.vocab_size: 300",
        ),
    ],
)
def test_bad_token_input_exits_2_with_one_line_and_writes_nothing(tmp_path, monkeypatch, args, expected):
    np.save(tmp_path / "t.npy", IDS.astype(np.uint16))
    (tmp_path / "tokenizer.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    argv = args(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    argv = argv if argv[0].endswith(".toml") else ["tiny", *argv]
    result = CliRunner().invoke(cli, ["search", *argv, "--nproc", "2"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.slow
@pytest.mark.parametrize("source", ["token file", "text with a tokenizer"])
def test_a_search_trains_on_token_data_with_two_ranks(text_and_tokenizer, tmp_path, source):
    folder = text_and_tokenizer
    if source == "token file":
        ids = np.random.default_rng(1).integers(0, 1000, 60_000)
        _shard(tmp_path / "data.bin", ids, np.uint16)
        data, vocab = ["--data", str(tmp_path / "data.bin")], ids.max() + 1
    else:
        data, vocab = ["--data", str(folder / "text.txt"), "--tokenizer", str(folder / "tokenizer.json")], 500
    out = run_cli("search", "tiny", "--nproc", "2", "--trials", "1", "--results", str(tmp_path), "--no-progress", *data)
    assert out.returncode == 0, out.stderr[-3000:]
    row = results.load_trials(tmp_path, "tiny").iloc[0]
    assert row["state"] == "COMPLETE" and row["world_size"] == 2
    assert json.loads(row["config_json"])["model"]["vocab_size"] == vocab
    tiny = space.load("tiny").with_vocab(vocab)
    expected = costs.costs(tiny.model, row["assignment"].split(","), tiny.train.micro_batch)
    assert row["params_total"] == expected.params_total  # the embedding is the data's vocabulary's
    if source != "token file":
        assert len(list((tmp_path / "tokens").glob("*.bin"))) == 1  # tokenized once, beside the results


def test_a_dry_run_with_a_tokenizer_tokenizes_nothing(text_and_tokenizer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = text_and_tokenizer
    args = ["--data", str(folder / "text.txt"), "--tokenizer", str(folder / "tokenizer.json"), "--dry-run"]
    planned = CliRunner().invoke(cli, ["search", "tiny", "--nproc", "2", *args])
    assert planned.exit_code == 0 and "plan: " in planned.output, planned.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_promote_trains_the_larger_size_with_the_data_s_vocabulary(tmp_path):
    ids = np.random.default_rng(2).integers(0, 600, 60_000)
    _shard(tmp_path / "data.bin", ids, np.uint16)
    path = write_space(tmp_path, LADDER)
    where = ["--nproc", "2", "--results", str(tmp_path / "r"), "--no-progress", "--data", str(tmp_path / "data.bin")]
    assert run_cli("search", str(path), "--trials", "4", *where).returncode == 0
    done = run_cli("promote", str(path), "--seeds", "1", "--layers", "swiglu,gelu", *where)
    assert done.returncode == 0, done.stderr[-3000:]
    large = results.load_trials(tmp_path / "r", "micro-w64")
    assert (large["state"] == "COMPLETE").all()
    assert {json.loads(c)["model"]["vocab_size"] for c in large["config_json"]} == {ids.max() + 1}


def test_the_ranks_map_token_files_without_reading_them_whole(tmp_path, monkeypatch):
    monkeypatch.setenv("MOESEARCH_CACHE", str(tmp_path / "cache"))
    _shard(tmp_path / "t.bin", IDS, np.uint16)
    mapped = corpus.load(str(tmp_path / "t.bin"), counted=False)
    assert not (tmp_path / "cache").exists(), "nothing hashed or counted"
    counted = corpus.load(str(tmp_path / "t.bin"))
    starts = np.array([0, 777, 20_000])
    assert np.array_equal(mapped.train.windows(starts, 50), counted.train.windows(starts, 50))


def test_a_text_without_newlines_is_cut_between_characters(monkeypatch):
    monkeypatch.setattr(tokenize, "_CHUNK", 7)
    text = np.frombuffer("é€𝄞".encode() * 20, np.uint8)  # 2-, 3- and 4-byte characters, no newline
    pieces = [piece for batch in tokenize._batches(text) for piece in batch]
    assert len(pieces) > 1 and "\ufffd" not in "".join(pieces) and "".join(pieces) == "é€𝄞" * 20


def test_a_study_made_under_a_tokenizer_names_it_when_other_data_would_join(tmp_path):
    import optuna

    from moesearch.supervisor import studies

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    tiny = space.load("tiny")
    studies.open_study(storage, "s", tiny, 0, "/d/text.txt", "a" * 64, tokenizer="/d/tokenizer.json")
    with pytest.raises(InputError) as refused:
        studies.open_study(storage, "s", tiny, 0, "/d/text.txt", "b" * 64)  # the same text as bytes
    assert "made with --data /d/text.txt --tokenizer /d/tokenizer.json" in str(refused.value)
    assert optuna.load_study(study_name="s", storage=storage).user_attrs["run"]["tokenizer"] == "/d/tokenizer.json"
