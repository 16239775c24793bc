"""Memory of a run's processes while it runs, split as the kernel counts it: anonymous memory (what the processes
hold: tensors, optimiser state, Python objects) and pages mapped from files (the feature cache read through mmap,
the model weights, the libraries), which the kernel can drop and read again from disk when memory runs short.
``runs.peak_memory_gb`` (``resource``'s peak) counts both, for the largest single process.

Each process counts its proportional share of the pages it shares with others (PSS, from /proc/<pid>/smaps_rollup),
so that the libraries every process maps are counted once over the tree; where the kernel does not give PSS, its
resident pages (/proc/<pid>/status)."""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

PROC = Path("/proc")
# (file, field) -> what it counts: PSS where the kernel has smaps_rollup, else RSS
PSS = {"Pss_Anon:": "anonymous", "Pss_File:": "file", "Pss_Shmem:": "shared"}
RSS = {"RssAnon:": "anonymous", "RssFile:": "file", "RssShmem:": "shared"}


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    with os.scandir(PROC) as entries:
        for entry in entries:
            if entry.name.isdigit():
                try:
                    ppid = int((PROC / entry.name / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue  # a process that ended meanwhile
                children.setdefault(ppid, []).append(int(entry.name))
    return children


def _process_kb(pid: int) -> dict | None:
    """{"anonymous", "file", "shared"} kB of one process (PSS, else RSS); None when it has ended or /proc says
    neither."""
    for name, fields in (("smaps_rollup", PSS), ("status", RSS)):
        try:
            lines = (PROC / str(pid) / name).read_text().splitlines()
        except OSError:
            continue
        found = {fields[line.split()[0]]: int(line.split()[1]) for line in lines
                 if line.split() and line.split()[0] in fields}
        if found:
            return {key: found.get(key, 0) for key in fields.values()}
    return None


def tree_memory_kb(root: int | None = None) -> dict | None:
    """Memory of process `root` (default: this one) and of every process under it, summed, in kB:
    {"anonymous", "file", "shared"}. None where /proc does not say (not Linux)."""
    root = os.getpid() if root is None else root
    own = _process_kb(root)
    if own is None:
        return None
    children = _children()
    total, todo = dict(own), list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        for key, kb in (_process_kb(pid) or {}).items():
            total[key] += kb
    return total


class MemorySampler:
    """Inside a ``with`` block, samples ``tree_memory_kb`` of this process every `interval` seconds in a thread
    (and whenever ``sample`` is called); ``peak`` gives the largest anonymous memory seen and the largest total
    (with its file-backed and shared pages). A peak shorter than the interval can be missed; a sample that fails is
    skipped."""

    def __init__(self, interval: float = 2.0):
        self.interval = interval
        self.anonymous = self.total = self.mapped_at_peak = 0
        self.samples = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def sample(self) -> None:
        try:
            now = tree_memory_kb()
        except (OSError, ValueError) as e:
            logging.getLogger(__name__).debug("memory sample skipped: %s", e)
            return
        if now is None:
            return
        with self._lock:
            self.samples += 1
            self.anonymous = max(self.anonymous, now["anonymous"])
            if sum(now.values()) > self.total:
                self.total, self.mapped_at_peak = sum(now.values()), now["file"] + now["shared"]

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

    def peak(self) -> dict | None:
        """{"anonymous_gb": the largest anonymous memory of the process tree, "resident_gb": its largest total,
        "file_backed_gb": the pages mapped from files (and shared memory) in that total}, in GiB; None without a
        sample."""
        with self._lock:
            if not self.samples:
                return None
            gib = lambda kb: round(kb / 1024 ** 2, 2)  # noqa: E731
            return {"anonymous_gb": gib(self.anonymous), "resident_gb": gib(self.total),
                    "file_backed_gb": gib(self.mapped_at_peak)}
