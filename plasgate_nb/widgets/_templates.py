"""The send form's template section: one template, one per value of a column, or A/B variants with a holdout.

Widgets only: it keeps the texts the analyst types and hands them over as ``render_messages`` takes
them (``template``, ``by``, ``default``) and as ``assign_variants`` takes them (variants, ``holdout``,
``seed``). Rendering, assigning and checking the texts happen in those functions, called by the form; the
section only refuses an empty text and a column with too many values for one editor each.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import ipywidgets as w
import pandas as pd

from ..errors import ConfigError
from ._choices import close_tree, guess_template_by

__all__ = ["MAX_VALUES", "MODES", "NO_VALUE", "TemplateEditor", "TemplateSection", "TemplateSpec"]

MODES = [("one template", "one"), ("one per value of a column", "by"), ("A/B variants", "variants")]
MAX_VALUES = 20  # a column with more values than this gets no editors: choose another column
_STYLE = {"description_width": "9em"}
_SLUG = re.compile(r"^[A-Za-z0-9_-]+$")


class _NoValue:
    """The key of the editor for rows whose column is empty (passed to ``render_messages`` as ``default``)."""

    def __repr__(self) -> str:
        return "(no value)"


NO_VALUE = _NoValue()


@dataclass
class TemplateEditor:
    """One template's editor: a heading (a value of the column) or a name field (a variant), its text, its preview."""

    key: Any
    text: w.Textarea
    preview: w.HTML
    box: w.VBox
    name: w.Text | None = None
    remove_button: w.Button | None = None
    column: str | None = None

    @property
    def template_key(self) -> Any:
        """The key of this template in the mapping given to ``render_messages``."""
        return self.key if self.name is None else self.name.value.strip()

    @property
    def label(self) -> str:
        """How errors and headings name this template."""
        if self.name is not None:
            return f"variant {self.template_key!r}"
        return "rows with no value" if self.key is NO_VALUE else repr(self.key)


@dataclass(frozen=True)
class TemplateSpec:
    """What the section's texts make: arguments for ``render_messages`` (and ``assign_variants``)."""

    template: str | dict[Any, str]
    by: str | None = None
    default: str | None = None
    variants: tuple[str, ...] = ()
    holdout: float = 0.0
    seed: str = ""


def _css(value: Any, position: int) -> str:
    """A CSS-safe name for a value (its text when it is plain ASCII, else its position)."""
    text = str(value)
    return text if _SLUG.match(text) else f"v{position}"


def _textarea(value: str) -> w.Textarea:
    """A template text box, updated as the analyst types."""
    return w.Textarea(
        value=value,
        layout=w.Layout(width="95%", height="6em"),
        placeholder="Hi {{ first_name }}, use code {{ coupon }}",
    )


class TemplateSection:
    """The template controls of :class:`~plasgate_nb.widgets.SendForm` and the texts typed in them.

    ``mode`` chooses one template, one template per value of the column ``by`` (an editor per value
    present in the frame, most frequent first, and one for rows with no value when there are some), or
    A/B variants (an editor per variant, a ``holdout`` share and a ``seed``). ``on_change`` runs after any
    text, name or choice changes.
    """

    def __init__(
        self,
        df: pd.DataFrame,
        *,
        template: str | Mapping[Any, str],
        template_by: str | None,
        variants: Mapping[str, str] | None,
        holdout: float,
        seed: str | None,
        on_change: Callable[[], None],
    ) -> None:
        columns = [str(c) for c in df.columns]
        self.df = df
        self._on_change = on_change
        self._typed: dict[tuple[str, Any], str] = {}  # texts per (column, value), kept when the column changes
        single = template if isinstance(template, str) else ""
        mode = "variants" if variants else "one"
        if isinstance(template, Mapping):
            if template_by is None:
                raise ConfigError("templates per value need template_by=<column> (the column whose value picks each)")
            if template_by not in columns:
                raise ConfigError(f"template_by names a column the frame does not have: {template_by!r}")
            self._typed.update({(template_by, key): str(text) for key, text in template.items()})
            single = next((str(t) for t in template.values()), "")
            mode = "by"
        elif template_by is not None and template_by not in columns:
            raise ConfigError(f"template_by names a column the frame does not have: {template_by!r}")
        self.mode = w.ToggleButtons(
            options=MODES, value=mode, description="templates", style={**_STYLE, "button_width": "auto"}
        )
        self.text = w.Textarea(
            value=single,
            description="template",
            layout=w.Layout(width="95%", height="7em"),
            placeholder="Hi {{ first_name }}, use code {{ coupon }}",
            style=_STYLE,
        )
        by = template_by or guess_template_by(columns)
        self.by = w.Dropdown(options=columns, value=by, description="per value of", style=_STYLE)
        self.values_note = w.HTML()
        self.values_box = w.VBox()
        self.value_editors: dict[Any, TemplateEditor] = {}
        self.variants_box = w.VBox()
        self.variant_editors: list[TemplateEditor] = []
        self.add_variant_button = w.Button(description="Add variant", icon="plus", tooltip="another template to test")
        self.holdout = w.BoundedFloatText(
            value=holdout, min=0.0, max=0.9, step=0.05, description="holdout share", style=_STYLE
        )
        self.seed = w.Text(
            value=seed or "",
            description="seed",
            placeholder="empty: the campaign name",
            style=_STYLE,
            tooltip="the same seed and key give the same variants on every run",
        )
        self.one_box = w.VBox([self.text])
        self.by_box = w.VBox([self.by, self.values_note, self.values_box])
        self.variants_panel = w.VBox([w.HBox([self.holdout, self.seed]), self.variants_box, self.add_variant_button])
        self.widget = w.VBox([self.mode, self.one_box, self.by_box, self.variants_panel])
        if mode == "by":
            self.rebuild_values()
        for name, text in (variants or {}).items():
            self.add_variant(str(name), str(text), notify=False)
        self._show(mode)
        self.mode.observe(self._on_mode, names="value")
        self.by.observe(self._on_by, names="value")
        self.text.observe(self._changed, names="value")
        for control in (self.holdout, self.seed):
            control.observe(self._changed, names="value")
        self.add_variant_button.on_click(lambda _button: self.add_variant())

    # ------------------------------------------------------------------------------------------ events
    def _changed(self, _change: Any = None) -> None:
        """Tell the form that what would be rendered changed."""
        self._on_change()

    def _show(self, mode: str) -> None:
        """Show the controls of ``mode`` only."""
        for box, shown in ((self.one_box, "one"), (self.by_box, "by"), (self.variants_panel, "variants")):
            box.layout.display = None if mode == shown else "none"

    def _on_mode(self, change: dict[str, Any]) -> None:
        """Switch modes; the first switch to a mode fills its editors with the one template's text."""
        mode = change["new"]
        if mode == "by" and not self.value_editors:
            self.rebuild_values()
        if mode == "variants" and not self.variant_editors:
            self.add_variant(notify=False)
            self.add_variant(notify=False)
        self._show(mode)
        self._changed()

    def _on_by(self, _change: Any) -> None:
        """Another column: one editor per value of it (texts typed for the previous column are kept)."""
        self.rebuild_values()
        self._changed()

    # ------------------------------------------------------------------------------------------ values
    def value_counts(self) -> tuple[pd.Series, int]:
        """How many rows hold each value of the chosen column (most first), and how many hold none."""
        column = self.df[self.by.value]
        if isinstance(column, pd.DataFrame):
            raise ConfigError(f"the frame has {column.shape[1]} columns named {self.by.value!r}; keep only one")
        try:
            counts = column.value_counts(dropna=True, sort=True)
        except TypeError as exc:  # unhashable cells (lists, dicts) cannot pick a template
            raise ConfigError(f"column {self.by.value!r} holds values that cannot pick a template: {exc}") from exc
        return counts, int(column.isna().sum())

    def rebuild_values(self) -> None:
        """One editor per value of the chosen column, pre-filled with its text typed before, else the one template."""
        self._keep_typed()
        for editor in self.value_editors.values():
            close_tree(editor.box)
        self.value_editors = {}
        column = self.by.value
        try:
            counts, missing = self.value_counts()
        except ConfigError as exc:
            self.values_note.value = f'<span style="color: #b00020">{exc}</span>'
            self.values_box.children = ()
            return
        if len(counts) > MAX_VALUES:
            self.values_note.value = f'<span style="color: #b00020">{self._too_many(column, len(counts))}</span>'
            self.values_box.children = ()
            return
        entries = [(value, int(n)) for value, n in counts.items()]
        if missing:
            entries.append((NO_VALUE, missing))
        for position, (value, n) in enumerate(entries):
            text = self._typed.get((column, value), self.text.value)
            shown = "no value (empty cells)" if value is NO_VALUE else f"{column} = {value}"
            heading = w.HTML(f"<b>{_escape(shown)}</b> &middot; {n} row(s)")
            editor = TemplateEditor(value, _textarea(text), w.HTML(), w.VBox(), column=column)
            editor.box.children = (heading, editor.text, editor.preview)
            self._name(editor, "template-for", _css(value, position))
            editor.text.observe(self._changed, names="value")
            self.value_editors[value] = editor
        note = f"One template per value of <b>{_escape(column)}</b>; each shows a row that uses it."
        unused = [key for (where, key) in self._typed if where == column and key not in self.value_editors]
        if unused:
            shown = ", ".join(_escape(repr(key)) for key in unused)
            note += f' <span style="color: #8a6d00">No row has {shown}: that template is not used.</span>'
        self.values_note.value = note
        self.values_box.children = tuple(e.box for e in self.value_editors.values())

    @staticmethod
    def _too_many(column: str, n: int) -> str:
        """Why a column gets no editors."""
        return (
            f"column {column!r} has {n} different values: choose a column with at most {MAX_VALUES} (one template each)"
        )

    def _keep_typed(self) -> None:
        """Remember the texts of the current value editors (switching columns back brings them back)."""
        for editor in self.value_editors.values():
            self._typed[(editor.column, editor.key)] = editor.text.value

    # ------------------------------------------------------------------------------------------ variants
    def add_variant(self, name: str | None = None, text: str | None = None, *, notify: bool = True) -> TemplateEditor:
        """Add a variant editor (named A, B, C... and pre-filled with the last variant's text by default)."""
        taken = {e.template_key for e in self.variant_editors}
        if name is None:
            name = next(chr(c) for c in range(ord("A"), ord("Z") + 1) if chr(c) not in taken)
        if text is None:
            text = self.variant_editors[-1].text.value if self.variant_editors else self.text.value
        field = w.Text(
            value=name, description="variant", style={"description_width": "4em"}, layout=w.Layout(width="14em")
        )
        remove = w.Button(description="Remove", icon="trash", tooltip="remove this variant")
        editor = TemplateEditor(None, _textarea(text), w.HTML(), w.VBox(), name=field, remove_button=remove)
        editor.box.children = (w.HBox([field, remove]), editor.text, editor.preview)
        editor.box.layout = w.Layout(border="1px solid #ddd", padding="2px", margin="2px 0")
        self._name(editor, "variant", str(len(self.variant_editors)))
        field.add_class("plasgate-variant-name")
        remove.add_class("plasgate-variant-remove")
        for control in (field, editor.text):
            control.observe(self._changed, names="value")
        remove.on_click(lambda _button: self.remove_variant(editor))
        self.variant_editors.append(editor)
        self._layout_variants()
        if notify:
            self._changed()
        return editor

    def remove_variant(self, editor: TemplateEditor) -> None:
        """Remove a variant editor (the last one stays)."""
        if editor not in self.variant_editors or len(self.variant_editors) == 1:
            return
        self.variant_editors.remove(editor)
        close_tree(editor.box)
        self._layout_variants()
        self._changed()

    def _layout_variants(self) -> None:
        """Show the variant editors in order; a lone variant cannot be removed."""
        self.variants_box.children = tuple(e.box for e in self.variant_editors)
        for editor in self.variant_editors:
            editor.remove_button.disabled = len(self.variant_editors) == 1  # type: ignore[union-attr]

    # ------------------------------------------------------------------------------------------ results
    @staticmethod
    def _name(editor: TemplateEditor, kind: str, suffix: str) -> None:
        """CSS classes of an editor: ``plasgate-<kind>``, ``plasgate-<kind>-<suffix>``, and its parts'."""
        editor.box.add_class(f"plasgate-{kind}")
        editor.box.add_class(f"plasgate-{kind}-{suffix}")
        editor.text.add_class("plasgate-template-text")
        editor.preview.add_class("plasgate-template-preview")

    def editors(self) -> list[TemplateEditor]:
        """The editors of the current mode (none for one template)."""
        mode = self.mode.value
        if mode == "by":
            return list(self.value_editors.values())
        if mode == "variants":
            return list(self.variant_editors)
        return []

    def spec(self, *, campaign: str) -> TemplateSpec:
        """The texts as arguments for ``render_messages``; ConfigError names an empty text or a column without editors.

        ``campaign`` is the seed when the seed field is empty.
        """
        mode = self.mode.value
        if mode == "one":
            if not self.text.value.strip():
                raise ConfigError("the template is empty: type the message text")
            return TemplateSpec(self.text.value)
        editors = self.editors()
        if mode == "by" and not editors:
            counts, _missing = self.value_counts()
            if len(counts) > MAX_VALUES:
                raise ConfigError(self._too_many(self.by.value, len(counts)))
            raise ConfigError(f"column {self.by.value!r} has no values to give templates to")
        for editor in editors:
            if not editor.text.value.strip():
                raise ConfigError(f"the template for {editor.label} is empty: type its text")
        if mode == "by":
            texts = {e.key: e.text.value for e in editors if e.key is not NO_VALUE}
            missing = self.value_editors.get(NO_VALUE)
            return TemplateSpec(texts, by=self.by.value, default=None if missing is None else missing.text.value)
        names = tuple(e.template_key for e in editors)  # assign_variants checks them (distinct, not "holdout")
        return TemplateSpec(
            {name: e.text.value for name, e in zip(names, editors, strict=True)},
            by="variant",
            variants=names,
            holdout=float(self.holdout.value),
            seed=self.seed.value.strip() or campaign,
        )

    def close(self) -> None:
        """Close every widget of the section."""
        close_tree(self.widget)
        for editor in [*self.value_editors.values(), *self.variant_editors]:
            close_tree(editor.box)


def _escape(text: Any) -> str:
    """Text made safe for HTML."""
    import html

    return html.escape(str(text), quote=False)
