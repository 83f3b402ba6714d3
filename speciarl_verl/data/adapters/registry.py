"""Dataset adapters by name (the ``data_source`` string): a dict, a register decorator, a getter."""

from __future__ import annotations

from collections.abc import Callable

from speciarl_verl.data.adapters.base import DatasetAdapter

__all__ = ["adapter_names", "get_adapter", "register_adapter"]

DATASET_ADAPTERS: dict[str, type[DatasetAdapter]] = {}


def register_adapter(name: str) -> Callable[[type[DatasetAdapter]], type[DatasetAdapter]]:
    """Class decorator: register an adapter under ``name``; a different class under a taken name is refused."""

    def decorator(cls: type[DatasetAdapter]) -> type[DatasetAdapter]:
        if name in DATASET_ADAPTERS and DATASET_ADAPTERS[name] is not cls:
            raise ValueError(f"dataset adapter {name} has already been registered: {DATASET_ADAPTERS[name]} vs {cls}")
        DATASET_ADAPTERS[name] = cls
        return cls

    return decorator


def get_adapter(name: str) -> DatasetAdapter:
    """A fresh adapter for the dataset ``name``; raises ``ValueError('Unknown dataset: NAME')``."""
    if name not in DATASET_ADAPTERS:
        raise ValueError(f"Unknown dataset: {name} (known: {', '.join(sorted(DATASET_ADAPTERS))})")
    return DATASET_ADAPTERS[name]()


def adapter_names() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(DATASET_ADAPTERS)
