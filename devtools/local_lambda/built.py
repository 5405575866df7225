"""What `sam build` produced for one function: code dir, layer dirs, handler, limits and environment.

Reads ``<build dir>/template.yaml`` (long-form intrinsics; short ``!Tags`` are accepted too), merges the
``Globals.Function`` section the way SAM does (maps merged, lists concatenated, the function's scalars
win) and resolves what can be resolved locally: ``Ref`` to parameters (their defaults, or the given
overrides) and pseudo parameters, and ``Fn::FindInMap``. The environment is the one `sam local invoke`
gives: every declared variable, a ``Ref`` to a resource as its logical id, anything else unresolved
(``Fn::GetAtt``, ...) as an empty string; an env-vars file may override declared variables only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]


class BuildError(RuntimeError):
    """The build directory does not hold a usable artifact for the function."""


class _Unresolved:
    """Marker for a value this tool cannot compute locally."""


UNRESOLVED = _Unresolved()


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """Safe loader that turns CloudFormation short tags (``!Ref x``) into their long form."""


def _short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _short_tag)


def read_template(path: Path) -> dict[str, Any]:
    """A CloudFormation/SAM YAML template as plain data (short tags in their long form)."""
    document = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(document, dict):
        raise BuildError(f"{path} is not a template")
    return document


@dataclass(frozen=True)
class BuiltFunction:
    """One function of the build, resolved as far as possible."""

    name: str
    code_dir: Path
    layer_dirs: tuple[Path, ...]
    handler: str
    runtime: str
    timeout_seconds: int
    memory_mb: int
    environment: dict[str, str]
    """Every variable the function declares (Globals and its own), resolved as `sam local invoke` does."""


def load_function(build_dir: Path, function: str, parameters: Mapping[str, str] | None = None,
                  region: str = "us-east-1") -> BuiltFunction:
    """The built ``function`` of ``build_dir`` (raises ``BuildError`` when it is missing or not built)."""
    build_dir = build_dir.resolve()  # the runtime's working directory is the task root
    template_path = build_dir / "template.yaml"
    if not template_path.is_file():
        raise BuildError(f"{template_path} not found: run `make build-local` (sam build) first")
    template = read_template(template_path)
    resources: dict[str, Any] = template.get("Resources") or {}
    resource = resources.get(function)
    if not resource or resource.get("Type") != "AWS::Serverless::Function":
        raise BuildError(f"{function} is not an AWS::Serverless::Function of {template_path}")
    props = _merge((template.get("Globals") or {}).get("Function") or {}, resource.get("Properties") or {})
    resolver = _Resolver(template, dict(parameters or {}), region)

    def value(key: str, default: Any) -> Any:
        resolved = resolver.resolve(props.get(key, default))
        if isinstance(resolved, _Unresolved):
            raise BuildError(f"{function}.{key} cannot be resolved locally")
        return resolved

    code_dir = build_dir / str(value("CodeUri", ""))
    layer_dirs = []
    for layer in props.get("Layers") or []:
        logical_id = layer.get("Ref") if isinstance(layer, dict) else None
        layer_resource = resources.get(logical_id or "") or {}
        if layer_resource.get("Type") != "AWS::Serverless::LayerVersion":
            raise BuildError(f"{function}: layer {layer!r} is not a layer of this template")
        layer_dirs.append(build_dir / str(resolver.resolve(layer_resource["Properties"]["ContentUri"])))
    for directory in (code_dir, *layer_dirs):
        if not directory.is_dir():
            raise BuildError(f"{directory} not found: the build is incomplete, run `make build-local`")
    variables = ((props.get("Environment") or {}).get("Variables")) or {}
    environment = {str(name): _env_string(resolver.resolve(raw, resources=True))
                   for name, raw in variables.items()}
    return BuiltFunction(
        name=function,
        code_dir=code_dir,
        layer_dirs=tuple(layer_dirs),
        handler=str(value("Handler", "")),
        runtime=str(value("Runtime", "")),
        timeout_seconds=int(value("Timeout", 3)),
        memory_mb=int(value("MemorySize", 128)),
        environment=environment,
    )


def _env_string(value: Any) -> str:
    """An environment value as sam local invoke writes it: unresolved or absent -> "", booleans lower case."""
    if isinstance(value, _Unresolved | dict | list) or value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _merge(global_props: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals rule: maps merge, lists concatenate (globals first), the function's scalars win."""
    merged = dict(global_props)
    for key, value in props.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict) and not _is_intrinsic(value):
            merged[key] = _merge(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = current + value
        else:
            merged[key] = value
    return merged


def _is_intrinsic(value: Mapping[str, Any]) -> bool:
    return any(key in ("Ref", "Condition") or key.startswith("Fn::") for key in value)


class _Resolver:
    """Resolves the intrinsics whose value is known without a deployment."""

    def __init__(self, template: Mapping[str, Any], overrides: dict[str, str], region: str) -> None:
        self._parameters = {
            name: overrides.get(name, spec.get("Default"))
            for name, spec in (template.get("Parameters") or {}).items()
        }
        self._mappings: Mapping[str, Any] = template.get("Mappings") or {}
        self._resources = set(template.get("Resources") or {})
        self._pseudo = {"AWS::Region": region, "AWS::AccountId": "123456789012", "AWS::Partition": "aws",
                        "AWS::StackName": "local", "AWS::URLSuffix": "amazonaws.com"}

    def resolve(self, value: Any, *, resources: bool = False) -> Any:
        """``value`` resolved; with ``resources``, a ``Ref`` to a resource is its logical id (as sam's)."""
        if not isinstance(value, dict):
            return value
        if "Ref" in value:
            name = value["Ref"]
            if name in self._pseudo:
                return self._pseudo[name]
            if resources and name in self._resources:
                return name
            found = self._parameters.get(name, UNRESOLVED)
            return UNRESOLVED if found is None else found
        if "Fn::FindInMap" in value:
            keys = [self.resolve(key) for key in value["Fn::FindInMap"]]
            if any(isinstance(key, _Unresolved) for key in keys):
                return UNRESOLVED
            try:
                return self._mappings[keys[0]][keys[1]][keys[2]]
            except (KeyError, IndexError, TypeError):
                return UNRESOLVED
        return UNRESOLVED
