"""YAML read strictly: PyYAML keeps the last of a key repeated in one mapping without a word (YAML 1.2 forbids
repeated keys), so ``capacity_kwh: 1500`` followed by ``capacity_kwh: 3000`` would silently give 3000."""

from __future__ import annotations

from typing import IO, Any

import yaml


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping (a ``yaml.YAMLError`` naming the key and line)."""


def _mapping_without_repeats(loader: StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            repeated = key in seen
        except TypeError:  # an unhashable key: construct_mapping names it
            break
        if repeated:
            raise yaml.constructor.ConstructorError("while reading a mapping", node.start_mark, f"found the key {key!r} twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeats)


def load_yaml(stream: str | IO[str]) -> Any:
    """``yaml.safe_load(stream)``, refusing repeated keys.

    :param stream: text, or an open file (its name is then in error messages)
    :raises yaml.YAMLError: for text that is not YAML, or a mapping that repeats a key
    """
    return yaml.load(stream, Loader=StrictLoader)  # noqa: S506 (a SafeLoader subclass)
