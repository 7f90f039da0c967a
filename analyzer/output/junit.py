"""`--format junit`: one testcase per run, a failure when the run trips `--fail-on`.

Why JUnit: every CI system (GitLab, Jenkins, Buildkite) renders it as a test report without plugins.
Unreadable inputs become testcases with an `<error>`, so they are visible and counted.
Every attribute and text passes through `names.xml_text` just before serialising, so a run name or
message with a control character or an undecodable byte cannot make the file ill-formed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from analyzer.output.common import display_path, summary_line
from analyzer.output.failon import FailOn
from analyzer.output.names import clean, xml_text
from analyzer.report import Report


def _finding_text(r) -> str:
    lines = [f"verdict: {r.verdict} — {r.verdict_reason}"]
    if r.checkpoint is not None:
        lines.append(
            f"checkpoint: step {r.checkpoint.step} {display_path(r.checkpoint.path) if r.checkpoint.path else '(no file)'}"
        )
    for f in r.findings:
        steps = f" steps {f.steps[0]}-{f.steps[1]}" if f.steps else ""
        lines.append(f"{f.level} {f.code} {f.name}{steps}: {f.message}")
    for a in r.advice:
        lines.append(f"advice: {a}")
    for i in r.run.issues:
        lines.append(f"ingest {i.level}: {display_path(i.path)}: {i.message}")
    return "\n".join(lines)


def render_junit(report: Report, fail_on: FailOn) -> str:
    failures = sum(1 for r in report.runs if fail_on.run_fails(r))
    errors = len(report.errors)
    suites = ET.Element("testsuites", name="offrl-analyze")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="offrl-analyze",
        tests=str(len(report.runs) + errors),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
    )
    ET.SubElement(ET.SubElement(suite, "properties"), "property", name="fail_on", value=fail_on.describe())
    for r in report.runs:
        case = ET.SubElement(suite, "testcase", classname=f"{r.run.framework}.{r.verdict}", name=r.run.id)
        case.set("file", display_path(r.run.path))
        if fail_on.run_fails(r):
            fail = ET.SubElement(case, "failure", message=f"{r.verdict}: {r.verdict_reason}", type=r.verdict)
            fail.text = _finding_text(r)
        else:
            ET.SubElement(case, "system-out").text = _finding_text(r)
    for e in report.errors:
        case = ET.SubElement(suite, "testcase", classname="ingest", name=display_path(e.path))
        ET.SubElement(case, "error", message=e.message, type="ingest")
    ET.SubElement(suite, "system-out").text = summary_line(report)
    _xml_safe(suites)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _xml_safe(root: ET.Element) -> None:
    """Make every attribute value and text of the tree XML 1.0 characters (in place).

    Attributes (test names, messages) are one line, as names are in every other format; element
    text keeps its line breaks.
    """
    for el in root.iter():
        for key, value in list(el.attrib.items()):
            el.set(key, clean(value))
        if el.text is not None:
            el.text = xml_text(el.text)
