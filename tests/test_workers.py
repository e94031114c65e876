"""How a sweep shares the machine: one worker per GPU (pinned) or per core, the
memory budget split among workers, torch threads from the cores a process gets,
and the thread count recorded in every result."""

import os

import pytest
import torch
from click.testing import CliRunner

import landscape
from landscape.cli import cli
from landscape.errors import LandscapeError
from landscape.memory import usable_cores, use_threads
from landscape.sweep import WorkerPlan, expand_tasks, local_plan, plan_workers, run_task, start_client

GB = 10**9
UNLIKELY = 7 if usable_cores() != 7 else 5  # a thread count no plan here would choose


def test_one_worker_per_gpu_pinned_with_the_gpus_budget():
    plan = plan_workers(16, gpus=["0", "1"], budgets=[80 * GB, 60 * GB])
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plan] == ["0", "1"]
    assert [p.budget for p in plan] == [80 * GB, 60 * GB]
    assert [p.env["LANDSCAPE_MAX_MEMORY"] for p in plan] == [str(80 * GB), str(60 * GB)]
    assert [p.threads for p in plan] == [8, 8]
    assert all(p.env["OMP_NUM_THREADS"] == "8" for p in plan)


def test_more_workers_than_gpus_share_each_gpus_budget():
    # The parent sees GPUs 3 and 5 (its own CUDA_VISIBLE_DEVICES): workers take them in turn.
    plan = plan_workers(16, gpus=["3", "5"], budgets=[90 * GB, 60 * GB], workers=3)
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plan] == ["3", "5", "3"]
    assert [p.budget for p in plan] == [45 * GB, 60 * GB, 45 * GB]
    assert [p.threads for p in plan] == [5, 5, 5]


def test_cpu_workers_one_per_core_split_the_memory():
    plan = plan_workers(4, budgets=[8 * GB])
    assert len(plan) == 4 and all(p.threads == 1 and p.budget == 2 * GB for p in plan)
    assert all("CUDA_VISIBLE_DEVICES" not in p.env for p in plan)
    two = plan_workers(4, budgets=[8 * GB], workers=2)
    assert [p.threads for p in two] == [2, 2] and [p.budget for p in two] == [4 * GB, 4 * GB]
    assert [p.threads for p in plan_workers(4, budgets=[8 * GB], workers=2, threads=3)] == [3, 3]
    assert [p.threads for p in plan_workers(2, budgets=[8 * GB], workers=8)] == [1] * 8


def test_named_gpu_is_not_pinned_and_bad_plans_are_refused():
    plan = plan_workers(8, gpus=["1"], budgets=[40 * GB], workers=2, pin=False)
    assert all("CUDA_VISIBLE_DEVICES" not in p.env for p in plan)
    assert [p.budget for p in plan] == [20 * GB, 20 * GB]
    for kwargs in (dict(workers=0), dict(threads=0), dict(budgets=[1, 2])):
        with pytest.raises(LandscapeError):
            plan_workers(4, **{"budgets": [GB], **kwargs})


def test_cpu_tasks_plan_one_worker_per_usable_core(tmp_path):
    tasks = expand_tasks("slice", ["mlp"], ["xavier"], [0.0], [0], tmp_path, args=["--device", "cpu"])
    plan = local_plan(tasks)
    assert len(plan) == usable_cores() == len(os.sched_getaffinity(0))
    assert all("CUDA_VISIBLE_DEVICES" not in p.env for p in plan)


def test_threads_follow_the_usable_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert use_threads(None, share=1) == usable_cores() == torch.get_num_threads()
    assert use_threads(1) == 1 == torch.get_num_threads()
    assert use_threads(None, share=10**6) == 1
    with pytest.raises(LandscapeError, match="threads"):
        use_threads(0)


def test_threads_stay_within_omp_num_threads(monkeypatch):
    # A user's OMP_NUM_THREADS caps the default (an explicit count still wins);
    # values that are not a positive integer are ignored.
    torch.set_num_threads(UNLIKELY)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert use_threads(None) == 1 == torch.get_num_threads()
    assert use_threads(3) == 3 == torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", str(10**6))
    assert use_threads(None) == usable_cores()
    for junk in ("0", "two", ""):
        monkeypatch.setenv("OMP_NUM_THREADS", junk)
        assert use_threads(None) == usable_cores()


SMALL = ["--space", "loss", "--grid", "-1:1:3", "--samples", "16", "--device", "cpu"]


def test_a_task_records_the_threads_it_ran_with(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(UNLIKELY)  # what the task must not keep
    (task,) = expand_tasks("slice", ["mlp"], ["xavier"], [0.0], [0], tmp_path, args=SMALL)
    assert run_task(task)["error"] is None
    assert landscape.load(task.path).attrs["threads"] == usable_cores()
    task.threads = 1
    assert run_task(task)["error"] is None
    assert landscape.load(task.path).attrs["threads"] == 1


def test_workers_start_with_their_plans_environment():
    plan = [WorkerPlan(f"w{i}", 1, GB, "cpu", {"LANDSCAPE_MAX_MEMORY": str(i + 1), "OMP_NUM_THREADS": "1"})
            for i in range(2)]
    client = start_client(plan=plan)
    try:
        seen = client.run(lambda: os.environ.get("LANDSCAPE_MAX_MEMORY"))
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    assert sorted(seen.values()) == ["1", "2"]


@pytest.mark.parametrize("threads, expected", [([], usable_cores()), (["--threads", "1"], 1)])
def test_sweep_threads_default_and_override_reach_every_result(tmp_path, monkeypatch, threads,
                                                                expected):
    import landscape.sweep

    def in_process(tasks, plan=None, **_):  # the tasks as the command hands them to Dask
        assert plan is not None and len(plan) == 1
        return landscape.sweep.SweepOutcome(list(tasks), [], [t.label for t in tasks],
                                            {t.label: e for t in tasks
                                             if (e := run_task(t)["error"])})

    monkeypatch.setattr(landscape.sweep, "run_tasks", in_process)
    torch.set_num_threads(UNLIKELY)
    args = ["sweep", "slice", "--model", "mlp", "--bias-scale", "0", "--seeds", "0-1",
            "--workers", "1", *threads, "--out-dir", str(tmp_path), *SMALL]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    parts = sorted((tmp_path / "slice").glob("*.nc"))
    assert len(parts) == 2 and all(landscape.load(p).attrs["threads"] == expected for p in parts)
    assert landscape.load(tmp_path / "slice_sweep.nc").attrs["threads"] == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tasks_get_one_pinned_worker_per_visible_gpu(tmp_path):
    tasks = expand_tasks("slice", ["mlp"], ["xavier"], [0.0], [0], tmp_path, args=["--device", "cuda"])
    plan = local_plan(tasks)
    assert len(plan) == torch.cuda.device_count()
    assert len({p.env["CUDA_VISIBLE_DEVICES"] for p in plan}) == len(plan)
    free = [torch.cuda.mem_get_info(i)[0] for i in range(len(plan))]
    assert all(0 < p.budget <= f for p, f in zip(plan, free))
