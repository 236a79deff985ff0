"""core.memory.keep_freed_memory: the allocator setting every training process makes."""

import platform
import sys

from plasticity_bench.core import memory


def test_keep_freed_memory_applies_on_glibc_linux_and_nowhere_else(monkeypatch):
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert memory.keep_freed_memory()  # glibc took both settings (mallopt returned 1)
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("musl", ""))
    assert not memory.keep_freed_memory()
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert not memory.keep_freed_memory()


def test_a_run_keeps_freed_memory(tmp_path, monkeypatch):
    import plasticity_bench.runner.loop as loop
    from plasticity_bench.runner.config import compose_config

    calls = []
    monkeypatch.setattr(loop, "keep_freed_memory", lambda: calls.append(1) or True)
    cfg = compose_config(
        [
            "env=minatar",
            "agent=random",
            "total_steps=20",
            f"run_dir={tmp_path}",
            "log.progress=false",
            "probe.interval=0",
            "checkpoint.interval=0",
        ]
    )
    loop.Run(cfg).train()
    assert calls == [1]
