"""The results of an experiment: ``results.csv``, ``results.md`` and the plots.

Configurations are compared on the same test tokens with the paired block bootstrap of
:mod:`student.significance`, applied to each configuration's per-token log-probabilities
averaged over the seeds both have (so the perplexity compared is the geometric mean of
the seeds' perplexities). The test says whether the difference is larger than the test
text's sampling noise; the spread over seeds is shown beside it as a standard deviation.
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from ngram_teacher.files import read_json_object, write_atomic

from .experiment import Run
from .significance import Comparison, default_block, load_run_lines, load_run_logprobs, paired_bootstrap
from .spec import Config, Spec

COLUMNS = ("corpus", "config", "loss", "teacher", "seed", "valid_ppl", "test_ppl", "best_epoch", "epochs",
           "train_tokens", "wall_s", "run")
MARKS = ((0.01, "**"), (0.05, "*"))


@dataclass
class Line:
    """One configuration of one corpus, over its finished seeds."""

    config: Config
    runs: dict[int, Run]  # seed -> finished run
    test: list[float]
    valid: list[float]
    p_baseline: float | None = None
    other: str | None = None  # the best other configuration with the same teacher
    p_other: float | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def test_mean(self) -> float:
        return statistics.fmean(self.test)

    def shared_seeds(self, other: "Line") -> list[int]:
        return sorted(set(self.runs) & set(other.runs))

    def delta(self, base: "Line") -> float:
        """Mean test perplexity less ``base``'s, over the seeds both have."""
        mine, theirs = dict(zip(self.runs, self.test)), dict(zip(base.runs, base.test))
        shared = self.shared_seeds(base)
        return statistics.fmean(mine[s] for s in shared) - statistics.fmean(theirs[s] for s in shared)


@dataclass
class TeacherPair:
    """Two teachers of one loss: the paired test of a against b over their shared seeds."""

    a: Line
    b: Line
    comparison: Comparison

    @property
    def seeds(self) -> int:
        return len(self.a.shared_seeds(self.b))


@dataclass
class Table:
    """One corpus: its configurations, and its teachers compared loss by loss."""

    lines: list[Line]
    teacher_pairs: list[TeacherPair]


def finished_rows(runs: list[Run], out: Path) -> list[dict]:
    """A results.csv row per finished run (its directory relative to ``out``)."""
    rows = []
    for run in runs:
        if not (run.directory / "summary.json").exists():
            continue
        summary = read_json_object(run.directory / "summary.json", f"{run.directory}: no summary")
        rows.append({"corpus": run.corpus, "config": run.config.name, "loss": run.config.loss,
                     "teacher": run.config.teacher or "", "seed": run.seed, "valid_ppl": summary["valid_ppl"],
                     "test_ppl": summary["test_ppl"], "best_epoch": summary["best_epoch"],
                     "epochs": summary["epochs"], "train_tokens": summary["train_tokens"],
                     "wall_s": summary["wall_s"], "run": str(run.directory.relative_to(out))})
    return rows


def summarize(spec: Spec, runs: list[Run]) -> dict[str, Table]:
    """Per corpus, a :class:`Line` per configuration with finished runs, with p-values,
    and the comparisons of the teachers of each loss."""
    done = {(r.corpus, r.config.name, r.seed): r for r in runs if (r.directory / "summary.json").exists()}
    tables = {}
    for corpus in spec.corpora:
        lines = []
        for config in spec.configs:
            finished = {s: done[corpus.name, config.name, s] for s in spec.seeds if (corpus.name, config.name, s) in done}
            if finished:
                summaries = [read_json_object(r.directory / "summary.json", "") for r in finished.values()]
                lines.append(Line(config, finished, [s["test_ppl"] for s in summaries],
                                  [s["valid_ppl"] for s in summaries]))
        # Each run takes part in several comparisons: read its log-probabilities once.
        logprobs = lru_cache(maxsize=None)(lambda d: load_run_logprobs(d)[0])
        _add_p_values(lines, spec.baseline, logprobs)
        tables[corpus.name] = Table(lines, _teacher_pairs(lines, logprobs))
    return tables


def _add_p_values(lines: list[Line], baseline: str, logprobs: Callable[[Path], np.ndarray]) -> None:
    by_name = {line.name: line for line in lines}
    for line in lines:
        if baseline in by_name and line.name != baseline:
            line.p_baseline = _p_value(seed_pooled_comparison(line, by_name[baseline], logprobs))
        rivals = [other for other in lines if other.config.teacher == line.config.teacher and other is not line]
        if rivals:
            best = min(rivals, key=lambda other: other.test_mean)
            line.other, line.p_other = best.name, _p_value(seed_pooled_comparison(line, best, logprobs))


def _teacher_pairs(lines: list[Line], logprobs: Callable[[Path], np.ndarray]) -> list[TeacherPair]:
    """Every two teachers of one loss, compared on the seeds both have (spec order)."""
    pairs = []
    for i, a in enumerate(lines):
        for b in lines[i + 1:]:
            if a.config.teacher and b.config.teacher and a.config.table == b.config.table:
                comparison = seed_pooled_comparison(a, b, logprobs)
                if comparison is not None:
                    pairs.append(TeacherPair(a, b, comparison))
    return pairs


def seed_pooled_comparison(a: Line, b: Line, logprobs: Callable[[Path], np.ndarray]) -> Comparison | None:
    """Paired bootstrap of a against b on their log-probabilities averaged over the seeds
    both have (None if they share none)."""
    seeds = a.shared_seeds(b)
    if not seeds:
        return None
    pooled_a = np.mean([logprobs(a.runs[s].directory) for s in seeds], axis=0)
    pooled_b = np.mean([logprobs(b.runs[s].directory) for s in seeds], axis=0)
    lines = load_run_lines(a.runs[seeds[0]].directory, len(pooled_a))
    return paired_bootstrap(pooled_a, pooled_b, block=default_block(len(pooled_a)), lines=lines)


def _p_value(comparison: Comparison | None) -> float | None:
    return None if comparison is None else comparison.p_value


# ---- files --------------------------------------------------------------------------------------

def write_csv(rows: list[dict], path: Path) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue().encode("utf-8"))


def markdown(spec: Spec, tables: dict[str, Table]) -> str:
    out = [f"# {spec.name}", ""]
    for corpus, table in tables.items():
        out += [f"## {corpus}", "", *_lines_table(spec.baseline, table.lines), ""]
        if table.teacher_pairs:
            out += [*_teacher_pairs_table(table.teacher_pairs), ""]
    out += ["Test and validation perplexity: mean ± standard deviation over seeds; Δ and p over the seeds "
            "both configurations have. p: two-sided paired bootstrap over blocks of whole test lines (at least "
            "1,000 tokens, or 1/50 of a shorter text; 10,000 resamples) of the per-token log-probabilities "
            "averaged over the seeds both configurations have; ** p < 0.01, * p < 0.05. Teachers compared: "
            "the perplexities of those seed-averaged log-probabilities, their difference and its 95% "
            "bootstrap interval.", ""]
    return "\n".join(out)


def _lines_table(baseline: str, lines: list[Line]) -> list[str]:
    rows = [f"| configuration | seeds | test ppl | valid ppl | Δ test vs {baseline} | p vs {baseline} "
            "| best other loss, same teacher | p vs it |",
            "|---|---|---|---|---|---|---|---|"]
    base = next((line for line in lines if line.name == baseline), None)
    for line in lines:
        delta = "" if base is None or line is base or not line.shared_seeds(base) \
            else f"{line.delta(base):+.2f}"
        rows.append(f"| {line.name} | {len(line.test)} | {_mean_sd(line.test)} | {_mean_sd(line.valid)} "
                    f"| {delta} | {_p(line.p_baseline)} | {line.other or ''} | {_p(line.p_other)} |")
    return rows


def _teacher_pairs_table(pairs: list[TeacherPair]) -> list[str]:
    rows = ["Teachers compared, loss by loss:", "",
            "| loss | A | B | seeds | test ppl A | test ppl B | A − B (95% CI) | p |",
            "|---|---|---|---|---|---|---|---|"]
    for pair in pairs:
        c = pair.comparison
        rows.append(f"| {pair.a.config.table} | {pair.a.config.teacher} | {pair.b.config.teacher} | {pair.seeds} "
                    f"| {c.ppl_a:.2f} | {c.ppl_b:.2f} | {c.difference:+.2f} ({c.ci[0]:+.2f} to {c.ci[1]:+.2f}) "
                    f"| {_p(c.p_value)} |")
    return rows


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def _p(p: float | None) -> str:
    if p is None:
        return ""
    mark = next((m for limit, m in MARKS if p < limit), "")
    return f"{p:.2g}{mark}"


def plot(spec: Spec, tables: dict[str, Table], folder: Path) -> list[Path]:
    """Per corpus: validation perplexity against training tokens (a line per seed, a
    colour per configuration), and test perplexity with its spread over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for corpus, table in tables.items():
        lines = table.lines
        if not lines:
            continue
        figure, axis = plt.subplots(figsize=(8, 5))
        values = []
        for colour, line in zip(_colours(len(lines)), lines):
            for n, run in enumerate(line.runs.values()):
                tokens, valid = _valid_curve(run.directory / "metrics.jsonl")
                values += valid
                axis.plot(tokens, valid, color=colour, lw=1.2, alpha=0.8, label=line.name if n == 0 else None)
        axis.set(xlabel="training tokens", ylabel="validation perplexity", title=_title(spec, corpus))
        axis.set_ylim(min(values) * 0.97, float(np.percentile(values, 90)) * 1.05)
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
        written.append(_save(figure, folder / f"{corpus}-valid.png"))
        figure, axis = plt.subplots(figsize=(max(5, 1 + 0.9 * len(lines)), 4.5))
        _test_bars(axis, lines)
        axis.set(ylabel="test perplexity (mean ± sd; dots: seeds)", title=_title(spec, corpus))
        written.append(_save(figure, folder / f"{corpus}-test.png"))
        plt.close("all")
    return written


def _test_bars(axis, lines: list[Line]) -> None:
    """A bar per configuration at its mean with a standard-deviation error bar, each
    seed as a dot (three seeds say more as points), and the mean and seed count above."""
    means = [line.test_mean for line in lines]
    spreads = [statistics.stdev(line.test) if len(line.test) > 1 else np.nan for line in lines]
    axis.bar(range(len(lines)), means, yerr=spreads, capsize=4, color=_colours(len(lines)), alpha=0.85)
    seeds = [value for line in lines for value in line.test]
    for x, (line, spread) in enumerate(zip(lines, spreads)):
        top = max(line.test + ([] if np.isnan(spread) else [line.test_mean + spread]))
        axis.plot([x + 0.2] * len(line.test), line.test, "o", color="black", ms=3)
        axis.annotate(f"{line.test_mean:.1f}\nn={len(line.test)}", (x, top), xytext=(0, 4),
                      textcoords="offset points", ha="center", va="bottom", fontsize=7)
    axis.set_xticks(range(len(lines)), [line.name for line in lines], rotation=30, ha="right", fontsize=8)
    margin = max(3.0, 0.1 * (max(seeds) - min(seeds)))
    axis.set_ylim(min(seeds) - margin, max(seeds) + 3 * margin)
    axis.grid(axis="y", alpha=0.3)


def _title(spec: Spec, corpus: str) -> str:
    return corpus if corpus == spec.name else f"{spec.name}: {corpus}"


def _colours(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _valid_curve(metrics: Path) -> tuple[list[int], list[float]]:
    epochs = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    epochs = [e for e in epochs if math.isfinite(e["valid_ppl"])]
    return [e["tokens"] for e in epochs], [e["valid_ppl"] for e in epochs]


def _save(figure, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    write_atomic(path, buffer.getvalue())
    return path
