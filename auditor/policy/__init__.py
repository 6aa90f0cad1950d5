"""Stage 5, policy: the release gate. Rules and waivers are data (`rules.py`), read from TOML
(`load.py`); `evaluate.py` judges an audit, optionally against the last release's audit, and returns a
`PolicyVerdict` (`verdict.py`) whose exit code the CLI uses; `diff.py` compares two audits, with paired
significance (`stats.py`) when both saw the same data (`pairing.py`).

Import the API from `auditor` (`auditor.evaluate_policy`, `auditor.load_policy`, `auditor.diff_reports`):
this package's `__init__` imports nothing, because the report schema imports `verdict.py`.
"""
