"""The examples in the evaluator's docstrings run and give what they show."""

import doctest
import importlib
import pkgutil

import pytest

import speciarl_verl.evaluation as evaluation

MODULES = sorted(
    name
    for _, name, _ in pkgutil.iter_modules(evaluation.__path__, prefix="speciarl_verl.evaluation.")
    if not name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_examples_exist_where_the_contract_is():
    attempted = sum(doctest.testmod(importlib.import_module(n)).attempted for n in MODULES)
    assert attempted >= 20
