"""Griffe extensions for the documentation site (enabled in ``mkdocs.yml``, python handler).

:class:`AttrsSignatures` gives attrs classes the ``__init__`` signature attrs generates at import
time, which static analysis cannot see (without it their documented ``Args`` would be reported
as parameters that do not exist, and their signatures would read ``PCGrad()``).

:class:`SphinxRoles` renders Sphinx-style markup in docstrings. The packages' docstrings are written for ``help()`` and IDEs in reST flavour: roles such as
``:class:`TaskGradients``` and ``:meth:`combine```, ``Example::`` literal blocks and
``.. math::`` directives. mkdocstrings renders docstrings as Markdown, so this extension
rewrites them at load time, leaving the sources as they are:

- each role becomes a cross-reference (a mkdocs-autorefs ``<autoref>``) to the object it names,
  resolved the way Python would see the name from the docstring's object (its members, then the
  enclosing class and module, then a full dotted path). A link is drawn where the target has a
  page in the site and plain code is left where it has none (a private helper). A name that
  resolves to nothing is a warning, which ``mkdocs build --strict`` turns into a failed build: a
  renamed or deleted function fails CI instead of leaving a dead reference.
- ``text::`` followed by an indented block becomes ``text:`` and a fenced code block;
  ``.. math::`` becomes a fenced block of its formula.
- Prose maths such as ``∇_x̃`` or ``δ*`` stays as written: an underscore or asterisk that reST
  reads literally but Markdown would take for emphasis is escaped (outside code and doctests).
"""

from __future__ import annotations

import html
import inspect
import re
import textwrap
from typing import Any

import attrs
import griffe

__all__ = ["AttrsSignatures", "SphinxRoles", "rewrite"]

logger = griffe.get_logger("griffe_extensions")

_ROLE = re.compile(r":(?:py:)?(?P<role>class|meth|func|attr|mod|data|exc|obj):`(?P<target>[^`]+)`")
_LITERAL_INTRO = re.compile(r"^(?P<indent>[ \t]*)(?P<text>.*?)(?P<space>\s*)::[ \t]*$")
_MATH = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*$")

# Objects outside the documented packages: shown as code, never linked or checked.
EXTERNAL_PREFIXES = ("os.", "torch.", "numpy.", "np.", "pluggy.", "attrs.", "importlib.")


class AttrsSignatures(griffe.Extension):
    """Adds the attrs-generated ``__init__`` (names, kinds, defaults; the annotations of the
    class body, so they cross-reference) to every attrs class that does not define its own."""

    def on_class_members(self, *, node: Any, cls: griffe.Class, **kwargs: Any) -> None:
        if isinstance(node, griffe.ObjectNode) or "__init__" in cls.members:
            return
        try:
            runtime = griffe.dynamic_import(cls.path)
        except ImportError:
            return
        if not (inspect.isclass(runtime) and attrs.has(runtime)):
            return
        parameters = [griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)]
        for field in attrs.fields(runtime):
            if not field.init:
                continue
            member = cls.all_members.get(field.name)
            annotation = member.annotation if isinstance(member, griffe.Attribute) else None
            default = None
            if field.default is not attrs.NOTHING:
                default = _default_source(field.default)
            kind = griffe.ParameterKind.keyword_only if field.kw_only else griffe.ParameterKind.positional_or_keyword
            parameters.append(griffe.Parameter(field.alias, annotation=annotation, kind=kind, default=default))
        init = griffe.Function("__init__", parameters=griffe.Parameters(*parameters), returns="None",
                               lineno=cls.lineno, endlineno=cls.lineno)
        cls.set_member("__init__", init)


def _default_source(default: Any) -> str:
    """A default as source text: its ``repr``, or ``list()`` for ``Factory(list)`` (``...`` for
    a factory without a plain name), so the signature stays valid Python for the formatter."""
    if not isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return repr(default)
    name = getattr(default.factory, "__qualname__", "<lambda>")
    return "..." if "<" in name else f"{name}()"


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring of a loaded package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj.docstring.value, lambda t, o=obj: _resolve(t, o, loader))


def rewrite(text: str, resolve: Any) -> str:
    """``text`` with its roles turned into autorefs (``resolve(target)`` gives the identifier or
    ``None``) and its reST literal and math blocks into fenced blocks."""
    return _ROLE.sub(lambda m: _autoref(m["target"], resolve), _escape(_blocks(text)))


def _autoref(target: str, resolve: Any) -> str:
    shown = target.lstrip("~.")
    if target.startswith("~"):
        shown = shown.rpartition(".")[2]
    code = f"<code>{html.escape(shown)}</code>"
    if shown.startswith(EXTERNAL_PREFIXES) or target.lstrip("~").startswith(EXTERNAL_PREFIXES):
        return code
    identifier = resolve(target.lstrip("~."))
    if identifier is None:
        return code
    return f'<autoref optional identifier="{html.escape(identifier)}">{code}</autoref>'


def _resolve(target: str, obj: griffe.Object, loader: griffe.GriffeLoader) -> str | None:
    """The full path ``target`` names when read in ``obj``'s docstring, or ``None`` (warned)."""
    head, _, rest = target.partition(".")
    try:
        path = obj.resolve(head)
    except griffe.NameResolutionError:
        path = head  # a full dotted path from the top of a package
    path = f"{path}.{rest}" if rest else path
    if _exists(path, loader):
        return path
    where = obj.filepath if isinstance(obj.filepath, str) else str(obj.filepath)
    lineno = obj.docstring.lineno if obj.docstring is not None else obj.lineno
    logger.warning(f"{where}:{lineno}: cross-reference {target!r} in the docstring of {obj.path} "
                   "names nothing: fix or remove it")
    return None


def _exists(path: str, loader: griffe.GriffeLoader) -> bool:
    package = path.partition(".")[0]
    try:
        if package not in loader.modules_collection:
            loader.load(package)
        loader.modules_collection.get_member(path)
    except (KeyError, ImportError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return False
    return True


def _walk(obj: griffe.Object) -> Any:
    """``obj`` and its members, leaving out aliases (imports) and objects with a private name,
    whose docstrings never reach the site (modules are walked: a private module such as
    ``gradbalance._buffer`` is where public classes live)."""
    yield obj
    for name, member in obj.members.items():
        private = name.startswith("_") and not name.startswith("__") and not member.is_module
        if not member.is_alias and not private:
            yield from _walk(member)


_CODE_OR_ROLE = re.compile(r"(:\w+:)?(`+).*?\2")
_EMPHASIS = re.compile(r"(?<![^\s(\[\"'])(\*{1,2})(?=\S)(?!\*).+?(?<=\S)\1(?![\w*])")


def _escape(text: str) -> str:
    """Escape ``_`` not inside a word and ``*`` not part of reST emphasis, outside fenced
    blocks, inline code, roles and doctest lines."""
    out: list[str] = []
    fenced = doctest = False
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
        elif stripped.startswith((">>>", "...")):
            doctest = True
        elif not stripped:
            doctest = False
        if fenced or doctest or stripped.startswith("```"):
            out.append(line)
            continue
        pieces, last = [], 0
        for m in _CODE_OR_ROLE.finditer(line):
            pieces += [_escape_prose(line[last : m.start()]), m.group(0)]
            last = m.end()
        out.append("".join([*pieces, _escape_prose(line[last:])]))
    return "\n".join(out)


def _escape_prose(text: str) -> str:
    keep = [m.span() for m in _EMPHASIS.finditer(text)]
    chars = []
    for i, c in enumerate(text):
        before = text[i - 1] if i else " "
        after = text[i + 1] if i + 1 < len(text) else " "
        if c == "_" and not (before.isalnum() and (after.isalnum() or after == "_")) and not before == "_":
            c = "\\_"
        elif c == "*" and not any(start <= i < end for start, end in keep):
            c = "\\*"
        chars.append(c)
    return "".join(chars)


def _blocks(text: str) -> str:
    """reST ``::`` literal blocks and ``.. math::`` directives as fenced Markdown blocks."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        math = _MATH.match(line)
        intro = None if math else _LITERAL_INTRO.match(line)
        if not (math or intro):
            out.append(line)
            i += 1
            continue
        indent = len((math or intro)["indent"].expandtabs())
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        block_end = j
        while block_end < len(lines) and (
            not lines[block_end].strip() or len(lines[block_end]) - len(lines[block_end].lstrip()) > indent
        ):
            block_end += 1
        while block_end > j and not lines[block_end - 1].strip():
            block_end -= 1
        if block_end == j:  # no indented block follows: leave the line alone
            out.append(line)
            i += 1
            continue
        pad = " " * indent
        if intro and intro["text"]:
            out += [f"{pad}{intro['text']}:", ""]
        language = "text" if math else "python" if _looks_like_python(lines[j:block_end]) else "text"
        body = textwrap.dedent("\n".join(lines[j:block_end])).split("\n")
        out += [f"{pad}```{language}", *[f"{pad}{b}" if b else "" for b in body], f"{pad}```"]
        i = block_end
    return "\n".join(out)


def _looks_like_python(block: list[str]) -> bool:
    code = textwrap.dedent("\n".join(block))
    try:
        compile(code, "<docstring>", "exec")
    except SyntaxError:
        return False
    return True
