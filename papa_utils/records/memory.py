"""Resident memory of a run's processes while it runs, split as the kernel counts it: anonymous memory (what the
processes hold: tensors, optimiser state, Python objects) and file pages mapped from disk (the feature cache read
through mmap, the model weights), which the kernel can drop and read again when memory runs short.
``runs.peak_memory_gb`` (``resource``'s peak) counts both, for the largest single process."""
from __future__ import annotations

import os
import threading
from pathlib import Path

PROC = Path("/proc")
FIELDS = {"RssAnon:": "anonymous", "RssFile:": "file", "RssShmem:": "shmem"}


def tree_rss_kb(root: int | None = None) -> dict | None:
    """Resident memory of process `root` (default: this one) and of every process under it, summed, in kB:
    {"anonymous", "file", "shmem"}. None where /proc does not say (not Linux)."""
    root = os.getpid() if root is None else root
    if not (PROC / str(root) / "status").exists():
        return None
    children: dict[int, list[int]] = {}
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            try:
                ppid = int((PROC / entry.name / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # a process that ended meanwhile
            children.setdefault(ppid, []).append(int(entry.name))
    total = dict.fromkeys(FIELDS.values(), 0)
    todo = [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            lines = (PROC / str(pid) / "status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            name = FIELDS.get(line.split(" ", 1)[0].split("\t", 1)[0])
            if name:
                total[name] += int(line.split()[1])
    return total


class MemorySampler:
    """Inside a ``with`` block, samples ``tree_rss_kb`` of this process every `interval` seconds in a thread;
    ``peak`` gives the largest anonymous memory seen and the largest resident total (with its file pages). A peak
    shorter than the interval can be missed."""

    def __init__(self, interval: float = 2.0):
        self.interval = interval
        self.anonymous = self.resident = self.file_at_peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def sample(self) -> None:
        now = tree_rss_kb()
        if now is None:
            return
        self.samples += 1
        self.anonymous = max(self.anonymous, now["anonymous"])
        resident = sum(now.values())
        if resident > self.resident:
            self.resident, self.file_at_peak = resident, now["file"] + now["shmem"]

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> "MemorySampler":
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def peak(self) -> dict | None:
        """{"anonymous_gb": the largest anonymous memory of the process tree, "resident_gb": its largest resident
        total, "file_backed_gb": the file pages in that total}, in GiB; None without a sample."""
        if not self.samples:
            return None
        gib = lambda kb: round(kb / 1024 ** 2, 2)  # noqa: E731
        return {"anonymous_gb": gib(self.anonymous), "resident_gb": gib(self.resident),
                "file_backed_gb": gib(self.file_at_peak)}
