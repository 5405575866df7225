"""The README's tables against the code, and every relative link of the documentation against the tree.

The README is the one home of the published-metrics table and of the configuration tables:

- the metric table lists exactly ``cni_metrics.core.catalogue.METRICS``, names and units;
- the collector's table lists exactly the variables of ``cni_metrics.collector.settings.Settings`` (its
  field aliases) with the model's defaults, plus the Powertools variables the handler reads itself;
- the dashboard function's table lists exactly the variables of its settings model that the collector
  does not read, with the model's defaults (the shared ones have the collector's defaults), each read by
  the dashboard package; the two tables together name every variable the template sets;
- the stack parameters table lists exactly the parameters of template.yaml with their defaults.

Every relative link of README.md and docs/**/*.md must point at a file that exists and, when it names a
heading of a Markdown file, at a heading that exists (GitHub's anchors).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cni_metrics.collector.settings import Settings
from cni_metrics.core.catalogue import METRICS
from local_lambda.built import read_template
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted([README, *(ROOT / "docs").rglob("*.md")])
COLLECTOR_APP = ROOT / "functions" / "collector" / "app.py"
DASHBOARD_PACKAGE = ROOT / "layers" / "cni_metrics" / "cni_metrics" / "dashboard"

# Read by the collector's handler (Powertools Logger and Tracer), not by the settings model: name -> default.
HANDLER_VARIABLES = {"POWERTOOLS_SERVICE_NAME": "cni-metrics", "POWERTOOLS_TRACE_DISABLED": "true"}
EMPTY = "(empty)"
REQUIRED = "(required)"

_FENCE = re.compile(r"^```.*?^```[^\n]*$", flags=re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", flags=re.MULTILINE)
_CELL_SEPARATOR = re.compile(r"(?<!\\)\|")


def _section(markdown: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line, e.g. ``"### Collector"``) up to the next heading
    of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = markdown.splitlines()
    start = lines.index(heading) + 1
    for end in range(start, len(lines)):
        match = re.match(r"^(#{1,6})\s", lines[end])
        if match and len(match.group(1)) <= level:
            return "\n".join(lines[start:end])
    return "\n".join(lines[start:])


def _table(text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in ``text``, cells stripped of spaces and backticks."""
    rows: list[list[str]] = []
    in_table = False
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [cell.strip().replace("`", "") for cell in _CELL_SEPARATOR.split(line.strip()[1:-1])]
            rows.append(cells)
            in_table = True
        elif in_table:
            break
    assert len(rows) > 2, "no table found"
    assert all(set(cell) <= set("-: ") for cell in rows[1]), f"not a table header: {rows[:2]}"
    return rows[2:]


def _readme_table(*headings: str) -> list[list[str]]:
    text = README.read_text()
    for heading in headings:
        text = _section(text, heading)
    return _table(text)


def _single_column(rows: list[list[str]]) -> dict[str, str]:
    """First column -> second column, each name once."""
    names = [row[0] for row in rows]
    assert len(names) == len(set(names)), f"listed twice: {sorted({n for n in names if names.count(n) > 1})}"
    return {row[0]: row[1] for row in rows}


def _documented_default(field: FieldInfo) -> str:
    """How the table writes a field's default: the value, ``(empty)`` or ``(required)``."""
    if field.is_required():
        return REQUIRED
    default: Any = field.get_default(call_default_factory=True)
    if default is None or default == "" or (isinstance(default, list | tuple) and not default):
        return EMPTY
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def _template() -> dict[str, Any]:
    return read_template(ROOT / "template.yaml")


def _environment(template: dict[str, Any], function: str) -> set[str]:
    """Variable names the template sets for ``function`` (its own and the Globals)."""
    shared = template["Globals"]["Function"]["Environment"]["Variables"]
    own = template["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
    return set(shared) | set(own)


def test_metric_table_lists_exactly_the_catalogue_with_units() -> None:
    # given the README's published-metrics table (one or more names per row, then the unit)
    documented: dict[str, str] = {}
    for row in _readme_table("## Published metrics"):
        for name in row[0].split(","):
            # then no metric is listed twice
            assert name.strip() not in documented, f"{name.strip()} listed twice"
            documented[name.strip()] = row[1]
    # when compared with the catalogue
    expected = {metric.name: metric.unit for metric in METRICS}
    # then the names and units are exactly the published ones
    assert documented == expected


def test_collector_table_lists_exactly_the_settings_with_their_defaults() -> None:
    # given the README's collector configuration table
    documented = _single_column(_readme_table("## Configuration", "### Collector"))
    # when compared with the settings model's variables (field aliases) and the handler's own variables
    expected = {
        field.alias: _documented_default(field) for field in Settings.model_fields.values() if field.alias
    }
    expected.update(HANDLER_VARIABLES)
    # then every variable is listed once, with the model's default
    assert documented == expected


def test_handler_variables_are_read_by_the_collector_handler() -> None:
    # given the collector handler's source
    source = COLLECTOR_APP.read_text()
    # then each variable documented as read by the handler itself, and its default, appear in it
    for name, default in HANDLER_VARIABLES.items():
        assert f'"{name}"' in source
        assert f'"{default}"' in source


def test_dashboard_table_names_variables_the_dashboard_package_reads() -> None:
    # given the README's dashboard configuration table and the dashboard package's sources
    documented = _single_column(_readme_table("## Configuration", "### Dashboard function"))
    sources = "\n".join(path.read_text() for path in sorted(DASHBOARD_PACKAGE.rglob("*.py")))
    # then every documented variable is a string literal there
    missing = [name for name in documented if f'"{name}"' not in sources]
    assert not missing, f"documented but not read by cni_metrics.dashboard: {missing}"


def test_dashboard_table_lists_its_own_settings_with_their_defaults() -> None:
    # given the dashboard function's settings model (imported here, so that a rename fails this test only)
    from cni_metrics.dashboard.settings import DashboardSettings

    fields = {field.alias: field for field in DashboardSettings.model_fields.values() if field.alias}
    # and the README's two configuration tables
    collector = _single_column(_readme_table("## Configuration", "### Collector"))
    documented = _single_column(_readme_table("## Configuration", "### Dashboard function"))
    # then the dashboard's table lists exactly the variables the collector does not read, with their defaults
    own = {alias: _documented_default(field) for alias, field in fields.items() if alias not in collector}
    assert documented == own
    # and the variables both read have the same defaults (AWS_REGION: required by the dashboard, as the
    # README says in prose)
    shared = {
        alias: _documented_default(field)
        for alias, field in fields.items()
        if alias in collector and alias != "AWS_REGION"
    }
    assert shared == {alias: collector[alias] for alias in shared}
    assert fields["AWS_REGION"].is_required()


def test_every_variable_the_template_sets_is_documented() -> None:
    # given the two configuration tables and the template
    collector = set(_single_column(_readme_table("## Configuration", "### Collector")))
    dashboard = set(_single_column(_readme_table("## Configuration", "### Dashboard function")))
    local = set(_single_column(_readme_table("## Configuration", "### Local endpoints")))
    template = _template()
    # then the collector's variables are in its table or the local endpoints', and the dashboard
    # function's in one of the three (it shares the collector's cluster, namespace and threshold variables)
    assert _environment(template, "CollectorFunction") <= collector | local
    assert _environment(template, "DashboardFunction") <= collector | dashboard | local


def test_parameter_table_lists_exactly_the_template_parameters_with_their_defaults() -> None:
    # given the README's stack parameters table and the template's parameters
    documented = _single_column(_readme_table("## Deploy in five steps", "### Stack parameters"))
    parameters = _template()["Parameters"]
    # when the defaults are written as the table writes them
    expected = {
        name: EMPTY if str(spec.get("Default", "")) == "" else str(spec["Default"])
        for name, spec in parameters.items()
    }
    # then every parameter is listed once, with its default
    assert documented == expected


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, punctuation dropped, lower case, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    """The heading anchors of a Markdown file (a repeated heading gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    anchors: set[str] = set()
    for _, heading in _HEADING.findall(_FENCE.sub("", path.read_text())):
        slug = _slug(heading)
        anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _relative_links() -> Iterator[tuple[Path, str]]:
    for path in DOCS:
        prose = _CODE_SPAN.sub("", _FENCE.sub("", path.read_text()))
        for target in _LINK.findall(prose):
            if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # http:, https:, mailto: ...
                yield path, target


@pytest.mark.parametrize(
    ("source", "target"),
    [pytest.param(path, target, id=f"{path.relative_to(ROOT)}->{target}")
     for path, target in _relative_links()],
)
def test_relative_link_points_at_an_existing_file_and_heading(source: Path, target: str) -> None:
    # given a relative link of the documentation
    file_part, _, anchor = target.partition("#")
    # when it is resolved against the linking file's folder
    resolved = (source.parent / file_part).resolve() if file_part else source
    # then the file exists, and so does the heading it names
    assert resolved.exists(), f"{source.relative_to(ROOT)}: {target} does not exist"
    if anchor and resolved.suffix == ".md":
        assert anchor in _anchors(resolved), f"{source.relative_to(ROOT)}: no heading #{anchor} in {resolved}"


def test_the_documents_have_relative_links() -> None:
    # given the documentation files
    # then the link check above has something to check in each of the README and the moved documents
    linking = {path.relative_to(ROOT).as_posix() for path, _ in _relative_links()}
    assert {"README.md", "docs/operations.md", "docs/design/state.md", "docs/benchmarks.md"} <= linking
