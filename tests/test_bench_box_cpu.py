"""bench/box_cpu.py: a busy process's CPU is charged to its group, in cores over the window."""

import importlib.util
import subprocess
import sys
import time

from devstack.processes import ROOT

# Spins for exactly 1 s of its own CPU (however loaded the box is), then idles; "nginx" in its
# command line puts it in that group.
BUSY = "import time\nend = time.process_time() + 1.0\nwhile time.process_time() < end: pass\nprint(1, flush=True)\ntime.sleep(60)  # nginx"


def load_box_cpu():
    spec = importlib.util.spec_from_file_location("box_cpu", ROOT / "bench" / "box_cpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_busy_process_is_charged_to_its_group():
    box_cpu = load_box_cpu()
    started = time.monotonic()
    before = box_cpu.snapshot()
    busy = subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.PIPE)
    try:
        assert busy.stdout.readline() == b"1\n"  # its second of CPU is spent
        after = box_cpu.snapshot()
        wall = time.monotonic() - started
    finally:
        busy.kill()
        busy.wait()
    group, seconds = after["processes"][str(busy.pid)]
    assert group == "nginx" and 1.0 <= seconds < 1.5
    usage = box_cpu.usage(before, after)
    # A shell whose arguments only mention "nginx" (as `make test-stressed PYTEST_ARGS=...nginx...`
    # hands them to its busy loops) is not nginx: the program names the group.
    shell = subprocess.Popen(["sh", "-c", "sleep 60", "tests/test_render_nginx_edge.py"])
    try:
        assert box_cpu._group(str(shell.pid)) == "other"
    finally:
        shell.kill()
        shell.wait()
    # cores × the window's wall time = its CPU seconds (within the rounding of cores to 0.01)
    assert abs(usage["cores"]["nginx"] * wall - seconds) <= 0.2 + 0.01 * wall


def test_usage_sums_each_group_over_the_window():
    box_cpu = load_box_cpu()
    cpus = box_cpu.os.cpu_count() or 1
    before = {
        "processes": {"1": ("app", 10.0), "2": ("redis", 1.0), "4": ("other", 7.0)},
        "total": 0.0,
        "idle": 0.0,
        "interrupts": 1.0,
        "steal": 0.0,
    }
    after = {  # process 4 ended within the window; 3 started in it
        "processes": {"1": ("app", 13.0), "2": ("redis", 1.5), "3": ("locust", 0.5)},
        "total": 4.0 * cpus,  # 4 s of wall time on every core
        "idle": 2.0,
        "interrupts": 1.4,
        "steal": 0.2,
    }
    usage = box_cpu.usage(before, after)
    assert usage["cores"] == {"app": 0.75, "locust": 0.12, "redis": 0.12}
    assert usage["idle_cores"] == 0.5 and usage["busy_cores"] == cpus - 0.5
    assert (usage["interrupt_cores"], usage["steal_cores"]) == (0.1, 0.05)
    assert usage["unaccounted_cores"] == round(cpus - 0.5 - 1.0 - 0.15, 2)
