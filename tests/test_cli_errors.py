"""Bad input: one line naming the file, key or flag and the bad value; exit 2; nothing written."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import MICRO, ROOT, write_space

from moesearch.cli import cli


def case_space(tmp_path, old, new):
    return [str(write_space(tmp_path, MICRO.replace(old, new, 1))), "--nproc", "2"]


CASES = {
    "unknown key": (lambda t: case_space(t, "[model]\n", "[model]\nexperts = 4\n"), "model.experts"),
    "unknown activation": (lambda t: case_space(t, '"swiglu"]', '"swish"]'), "swish"),
    "per-layer list length": (
        lambda t: case_space(t, 'activations = ["gelu", "swiglu"]', 'per_layer = [["gelu"], ["gelu"], ["relu"]]'),
        "per_layer has 3",
    ),
    "experts not divisible by ep": (
        lambda t: case_space(t, "[search]\n", "[search]\nep_size = 2\n")[:-1] + ["3"],
        "--nproc 3",
    ),
    "missing space": (lambda t: [str(t / "nope.toml")], "nope.toml"),
    "missing data path": (lambda t: ["tiny", "--nproc", "2", "--data", str(t / "no-such-corpus")], "--data"),
    "too little data": (
        lambda t: ["tiny", "--nproc", "2", "--data", str(write_space(t, "x = 1\n", "small.txt"))],
        "--data",
    ),
    "unreadable storage": (lambda t: ["tiny", "--nproc", "2", "--storage", "nosuchdb://x/y"], "--storage"),
    "results not writable": (
        lambda t: ["tiny", "--nproc", "2", "--results", str(write_space(t, "", "afile") / "r")],
        "--results",
    ),
    "bad flag value": (lambda t: ["tiny", "--nproc", "zero"], "--nproc"),
    "negative seed": (lambda t: ["tiny", "--nproc", "2", "--seed", "-1"], "--seed"),
    "study name with a slash": (lambda t: ["tiny", "--nproc", "2", "--study", "../elsewhere"], "--study"),
    "warm-up as long as training": (
        lambda t: case_space(t, "warmup_steps = 1", "warmup_steps = 6"),
        "train.warmup_steps 6",
    ),
    "hostfile without the deepspeed launcher": (
        lambda t: ["tiny", "--nproc", "2", "--hostfile", str(write_space(t, "a slots=2\n", "hosts"))],
        "--hostfile",
    ),
    "bad hostfile line": (
        lambda t: ["tiny", "--launcher", "deepspeed", "--hostfile", str(write_space(t, "a slots=2\nb two\n", "hosts"))],
        "bad line 'b two'",
    ),
    "a hostfile host without slots": (
        lambda t: ["tiny", "--launcher", "deepspeed", "--hostfile", str(write_space(t, "a slots=0\n", "hosts"))],
        "N >= 1",
    ),
    "a hostfile naming a host twice": (
        lambda t: [
            "tiny",
            "--launcher",
            "deepspeed",
            "--hostfile",
            str(write_space(t, "a slots=2\na slots=2\n", "hosts")),
        ],
        "'a' is named twice",
    ),
    "deepspeed across nodes without a hostfile": (
        lambda t: ["tiny", "--nproc", "2", "--nnodes", "2", "--launcher", "deepspeed"],
        "--nnodes 2",
    ),
    "ranks in all not dividing the eval sequences": (lambda t: ["tiny", "--nproc", "3", "--nnodes", "2"], "--nproc 3"),
    "unknown parametrization": (
        lambda t: case_space(t, "[model]\n", '[model]\nparametrization = "mu"\n'),
        "model.parametrization",
    ),
    "a muP base shape under the standard parametrization": (
        lambda t: case_space(t, "[model]\n", "[model]\nbase_d_model = 16\n"),
        "base_d_model 16 is muP's base shape, but parametrization is 'standard'",
    ),
    "a muP base head count not dividing its width": (
        lambda t: case_space(t, "[model]\n", '[model]\nparametrization = "mup"\nbase_n_heads = 5\n'),
        "base_n_heads 5 must divide base_d_model 32",
    ),
}


@pytest.mark.parametrize("command", ["search", "train"])
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, monkeypatch, command, case):
    make_args, expected = CASES[case]
    args = make_args(tmp_path)
    monkeypatch.chdir(tmp_path)  # the default results folder would land here
    before = sorted(tmp_path.rglob("*"))
    extra = ["--layers", "gelu,gelu"] if command == "train" else []
    result = CliRunner().invoke(cli, [command, *args, *extra])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("moesearch: error:"), result.output
    assert expected in lines[0]
    assert sorted(tmp_path.rglob("*")) == before


def test_train_rejects_an_assignment_outside_the_space(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["train", "tiny", "--nproc", "2", "--layers", "gelu,silu"])
    assert result.exit_code == 2 and "--layers: layer 1 activation 'silu'" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_study_cannot_switch_spaces(tmp_path):
    import optuna

    from moesearch.core import space
    from moesearch.supervisor import studies

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    studies.open_study(storage, "s", space.load("tiny"), seed=0)
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 3  # the enqueued baselines
    studies.open_study(storage, "s", space.load("tiny"), seed=0)  # same space: resumes
    from moesearch.core.errors import InputError

    with pytest.raises(InputError, match="--study 's': this study was created for a different space"):
        studies.open_study(storage, "s", space.load("default"), seed=0)
    edited = space.load("tiny").model_copy(
        update={"train": space.load("tiny").train.model_copy(update={"steps": 20, "lr": 1e-3})}
    )
    with pytest.raises(InputError) as refused:
        studies.open_study(storage, "s", edited, seed=0)
    assert str(refused.value) == (
        "--study 's': this study was created for a different space ('tiny'): train.lr 0.003 -> 0.001; "
        "train.steps 12 -> 20; give a new --study name, or the space as it was"
    ), "each differing setting, old -> new"
    tiny = space.load("tiny")
    reread = tiny.model_copy(update={"search": tiny.search.model_copy(update={"effect_size": {"val_loss": 0.01}})})
    studies.open_study(storage, "s", reread, seed=0)  # how the answer is read is not what makes trials comparable


def test_a_study_evaluated_with_routing_noise_takes_no_new_training(tmp_path):
    """bench/data/ladder was trained before evaluations routed exactly: reading it is fine, training into it
    is refused; a study made now resumes."""
    import shutil

    import optuna

    from moesearch.core.errors import InputError
    from moesearch.supervisor import identity, studies

    shutil.copy(ROOT / "bench" / "data" / "ladder" / "moesearch.db", tmp_path)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'moesearch.db'}")
    old = optuna.load_study(study_name="ladder", storage=storage)
    refused = r"^--study 'ladder': its 12 trainings were evaluated with DeepSpeed's routing noise"
    with pytest.raises(InputError, match=refused):
        studies.open_study(storage, "ladder", identity.stored_space(old), seed=0)
    from moesearch.core import space

    studies.open_study(storage, "new", space.load("tiny"), seed=0)
    studies.open_study(storage, "new", space.load("tiny"), seed=0)  # made exact: resumes


def test_dry_run_refuses_an_edited_space_as_the_real_run_does_naming_each_setting(tmp_path, monkeypatch):
    """A new user passed --dry-run, then the real run refused the edited space without naming the setting:
    both refuse now, with the same line, before anything is written."""
    import optuna

    from moesearch.core import space as space_mod
    from moesearch.supervisor import studies

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    path = write_space(tmp_path, MICRO)
    studies.open_study(optuna.storages.RDBStorage(url), "micro", space_mod.load(path), seed=0)
    write_space(tmp_path, MICRO.replace("steps = 6", "steps = 8"))
    before = sorted(tmp_path.rglob("*"))
    said = []
    for dry in (["--dry-run"], []):
        out = CliRunner().invoke(cli, ["train", str(path), "--storage", url, "--layers", "gelu,gelu", *dry])
        assert out.exit_code == 2, out.output
        said.append(out.output)
    assert said[0] == said[1] and "train.steps 6 -> 8" in said[0], said
    assert sorted(tmp_path.rglob("*")) == before


def test_a_study_made_by_train_alone_has_a_status_but_no_target_to_join(tmp_path):
    import optuna

    from moesearch.core import space
    from moesearch.supervisor import studies

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    studies.open_study(optuna.storages.RDBStorage(url), "s", space.load("tiny"), seed=0)  # as `train` makes it
    shown = CliRunner().invoke(cli, ["status", "--storage", url, "--study", "s"])
    assert shown.exit_code == 0 and "trials: 0 trained" in shown.output, shown.output
    joined = CliRunner().invoke(cli, ["worker", "--storage", url, "--study", "s", "--nproc", "2"])
    assert joined.exit_code == 2 and "no trial target to join (made by `moesearch train` alone)" in joined.output


def test_a_group_of_another_shape_cannot_train_into_a_study(tmp_path):
    """A study made by a 2-rank group: a 1-rank worker (half the tokens per step, another expert layout)
    is refused in one line naming both shapes, before anything trains or is written; a 2-rank one joins."""
    import optuna

    from moesearch.core import corpus, space
    from moesearch.core.trial import StudyAttr
    from moesearch.supervisor import studies

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    made = studies.open_study(
        optuna.storages.RDBStorage(url),
        "s",
        space.load("tiny"),
        seed=0,
        data_sha256=corpus.load(None).sha256,
        results=str(tmp_path / "results"),
        shape={"ranks": 2, "ep_size": 2, "tokens_per_step": 256},
    )
    made.set_user_attr(StudyAttr.TRIALS, 4)  # as `search` leaves it
    made.ask()  # the 2-rank group trains its first trial
    refusal = (
        "moesearch: error: --nproc/--nnodes: this group would train with ranks 1, ep_size 1, tokens_per_step 128, "
        "but study 's' trains with ranks 2, ep_size 2, tokens_per_step 256, and trainings of other shapes differ "
        "in batch, not activation; allowed: 2 ranks in all (--nproc x --nnodes), or a new --study"
    )
    joined = CliRunner().invoke(cli, ["worker", "--storage", url, "--study", "s", "--nproc", "1"])
    assert joined.exit_code == 2, joined.output
    assert joined.output.strip() == refusal
    planned = CliRunner().invoke(
        cli,
        ["train", "tiny", "--layers", "gelu,gelu", "--storage", url, "--study", "s"]
        + ["--nproc", "1", "--results", str(tmp_path / "results"), "--dry-run"],
    )
    assert (planned.exit_code, planned.output.strip()) == (2, refusal), "--dry-run refuses as the real run does"
    assert made.user_attrs[StudyAttr.SHAPE] == {"ranks": 2, "ep_size": 2, "tokens_per_step": 256}, "unchanged"
    again = {"ranks": 2, "ep_size": 2, "tokens_per_step": 256}
    studies.open_study(optuna.storages.RDBStorage(url), "s", space.load("tiny"), seed=0, shape=again)  # joins


def test_a_shape_no_group_trained_with_gives_way_to_the_first_that_trains(tmp_path):
    """A first group that recorded its shape and failed to start trained nothing: another shape may train."""
    import optuna

    from moesearch.core import space
    from moesearch.core.errors import InputError
    from moesearch.core.trial import StudyAttr
    from moesearch.supervisor import studies

    storage, tiny = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'db.sqlite'}"), space.load("tiny")
    first, second = (
        {"ranks": 4, "ep_size": 2, "tokens_per_step": 512},
        {"ranks": 2, "ep_size": 2, "tokens_per_step": 256},
    )
    studies.open_study(storage, "s", tiny, seed=0, shape=first)
    made = studies.open_study(storage, "s", tiny, seed=0, shape=second)
    assert made.user_attrs[StudyAttr.SHAPE] == second
    made.ask()
    with pytest.raises(InputError, match="this group would train with ranks 4"):
        studies.open_study(storage, "s", tiny, seed=0, shape=first)


def test_a_study_whose_stored_space_this_version_cannot_read_is_one_line(tmp_path):
    """A space stored by another moesearch version (a key renamed or removed since): no pydantic traceback."""
    import optuna

    from moesearch.core import space
    from moesearch.core.errors import InputError
    from moesearch.core.trial import StudyAttr
    from moesearch.supervisor import studies

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    made = studies.open_study(storage, "s", space.load("tiny"), seed=0)
    stored = made.user_attrs[StudyAttr.SPACE]
    stored["model"]["experts_old_key"] = 4
    made.set_user_attr(StudyAttr.SPACE, stored)
    with pytest.raises(InputError, match=r"^--study 's': the space stored with it does not validate .*experts_old_key"):
        studies.open_study(storage, "s", space.load("tiny"), seed=0)


def test_storage_passwords_are_masked_in_errors():
    from moesearch.core.errors import InputError
    from moesearch.supervisor.storage import open_storage

    with pytest.raises(InputError) as err:
        open_storage("postgresql://user:hunter2@127.0.0.1:1/db?connect_timeout=1")
    assert "hunter2" not in str(err.value) and "--storage" in str(err.value)


@pytest.mark.parametrize("compacted", [False, True])
def test_records_of_another_storage_are_not_overwritten(tmp_path, compacted):
    """Single trial files or, after `compact`, part files: a fresh storage would write trial 0 again."""
    from test_results import record

    from moesearch.core import results

    rec = record(0, "gelu,gelu", 2.0, 1.0)
    rec.trial["study"] = "tiny"
    results.write_trial(tmp_path, rec)
    if compacted:
        results.compact(tmp_path, "tiny")
        assert not any(results.trials_dir(tmp_path, "tiny").glob("trial-*.parquet"))
    before = sorted(tmp_path.rglob("*"))
    out = CliRunner().invoke(
        cli,
        [
            "search",
            "tiny",
            "--nproc",
            "2",
            "--results",
            str(tmp_path),
            "--storage",
            f"sqlite:///{tmp_path / 'other.db'}",
        ],
    )
    assert out.exit_code == 2 and "--results" in out.output and "not in --storage" in out.output
    assert sorted(tmp_path.rglob("*")) == before, "not even the new storage file"


def test_an_abandoned_baseline_is_failed_outside_the_budget_and_queued_again(tmp_path):
    import optuna

    from moesearch.core import space
    from moesearch.supervisor import accounting, optuna_compat, studies
    from moesearch.supervisor.telling import abandon as _abandon

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    study = studies.open_study(storage, "s", space.load("tiny"), seed=0)
    trial = study.ask()
    trial.suggest_categorical("layer_00", ["gelu", "swiglu", "relu2"])
    _abandon(study, trial, KeyboardInterrupt())
    failed = study.trials[trial.number]
    assert failed.state == optuna.trial.TrialState.FAIL and failed.user_attrs["budget"] is False
    assert failed.user_attrs["failure_reason"] == "interrupted by the user"
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [optuna_compat.queued_params(t) for t in waiting].count({"layer_00": "gelu", "layer_01": "gelu"}) == 1
    assert accounting.trained(study) == []


@pytest.mark.parametrize("args", [["--help"], ["search", "--help"], ["spaces"], ["spaces", "show", "tiny"]])
def test_light_commands_import_neither_torch_nor_deepspeed(args):
    import subprocess
    import sys

    code = (
        "import sys; from click.testing import CliRunner; from moesearch.cli import cli; "
        f"r = CliRunner().invoke(cli, {args!r}); assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in ('torch', 'deepspeed') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_cli_imports_no_side_until_a_command_needs_it():
    """docs/architecture.md: the CLI imports everything lazily (its startup is every command's)."""
    import subprocess
    import sys

    code = (
        "import sys; import moesearch.cli; print(sorted(m for m in sys.modules if m.startswith("
        "('moesearch.supervisor', 'moesearch.analysis', 'moesearch.ranks'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("preempted, code", [(False, 1), (True, 0)])
def test_a_group_that_never_came_up_exits_1_or_0_when_preempted_on_one_line(monkeypatch, preempted, code):
    import click

    from moesearch.core import preempt
    from moesearch.supervisor.group import GroupStartFailure

    def fails() -> None:
        raise GroupStartFailure("worker group failed to start (exit code 1)")

    monkeypatch.setitem(cli.commands, "fails", click.Command("fails", callback=fails))
    monkeypatch.setattr(preempt, "requested", lambda: "SIGTERM" if preempted else None)
    result = CliRunner().invoke(cli, ["fails"])
    assert result.exit_code == code and result.output == "moesearch: worker group failed to start (exit code 1)\n"
    monkeypatch.setitem(cli.commands, "fails", click.Command("fails", callback=lambda: 1 / 0))
    assert isinstance(CliRunner().invoke(cli, ["fails"]).exception, ZeroDivisionError), "a bug is not a start failure"


GROUP_CASES = {
    "node rank past the nodes": (["node", "--node-rank", "2", "--nnodes", "2", "--nproc", "1"], "--node-rank 2"),
    "node with the deepspeed launcher": (
        ["node", "--node-rank", "1", "--nnodes", "2", "--nproc", "1", "--launcher", "deepspeed"],
        "--launcher",
    ),
    "worker on a storage file that does not exist": (
        ["worker", "--storage", "sqlite:///nope.db", "--study", "s", "--nproc", "2"],
        "--storage",
    ),
    "worker on a study that does not exist": (
        ["worker", "--storage", "journal:study.log", "--study", "s", "--nproc", "2"],
        "no study 's'",
    ),
    "node without the group's node count": (["node", "--node-rank", "1", "--nproc", "1"], "--nnodes 1"),
    "worker dry run on a storage that does not exist": (
        ["worker", "--storage", "journal:nope.log", "--study", "s", "--nproc", "2", "--dry-run"],
        "does not exist",
    ),
    "a journal path without its prefix": (
        ["search", "tiny", "--nproc", "2", "--storage", "study.log", "--dry-run"],
        "journal:study.log",
    ),
    "status of a storage that does not exist": (["status", "--storage", "journal:nope.log"], "--storage"),
    "a journal storage that names a folder": (
        ["search", "tiny", "--nproc", "2", "--storage", "journal:new/folder/", "--trials", "1"],
        "names a folder",
    ),
    "dry run with a storage URL that is none": (
        ["search", "tiny", "--nproc", "2", "--storage", "not a url", "--dry-run"],
        "--storage",
    ),
}


@pytest.mark.parametrize("case", GROUP_CASES, ids=list(GROUP_CASES))
def test_bad_cluster_input_exits_2_with_one_line_and_writes_nothing(tmp_path, monkeypatch, case):
    args, expected = GROUP_CASES[case]
    monkeypatch.chdir(tmp_path)
    if "study.log" in args[2]:  # an empty journal: a storage that exists, with no study in it
        (tmp_path / "study.log").touch()
    before = sorted(tmp_path.rglob("*"))
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("moesearch: error:") and expected in lines[0], result.output
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    "command",
    [
        ["search", "tiny"],
        ["train", "tiny", "--layers", "gelu,gelu"],
        ["verify", "tiny"],
        ["promote", "ladder"],
        ["node", "--node-rank", "1", "--nnodes", "2"],
        ["worker", "--storage", "postgresql://u:secret@db.invalid/x", "--study", "s"],
        ["worker", "--storage", "journal:study.log", "--study", "s"],
    ],
)
def test_a_dry_run_prints_the_plan_and_starts_and_writes_nothing(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    if "journal:study.log" in command:
        (tmp_path / "study.log").touch()  # a worker joins a storage that exists
    before = sorted(tmp_path.iterdir())
    result = CliRunner().invoke(cli, [*command, "--nproc", "2", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("plan: ") and "secret" not in result.output
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:s3cret@db.invalid:notaport/x",
        "postgresql://u:s3cret@db.invalid/x",
        "postgresql://u@db.invalid/x?password=s3cret&sslmode=require",
    ],
)
def test_a_storage_password_never_reaches_an_error_message(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["search", "tiny", "--nproc", "2", "--storage", url])
    assert result.exit_code == 2 and "--storage" in result.output, result.output
    assert "s3cret" not in result.output and "***" in result.output


@pytest.mark.parametrize("made_with, given", [(None, "README.md"), ("README.md", None)])
@pytest.mark.parametrize(
    "command", [["search", "tiny"], ["train", "tiny", "--layers", "gelu,gelu"], ["verify", "tiny"]]
)
def test_a_study_keeps_its_training_text(tmp_path, monkeypatch, command, made_with, given):
    """Resuming with other text would rank losses of two texts together: refused, naming the study's --data."""
    import optuna

    from moesearch.core import corpus, space
    from moesearch.supervisor import studies

    monkeypatch.chdir(tmp_path)
    made_with, given = (str(ROOT / p) if p else None for p in (made_with, given))
    (tmp_path / "results").mkdir()
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'results' / 'moesearch.db'}")  # the default one
    studies.open_study(storage, "tiny", space.load("tiny"), 0, made_with, corpus.load(made_with).sha256)
    before = sorted(tmp_path.rglob("*"))
    result = CliRunner().invoke(cli, [*command, "--nproc", "2", *(["--data", given] if given else [])])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("moesearch: error: --data: "), result.output
    assert f"made with --data {made_with or 'not given'}" in lines[0]
    assert sorted(tmp_path.rglob("*")) == before
    assert len(optuna.load_study(study_name="tiny", storage=storage).trials) == 3, "only the enqueued baselines"


def test_a_sqlite_url_with_too_few_slashes_gets_its_own_fix_not_a_journal_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["search", "tiny", "--nproc", "2", "--storage", "sqlite:/bad.db", "--dry-run"])
    assert result.exit_code == 2 and "allowed: sqlite:///bad.db" in result.output
    assert "journal:sqlite" not in result.output


def test_a_misspelt_activation_is_reported_before_torch_is_imported():
    import subprocess
    import sys

    code = (
        "import sys; from click.testing import CliRunner; from moesearch.cli import cli; "
        "r = CliRunner().invoke(cli, ['train', 'default', '--layers', 'gelu,swigul,gelu,gelu']); "
        "assert r.exit_code == 2 and \"'swigul' not allowed\" in r.output, r.output; "
        "print(sorted(m for m in ('torch', 'deepspeed') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("command", ["search", "worker"])
@pytest.mark.parametrize("budget", ["0", "-5", "nanh", "infh", "lots", "2.5"])
def test_a_bad_budget_exits_2_with_one_line_and_writes_nothing(tmp_path, monkeypatch, command, budget):
    monkeypatch.chdir(tmp_path)
    args = ["tiny", "--nproc", "2"] if command == "search" else ["--storage", "sqlite:///x.db", "--study", "s"]
    result = CliRunner().invoke(cli, [command, *args, "--budget", budget])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--budget" in lines[0] and repr(budget) in lines[0], result.output
    assert "allowed: a positive number of steps (20000) or of device-hours (2.5h)" in lines[0]
    assert list(tmp_path.iterdir()) == []


HEAVY = {"torch", "deepspeed", "numpy", "pandas", "pyarrow", "optuna", "pydantic", "matplotlib", "scipy", "moocore"}


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["pareto", "--help"],
        ["promote", "--help"],
        ["pareto", "--results", "no-such-folder"],
        ["plot", "--results", "no-such-folder"],
        ["report", "--results", "no-such-folder"],
        ["compact", "--results", "no-such-folder"],
        ["search", "tiny", "--trials", "0"],
        ["status", "--storage", "sqlite:///no-such.db"],
        ["worker", "--storage", "journal:no-such.log", "--study", "s"],
    ],
)
def test_help_and_a_bad_flag_answer_without_importing_a_heavy_library(tmp_path, args):
    """Startup (issue 21, item 20): what only prints help or an error imports click and moesearch's light
    modules; numpy, pandas, pyarrow, optuna, pydantic and torch wait for a command that uses them."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "moesearch", *args], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == (0 if "--help" in args else 2), out.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines() if "|" in line}
    assert not imported & HEAVY, sorted(imported & HEAVY)
