"""What a run says about itself: the thread choice, one line per epoch off a terminal, the run's
summary, and `resume` refusing a folder with nothing to continue."""

import logging
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from siamese import AutoencoderConfig, SiameseError, TrainConfig, load_items, pretrain, threads
from siamese.threads import ThreadChoice, apply_threads, choose_threads
from siamese.training import loop
from siamese.training.finetune import FinetuneConfig, finetune
from siamese.training.stages import summarize_history

CONFIG = AutoencoderConfig(variant="plain", latent_dim=2, widths=(8,))
TRAIN = TrainConfig(epochs=3, batch_size=16, seed=3)


@pytest.fixture(scope="module")
def items():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    x = (rng.normal(0, 1, (2, 6))[y] + rng.normal(0, 0.5, (40, 6))).astype(np.float32)
    return load_items(x, labels=[str(v) for v in y])


# ---------------------------------------------------------------- threads


@pytest.fixture
def machine(monkeypatch):
    """A fake machine: set .cores, .load, .running (tasks runnable now, this one included), .quota."""

    class Machine:
        cores, load, running, quota = 4, 0.0, 1, None

    m = Machine()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(threads, "usable_cpus", lambda: list(range(2 * m.cores)))  # hyper-threaded
    monkeypatch.setattr(threads, "physical_cores", lambda cpus: m.cores)
    monkeypatch.setattr(threads, "cpu_quota", lambda: m.quota)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (m.load, m.load, m.load))
    monkeypatch.setattr(threads, "running_now", lambda: m.running)
    return m


@pytest.mark.parametrize("cores, load, running, count, reason", [
    (2, 0.3, 2, 2, "2 threads (2 physical cores, load 0.3)"),  # a light job: round(0.3) = 0 busy cores
    (4, 3.8, 5, 1, "1 thread (4 physical cores but load 3.8: machine busy)"),
    (4, 1.6, 3, 2, "2 threads (4 physical cores but load 1.6: machine busy)"),
    (2, 1.7, 1, 2, "2 threads (2 physical cores, load 0.0)"),  # the tail of a run that has ended
    (8, 9.0, 2, 7, "7 threads (8 physical cores but load 1.0: machine busy)"),  # a burst that has ended
    (1, 0.0, 1, 1, "1 thread (1 physical core, load 0.0)"),
])
def test_default_threads_are_the_idle_physical_cores(machine, cores, load, running, count, reason):
    machine.cores, machine.load, machine.running = cores, load, running
    assert choose_threads() == ThreadChoice(count, reason)


def test_unknown_topology_counts_logical_cpus(machine, monkeypatch):
    monkeypatch.setattr(threads, "physical_cores", lambda cpus: None)
    assert choose_threads() == ThreadChoice(8, "8 threads (8 CPUs, load 0.0)")  # the fake machine: 4 cores x 2


def test_requests_and_omp_num_threads_win(machine, monkeypatch):
    machine.load, machine.running = 9.0, 10
    assert choose_threads(3) == ThreadChoice(3, "3 threads (--threads)")
    assert str(choose_threads(1)) == "1 thread (--threads)"
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert choose_threads() == ThreadChoice(2, "2 threads (OMP_NUM_THREADS=2)")
    assert choose_threads(5).count == 5
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    assert choose_threads().count == 1  # ignored: back to the busy machine's choice
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(SiameseError, match="positive integer"):
            choose_threads(bad)


def test_quota_and_data_parallel_processes_share_the_cores(machine, monkeypatch):
    machine.cores, machine.quota = 8, 2
    assert choose_threads() == ThreadChoice(2, "2 threads (8 physical cores, CPU quota 2, load 0.0)")
    machine.quota = None
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    machine.load, machine.running = 3.0, 4  # the three other ranks, not other work
    assert choose_threads() == ThreadChoice(2, "2 threads (8 physical cores shared by 4 processes, load 0.0)")


def test_cpu_topology_is_read_from_sysfs_then_cpuinfo(tmp_path, monkeypatch):
    for cpu, siblings in enumerate(["0,2", "1,3", "0,2", "1,3"]):
        (tmp_path / f"cpu{cpu}" / "topology").mkdir(parents=True)
        (tmp_path / f"cpu{cpu}" / "topology" / "thread_siblings_list").write_text(siblings + "\n")
    monkeypatch.setattr(threads, "_SYS_CPU", tmp_path)
    assert threads.physical_cores([0, 1, 2, 3]) == 2
    assert threads.physical_cores([0, 2]) == 1  # two hyper-threads of one core

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("".join(f"processor\t: {p}\nphysical id\t: 0\ncore id\t\t: {p % 3}\n\n" for p in range(6)))
    monkeypatch.setattr(threads, "_SYS_CPU", tmp_path / "missing")
    monkeypatch.setattr(threads, "_CPUINFO", cpuinfo)
    assert threads.physical_cores(list(range(6))) == 3
    assert threads.physical_cores([0, 1]) == 2
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 50\n\nprocessor\t: 1\nBogoMIPS\t: 50\n")  # no topology (ARM)
    assert threads.physical_cores([0, 1]) is None


def test_quota_and_running_tasks_are_parsed(tmp_path, monkeypatch):
    cpu_max, loadavg = tmp_path / "cpu.max", tmp_path / "loadavg"
    monkeypatch.setattr(threads, "_CPU_MAX", cpu_max)
    monkeypatch.setattr(threads, "_LOADAVG", loadavg)
    assert threads.cpu_quota() is None and threads.running_now() is None
    for text, quota in (("150000 100000", 2), ("max 100000", None), ("50000 100000", 1), ("junk", None)):
        cpu_max.write_text(text + "\n")
        assert threads.cpu_quota() == quota
    loadavg.write_text("3.80 2.10 1.00 5/312 4242\n")
    assert threads.running_now(samples=2, interval=0) == 5
    assert threads.other_work() == pytest.approx(min(os.getloadavg()[0], 4))
    readings = iter(["0.1 0.1 0.1 1/80 1", "0.1 0.1 0.1 3/80 1", "0.1 0.1 0.1 1/80 1"])  # one blip
    monkeypatch.setattr(threads, "_read", lambda path: next(readings))
    assert threads.running_now(samples=3, interval=0) == 1


def test_apply_threads_sets_torch_and_faiss():
    import faiss
    import torch

    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    try:
        apply_threads(ThreadChoice(1, "1 thread (--threads)"))
        assert torch.get_num_threads() == 1 and faiss.omp_get_max_threads() == 1
    finally:
        torch.set_num_threads(before[0])
        faiss.omp_set_num_threads(before[1])


def test_choosing_threads_imports_neither_torch_nor_faiss():
    code = ("import sys, siamese.threads as t; t.choose_threads(); "
            "print(sorted(m for m in ('torch', 'faiss', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- one line per epoch


def test_off_a_terminal_each_epoch_is_one_line(items, monkeypatch):
    lines: list[str] = []
    monkeypatch.setattr(loop, "stderr_is_terminal", lambda: False)
    pretrain(items, CONFIG, TRAIN, progress=lines.append)
    assert [line.split(",")[0] for line in lines] == [f"pretrain plain: epoch {i}/3" for i in (1, 2, 3)]
    assert all("train loss" in line and "val loss" in line and "s/epoch" in line for line in lines)
    assert "to go" in lines[0] and "to go" not in lines[-1]
    assert not any("\r" in line for line in lines)


def test_on_a_terminal_bars_replace_the_lines(items, monkeypatch, capsys):
    lines: list[str] = []
    monkeypatch.setattr(loop, "stderr_is_terminal", lambda: True)
    pretrain(items, CONFIG, TRAIN, progress=lines.append)
    assert lines == [] and "pretrain plain 3/3" in capsys.readouterr().err  # tqdm's bar


def test_progress_true_logs_and_false_writes_nothing(items, monkeypatch, caplog, capsys):
    monkeypatch.setattr(loop, "stderr_is_terminal", lambda: False)
    with caplog.at_level(logging.INFO, logger="siamese.training.loop"):
        pretrain(items, CONFIG, TRAIN, progress=True)
    assert sum("pretrain plain: epoch" in r.getMessage() for r in caplog.records) == 3
    monkeypatch.setattr(loop, "stderr_is_terminal", lambda: True)
    pretrain(items, CONFIG, TRAIN, progress=False)
    assert capsys.readouterr() == ("", "")  # no bar either


def test_early_stopping_is_announced(items, monkeypatch):
    lines: list[str] = []
    monkeypatch.setattr(loop, "stderr_is_terminal", lambda: False)
    pretrain(items, CONFIG, TrainConfig(epochs=30, batch_size=16, lr=1e-5, patience=1, seed=3), progress=lines.append)
    assert "stopped early after epoch" in lines[-1] and len(lines) < 31


# ---------------------------------------------------------------- summary


def test_summary_uses_mean_seconds_and_counts_epochs_in_words():
    rows = [{"epoch": "1", "train_loss": "2.0", "val_loss": "2.5", "seconds": "1.0", "items_per_second": "100"},
            {"epoch": "2", "train_loss": "1.0", "val_loss": "", "seconds": "3.0", "items_per_second": "50"}]
    assert summarize_history(rows) == "2 epochs (mean 2 s/epoch, 62 items/s); final training loss 1"
    one = [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.75, "seconds": 0.25, "items_per_second": 400.0,
            "pseudo": 0.1}]
    assert summarize_history(one) == ("1 epoch (mean 0.25 s/epoch, 400 items/s); final training loss 0.5, "
                                      "validation loss 0.75; pseudo-pairs on")
    with_config = summarize_history(one, pseudo_pairs=FinetuneConfig().pseudo_pairs)
    assert with_config.endswith("; pseudo-pairs on (k=5)")
    assert summarize_history(rows, pseudo_pairs={"k": 3}).endswith("; pseudo-pairs on (k=3), none mined: "
                                                                   "no unlabelled items")
    assert summarize_history([]) == "no epochs ran"


# ---------------------------------------------------------------- resume with nothing to resume


def test_pretrain_resume_refuses_a_folder_without_a_run(items, tmp_path):
    with pytest.raises(SiameseError, match=r"--resume: no interrupted run to resume in .*new.* \(no checkpoint/\); "
                                           "drop --resume to start a new run"):
        pretrain(items, CONFIG, TRAIN, out=tmp_path / "new", resume=True, progress=False)
    assert not (tmp_path / "new").exists()  # refused before the folder was claimed
    (tmp_path / "empty").mkdir()
    with pytest.raises(SiameseError, match="no interrupted run"):
        pretrain(items, CONFIG, TRAIN, out=tmp_path / "empty", resume=True, progress=False)
    with pytest.raises(SiameseError, match="needs the output directory"):
        pretrain(items, CONFIG, TRAIN, resume=True, progress=False)


def test_pretrain_resume_refuses_a_finished_run_but_continues_an_interrupted_one(items, tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "stderr_is_terminal", lambda: False)
    out = tmp_path / "m"
    pretrain(items, CONFIG, TRAIN, out=out, progress=False)
    with pytest.raises(SiameseError, match=r"holds a finished model \(all 3 epochs ran\); nothing to resume"):
        pretrain(items, CONFIG, TRAIN, out=out, resume=True, progress=False)
    more = TrainConfig(epochs=4, batch_size=16, seed=3)  # more epochs: there is something to continue
    lines: list[str] = []
    pretrain(items, CONFIG, more, out=out, resume=True, progress=lines.append)
    assert lines[0] == "pretrain plain: resuming after epoch 3/4" and len(lines) == 2
    # killed after the last checkpoint but before the model was saved: the checkpoint is newer
    state = out / "checkpoint" / "state.json"
    later = time.time() + 5
    os.utime(state, (later, later))
    pretrain(items, CONFIG, more, out=out, resume=True, progress=False)
    for name in ("checkpoint/state.json", "checkpoint/state.safetensors"):
        (out / name).unlink()
    with pytest.raises(SiameseError, match="holds a finished model and no checkpoint/; nothing to resume"):
        pretrain(items, CONFIG, more, out=out, resume=True, progress=False)


def test_finetune_resume_refuses_nothing_to_resume(items, tmp_path):
    model = pretrain(items, CONFIG, TrainConfig(epochs=1, batch_size=16), progress=False)
    train = TrainConfig(epochs=2, batch_size=16)
    kwargs = {"labels": True, "config": FinetuneConfig(pseudo_pairs=None), "train": train, "progress": False}
    with pytest.raises(SiameseError, match="--resume: no interrupted run to resume"):
        finetune(model, items, out=tmp_path / "ft", resume=True, **kwargs)
    with pytest.raises(SiameseError, match="needs the output directory"):
        finetune(model, items, resume=True, **kwargs)
    finetune(model, items, out=tmp_path / "ft", **kwargs)
    with pytest.raises(SiameseError, match=r"holds a finished model \(all 2 epochs ran\)"):
        finetune(model, items, out=tmp_path / "ft", resume=True, **kwargs)
