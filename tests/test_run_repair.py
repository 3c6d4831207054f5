"""Issue 32, findings 1-4: `verify-run` names every damage to a finished campaign's records and says
what repairs it, and `run --resume` makes again what it can (a lost manifest's parts recorded
again and its missing chunks collected, a damaged checkpoint trained again, damaged held-out
outcomes evaluated again), each identical to the untouched run's."""

import json
import resource
import shutil
import subprocess

import pytest
from cli_helper import CLI, ENV, SMALL, cli, finished_tiny_run


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny campaign of one improvement round (copy it before changing it)."""
    out = tmp_path_factory.mktemp("repair") / "run"
    return finished_tiny_run(out)


def _copy(finished, tmp_path):
    return shutil.copytree(finished, tmp_path / "copy")


def _parts(run):
    return json.loads((run / "episodes" / "manifest.json").read_text())["parts"]


def _by_chunk(run):
    return {(p["label"]["round"], p["label"]["chunk"]): p["sha256"] for p in _parts(run)}


def _verify(run):
    proc = cli("verify-run", str(run))
    return proc.returncode, proc.stdout.strip().splitlines()


def _resumed(run):
    proc = cli("run", "--resume", "--out", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _edit_lines(path, edit):
    path.write_text("".join(line + "\n" for line in edit(path.read_text().splitlines())))


def test_a_store_without_its_manifest_is_named_refused_and_rebuilt(finished, tmp_path):
    """Finding 1: with manifest.json and a part deleted, verify-run said `sound`, export wrote a
    partial dataset and resume collected nothing."""
    run = _copy(finished, tmp_path)
    (lost,) = [p for p in _parts(run) if p["label"] == {"round": 1, "chunk": 0}]
    (run / "episodes" / lost["file"]).unlink()
    (run / "episodes" / "manifest.json").unlink()

    code, lines = _verify(run)
    assert code == 1
    assert "problem: episodes/manifest.json: missing (this campaign's store always has one: " in (
        "\n".join(lines)
    )
    assert (
        "problem: episodes/: round 1 has 8 episodes in the part files on disk; metrics.jsonl "
        "says 16 were collected" in lines
    )
    proc = cli("export", str(run), "--out", str(tmp_path / "dataset"))
    assert proc.returncode == 2 and "store manifest" in proc.stderr
    assert "is missing, but the store holds 3 part files" in proc.stderr
    assert not (tmp_path / "dataset").exists()

    out = _resumed(run)
    assert "store: manifest.json was lost; recorded again the 3 part(s) on disk" in out
    assert "store: round 1 chunk 0 (8 episodes) is not in the store; collected it again" in out
    assert _by_chunk(run) == _by_chunk(finished)
    assert (run / "metrics.jsonl").read_text() == (finished / "metrics.jsonl").read_text()
    assert _verify_lines(run)[-1] == f"{run}: sound"


def _verify_lines(run):
    return cli("verify-run", str(run)).stdout.strip().splitlines()


def test_a_damaged_checkpoint_is_named_refused_by_eval_and_trained_again(finished, tmp_path):
    """Finding 2: a flipped byte in a checkpoint's weights passed verify-run, resume skipped it
    and `eval` ran on it."""
    run = _copy(finished, tmp_path)
    weights = run / "checkpoints" / "round_1" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 1
    weights.write_bytes(bytes(data))
    corrupt = (
        "model.safetensors is corrupt (its SHA-256 differs from the one recorded when it was "
        "written)"
    )

    code, lines = _verify(run)
    assert code == 1 and f"problem: checkpoints/round_1: {corrupt} (round 1 is complete)" in lines
    proc = cli("eval", str(weights.parent), "--tasks", "reach", "--episodes", "1")
    assert proc.returncode == 2 and f"{corrupt}; not evaluated" in proc.stderr, proc.stderr

    out = _resumed(run)
    assert (
        f"checkpoints/round_1: {corrupt}; trained round 1 again from its stored episodes: "
        "identical to the checkpoint as written" in out
    )
    assert weights.read_bytes() == (finished / "checkpoints/round_1/model.safetensors").read_bytes()
    assert (run / "checkpoints" / "damaged" / "round_1" / "model.safetensors").read_bytes() == (
        bytes(data)
    )
    assert _verify_lines(run)[-1] == f"{run}: sound"


def _flip_first_success(lines):
    first = json.loads(lines[0])
    return [json.dumps({**first, "is_success": not first["is_success"]}), *lines[1:]]


def _earlier_version(run):
    """What a run of the version before checksum records looks like."""
    (run / "records.json").unlink()
    for record in [*run.glob("checkpoints/*.checksums.json"), *run.glob("evals/*.checksums.json")]:
        record.unlink()


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda r: _edit_lines(r, lambda ls: [*ls, "garbage"]), "line 13 is not a JSON object"),
        (lambda r: _edit_lines(r, lambda ls: ls[:6]), "holds 6 outcomes (6 of the 12 held-out"),
        (lambda r: _edit_lines(r, _flip_first_success), "gives ReachBall-v0 a success rate of "),
    ],
    ids=["garbage line", "truncated", "flipped is_success"],
)
@pytest.mark.parametrize("version", ["this", "earlier"])
def test_damaged_outcomes_are_named(finished, tmp_path, damage, named, version):
    """Finding 3: a garbage line, a truncated file or a flipped is_success in evals/round_1.jsonl
    passed verify-run; they are found by content alone in a run without checksum records."""
    run = _copy(finished, tmp_path)
    if version == "earlier":
        _earlier_version(run)
        assert _verify_lines(run)[-1] == f"{run}: sound"
    damage(run / "evals" / "round_1.jsonl")
    code, lines = _verify(run)
    assert code == 1
    assert any(line.startswith(f"problem: evals/round_1.jsonl: {named}") for line in lines), lines


def test_resume_evaluates_again_a_round_whose_outcomes_are_damaged(finished, tmp_path):
    """Finding 3: resume said `round 1: already complete` and left damaged outcomes as they were."""
    run = _copy(finished, tmp_path)
    _edit_lines(run / "evals" / "round_1.jsonl", _flip_first_success)
    (run / "evals" / "round_0.jsonl").unlink()
    out = _resumed(run)
    assert "evals/round_0.jsonl: missing; evaluated round 0 again: 12 outcomes, the success " in out
    assert "evals/round_1.jsonl: gives ReachBall-v0 a success rate of " in out
    for k in (0, 1):
        for name in (f"round_{k}.jsonl", f"round_{k}.checksums.json"):
            assert (run / "evals" / name).read_text() == (finished / "evals" / name).read_text()
    assert (run / "metrics.jsonl").read_text() == (finished / "metrics.jsonl").read_text()
    assert _verify_lines(run)[-1] == f"{run}: sound"


def test_verify_run_says_a_killed_run_is_unfinished(finished, tmp_path):
    """Finding 4: a run killed before its last round's record was called `sound`."""
    run = _copy(finished, tmp_path)
    _edit_lines(run / "metrics.jsonl", lambda lines: lines[:1])
    code, lines = _verify(run)
    assert code == 1
    assert lines[-1] == (
        f"{run}: unfinished: round 1 not run; `autodidact run --resume --out {run}` finishes it"
    )


def test_verify_run_gives_the_advice_resume_follows(finished, tmp_path):
    """Finding 4: verify-run advised `--resume` for a bad metrics.jsonl line, which resume refuses
    (now: remove the line, which resume then rebuilds), and for an unreadable manifest (which
    resume now records again)."""
    run = _copy(finished, tmp_path)
    _edit_lines(run / "metrics.jsonl", lambda lines: [lines[0], "{not json", *lines[1:]])
    code, lines = _verify(run)
    advice = (
        "remove line 2 of metrics.jsonl (`autodidact run --resume` then evaluates that round "
        "again and writes its record anew) or restore the file from a copy"
    )
    assert code == 1 and lines[-1] == (
        f"1 problem(s) in {run}; `autodidact run --resume --out {run}` refuses the run as it is: "
        f"first {advice}"
    )  # resume's own error gives the same advice: test_run_records.py

    run = shutil.copytree(finished, tmp_path / "manifest")
    manifest = _parts(run)
    (run / "episodes" / "manifest.json").write_text("{garbage")
    code, lines = _verify(run)
    assert code == 1 and "problem: episodes/: store manifest " in "\n".join(lines)
    assert lines[-1] == f"1 problem(s) in {run}; `autodidact run --resume --out {run}` repairs them"
    out = _resumed(run)
    assert "is unreadable: Expecting property name enclosed in double quotes" in out
    assert _parts(run) == manifest
    assert (run / "episodes" / "damaged" / "manifest.json").read_text() == "{garbage"
    assert _verify_lines(run)[-1] == f"{run}: sound"


def test_a_run_of_an_earlier_version_lacks_checksum_records_and_is_sound(finished, tmp_path):
    """The rule for runs an earlier version wrote (`train.rundir.integrity`): no records.json
    and no checksum record; its store may lack the manifest (written before it existed)."""
    run = _copy(finished, tmp_path)
    _earlier_version(run)
    (run / "episodes" / "manifest.json").unlink()
    code, lines = _verify(run)
    assert code == 0 and lines[-1] == f"{run}: sound"
    assert (
        "ok: episodes/: no manifest.json (written before parts had checksums): unchecked" in lines
    )
    (run / "checkpoints" / "round_1.checksums.json").write_text("{}")  # one record: this version's
    code, lines = _verify(run)
    assert code == 1 and "problem: records.json: missing (the run's checksum records show " in (
        "\n".join(lines)
    )


def _records(run):
    """metrics.jsonl without the timing fields (rates and seconds differ between runs)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.endswith(("per_s", "seconds"))} for r in rows]


FILE_SIZE_LIMIT = 1 << 20
"""1 MiB: the config, store parts and records fit; the first checkpoint's weights do not."""


@pytest.mark.slow
def test_a_write_past_the_file_size_limit_leaves_a_run_that_resumes_the_same(finished, tmp_path):
    """Finding 9: a write that fails part way (RLIMIT_FSIZE: the write fails with EFBIG, as it
    would with ENOSPC on a full disk; Python ignores SIGXFSZ) leaves a run that a resume without
    the limit finishes with the untouched run's records and episodes."""
    run = tmp_path / "limited"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))

    args = ["run", "--preset", "tiny", "--out", str(run), *SMALL]
    proc = subprocess.run(
        CLI + args, env=ENV, capture_output=True, text=True, timeout=900, preexec_fn=limit
    )
    assert proc.returncode != 0, "the campaign finished under the file-size limit"
    assert "File too large" in proc.stderr, proc.stderr[-2000:]
    assert not (run / "checkpoints" / "round_0").exists()  # the weights never landed
    _resumed(run)
    assert _records(run) == _records(finished)
    assert _by_chunk(run) == _by_chunk(finished)
    assert _verify_lines(run)[-1] == f"{run}: sound"
