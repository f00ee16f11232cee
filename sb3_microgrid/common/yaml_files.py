"""YAML read strictly: PyYAML keeps the last of a key repeated in one mapping without a word (YAML 1.2 forbids
repeated keys), so ``capacity_kwh: 1500`` followed by ``capacity_kwh: 3000`` would silently give 3000; and aliases
(``*name``) may nest a few hundred bytes into billions of values, which any walk or message over the value (a check,
a ``repr``) would take minutes and gigabytes to go through. Also the one Python tag rl_zoo3 writes into a run's
files (:class:`SavedRunLoader`)."""

from __future__ import annotations

from typing import IO, Any

import yaml


#: Most values a document may expand to, aliases counted each time they are used: far above any configuration
#: (a hyperparameter file has a few dozen), far below an alias bomb.
MAX_VALUES = 100_000


class CappedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a document that aliases expand beyond :data:`MAX_VALUES` values (a
    ``yaml.YAMLError`` naming the limit). Anchors and merge keys (``<<: *defaults``), which zoo files use, are read as
    usual."""

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        _check_expansion(node)
        return node


class StrictLoader(CappedLoader):
    """:class:`CappedLoader` that also refuses a key repeated in one mapping (a ``yaml.YAMLError`` naming the key and
    its line): for the files a user writes."""


def _check_expansion(root: yaml.Node) -> None:
    """Count the values ``root`` expands to, an aliased node each time it is used, up to :data:`MAX_VALUES`."""
    pending, seen = [root], 0
    while pending:
        node = pending.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise yaml.composer.ComposerError(None, None, f"the document expands to more than {MAX_VALUES:,} values (aliases counted each time used)", root.start_mark)
        if isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            pending.extend(item for pair in node.value for item in pair)


def _mapping_without_repeats(loader: StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # <<: *defaults, whose keys the mapping's own may override
            continue
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


class SavedRunLoader(CappedLoader):
    """:class:`CappedLoader` (a file a run wrote, perhaps an older version's: repeated keys are read as PyYAML reads
    them) plus the one Python tag rl_zoo3 writes into a run's ``config.yml`` and ``args.yml``: its
    ``yaml.dump`` of an ``OrderedDict``, ``!!python/object/apply:collections.OrderedDict [[[key, value], ...]]``,
    read as a dict. Any other Python tag (``!!python/object/apply:os.system``, ``!!python/name:...``) stays a
    ``yaml.YAMLError``, as under ``safe_load``; nothing is imported or called."""


def _ordered_dict(loader: SavedRunLoader, node: yaml.Node) -> dict[str, Any]:
    """The zoo's ``OrderedDict`` tag as a dict, its items constructed by ``loader`` (safe constructors only).

    :param loader: the loader reading the file
    :param node: the tagged node: a sequence holding one list of ``[name, value]`` pairs
    """
    args = loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode) else None
    items = args[0] if args and len(args) == 1 and isinstance(args[0], list) else None
    if items is None or not all(isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) for item in items):
        raise yaml.constructor.ConstructorError(None, None, "expected an OrderedDict as rl_zoo3 writes it: [[[name, value], ...]]", node.start_mark)
    return dict(items)


SavedRunLoader.add_constructor("tag:yaml.org,2002:python/object/apply:collections.OrderedDict", _ordered_dict)
