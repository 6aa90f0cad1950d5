"""JUnit XML of a policy verdict: one test case per rule, so CI systems list the gate beside the tests.

A failed rule is a `<failure>` whose message carries the numbers; a skipped rule is `<skipped>`; a rule
that only warns passes, with the warning in `<system-out>`. ElementTree escapes the text; characters XML
cannot hold at all (control characters from a hostile module name) are replaced.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from auditor.schema.verdict import PolicyVerdict, Status

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: object) -> str:
    return _NOT_XML.sub("\ufffd", str(value))


def render_junit(verdict: PolicyVerdict, *, suite: str = "auditor policy") -> str:
    """The verdict as a JUnit XML document (`<testsuites>` with one `<testsuite>`)."""
    counts = verdict.counts
    totals = {"tests": str(len(verdict.results)), "failures": str(counts["fail"]), "errors": "0",
              "skipped": str(counts["skipped"])}
    root = ET.Element("testsuites", {"name": "auditor", **totals})
    testsuite = ET.SubElement(root, "testsuite", {"name": _text(f"{suite}: {verdict.audit}"), **totals,
                                                  "timestamp": verdict.evaluated_on.isoformat()})
    properties = ET.SubElement(testsuite, "properties")
    for name, value in (("policy", verdict.policy), ("audit", verdict.audit), ("baseline", verdict.baseline or ""),
                        ("comparison", verdict.comparison), ("exit_code", verdict.exit_code)):
        ET.SubElement(properties, "property", {"name": name, "value": _text(value)})
    for result in verdict.results:
        case = ET.SubElement(testsuite, "testcase", {"classname": f"auditor.policy.{result.kind}",
                                                     "name": _text(result.name)})
        body = _text("\n".join([result.message, *result.details]))
        if result.status is Status.FAIL:
            ET.SubElement(case, "failure", {"message": _text(result.message), "type": "PolicyFailure"}).text = body
        elif result.status is Status.SKIPPED:
            ET.SubElement(case, "skipped", {"message": _text(result.message)})
        elif result.status is Status.WARN:
            ET.SubElement(case, "system-out").text = _text(f"warning: {body}")
        else:
            ET.SubElement(case, "system-out").text = _text(result.message)
    if verdict.notes:
        ET.SubElement(testsuite, "system-out").text = _text("\n".join(verdict.notes))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


__all__ = ["render_junit"]
