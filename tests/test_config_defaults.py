"""config/schema.yaml (with the serve settings' part, from conch.server.settings.ServeSettings) is the one
source of defaults: config/config.yaml shows each, config/README.md documents every key with the same default,
and the code that must restate one (a library's signature) agrees."""

from __future__ import annotations

import re

import pytest
import yaml
from conftest import REPO

from conch.data import Settings
from conch.preference.prepare import TEST_FRACTION
from conch.workflow.plan import load_schema

# As the workflow loads it: with the serve settings' part, which ServeSettings defines.
SCHEMA = load_schema(REPO / "config" / "schema.yaml")
CONFIG_TEXT = (REPO / "config" / "config.yaml").read_text(encoding="utf-8")
README = (REPO / "config" / "README.md").read_text(encoding="utf-8")
NO_DEFAULT = object()


def schema_keys(node: dict = SCHEMA, path: tuple = ()):
    """(path, default or NO_DEFAULT, required) of every key the schema names; `$ref`s are not followed (the
    blocks they name, like preference.train, pass LLaMA-Factory's keys through)."""
    for key, sub in node.get("properties", {}).items():
        yield (*path, key), sub.get("default", NO_DEFAULT), key in node.get("required", ())
        yield from schema_keys(sub, (*path, key))


def config_lines(text: str) -> dict[tuple, str]:
    """Each key path of a block-style YAML file -> the text of its line."""
    lines, stack = {}, []
    for line in text.splitlines():
        match = re.match(r"^( *)([A-Za-z_][\w.-]*):(\s|$)", line)
        if match:
            depth = len(match.group(1)) // 2
            stack[depth:] = [match.group(2)]
            lines[tuple(stack)] = line
    return lines


def lookup(tree, path):
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return NO_DEFAULT
        tree = tree[key]
    return tree


def test_config_yaml_shows_every_default():
    config, lines = yaml.safe_load(CONFIG_TEXT), config_lines(CONFIG_TEXT)
    for path, default, _ in schema_keys():
        if default is NO_DEFAULT:
            continue
        key = ".".join(path)
        value = lookup(config, path)
        assert value is not NO_DEFAULT, f"config/config.yaml does not show {key} (default {default!r})"
        # An object's default is the defaults of its keys, checked one by one.
        if not isinstance(default, dict) and value != default:
            comment = lines[path].partition(" #")[2]
            assert "default" in comment, f"config/config.yaml sets {key} to {value!r}, not the default " + (
                f"{default!r}, without saying so (`# default ...` on its line)"
            )


def readme_sections() -> dict[str, str]:
    """Top-level key -> the text of its `## `key`` section (a heading may name several keys)."""
    sections = {}
    for block in re.split(r"^## ", README, flags=re.M)[1:]:
        heading, _, body = block.partition("\n")
        for key in re.findall(r"`([^`]+)`", heading):
            sections[key] = body
    return sections


def default_rows(body: str) -> dict[str, str]:
    """key -> default cell of the tables of a section whose first two columns are `key | default`."""
    rows, in_table = {}, False
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if cells[:2] == ["key", "default"]:
            in_table = True
        elif not cells:
            in_table = False
        elif in_table and not set(cells[0]) <= {"-", " "}:
            rows[cells[0].strip("`")] = cells[1]
    return rows


def test_readme_documents_every_key_with_the_schema_default():
    sections = readme_sections()
    rows = {}
    for top, body in sections.items():
        rows.update({f"{top}.{key}": cell for key, cell in default_rows(body).items()})
    keys = {".".join(path): (default, required) for path, default, required in schema_keys()}
    for key, (default, required) in keys.items():
        top, _, rest = key.partition(".")
        assert top in sections, f"config/README.md has no section for {top}"
        if not rest:
            continue
        # An object is documented by its keys (`eval.max_new_tokens`), or by name.
        documented = f"`{rest}`" in sections[top] or f"`{rest}." in sections[top]
        assert documented, f"config/README.md does not document {key}"
        if default is not NO_DEFAULT and not isinstance(default, dict):
            assert key in rows, f"config/README.md: {key} (default {default!r}) is not in a key/default table"
            assert yaml.safe_load(rows[key].replace("`", "")) == default, (key, rows[key], default)
        elif key in rows and required:
            assert rows[key] == "required", (key, rows[key])
    assert not set(rows) - set(keys), (
        f"config/README.md documents keys the schema lacks: {set(rows) - set(keys)}"
    )


@pytest.mark.parametrize(
    ("block", "code"),
    [
        ("data", Settings()),
        ("preference.data", Settings(test_fraction=TEST_FRACTION)),
    ],
)
def test_preparation_defaults_are_the_schema_defaults(block, code):
    """prepare() and prepare_preference() may be called without config (tests, notebooks)."""
    node = SCHEMA
    for key in block.split("."):
        node = node["properties"][key]
    schema = {key: sub["default"] for key, sub in node["properties"].items() if "default" in sub}
    assert schema == {name: getattr(code, name) for name in Settings.names()}


def test_retrieval_defaults_are_the_schema_defaults():
    """An index built without settings (tests, bench) retrieves as the default config does."""
    from conch.rag.index import RETRIEVAL_DEFAULTS

    rag = SCHEMA["properties"]["rag"]["properties"]
    assert {key: rag[key]["default"] for key in RETRIEVAL_DEFAULTS} == RETRIEVAL_DEFAULTS


def test_the_serve_block_is_servesettings():
    """Every serve setting the workflow takes is a ServeSettings field with its default, shown in config.yaml
    and documented in config/README.md (by the tests above, which read the merged schema); none is restated
    in config/schema.yaml."""
    from conch.server.settings import NOT_IN_WORKFLOW_CONFIG, ServeSettings

    own = yaml.safe_load((REPO / "config" / "schema.yaml").read_text(encoding="utf-8"))
    serve = SCHEMA["properties"]["serve"]["properties"]
    fields = {n: f for n, f in ServeSettings.model_fields.items() if n not in NOT_IN_WORKFLOW_CONFIG}
    assert set(fields) <= set(serve) and not set(fields) & set(own["properties"]["serve"]["properties"])
    assert {n: serve[n]["default"] for n in fields} == {n: f.default for n, f in fields.items()}
    config = yaml.safe_load(CONFIG_TEXT)["serve"]
    assert {n: config[n] for n in fields} == {n: f.default for n, f in fields.items()}
