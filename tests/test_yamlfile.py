"""The one YAML reader: lines of keys, located syntax and shape errors."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
import pytest

from exporter import yamlfile
from exporter.correlate.provenance import INTERPRETERS_FILE, load_interpreters
from exporter.enrich.redact import PATTERNS_FILE, patterns
from exporter.yamlfile import YamlFileError


class Inner(msgspec.Struct, forbid_unknown_fields=True):
    mode: Literal["a", "b"]
    depth: Annotated[int, msgspec.Meta(ge=0, le=9)] = 1


class Outer(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1)]
    inner: Inner | None = None
    items: list[Inner] = []


def _doc(text: str) -> yamlfile.YamlDoc:
    (doc,) = yamlfile.parse(text, "f.yaml")
    return doc


def test_lines_of_keys_and_list_items() -> None:
    doc = _doc("a:\n  b: 1\n  c:\n    - x\n    - {d: 2}\n")
    assert doc.line("a") == 1 and doc.line("a", "b") == 2
    assert doc.line("a", "c", 1) == 5 and doc.line("a", "c", 1, "d") == 5
    assert doc.line("a", "nope") == 1  # the nearest ancestor
    assert doc.line("z") == 1  # the document


def test_documents_of_a_stream_keep_their_own_lines() -> None:
    first, second = yamlfile.parse("a: 1\n---\nb: 2\nc: 3\n", "f.yaml")
    assert (first.data, second.data) == ({"a": 1}, {"b": 2, "c": 3})
    assert second.start == 3 and second.line("c") == 4 and second.line("a") == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\nb: [1,\n", "f.yaml:3:1: not valid YAML: expected the node content, but found '<stream end>'"),
        ("a: 1\nb: 2\na: 3\n", "f.yaml:3:1: not valid YAML: duplicate key 'a'"),
    ],
)
def test_bad_yaml_is_located(text: str, message: str) -> None:
    with pytest.raises(YamlFileError) as exc:
        yamlfile.parse(text, "f.yaml")
    assert str(exc.value) == message


def test_merge_keys_and_recursive_aliases_are_fine() -> None:
    doc = _doc("base: &b {x: 1}\nuse:\n  <<: *b\n  x: 2\nloop: &l [*l]\n")
    assert doc.data["use"] == {"x": 2}
    assert doc.line("use", "x") == 4


def test_one_document_per_file(tmp_path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("a: 1\n---\nb: 2\n")
    with pytest.raises(YamlFileError, match=r"f.yaml:3: expected one YAML document"):
        yamlfile.load(path)
    path.write_bytes(b"a: \xff\n")
    with pytest.raises(YamlFileError, match=r"f.yaml: not UTF-8 text"):
        yamlfile.load(path)
    path.write_text("")
    assert yamlfile.load(path).data is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nnam: y\n", "f.yaml:2: unknown key nam; did you mean name?"),
        ("name: ''\n", "f.yaml:1: key name: '' is not allowed; expected a non-empty string"),
        ("inner: {mode: a}\n", "f.yaml:1: missing key name; expected a non-empty string"),
        ("name: x\ninner:\n  mode: c\n", "f.yaml:3: key inner.mode: 'c' is not allowed; expected one of: a, b"),
        ("name: x\ninner:\n  mode: a\n  depth: 10\n", "f.yaml:4: key inner.depth: 10 is not allowed; expected an integer 0..9"),
        ("name: x\nitems:\n  - mode: a\n  - mode: b\n    dept: 1\n", "f.yaml:5: unknown key items.1.dept; did you mean items.1.depth?"),
        ("name: x\ninner: 3\n", "f.yaml:2: key inner: 3 is not allowed; expected a mapping with keys mode, depth (or empty)"),
    ],
)  # fmt: skip
def test_shape_errors_name_line_key_and_expectation(text: str, message: str) -> None:
    with pytest.raises(YamlFileError) as exc:
        _doc(text).convert(Outer)
    assert str(exc.value) == message


def test_a_part_converted_alone_is_located_in_the_whole_file() -> None:
    doc = _doc("name: x\nlater:\n  - {mode: a}\n  - {mode: z}\n")
    with pytest.raises(YamlFileError) as exc:
        doc.convert(Inner, "later", 1)
    assert str(exc.value) == "f.yaml:4: key later.1.mode: 'z' is not allowed; expected one of: a, b"


# Package data read like user files: one edit to a copy, and the error names its line.
PACKAGE_DATA_EDITS = [
    (INTERPRETERS_FILE, "with_value: [-W,", "with_valu: [-W,", "unknown key interpreters.python.with_valu"),
    (INTERPRETERS_FILE, "with_value: [-I]", "with_value: [-0]", "Expected `str`, got `int`"),
    (INTERPRETERS_FILE, "'pypy3?'", "'pypy3?('", "not a regular expression"),
    (PATTERNS_FILE, "'-a', kind: value}", "'-a', kind: valu}", "expected one of: value, next, glued"),
    (PATTERNS_FILE, "  never: [oldpwd,", "  nevr: [oldpwd,", "did you mean names.never?"),
    (PATTERNS_FILE, "'sshpass', flag: '-p'", "'sshpass', flag: '-p('", "not a regular expression"),
]


@pytest.mark.parametrize(("original", "find", "replace", "problem"), PACKAGE_DATA_EDITS)
def test_malformed_package_data_names_file_and_line(tmp_path, original, find, replace, problem) -> None:
    load = {INTERPRETERS_FILE: load_interpreters, PATTERNS_FILE: patterns}[original]
    text = original.read_text()
    assert text.count(find) == 1
    line = text[: text.index(find)].count("\n") + 1  # the edited line, wherever the file has it
    copy = tmp_path / original.name
    copy.write_text(text.replace(find, replace))
    with pytest.raises(YamlFileError) as caught:
        load(copy)
    assert (caught.value.file, caught.value.line) == (str(copy), line)
    assert problem in caught.value.problem
