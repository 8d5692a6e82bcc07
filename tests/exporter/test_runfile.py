"""The .wandb reader: LevelDB-log framing edge cases on synthetic files, and a real offline run from wandb."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
from wandb.proto import wandb_internal_pb2 as pb

from otel_wandb.runfile import BLOCK, find_runs, is_complete, iter_payloads, read_run, wait_complete


def write_log(path, payloads):
    path.write_bytes(frame(payloads))


def frame(payloads):
    """A minimal writer of the same framing (crc32 | len | type), splitting records across 32 KiB blocks."""
    out = bytearray(b":W&B" + b"\xe1\xbe" + b"\x00")
    for payload in payloads:
        first = True
        rest = payload
        while True:
            left = BLOCK - len(out) % BLOCK
            if left < 7:
                out += b"\x00" * left
                left = BLOCK
            chunk, rest = rest[: left - 7], rest[left - 7 :]
            kind = (1 if not rest else 2) if first else (4 if not rest else 3)
            out += struct.pack("<IHB", zlib.crc32(chunk), len(chunk), kind) + chunk
            first = False
            if not rest:
                break
    return bytes(out)


def history(step, **items):
    rec = pb.Record()
    for k, v in items.items():
        it = rec.history.item.add()
        it.nested_key.append(k)
        it.value_json = json.dumps(v)
    it = rec.history.item.add()
    it.key = "_step"
    it.value_json = str(step)
    return rec.SerializeToString()


def exit_record():
    rec = pb.Record()
    rec.exit.exit_code = 0
    return rec.SerializeToString()


def test_framing_across_blocks_and_padding(tmp_path):
    run_dir = tmp_path / "offline-run-1"
    run_dir.mkdir()

    # choose the big record's size so that fewer than 7 bytes are left in its last block: padding follows
    def left(n):
        return BLOCK - len(frame([history(0, a=1), history(1, big="y" * n)])) % BLOCK

    size = 100_000 + (left(100_000) - 3) % BLOCK
    size = next(n for n in range(size - 20, size + 20) if left(n) < 7)
    payloads = [history(0, a=1), history(1, big="y" * size), history(2, a=3)]
    write_log(run_dir / "run-x.wandb", [*payloads, exit_record()])
    assert len(list(iter_payloads(run_dir / "run-x.wandb"))) == 4
    data = read_run(run_dir)
    assert [h["_step"] for h in data.history] == [0, 1, 2]
    assert len(data.history[1]["big"]) == size
    assert data.series("a") == [1, 3]
    assert is_complete(run_dir) and wait_complete(run_dir, 0.1)


def test_incomplete_run_and_bad_header(tmp_path):
    run_dir = tmp_path / "run-2"
    run_dir.mkdir()
    write_log(run_dir / "run-2.wandb", [history(0, a=1)])
    assert not is_complete(run_dir) and not wait_complete(run_dir, 0.1)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run-bad.wandb").write_bytes(b"nope" * 10)
    with pytest.raises(ValueError, match="not a .wandb file"):
        read_run(tmp_path / "bad")
    with pytest.raises(FileNotFoundError):
        read_run(tmp_path)


def test_find_runs_in_wandb_dir_or_its_wandb_child(tmp_path):
    for name in ("offline-run-a", "offline-run-b"):
        d = tmp_path / "wandb" / name
        d.mkdir(parents=True)
        write_log(d / f"run-{name[-1]}.wandb", [exit_record()])
    assert [p.name for p in find_runs(tmp_path)] == ["offline-run-a", "offline-run-b"]
    assert find_runs(tmp_path / "wandb") == find_runs(tmp_path)
    assert find_runs(tmp_path / "missing") == []


def test_real_offline_run_tables_and_summary(tmp_path):
    import wandb

    run = wandb.init(
        project="t",
        mode="offline",
        dir=str(tmp_path),
        reinit="create_new",
        settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
    )
    run.define_metric("x", summary="max")
    run.log({"x": 3, "t": wandb.Table(columns=["a", "b"], data=[[1, "u"], [2, "v"]])})
    run.log({"x": 1, "t": wandb.Table(columns=["a", "b"], data=[[3, "w"]])})
    run.finish()
    (run_dir,) = find_runs(tmp_path)
    assert wait_complete(run_dir, 10)
    data = read_run(run_dir)
    assert data.series("x") == [3, 1] and data.summary["x"] == {"max": 3}
    assert data.tables["t"] == [{"a": 1, "b": "u"}, {"a": 2, "b": "v"}, {"a": 3, "b": "w"}]
