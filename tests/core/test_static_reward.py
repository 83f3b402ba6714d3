import pytest

from speciarl_verl import Category, static_reward
from speciarl_verl.core.static_reward import get_static_table, register_static_table, static_table_names

ORDER = ["more specific", "specific", "less specific", "generic", "abstain", "wrong"]
EXPECTED = {
    "reward3": [1, 1, 0, 0, 0, 0],
    "scala1": [1, 1, 0.75, 0.5, 0.25, 0],
    "scala2": [1, 1, 0.75, 0.5, 0, 0],
    "scala3": [1, 1, 0.75, 0, 0, 0],
}


@pytest.mark.parametrize("table", sorted(EXPECTED))
def test_tables_match_the_paper(table):
    assert [static_reward(c, table) for c in ORDER] == [float(v) for v in EXPECTED[table]]


def test_unparseable_gets_the_format_penalty_keyword():
    assert static_reward(None, "scala2") == -1.0
    assert static_reward(None, "scala2", format_penalty=-0.25) == -0.25


def test_unknown_table_is_named_in_the_error():
    with pytest.raises(ValueError, match="Unknown static reward table: 'base'"):
        static_reward("specific", "base")


def test_registry_refuses_a_different_table_under_a_taken_name_and_incomplete_tables():
    same = {Category(c): v for c, v in zip(ORDER, EXPECTED["reward3"], strict=True)}
    register_static_table("reward3")(same)  # identical re-registration is fine
    with pytest.raises(ValueError, match="already registered"):
        register_static_table("reward3")({**same, Category.GENERIC: 0.5})
    with pytest.raises(ValueError, match="no value for"):
        register_static_table("partial")({Category.SPECIFIC: 1.0})
    assert "partial" not in static_table_names()
    assert get_static_table("scala1")[Category.ABSTAIN] == 0.25
