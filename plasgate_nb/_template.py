"""The Jinja side of composition: sandboxed environment, value conversion, masking pass, pieces.

A template is parsed once, its outputs that use masked columns are wrapped in a masking filter, and
its top-level body is cut into independent *pieces* (a text, a column, an expression, a block) that
the renderer evaluates once per distinct combination of the columns each piece uses.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment

from ._masking import S_CLOSE, S_OPEN, S_TOGGLE, strip_sentinels
from .errors import TemplateError
from .segments import MASK_MARKER

__all__ = ["MISSING", "CompiledTemplate", "Piece", "compile_template", "missing", "to_template_value", "to_text"]

MASK_FILTER = "_plasgate_mask"
# Top-level nodes that neither define names nor depend on names defined elsewhere in the template.
_INDEPENDENT = (nodes.Output, nodes.If, nodes.For, nodes.FilterBlock, nodes.With, nodes.Scope)


class _Missing(jinja2.ChainableUndefined):
    """A missing value (NaN, None, NA, NaT): renders as empty text, survives ``.strftime(...)``.

    It is an ``Undefined``, so ``{{ x|default('-') }}`` and ``{% if x is defined %}`` treat it as
    absent; comparisons with it are false; arithmetic on it is an error naming the column.
    """

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> _Missing:
        """Calling a method of a missing value gives a missing value."""
        return self

    def __lt__(self, other: Any) -> bool:
        """A missing value is never smaller than anything."""
        return False

    __le__ = __gt__ = __ge__ = __lt__

    def __hash__(self) -> int:
        """Hash like any other missing value."""
        return hash(_Missing)


MISSING = _Missing(hint="a value is missing in this row (use |default(...))")


def missing(name: str) -> _Missing:
    """The missing value of column ``name`` (its errors name the column)."""
    return _Missing(hint=f"{name!r} is missing in this row (use {{{{ {name}|default(...) }}}})")


class _Masked(str):
    """Text already wrapped in masking sentinels; the finalizer lets it through untouched."""

    __slots__ = ()


def _is_missing(value: Any) -> bool:
    """Tell NaN, None, pd.NA and NaT apart from real values (never raises)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return isinstance(value, np.datetime64) and np.isnat(value)


def to_template_value(value: Any) -> Any:
    """Convert one data value into what a template sees (missing, int-like floats, dates, numpy)."""
    if isinstance(value, str):
        return strip_sentinels(value)
    if _is_missing(value):
        return MISSING
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dt.datetime) and value.tzinfo is None and value.time() == dt.time():
        return value.date()
    return value


def to_text(value: Any) -> str:
    """Render one output value as text: missing values empty, dates ISO, no sentinels (finalize)."""
    if type(value) is _Masked:
        return value
    if isinstance(value, _Missing) or _is_missing(value):
        return ""
    if isinstance(value, jinja2.Undefined):
        return str(value)  # a StrictUndefined raises here, naming the variable
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None and value.time() == dt.time():
            return value.date().isoformat()
        return str(value)
    return strip_sentinels(value if isinstance(value, str) else str(value))


def _mask_filter(value: Any) -> str:
    """Wrap an output in masking sentinels (empty outputs stay empty: nothing to hide)."""
    text = to_text(value) if type(value) is not _Masked else strip_sentinels(str.__str__(value))
    text = text.translate({ord(S_OPEN): None, ord(S_CLOSE): None, ord(S_TOGGLE): None})
    return _Masked(S_OPEN + text + S_CLOSE) if text else ""


def make_environment() -> SandboxedEnvironment:
    """Build the sandboxed, strict environment templates render in."""
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, finalize=to_text, autoescape=False)
    env.filters[MASK_FILTER] = _mask_filter
    return env


def _names(node: nodes.Node) -> set[str]:
    """Names a node loads or stores, anywhere inside it."""
    found = {n.name for n in node.find_all((nodes.Name, nodes.NSRef))}
    if isinstance(node, nodes.Name | nodes.NSRef):
        found.add(node.name)
    return found


def _tainted(ast: nodes.Template, mask: set[str]) -> set[str]:
    """Names carrying masked data: the masked columns and whatever is assigned from them (conservative)."""
    tainted = set(mask)
    macros = {m.name: [a.name for a in m.args] for m in ast.find_all(nodes.Macro)}
    changed = True
    while changed:
        changed = False
        flows: list[tuple[list[nodes.Node], nodes.Node]] = []
        flows += [([n.node], n.target) for n in ast.find_all(nodes.Assign)]
        flows += [([n.iter], n.target) for n in ast.find_all(nodes.For)]
        flows += [(list(n.body), n.target) for n in ast.find_all(nodes.AssignBlock)]
        for with_node in ast.find_all(nodes.With):
            flows += [([v], t) for t, v in zip(with_node.targets, with_node.values, strict=True)]
        for call in ast.find_all(nodes.Call):
            if isinstance(call.node, nodes.Name) and call.node.name in macros:
                flows += [([call], nodes.Name(arg, "store")) for arg in macros[call.node.name]]
        for sources, target in flows:
            if any(_names(source) & tainted for source in sources):
                new = _names(target) - tainted
                tainted |= new
                changed |= bool(new)
    return tainted


def _mask_outputs(ast: nodes.Template, tainted: set[str]) -> bool:
    """Wrap outputs using tainted names in the mask filter; turn literal #ma# into toggles.

    Returns whether the template text holds literal markers.
    """
    toggles = False
    for output in ast.find_all(nodes.Output):
        children: list[nodes.Node] = []
        for child in output.nodes:
            if isinstance(child, nodes.TemplateData):
                data = strip_sentinels(child.data)
                if MASK_MARKER in data:
                    toggles = True
                    data = data.replace(MASK_MARKER, S_TOGGLE)
                child.data = data
            elif _names(child) & tainted:
                child = nodes.Filter(child, MASK_FILTER, [], [], None, None, lineno=child.lineno)
            children.append(child)
        output.nodes = children
    return toggles


@dataclass
class Piece:
    """One independent part of a template's output.

    ``kind`` is ``text`` (constant ``text``), ``column`` (a plain ``{{ name }}``, or one with case
    ``filters`` such as ``{{ name|upper }}``; ``masked`` when wrapped) or ``jinja`` (anything else,
    rendered by ``template`` per distinct ``names``). A column piece keeps its ``template``: it is
    rendered by Jinja wherever a vectorized rendering would not be exact.
    """

    kind: str
    names: tuple[str, ...] = ()
    text: str = ""
    masked: bool = False
    template: jinja2.Template | None = None
    sentinels: bool = False
    filters: tuple[str, ...] = ()


CASE_FILTERS = frozenset({"lower", "upper"})
"""Filters a column piece may carry: on ASCII text, Arrow's ``ascii_lower``/``ascii_upper`` are exact."""


def _column_filters(node: nodes.Node) -> tuple[nodes.Name | None, tuple[str, ...]]:
    """The column of ``name``, ``name|upper``, ``name|lower|upper``...; its filters, innermost first."""
    filters: list[str] = []
    while (
        isinstance(node, nodes.Filter)
        and node.name in CASE_FILTERS
        and node.node is not None
        and not node.args
        and not node.kwargs
        and node.dyn_args is None
        and node.dyn_kwargs is None
    ):
        filters.append(node.name)
        node = node.node
    return (node if isinstance(node, nodes.Name) else None), tuple(reversed(filters))


@dataclass
class CompiledTemplate:
    """A parsed, masked and compiled template with its pieces and the columns it uses."""

    template: jinja2.Template
    pieces: list[Piece]
    names: set[str]
    toggles: bool
    environment: SandboxedEnvironment = field(repr=False)


def _sub_template(env: SandboxedEnvironment, body: list[nodes.Node]) -> jinja2.Template:
    """Compile a list of top-level nodes as a template of its own."""
    return env.from_string(nodes.Template(body, lineno=1).set_environment(env))


def _make_pieces(env: SandboxedEnvironment, ast: nodes.Template, tainted: set[str]) -> list[Piece]:
    """Cut the top-level body into independent pieces (or one piece when names are defined)."""
    from jinja2 import meta

    if not all(isinstance(node, _INDEPENDENT) for node in ast.body):
        return [
            Piece(
                "jinja",
                tuple(sorted(meta.find_undeclared_variables(ast))),
                template=_sub_template(env, ast.body),
                sentinels=True,
            )
        ]
    pieces: list[Piece] = []
    for node in ast.body:
        if not isinstance(node, nodes.Output):
            used = meta.find_undeclared_variables(nodes.Template([node], lineno=1).set_environment(env))
            pieces.append(Piece("jinja", tuple(sorted(used)), template=_sub_template(env, [node]), sentinels=True))
            continue
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                if pieces and pieces[-1].kind == "text":
                    pieces[-1].text += child.data
                else:
                    pieces.append(Piece("text", text=child.data, sentinels=S_TOGGLE in child.data))
                continue
            inner, masked = child, False
            if isinstance(child, nodes.Filter) and child.name == MASK_FILTER:
                inner, masked = child.node, True
            used = _names(child) - {MASK_FILTER}
            template = _sub_template(env, [nodes.Output([child], lineno=child.lineno)])
            column, filters = _column_filters(inner)
            kind = "column" if column is not None else "jinja"
            pieces.append(
                Piece(kind, tuple(sorted(used)), masked=masked, template=template, sentinels=masked, filters=filters)
            )
    return pieces


def compile_template(source: str, *, mask: set[str]) -> CompiledTemplate:
    """Parse, mask and compile ``source``; syntax errors become TemplateError naming the line."""
    from jinja2 import meta

    env = make_environment()
    try:
        ast = env.parse(source)
        used = meta.find_undeclared_variables(ast)
        tainted = _tainted(ast, mask)
        toggles = _mask_outputs(ast, tainted)
        template = env.from_string(ast)
        pieces = _make_pieces(env, ast, tainted)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error on line {exc.lineno}: {exc.message}") from exc
    return CompiledTemplate(template, pieces, set(used), toggles, env)
