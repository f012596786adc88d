"""Atomic writes and the two output files."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from jarvis_moe import output
from jarvis_moe.findings import render
from jarvis_moe.metrics import METRICS_ADAPTER
from jarvis_moe.output import OutputError, metrics_json, write_outputs
from samples import GPT_OSS_DECODE, SYNTHETIC, error_metrics, fixture_metrics, write_and_check


def both(metrics) -> list[tuple[str, bytes]]:
    """The two standard outputs of ``metrics``, as the run writes them."""
    return [(f"category_data/{metrics.category}_metrics.json", metrics_json(metrics).encode()),
            (f"category_findings/{metrics.category}_findings.md", render(metrics).encode())]


def mixtral_standalone():
    return fixture_metrics(SYNTHETIC)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def page(tmp_path: Path, text: str) -> tuple[Path, ...]:
    return write_outputs(tmp_path, [("category_findings/x.md", text.encode("utf-8"))])


def test_a_write_creates_the_file_and_leaves_no_temp(tmp_path):
    (target,) = page(tmp_path, "héllo\n")
    assert target == tmp_path / "category_findings" / "x.md"
    assert target.read_text(encoding="utf-8") == "héllo\n"
    page(tmp_path, "second\n")
    assert target.read_text(encoding="utf-8") == "second\n"
    assert leftovers(target.parent) == []


def test_a_write_replaces_a_symlink_without_touching_its_target(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    (tmp_path / "category_findings").mkdir()
    link = tmp_path / "category_findings" / "x.md"
    link.symlink_to(victim)
    page(tmp_path, "new")
    assert not link.is_symlink()
    assert link.read_text(encoding="utf-8") == "new"
    assert victim.read_text(encoding="utf-8") == "keep me"


def test_write_outputs_writes_json_and_markdown(tmp_path):
    metrics = fixture_metrics(GPT_OSS_DECODE)
    markdown = render(metrics)
    js, md = write_outputs(tmp_path, both(metrics))
    assert js == tmp_path / "category_data" / "moe_unfused_metrics.json"
    assert md == tmp_path / "category_findings" / "moe_unfused_findings.md"
    assert METRICS_ADAPTER.validate_json(js.read_text(encoding="utf-8")) == metrics
    assert md.read_text(encoding="utf-8") == markdown
    assert js.read_text(encoding="utf-8").startswith('{\n  "category": "moe_unfused"')
    assert leftovers(js.parent) == leftovers(md.parent) == []


def test_json_keeps_non_ascii_text(tmp_path):
    metrics = error_metrics()
    js, _ = write_outputs(tmp_path, both(metrics))
    assert "µs" in js.read_text(encoding="utf-8")


def test_nan_and_infinity_become_null():
    metrics = mixtral_standalone()
    op = metrics.operations[0].model_copy(update={"cov": math.nan})
    spec = metrics.category_specific.model_copy(update={"peak_maf_tflops": math.inf})
    broken = metrics.model_copy(update={"operations": [op], "category_specific": spec})
    text = metrics_json(broken)
    assert "NaN" not in text and "Infinity" not in text
    saved = json.loads(text)
    assert saved["operations"][0]["cov"] is None
    assert saved["category_specific"]["peak_maf_tflops"] is None


def test_values_that_are_not_json_fail_loudly():
    metrics = mixtral_standalone()
    op = metrics.operations[0].model_copy(update={"call_chain": [object()]})
    broken = metrics.model_copy(update={"operations": [op]})
    with pytest.raises(OutputError, match="cannot be written as JSON"):
        metrics_json(broken)


@pytest.mark.parametrize("blocked", ["category_findings", "category_data"])
def test_an_output_dir_that_is_a_file_is_reported_and_nothing_is_written(tmp_path, blocked):
    (tmp_path / blocked).write_text("not a directory", encoding="utf-8")
    metrics = mixtral_standalone()
    with pytest.raises(OutputError, match="is not a directory"):
        write_outputs(tmp_path, both(metrics))
    other = "category_data" if blocked == "category_findings" else "category_findings"
    assert not (tmp_path / other / "moe_fused_metrics.json").exists()
    assert not (tmp_path / other / "moe_fused_findings.md").exists()


def test_a_target_that_is_a_directory_is_reported(tmp_path):
    (tmp_path / "category_findings" / "moe_fused_findings.md").mkdir(parents=True)
    metrics = mixtral_standalone()
    with pytest.raises(OutputError, match="is a directory"):
        write_outputs(tmp_path, both(metrics))
    assert not (tmp_path / "category_data" / "moe_fused_metrics.json").exists()


def test_missing_output_dir_and_odd_paths_are_reported(tmp_path):
    metrics = mixtral_standalone()
    with pytest.raises(OutputError, match="does not exist"):
        write_outputs(tmp_path / "absent", both(metrics))
    for odd in ("category_data/../x.json", "elsewhere/x.json", "category_findings/.hidden", "category_data/a/b"):
        with pytest.raises(OutputError, match="not a plain file"):
            write_outputs(tmp_path, [(odd, b"x")])
    assert not (tmp_path / "category_data").exists()


def test_a_rerun_on_fixed_input_replaces_both_files(tmp_path):
    assert write_and_check(tmp_path, error_metrics()) == []
    assert write_and_check(tmp_path, mixtral_standalone()) == []
    saved = json.loads((tmp_path / "category_data" / "moe_fused_metrics.json").read_text(encoding="utf-8"))
    assert saved["status"] == "OK"
    text = (tmp_path / "category_findings" / "moe_fused_findings.md").read_text(encoding="utf-8")
    assert "Status: ERROR" not in text and "### P1:" in text


def test_the_output_symlinks_are_replaced_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere.md"
    elsewhere.write_text("keep me", encoding="utf-8")
    (tmp_path / "category_findings").mkdir()
    (tmp_path / "category_findings" / "moe_fused_findings.md").symlink_to(elsewhere)
    assert write_and_check(tmp_path, mixtral_standalone()) == []
    assert elsewhere.read_text(encoding="utf-8") == "keep me"


def test_check_output_dir_reports_blocked_directories(tmp_path):
    output.check_output_dir(tmp_path)
    with pytest.raises(OutputError, match="does not exist"):
        output.check_output_dir(tmp_path / "absent")
    (tmp_path / "category_findings").write_text("x", encoding="utf-8")
    with pytest.raises(OutputError, match="not a directory"):
        output.check_output_dir(tmp_path)


def test_output_error_is_the_engines_error_type():
    from jarvis_moe import errors

    assert OutputError is errors.OutputError


# -- the output directory as the engine's run finds it ------------------------

from jarvis_moe.run import analyse  # noqa: E402


def test_symlinked_findings_dir_leading_outside_is_refused(fixture_copy, tmp_path):
    out = fixture_copy(SYNTHETIC)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "category_findings").symlink_to(elsewhere, target_is_directory=True)
    result = analyse(out, category="moe_fused", options={"roofline_plot": True})
    assert result.status.value == "ERROR" and result.exit_code == 2
    assert "outside the output directory" in result.message
    assert list(elsewhere.iterdir()) == []


def test_symlinked_findings_dir_inside_the_output_dir_is_used(fixture_copy):
    out = fixture_copy(SYNTHETIC)
    (out / "reports").mkdir()
    (out / "category_findings").symlink_to(out / "reports", target_is_directory=True)
    assert analyse(out, category="moe_fused").status.value == "OK"
    assert (out / "reports" / "moe_fused_findings.md").is_file()


def test_failed_write_creates_no_directory(fixture_copy):
    out = fixture_copy(SYNTHETIC)
    (out / "category_data" / "moe_fused_metrics.json").mkdir()
    result = analyse(out, category="moe_fused")
    assert result.status.value == "ERROR"
    assert not (out / "category_findings").exists()


def test_output_dir_that_is_a_file_is_named_as_such(tmp_path):
    target = tmp_path / "not_a_dir"
    target.write_text("x", encoding="utf-8")
    result = analyse(target, category="moe_fused")
    assert result.status.value == "ERROR" and "is not a directory" in result.message


def test_a_run_without_a_plot_removes_the_stale_one(fixture_copy):
    out = fixture_copy(SYNTHETIC)
    svg = out / "category_findings" / "moe_fused_roofline.svg"
    # A chart of an earlier version is an output of ours too.
    legacy = out / "category_findings" / "moe_fused_roofline.png"
    legacy.parent.mkdir(exist_ok=True)
    legacy.write_bytes(b"\x89PNG old")
    assert analyse(out, category="moe_fused", options={"roofline_plot": True}).status.value == "OK"
    assert svg.is_file() and not legacy.exists()
    (out / "metadata" / "moe_fused_metadata.json").write_text("{", encoding="utf-8")
    assert analyse(out, category="moe_fused", options={"roofline_plot": True}).status.value == "ERROR"
    assert not svg.exists()
    assert "roofline" not in (out / "category_findings" / "moe_fused_findings.md").read_text(encoding="utf-8")


# -- one writer, one set: modes, disk full, races, kills ----------------------

import errno  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from jarvis_moe.output import CategoryOutputs  # noqa: E402

NAMES = CategoryOutputs("moe_fused")


def full_set(tag: str) -> list[tuple[str, bytes]]:
    """A set like an OK run's: replay spec and script, metrics, findings last."""
    return [(NAMES.replay_spec, f'{{"run": "{tag}"}}\n'.encode()), (NAMES.replay_script, f"# {tag}\n".encode()),
            (NAMES.metrics, f'{{"run": "{tag}"}}\n'.encode()), (NAMES.findings, f"run {tag}\n".encode())]


def short_set(tag: str) -> list[tuple[str, bytes]]:
    """A set like an ERROR run's: metrics and findings; the replay files are stale."""
    return full_set(tag)[2:]


def on_disk(root: Path) -> dict[str, bytes]:
    return {rel: (root / rel).read_bytes() for rel in (NAMES.metrics, NAMES.findings, *NAMES.optional)
            if (root / rel).is_file()}


def temps(root: Path) -> list[str]:
    return [p.name for d in ("category_data", "category_findings") if (root / d).is_dir()
            for p in (root / d).iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("old_mode", [0o777, 0o666, 0o600, 0o6755])
def test_modes_are_fixed_never_taken_from_the_old_files(tmp_path, old_mode):
    write_outputs(tmp_path, full_set("A"))
    for rel in on_disk(tmp_path):
        os.chmod(tmp_path / rel, old_mode)
    write_outputs(tmp_path, full_set("B"))
    assert {rel: (tmp_path / rel).stat().st_mode & 0o7777 for rel in on_disk(tmp_path)} == dict.fromkeys(
        on_disk(tmp_path), 0o644)


@pytest.mark.parametrize("umask", [0o000, 0o077, 0o277])
def test_modes_do_not_depend_on_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        written = write_outputs(tmp_path, full_set("A"))
    finally:
        os.umask(old)
    assert [p.stat().st_mode & 0o7777 for p in written] == [0o644] * 4


def test_a_run_writes_every_output_0644_the_chart_included(fixture_copy):
    out = fixture_copy(SYNTHETIC)
    assert analyse(out, category="moe_fused", options={"roofline_plot": True}).status.value == "OK"
    written = [p for p in (out / "category_findings").iterdir()] + [out / NAMES.metrics]
    assert out / NAMES.roofline in written
    for path in written:
        path.chmod(0o777)
    result = analyse(out, category="moe_fused", options={"roofline_plot": True})
    assert out / NAMES.roofline in result.outputs
    assert {p.name: p.stat().st_mode & 0o777 for p in written} == {p.name: 0o644 for p in written}


def _fail_write_at(monkeypatch, failing_call: int) -> None:
    """os.write raises ENOSPC at its ``failing_call``-th call (0-based), as a full disk does."""
    real, calls = os.write, [0]

    def write(fd, data):
        calls[0] += 1
        if calls[0] - 1 == failing_call:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("failing_call", range(4))
def test_disk_full_part_way_leaves_the_previous_set(tmp_path, monkeypatch, failing_call):
    write_outputs(tmp_path, full_set("A"))
    before = on_disk(tmp_path)
    _fail_write_at(monkeypatch, failing_call)
    with pytest.raises(OutputError, match="No space left on device"):
        write_outputs(tmp_path, short_set("B"), stale=NAMES.optional) if failing_call < 2 else \
            write_outputs(tmp_path, full_set("B"))
    assert on_disk(tmp_path) == before
    assert temps(tmp_path) == []


@pytest.mark.parametrize("failing_call", range(4))
def test_disk_full_on_a_fresh_directory_leaves_nothing(tmp_path, monkeypatch, failing_call):
    _fail_write_at(monkeypatch, failing_call)
    with pytest.raises(OutputError, match="No space left on device"):
        write_outputs(tmp_path, full_set("A"))
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rename_leaves_no_findings_page_rather_than_a_mix(tmp_path, monkeypatch):
    write_outputs(tmp_path, full_set("A"))
    real, calls = os.replace, [0]

    def replace(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 2:
            raise OSError(errno.EIO, "Input/output error")
        return real(*args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OutputError, match="Input/output error"):
        write_outputs(tmp_path, full_set("B"))
    assert NAMES.findings not in on_disk(tmp_path)
    assert temps(tmp_path) == []


def test_an_error_set_removes_the_replay_files_of_the_ok_set_before_its_page_appears(tmp_path):
    write_outputs(tmp_path, full_set("A"))
    write_outputs(tmp_path, short_set("B"), stale=NAMES.optional)
    assert on_disk(tmp_path) == {NAMES.metrics: b'{"run": "B"}\n', NAMES.findings: b"run B\n"}


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    write_outputs(tmp_path, full_set("A"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    findings, data = tmp_path / "category_findings", tmp_path / "category_data"
    stale = [findings / f".moe_fused_findings.md.{dead_pid}.0a1b2c3d.tmp", data / ".moe_fused_metrics.json.k2j4_x9q.tmp",
             data / f".moe_fused_replay.json.{dead_pid}.ffffffff.tmp"]
    kept = [findings / f".moe_fused_findings.md.{os.getppid()}.0a1b2c3d.tmp",  # a live writer
            findings / ".moe_unfused_findings.md.k2j4_x9q.tmp",  # another category's
            data / "notes.tmp"]
    for path in stale + kept:
        path.write_bytes(b"partial")
    write_outputs(tmp_path, short_set("B"), stale=NAMES.optional)
    assert [p.exists() for p in stale] == [False] * 3
    assert [p.exists() for p in kept] == [True] * 3


def test_a_folder_swapped_for_a_link_after_the_check_is_not_followed(fixture_copy, tmp_path, monkeypatch):
    out = fixture_copy(SYNTHETIC)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    real_check = output.check_output_dir

    def check_then_swap(directory):
        real_check(directory)
        (out / "category_findings").rename(out / "moved_away")
        (out / "category_findings").symlink_to(elsewhere, target_is_directory=True)

    (out / "category_findings").mkdir()
    monkeypatch.setattr(output, "check_output_dir", check_then_swap)
    result = analyse(out, category="moe_fused", options={"roofline_plot": True})
    assert result.status.value == "ERROR" and result.exit_code == 2 and not result.internal_error
    assert "outside the output directory" in result.message
    assert list(elsewhere.iterdir()) == []


def test_a_folder_swapped_while_the_files_are_written_is_not_followed(tmp_path, monkeypatch):
    from jarvis_moe import outdir

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    write_outputs(out, full_set("A"))
    real_temp = output._write_temp

    def write_then_swap(dir_fd, name, data):
        tmp = real_temp(dir_fd, name, data)
        if name.endswith("_findings.md"):  # every temporary is written: swap before the renames
            (out / "category_findings").rename(out / "moved_away")
            (out / "category_findings").symlink_to(elsewhere, target_is_directory=True)
        return tmp

    monkeypatch.setattr(output, "_write_temp", write_then_swap)
    with pytest.raises(OutputError, match="was replaced while the outputs were written"):
        write_outputs(out, full_set("B"))
    assert list(elsewhere.iterdir()) == []
    assert (out / "moved_away" / "moe_fused_findings.md").read_bytes() == b"run B\n"
    assert outdir.DATA_DIR == "category_data"


@pytest.mark.slow
def test_a_concurrent_folder_swapper_never_gets_a_write_outside(fixture_copy, tmp_path):
    out = fixture_copy(SYNTHETIC)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "category_findings").mkdir()
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(out / "category_findings"), str(elsewhere)])
    outcomes = []
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            result = analyse(out, category="moe_fused", options={"roofline_plot": False})
            assert not result.internal_error, result.message
            outcomes.append(result.status.value)
    finally:
        swapper.terminate()
        swapper.wait(timeout=10)
    assert [p.name for p in elsewhere.iterdir()] == []
    assert len(outcomes) >= 3 and set(outcomes) <= {"OK", "ERROR"}


SWAPPER = """
import os, sys
folder, elsewhere = sys.argv[1], sys.argv[2]
moved = folder + ".real"
while True:
    try:
        os.rename(folder, moved)
        os.symlink(elsewhere, folder)
        os.unlink(folder)
        os.rename(moved, folder)
    except OSError:
        pass
"""

# Writes the sets of full_set("A") and short_set("B") in turn until killed.
KILLED_WRITER = """
import sys
from pathlib import Path
from jarvis_moe.output import CategoryOutputs, write_outputs
names, root = CategoryOutputs("moe_fused"), Path(sys.argv[1])
sets = {tag: [(names.replay_spec, ('{"run": "%s"}\\n' % tag).encode()), (names.replay_script, ("# %s\\n" % tag).encode()),
              (names.metrics, ('{"run": "%s"}\\n' % tag).encode()), (names.findings, ("run %s\\n" % tag).encode())]
        for tag in "AB"}
print("ready", flush=True)
while True:
    write_outputs(root, sets["A"])
    write_outputs(root, sets["B"][2:], stale=names.optional)
"""


def assert_one_set_or_none(root: Path) -> str | None:
    """The findings page and the files it goes with come from one run, or there is no page."""
    files = on_disk(root)
    page = files.get(NAMES.findings)
    if page is None:
        return None
    tag = page.decode().split()[-1]
    assert files[NAMES.metrics] == f'{{"run": "{tag}"}}\n'.encode()
    if tag == "A":
        assert files[NAMES.replay_spec] == b'{"run": "A"}\n' and files[NAMES.replay_script] == b"# A\n"
    else:
        assert NAMES.replay_spec not in files and NAMES.replay_script not in files
    return tag


@pytest.mark.slow
def test_kill_9_during_the_writes_never_leaves_a_mixed_set(tmp_path):
    rng = random.Random(18)
    seen = []
    for _ in range(12):
        writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                                  text=True)
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.15))
        writer.kill()
        writer.wait(timeout=10)
        seen.append(assert_one_set_or_none(tmp_path))
    # A rerun completes a set and clears the temporaries the killed writers left.
    write_outputs(tmp_path, short_set("B"), stale=NAMES.optional)
    assert assert_one_set_or_none(tmp_path) == "B" and temps(tmp_path) == []
    assert {"A", "B"} & set(seen)


def test_the_metrics_read_back_for_the_page_check_are_those_json_reads():
    # The run checks its page against the metrics JSON read by pydantic's
    # parser; it must read every value, float bits included, as json does.
    from pydantic_core import from_json

    texts = [p.read_text(encoding="utf-8") for p in sorted(Path(__file__).parent.glob("golden/*/category_data/*metrics.json"))]
    assert len(texts) >= 10
    for text in texts:
        ours, theirs = from_json(text), json.loads(text)
        assert ours == theirs
        assert json.dumps(ours, allow_nan=False) == json.dumps(theirs, allow_nan=False)  # repr of every float
