"""The results of an experiment: ``results.csv``, ``results.md`` and the plots.

Configurations are compared on the same test tokens with the paired block bootstrap of
:mod:`student.significance`, applied to each configuration's per-token log-probabilities
averaged over the seeds both have (so the perplexity compared is the geometric mean of
the seeds' perplexities), over every test token or, with the spec's ``metric =
"exclude-oov"``, over those in the vocabulary; both perplexities are reported. The test says whether the difference is larger than the test
text's sampling noise; the spread over seeds is shown beside it as a standard deviation.
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corpora.files import read_json_object, write_atomic

from .experiment import Run
from corpora import NgteachError

from .significance import (BLOCK, MIN_BLOCKS, OOV, Comparison, default_block, load_run_lines, load_run_logprobs,
                           load_run_oov, paired_bootstrap, without_positions)
from .spec import Config, Spec

COLUMNS = ("corpus", "config", "loss", "teacher", "seed", "valid_ppl", "valid_ppl_no_oov", "test_ppl",
           "test_ppl_no_oov", "best_epoch", "epochs", "train_tokens", "wall_s", "run")
MARKS = ((0.01, "**"), (0.05, "*"))
METRIC_LABELS = {"all": "test ppl", "exclude-oov": "test ppl excl. OOV"}
# The validation perplexity of each metric, as metrics.jsonl names it: what learning speed
# and the validation plot measure.
VALID_KEYS = {"all": "valid_ppl", "exclude-oov": "valid_ppl_no_oov"}
METRIC_NAMES = {"all": "every test token", "exclude-oov": "the test tokens in the vocabulary"}


@dataclass
class Line:
    """One configuration of one corpus, over its finished seeds."""

    config: Config
    runs: dict[int, Run]  # seed -> finished run
    test: list[float]
    valid: list[float]
    test_no_oov: list[float | None] = field(default_factory=list)  # without the OOV tokens (None: not recorded)
    valid_no_oov: list[float | None] = field(default_factory=list)
    exclude_oov: bool = False  # whether differences and rankings are of test_no_oov rather than test
    p_baseline: float | None = None
    other: str | None = None  # the best other configuration with the same teacher
    p_other: float | None = None
    # Training tokens each seed took to reach the best validation perplexity of the
    # reference (ce) run of the same seed; None where it never did.
    to_reference: dict[int, int | None] = field(default_factory=dict)
    # The spec's other comparisons: configuration -> p-value of this line against it.
    p_against: dict[str, float | None] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def compared(self) -> list[float]:
        """The test perplexities that differences and rankings are of (the spec's metric)."""
        return self.test_no_oov if self.exclude_oov else self.test

    @property
    def test_mean(self) -> float:
        return statistics.fmean(self.compared)

    def shared_seeds(self, other: "Line") -> list[int]:
        return sorted(set(self.runs) & set(other.runs))

    def delta(self, base: "Line") -> float:
        """Mean test perplexity (the spec's metric) less ``base``'s, over the seeds both have."""
        mine, theirs = dict(zip(self.runs, self.compared)), dict(zip(base.runs, base.compared))
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
    oov: tuple[int, int] | None  # (out-of-vocabulary test tokens, test tokens), if the runs record them
    valid_key: str = "valid_ppl"  # the validation perplexity of the learning speed and the plot


class RunScores:
    """Each run's test log-probabilities and out-of-vocabulary positions, read once: a run
    takes part in several comparisons."""

    def __init__(self):
        self._read: dict[Path, tuple[np.ndarray, np.ndarray | None]] = {}

    def __call__(self, directory: Path) -> tuple[np.ndarray, np.ndarray | None]:
        if directory not in self._read:
            logprobs = load_run_logprobs(directory)[0]
            self._read[directory] = logprobs, load_run_oov(directory, len(logprobs))
        return self._read[directory]

    def oov(self, directory: Path) -> np.ndarray:
        """The out-of-vocabulary positions, refused if the run did not record them."""
        logprobs, oov = self(directory)
        if oov is None:
            raise NgteachError(f"{directory}: no {OOV} (the run predates out-of-vocabulary records); "
                               'metric = "exclude-oov" cannot leave those tokens out')
        if len(oov) == len(logprobs):
            raise NgteachError(f'{directory}: every test token is out-of-vocabulary; metric = "exclude-oov" '
                               "leaves nothing to compare")
        return oov

    def ppl_no_oov(self, directory: Path) -> float | None:
        logprobs, oov = self(directory)
        if oov is None or len(oov) == len(logprobs):
            return None
        return math.exp(-without_positions(logprobs, None, oov)[0].mean())


def finished_rows(runs: list[Run], out: Path, scores: RunScores | None = None) -> list[dict]:
    """A results.csv row per finished run (its directory relative to ``out``), from the
    runs' files as ``scores`` has read them (read anew without)."""
    rows = []
    scores = scores or RunScores()
    for run in runs:
        if not (run.directory / "summary.json").exists():
            continue
        summary = read_json_object(run.directory / "summary.json", f"{run.directory}: no summary")
        rows.append({"corpus": run.corpus, "config": run.config.name, "loss": run.config.loss,
                     "teacher": run.config.teacher or "", "seed": run.seed, "valid_ppl": summary["valid_ppl"],
                     "valid_ppl_no_oov": summary.get("valid_ppl_no_oov"), "test_ppl": summary["test_ppl"],
                     "test_ppl_no_oov": scores.ppl_no_oov(run.directory), "best_epoch": summary["best_epoch"],
                     "epochs": summary["epochs"], "train_tokens": summary["train_tokens"],
                     "wall_s": summary["wall_s"], "run": str(run.directory.relative_to(out))})
    return rows


def summarize(spec: Spec, runs: list[Run], scores: RunScores | None = None) -> dict[str, Table]:
    """Per corpus, a :class:`Line` per configuration with finished runs, with p-values,
    and the comparisons of the teachers of each loss."""
    done = {(r.corpus, r.config.name, r.seed): r for r in runs if (r.directory / "summary.json").exists()}
    exclude_oov = spec.metric == "exclude-oov"
    scores = scores or RunScores()  # a run's files are read once, whatever it takes part in
    tables = {}
    for corpus in spec.corpora:
        lines = []
        for config in spec.configs:
            finished = {s: done[corpus.name, config.name, s] for s in spec.seeds if (corpus.name, config.name, s) in done}
            if finished:
                summaries = [read_json_object(r.directory / "summary.json", "") for r in finished.values()]
                if exclude_oov:
                    for run in finished.values():
                        scores.oov(run.directory)  # refuses a run that did not record them
                no_oov = [scores.ppl_no_oov(r.directory) for r in finished.values()]
                lines.append(Line(config, finished, [s["test_ppl"] for s in summaries],
                                  [s["valid_ppl"] for s in summaries], no_oov,
                                  [s.get("valid_ppl_no_oov") for s in summaries], exclude_oov))
        _add_p_values(lines, spec.baseline, scores, spec.compare)
        valid_key = _valid_key(lines, spec.metric)
        _add_learning_speed(lines, valid_key)
        tables[corpus.name] = Table(lines, _teacher_pairs(lines, scores), _oov_count(lines, scores), valid_key)
    return tables


def _valid_key(lines: list[Line], metric: str) -> str:
    """The validation perplexity of the spec's metric, if every run recorded it at every
    epoch (runs made before the out-of-vocabulary records did not); else over all tokens."""
    key = VALID_KEYS[metric]
    runs = [run for line in lines for run in line.runs.values()]
    recorded = all(key in epoch for run in runs for epoch in _epochs(run.directory / "metrics.jsonl"))
    return key if recorded else VALID_KEYS["all"]


def reference_line(lines: list[Line]) -> Line | None:
    """The line learning speed is measured against: the first of plain cross-entropy."""
    return next((line for line in lines if line.config.loss == "ce" and line.config.teacher is None), None)


def _add_learning_speed(lines: list[Line], valid_key: str) -> None:
    reference = reference_line(lines)
    if reference is None:
        return
    best = reference_bests(reference, valid_key)
    for line in lines:
        line.to_reference = {seed: tokens_to_reach(_valid_curve(run.directory / "metrics.jsonl", valid_key),
                                                   best[seed])
                             for seed, run in line.runs.items() if seed in best}


def reference_bests(reference: Line, valid_key: str) -> dict[int, float]:
    """Seed -> the best validation perplexity (``valid_key``) of the reference's run; a seed
    with no finite validation perplexity yet has none."""
    curves = {seed: _valid_curve(run.directory / "metrics.jsonl", valid_key)[1] for seed, run in reference.runs.items()}
    return {seed: min(curve) for seed, curve in curves.items() if curve}


def tokens_to_reach(curve: tuple[list[int], list[float]], target: float) -> int | None:
    """The training tokens after the first epoch whose validation perplexity is at most
    ``target`` (None if none is)."""
    return next((tokens for tokens, valid in zip(*curve) if valid <= target), None)


def _oov_count(lines: list[Line], scores: RunScores) -> tuple[int, int] | None:
    """(out-of-vocabulary test tokens, test tokens) of the corpus, from any run that recorded them."""
    for run in (run for line in lines for run in line.runs.values()):
        logprobs, oov = scores(run.directory)
        if oov is not None:
            return len(oov), len(logprobs)
    return None


def _add_p_values(lines: list[Line], baseline: str, scores: RunScores, compare: list[str]) -> None:
    by_name = {line.name: line for line in lines}
    for line in lines:
        if baseline in by_name and line.name != baseline:
            line.p_baseline = _p_value(seed_pooled_comparison(line, by_name[baseline], scores))
        line.p_against = {name: _p_value(seed_pooled_comparison(line, by_name[name], scores))
                          for name in compare if name in by_name and name != line.name}
        rivals = [other for other in lines if other.config.teacher == line.config.teacher and other is not line]
        if rivals:
            best = min(rivals, key=lambda other: other.test_mean)
            line.other, line.p_other = best.name, _p_value(seed_pooled_comparison(line, best, scores))


def _teacher_pairs(lines: list[Line], scores: RunScores) -> list[TeacherPair]:
    """Every two teachers of one loss, compared on the seeds both have (spec order)."""
    pairs = []
    for i, a in enumerate(lines):
        for b in lines[i + 1:]:
            if a.config.teacher and b.config.teacher and a.config.table == b.config.table:
                comparison = seed_pooled_comparison(a, b, scores)
                if comparison is not None:
                    pairs.append(TeacherPair(a, b, comparison))
    return pairs


def seed_pooled_comparison(a: Line, b: Line, scores: RunScores) -> Comparison | None:
    """Paired bootstrap of a against b on their log-probabilities averaged over the seeds
    both have (None if they share none), without the out-of-vocabulary tokens if the
    lines compare those perplexities."""
    seeds = a.shared_seeds(b)
    if not seeds:
        return None
    pooled_a = np.mean([scores(a.runs[s].directory)[0] for s in seeds], axis=0)
    pooled_b = np.mean([scores(b.runs[s].directory)[0] for s in seeds], axis=0)
    lines = load_run_lines(a.runs[seeds[0]].directory, len(pooled_a))
    if a.exclude_oov:
        oov = scores.oov(a.runs[seeds[0]].directory)
        pooled_a, lines = without_positions(pooled_a, lines, oov)
        pooled_b = without_positions(pooled_b, None, oov)[0]
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
        out += [f"## {corpus}", ""]
        if table.oov is not None:
            n, total = table.oov
            out += [f"Out-of-vocabulary test tokens (<unk>): {n:,} of {total:,} ({n / total:.1%}).", ""]
        out += [*_lines_table(spec, table), ""]
        if table.teacher_pairs:
            out += [*_teacher_pairs_table(table.teacher_pairs, spec.metric), ""]
    out += ["Test and validation perplexity: mean ± standard deviation over seeds; excl. OOV: without the "
            "out-of-vocabulary test tokens, as KenLM reports perplexity without OOVs. Δ: the difference of the "
            f"mean test perplexities over {METRIC_NAMES[spec.metric]} (the seeds both configurations have). "
            "p: two-sided paired bootstrap over blocks of whole test lines (at least "
            f"{BLOCK:,} tokens, or 1/{MIN_BLOCKS} of a shorter text; 10,000 resamples) of the per-token "
            "log-probabilities of those tokens averaged over the seeds both configurations have; "
            "** p < 0.01, * p < 0.05. Tokens to the best "
            "valid: the training tokens after which a seed first reached the best validation perplexity of plain "
            "cross-entropy's run of the same seed (mean over the seeds that did), without the out-of-vocabulary "
            "tokens where the header says so (and the plot of validation perplexity measures the same). Teachers "
            "compared: "
            "the perplexities of those seed-averaged log-probabilities, their difference and its 95% "
            "bootstrap interval.", ""]
    return "\n".join(out)


def _lines_table(spec: Spec, table: Table) -> list[str]:
    baseline, measure, lines = spec.baseline, METRIC_LABELS[spec.metric], table.lines
    reference = reference_line(lines)
    speed = (f"tokens to {reference.name if reference else 'ce'}'s best valid"
             f"{' excl. OOV' if table.valid_key != VALID_KEYS['all'] else ''}")
    by_name = {line.name: line for line in lines}
    against = [name for name in spec.compare if name in by_name]
    rows = [f"| configuration | seeds | test ppl | test ppl excl. OOV | valid ppl | valid ppl excl. OOV "
            f"| Δ {measure} vs {baseline} | p vs {baseline} | best other loss, same teacher | p vs it | {speed} |"
            + "".join(f" Δ vs {name} | p vs {name} |" for name in against),
            "|---|---|---|---|---|---|---|---|---|---|---|" + "---|---|" * len(against)]
    for line in lines:
        rows.append(f"| {line.name} | {len(line.test)} | {_mean_sd(line.test)} | {_mean_sd(line.test_no_oov)} "
                    f"| {_mean_sd(line.valid)} | {_mean_sd(line.valid_no_oov)} | {_delta(line, by_name.get(baseline))} "
                    f"| {_p(line.p_baseline)} "
                    f"| {line.other or ''} | {_p(line.p_other)} | {_speed(line.to_reference)} |"
                    + "".join(f" {_delta(line, by_name[name])} | {_p(line.p_against.get(name))} |"
                              for name in against))
    return rows


def _delta(line: Line, base: Line | None) -> str:
    """The difference of ``line`` against ``base`` over their shared seeds (blank for itself)."""
    if base is None or line is base or not line.shared_seeds(base):
        return ""
    return f"{line.delta(base):+.2f}"


def _speed(to_reference: dict[int, int | None]) -> str:
    """The mean tokens of the seeds that reached the reference, and how many did."""
    reached = [tokens for tokens in to_reference.values() if tokens is not None]
    if not to_reference:
        return ""
    if not reached:
        return "not reached"
    shown = f"{statistics.fmean(reached) / 1e6:.2f}M"
    return shown if len(reached) == len(to_reference) else f"{shown} ({len(reached)} of {len(to_reference)} seeds)"


def _teacher_pairs_table(pairs: list[TeacherPair], metric: str) -> list[str]:
    measure = METRIC_LABELS[metric]
    rows = ["Teachers compared, loss by loss:", "",
            f"| loss | A | B | seeds | {measure} A | {measure} B | A − B (95% CI) | p |",
            "|---|---|---|---|---|---|---|---|"]
    for pair in pairs:
        c = pair.comparison
        rows.append(f"| {pair.a.config.table} | {pair.a.config.teacher} | {pair.b.config.teacher} | {pair.seeds} "
                    f"| {c.ppl_a:.2f} | {c.ppl_b:.2f} | {c.difference:+.2f} ({c.ci[0]:+.2f} to {c.ci[1]:+.2f}) "
                    f"| {_p(c.p_value)} |")
    return rows


def _mean_sd(values: list[float | None]) -> str:
    if None in values:
        return ""
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
                tokens, valid = _valid_curve(run.directory / "metrics.jsonl", table.valid_key)
                values += valid
                axis.plot(tokens, valid, color=colour, lw=1.2, alpha=0.8, label=line.name if n == 0 else None)
        reference = reference_line(lines)
        bests = reference_bests(reference, table.valid_key) if reference is not None else {}
        if bests:  # what the learning-speed column measures against
            axis.axhline(statistics.fmean(bests.values()), color="grey", ls="--", lw=0.8,
                         label=f"{reference.name}'s best (mean)")
        excluded = " excl. OOV" if table.valid_key != VALID_KEYS["all"] else ""
        axis.set(xlabel="training tokens", ylabel=f"validation perplexity{excluded}", title=_title(spec, corpus))
        if values:  # none while every run is still in its first epoch, or diverged
            axis.set_ylim(min(values) * 0.97, float(np.percentile(values, 90)) * 1.05)
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
        written.append(_save(figure, folder / f"{corpus}-valid.png"))
        figure, axis = plt.subplots(figsize=(max(5, 1 + 0.9 * len(lines)), 4.5))
        _test_bars(axis, lines)
        measure = "test perplexity excl. OOV" if spec.metric == "exclude-oov" else "test perplexity"
        axis.set(ylabel=f"{measure} (mean ± sd; dots: seeds)", title=_title(spec, corpus))
        written.append(_save(figure, folder / f"{corpus}-test.png"))
        plt.close("all")
    return written


def _test_bars(axis, lines: list[Line]) -> None:
    """A bar per configuration at its mean with a standard-deviation error bar, each
    seed as a dot (three seeds say more as points), and the mean and seed count above."""
    means = [line.test_mean for line in lines]
    spreads = [statistics.stdev(line.compared) if len(line.compared) > 1 else np.nan for line in lines]
    axis.bar(range(len(lines)), means, yerr=spreads, capsize=4, color=_colours(len(lines)), alpha=0.85)
    seeds = [value for line in lines for value in line.compared]
    for x, (line, spread) in enumerate(zip(lines, spreads)):
        top = max(line.compared + ([] if np.isnan(spread) else [line.test_mean + spread]))
        axis.plot([x + 0.2] * len(line.compared), line.compared, "o", color="black", ms=3)
        axis.annotate(f"{line.test_mean:.1f}\nn={len(line.compared)}", (x, top), xytext=(0, 4),
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


def _epochs(metrics: Path) -> list[dict]:
    return [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]


def _valid_curve(metrics: Path, key: str) -> tuple[list[int], list[float]]:
    """(training tokens, validation perplexity ``key``) at each epoch's end."""
    epochs = [e for e in _epochs(metrics) if isinstance(e.get(key), (int, float)) and math.isfinite(e[key])]
    return [e["tokens"] for e in epochs], [e[key] for e in epochs]


def _save(figure, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    write_atomic(path, buffer.getvalue())
    return path
