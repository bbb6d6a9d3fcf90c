"""Classifier benchmark: held-out precision and recall, and what learning from agents adds.

Trains ``app.complaints.classifier`` on the ``train`` split of the shipped labelled set
(``app/complaints/data/labelled.jsonl``) and scores it on the ``test`` split, per language
and overall:

- categories: micro and macro precision and recall (and micro-F1). A category counts as
  suggested when it is in ``Suggestion.categories``: every category whose posterior reaches
  the classifier's threshold (0.5), best first, at most three, or the single best one when
  none reaches it. No top-k cut-off beyond that;
- severity: accuracy (exact level) and the share within one level;
- the same model without the bilingual concepts (``concept_weight=0``), to show what they add;
- learning: the test split is cut in two halves (alternate lines). The model suggests for
  half B, is then taught half A one example at a time through ``learn`` (as agents confirm
  or correct), and suggests for B again; then the halves swap. Both folds and their pooled
  figures are printed, before and after;
- a learning curve: the model after learning the first quarter, half, three quarters and all
  of the train split (in a fixed shuffled order, one ``learn`` call each), scored on the test
  split;
- speed: training time and suggestions per second.

Prints Markdown for ``bench/RESULTS.md``. Usage: ``python bench/classifier.py``.
"""

from __future__ import annotations

import os
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.complaints.classifier import (  # noqa: E402
    CATEGORIES,
    SEVERITIES,
    Classifier,
    Example,
    default_classifier,
    load_examples,
    tokens,
    train,
)


@dataclass(frozen=True)
class Score:
    """Counts from one evaluation; the figures are derived."""

    hits: Counter[str]
    suggested: Counter[str]
    wanted: Counter[str]
    severity_exact: int
    severity_near: int
    n: int

    def micro(self) -> tuple[float, float]:
        hits = sum(self.hits.values())
        return _ratio(hits, sum(self.suggested.values())), _ratio(hits, sum(self.wanted.values()))

    def macro(self) -> tuple[float, float]:
        used = [c for c in CATEGORIES if self.wanted[c]]
        precision = sum(_ratio(self.hits[c], self.suggested[c]) for c in used) / len(used)
        recall = sum(_ratio(self.hits[c], self.wanted[c]) for c in used) / len(used)
        return precision, recall

    def micro_f1(self) -> float:
        precision, recall = self.micro()
        return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def evaluate(model: Classifier, examples: Sequence[Example]) -> Score:
    """Suggest for every example and count what matched."""
    hits: Counter[str] = Counter()
    suggested: Counter[str] = Counter()
    wanted: Counter[str] = Counter()
    exact = near = 0
    for example in examples:
        suggestion = model.suggest(example.text, example.language)
        got = {name for name, _ in suggestion.categories}
        hits.update(got & set(example.categories))
        suggested.update(got)
        wanted.update(example.categories)
        distance = abs(
            SEVERITIES.index(suggestion.severity[0]) - SEVERITIES.index(example.severity)
        )
        exact += distance == 0
        near += distance <= 1
    return Score(hits, suggested, wanted, exact, near, len(examples))


def row(label: str, score: Score) -> str:
    """One Markdown table row."""
    micro_p, micro_r = score.micro()
    macro_p, macro_r = score.macro()
    return (
        f"| {label} | {score.n} | {micro_p:.2f} | {micro_r:.2f} | {score.micro_f1():.2f} | "
        f"{macro_p:.2f} | {macro_r:.2f} | {score.severity_exact / score.n:.2f} | "
        f"{score.severity_near / score.n:.2f} |"
    )


HEADER = (
    "| model, test examples | n | micro P | micro R | micro F1 | macro P | macro R "
    "| severity exact | severity ±1 |\n|---|---|---|---|---|---|---|---|---|"
)


def by_language(model: Classifier, test: Sequence[Example], name: str) -> list[str]:
    """Rows for Chinese, English and both."""
    rows = []
    for language, label in (("zh", "Chinese"), ("en", "English"), (None, "both")):
        part = [e for e in test if language is None or e.language == language]
        rows.append(row(f"{name}, {label}", evaluate(model, part)))
    return rows


def learning_rows(train_set: Sequence[Example], test: Sequence[Example]) -> list[str]:
    """Before and after teaching one half of the test split, scored on the other half."""
    halves = (list(test[0::2]), list(test[1::2]))
    rows = []
    pooled: dict[str, list[Score]] = {"before": [], "after": []}
    for taught, scored, fold in (
        (halves[0], halves[1], "fold 1"),
        (halves[1], halves[0], "fold 2"),
    ):
        model = train(train_set)
        before = evaluate(model, scored)
        for example in taught:
            model.learn(example.text, example.categories, example.severity)
        after = evaluate(model, scored)
        pooled["before"].append(before)
        pooled["after"].append(after)
        rows += [
            row(f"{fold}, before learning", before),
            row(f"{fold}, after {len(taught)} learned", after),
        ]
    for when, scores in pooled.items():
        rows.append(row(f"both folds, {when}", _pool(scores)))
    return rows


def curve_rows(train_set: Sequence[Example], test: Sequence[Example]) -> list[str]:
    """The test-split figures as the model learns more of the train split."""
    model = Classifier()
    order = list(train_set)
    random.Random(7).shuffle(order)
    rows, learned = [], 0
    for quarter in (1, 2, 3, 4):
        target = len(train_set) * quarter // 4
        train(order[learned:target], model)
        learned = target
        rows.append(row(f"after {learned} learned", evaluate(model, test)))
    return rows


def _pool(scores: Sequence[Score]) -> Score:
    return Score(
        hits=sum((s.hits for s in scores), Counter()),
        suggested=sum((s.suggested for s in scores), Counter()),
        wanted=sum((s.wanted for s in scores), Counter()),
        severity_exact=sum(s.severity_exact for s in scores),
        severity_near=sum(s.severity_near for s in scores),
        n=sum(s.n for s in scores),
    )


def per_category(score: Score) -> list[str]:
    """Precision and recall of each category on the test split."""
    lines = ["| category | test examples | precision | recall |", "|---|---|---|---|"]
    for name in CATEGORIES:
        precision = _ratio(score.hits[name], score.suggested[name])
        recall = _ratio(score.hits[name], score.wanted[name])
        lines.append(f"| {name} | {score.wanted[name]} | {precision:.2f} | {recall:.2f} |")
    return lines


def speed(examples: Sequence[Example]) -> tuple[float, float]:
    """Seconds to train the default model (segmenter warm) and suggestions per second."""
    tokens("预热")
    started = time.perf_counter()
    model = default_classifier()
    trained = time.perf_counter() - started
    texts = [e.text for e in examples] * 5
    started = time.perf_counter()
    for text in texts:
        model.suggest(text)
    return trained, len(texts) / (time.perf_counter() - started)


def machine() -> str:
    """Cores, CPU model and Python version."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}"


def main() -> None:
    """Print the Markdown section."""
    train_set, test = load_examples(split="train"), load_examples(split="test")
    model = train(train_set)
    print(f"Machine: {machine()}.")
    print(f"Labelled set: {len(train_set)} train, {len(test)} test.\n")
    print(HEADER)
    print("\n".join(by_language(model, test, "shipped")))
    print(
        "\n".join(by_language(train(train_set, Classifier(concept_weight=0)), test, "no concepts"))
    )
    print()
    print("\n".join(per_category(evaluate(model, test))))
    print()
    print(HEADER)
    print("\n".join(curve_rows(train_set, test)))
    print()
    print(HEADER)
    print("\n".join(learning_rows(train_set, test)))
    trained, per_second = speed(test)
    print(f"\nTraining on the train split: {trained:.2f} s; suggestions: {per_second:.0f}/s.")


if __name__ == "__main__":
    main()
