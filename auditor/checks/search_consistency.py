"""Search consistency: does a text query for the label find the class, and do its examples find each other?"""

from __future__ import annotations

from dataclasses import dataclass

from auditor.checks.base import Check, CheckResult
from auditor.search import class_consistency, class_queries
from taxonomy_core.findings import Evidence, Finding, clamp


class SearchConsistency(Check):
    name = "search"

    @dataclass(frozen=True, kw_only=True)
    class Params:
        k: int = 10  # results per query
        min_precision: float = 0.5  # a query for the class should return at least this share of it

    def run(self, ctx) -> CheckResult:
        cfg = self.params
        result = self.result()
        found = class_queries(ctx, ctx.classes, cfg.k)  # two searches for every class, not two per class
        for label in ctx.classes:
            c = class_consistency(ctx, label, cfg.k, found=found[label])
            result.classes[label] = {
                "search_consistency": c.text_precision,
                "text_precision": c.text_precision,
                "example_precision": c.example_precision,
                "centroid_precision": c.centroid_precision,
                "text_example_agreement": c.agreement,
                "search_verdict": c.verdict,
            }
            problems = []
            if c.text_precision is not None and c.text_precision < cfg.min_precision:
                problems.append(
                    f"a text search for {ctx.prompts(label)[0]!r} returns {c.text_precision:.0%} "
                    f"{label!r} clips in its top {c.k}"
                )
            if c.example_precision < cfg.min_precision:
                problems.append(f"its clips' nearest neighbours are only {c.example_precision:.0%} {label!r}")
            if c.pulled:
                rows = ", ".join(f"{p['row']} (pulls in {p['pulls_in']!r})" for p in c.pulled[:10])
                problems.append(f"{len(c.pulled)} example(s) retrieve mostly other classes: rows {rows}")
            minor = problems and len(problems) == 1 and c.pulled and len(c.pulled) <= 0.2 * len(ctx.members(label))
            if problems and not minor:  # a few stray clips are the mislabel check's business
                result.findings.append(
                    Finding(
                        "search_inconsistency",
                        "warning",
                        f"class {label!r}: " + "; ".join(problems),
                        evidence=tuple(Evidence(p["row"], f"retrieves_{p['pulls_in']}") for p in c.pulled[:20]),
                        labels=(label,),
                        confidence=clamp(1 - min(c.example_precision, c.text_precision or 1.0)),
                        action=f"sharpen what {label!r} means: review its clips that retrieve other classes, "
                        "and give it text prompts in the audit config if the label words are ambiguous",
                    )
                )
        return result
