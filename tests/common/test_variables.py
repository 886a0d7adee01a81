"""comfy_stack.env and comfy_stack.variables: each variable declared once, read one way, and
the docs' tables generated from the declarations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from comfy_stack import settings_docs, variables
from comfy_stack.env import Address, Env, SettingError, Var, address, integer, words
from tests.support import REPO

DECLARED = [v for v in vars(variables).values() if isinstance(v, Var)]


class ProgramError(Exception):
    pass


def test_flag_beats_environment_beats_file_beats_default(tmp_path):
    var = Var("X_SECRET", "fallback", "a secret", file_form=True)
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    assert Env({}).get(var) == "fallback"
    assert Env({"X_SECRET_FILE": str(secret)}).get(var) == "from-file"
    assert Env({"X_SECRET": "from-env"}).get(var) == "from-env"
    assert Env({"X_SECRET": "from-env"}).get(var, flag="from-flag") == "from-flag"


@pytest.mark.parametrize(
    "env,needle",
    [
        ({"X_SECRET": "a", "X_SECRET_FILE": "/x"}, "set X_SECRET or X_SECRET_FILE, not both"),
        ({"X_SECRET_FILE": "/nonexistent/secret"}, "X_SECRET_FILE=/nonexistent/secret: cannot read it"),
    ],
)
def test_file_form_errors_name_the_variable(env, needle):
    with pytest.raises(ProgramError, match=needle):
        Env(env, error=ProgramError).get(Var("X_SECRET", None, "a secret", file_form=True))


def test_bad_values_raise_the_programs_error_naming_the_variable():
    with pytest.raises(ProgramError, match=r"X_PARTS='big': expected a whole number"):
        Env({"X_PARTS": "big"}, error=ProgramError).get(Var("X_PARTS", 1, "parts", integer(minimum=1)))
    with pytest.raises(SettingError, match="out of range"):
        Env({"X_PARTS": "0"}).get(Var("X_PARTS", 1, "parts", integer(minimum=1)))
    with pytest.raises(SettingError, match="HOST:PORT"):
        Env({"X_LISTEN": "8188"}).get(Var("X_LISTEN", Address("0.0.0.0", 1), "listen", address))


def test_lists_split_on_commas_and_spaces_alike():
    assert words("a b") == words("a,b") == words(" a, b ,") == ("a", "b")
    assert Env({"MODEL_PROFILES": "wan smoke"}).get(variables.MODEL_PROFILES) == ("wan", "smoke")


def test_aliases_are_read_after_the_name():
    var = variables.HF_TOKEN
    assert Env({"HUGGING_FACE_HUB_TOKEN": "old"}).get(var) == "old"
    assert Env({"HUGGING_FACE_HUB_TOKEN": "old", "HF_TOKEN": "new"}).get(var) == "new"


def test_addresses_print_as_they_are_written():
    assert str(address("0.0.0.0:8188")) == "0.0.0.0:8188"
    assert address("[::]:8188") == Address("::", 8188) and str(Address("::", 8188)) == "[::]:8188"
    assert address(":8188").host == "0.0.0.0"


def test_each_variable_is_declared_once_and_documented():
    names = [n for v in DECLARED for n in (v.name, *v.aliases)]
    assert len(names) == len(set(names)), "a variable is declared twice"
    tabled = {v.name for _doc, rows in variables.DOC_TABLES.values() for v, _flag in rows}
    assert {v.name for v in DECLARED} - tabled == set(), "declared but in no docs table"
    assert all(v.doc and "\n" not in v.doc and "|" not in v.doc for v in DECLARED), (
        "a doc line breaks its table"
    )


def test_docs_tables_are_generated_from_the_declarations():
    stale = [
        str(path.relative_to(REPO)) for path, (old, new) in settings_docs.rendered().items() if old != new
    ]
    assert stale == [], f"{stale}: run `make settings-docs`"


def test_docs_generation_rewrites_only_the_marked_block(tmp_path):
    doc = tmp_path / "docs" / "runtime.md"
    doc.parent.mkdir()
    doc.write_text("intro\n<!-- variables:serve -->\nold table\n<!-- /variables:serve -->\noutro\n")
    text = settings_docs.render(doc.read_text(), "serve")
    assert text.startswith("intro\n<!-- variables:serve -->\n| variable | flag | default | meaning |")
    assert text.endswith("<!-- /variables:serve -->\noutro\n") and "old table" not in text
    with pytest.raises(ValueError, match="no <!-- variables:proxy -->"):
        settings_docs.render("no markers here", "proxy")


def test_repo_paths_in_defaults_point_into_this_checkout():
    assert variables.REPO == REPO and Path(variables.MODEL_MANIFEST.default).is_file()


def test_only_the_settings_mechanism_reads_the_environment():
    """Everything else receives a settings object (DESIGN: each variable is read once)."""
    allowed = {"comfy_stack/env.py"}
    reads = re.compile(r"(?<!`)\bos\.environ\b(?!`)|\bgetenv\(")
    readers = {
        str(p.relative_to(REPO))
        for package in ("auth_proxy", "model_sync", "comfyctl", "comfy_stack", "workflows", "custom_nodes")
        for p in (REPO / package).rglob("*.py")
        if reads.search(p.read_text(encoding="utf-8"))
    }
    assert readers - allowed == set()
