"""The demo release pair: the digits CNN (`digits_cnn`) and a second release of it trained with one digit
under-represented on purpose (`digits_cnn_v2`), judged as a CI pipeline would judge it.

Both are audited on the same held-out digits, so the comparison is paired (McNemar's test). The second
release is checked against the first with the policy `auditor policy init` writes, and fails it; its
report carries the verdict, and `release_diff/` holds the diff (JSON, HTML, PDF, Markdown), the
verdict as JUnit and Markdown, and the policy used.
"""

from __future__ import annotations

from pathlib import Path

from auditor.policy.defaults import DEFAULT_POLICY_TOML
from auditor.progress import Progress
from auditor.schema.report import AuditReport

RELEASE_PAIR = ("digits_cnn", "digits_cnn_v2")
DEGRADED_DIGIT = 3
KEEP_FRACTION = 0.05
"""The second release trains on 5% of the training images of digit 3 (7 of 146)."""
RELEASE_FOLDER = "release_diff"


def judge_release(report: AuditReport, baseline: AuditReport | None, out_dir: Path, *,
                  progress: Progress) -> AuditReport:
    """Judges the second release against the first (read from `out_dir` when not given) and writes
    `out_dir/release_diff/`; returns the report with the verdict in it (unchanged without a baseline)."""
    import tomllib

    from auditor.policy.diff import diff_reports
    from auditor.policy.evaluate import evaluate_policy
    from auditor.policy.load import parse_policy
    from auditor.report.io import load_report, write_files
    from auditor.report.release import save_diff, save_verdict

    if baseline is None:
        previous = out_dir / RELEASE_PAIR[0] / "audit.json"
        if not previous.is_file():
            progress.note(f"{RELEASE_PAIR[1]}: no {RELEASE_PAIR[0]} audit in {out_dir} to compare with")
            return report
        baseline = load_report(previous)
    folder = out_dir / RELEASE_FOLDER
    policy = parse_policy(tomllib.loads(DEFAULT_POLICY_TOML), source="policy.toml (auditor policy init)")
    verdict = evaluate_policy(report, policy, baseline)
    report = report.with_policy(verdict)  # the gate's result is the headline, also on the diff's first page
    progress.note(f"{RELEASE_PAIR[1]}: writing the release diff and the check's verdict to {folder}")
    save_diff(diff_reports(baseline, report), folder)
    save_verdict(verdict, junit=folder / "junit.xml", markdown=folder / "check.md")
    write_files(folder, {"policy.toml": DEFAULT_POLICY_TOML.encode("utf-8")})
    return report


__all__ = ["DEGRADED_DIGIT", "KEEP_FRACTION", "RELEASE_FOLDER", "RELEASE_PAIR", "judge_release"]
