"""verl plugin entry point (``[project.entry-points."verl.plugins"] speciarl``).

verl imports this module in every process at ``import verl``; importing it
registers the ``speciarl`` reward manager and does nothing else. verl swallows
plugin import errors at DEBUG level, so a failure is logged loudly here before
it is re-raised.
"""

import logging

try:
    from speciarl_verl.verl_ext import reward_manager as _reward_manager  # noqa: F401  (registers "speciarl")
except Exception:  # pragma: no cover - only reached with a broken install
    logging.getLogger(__name__).exception("speciarl_verl: failed to register the 'speciarl' reward manager with verl")
    raise
