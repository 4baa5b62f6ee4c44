"""Result tables and the RESULTS.md writer shared by the suites."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


@dataclass
class Section:
    """One suite's results: a table plus notes."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells) -> None:
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        out = [f"## {self.title}", "",
               "| " + " | ".join(self.columns) + " |",
               "|" + "|".join("---" for _ in self.columns) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.notes:
            out.append("")
            out += [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}")


def versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    try:
        import glusterpy
        parts.append(f"glusterpy {glusterpy.__version__}")
    except ImportError:
        pass
    try:
        out = subprocess.run(["glusterfs", "--version"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()
        if out:
            parts.append(out[0])
    except (OSError, subprocess.SubprocessError):
        pass
    return ", ".join(parts)


def write_results(sections: list[Section], keep: dict[str, str]) -> None:
    """Rewrite RESULTS.md: the sections just run, plus earlier sections of
    suites not run this time (kept verbatim under their own dates)."""
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    header = [
        "# Benchmark results", "",
        "Written by `make bench` (python -m bench). Contenders of each table ran in one",
        "run on one machine; ratios compare them within that run.", "",
    ]
    body = []
    for s in sections:
        body.append(f"<!-- suite: {s.title} -->\n_{now} - {machine()} - {versions()}_\n\n"
                    + s.markdown())
    for title, text in keep.items():
        if title not in {s.title for s in sections}:
            body.append(text)
    RESULTS.write_text("\n".join(header) + "\n" + "\n".join(body))


def previous_sections() -> dict[str, str]:
    if not RESULTS.exists():
        return {}
    chunks = RESULTS.read_text().split("<!-- suite: ")[1:]
    out = {}
    for chunk in chunks:
        title = chunk.split(" -->", 1)[0]
        out[title] = "<!-- suite: " + chunk.rstrip() + "\n"
    return out
