"""Dataset adapters: one module per benchmark, registered by ``data_source`` name.

Importing this package registers the built-in adapters (``cub200``, ``fgvc_aircraft``,
``flowers102``, ``food101``, ``oxford_pets``, ``stanford_cars``) and the drawn tasks for CPU
runs, ``synthetic_shapes`` and its graded-visibility sibling ``synthetic_shapes_hidden``;
:func:`get_adapter` returns one by name.
"""

from speciarl_verl.data.adapters import (  # noqa: F401 - importing registers the adapters
    cub200,
    fgvc_aircraft,
    flowers102,
    food101,
    oxford_pets,
    stanford_cars,
    synthetic_hidden,
    synthetic_shapes,
)
from speciarl_verl.data.adapters.base import DatasetAdapter
from speciarl_verl.data.adapters.registry import adapter_names, get_adapter, register_adapter

__all__ = ["DatasetAdapter", "adapter_names", "get_adapter", "register_adapter"]
