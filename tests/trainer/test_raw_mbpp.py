"""Raw MBPP rows (`test_list`, no `entry_point`): the reward infers the entry point from the tests, and warns once
when most completions of a batch add no code."""

import warnings

import pytest

from trl_unittest.rewards import UnitTestReward, infer_entry_point

TESTS = ["assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))",
         "assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))"]
PROMPT = "Write a function to find the shared elements from the given two lists.\n"
SOLUTION = "def similar_elements(test_tup1, test_tup2):\n    return tuple(set(test_tup1) & set(test_tup2))\n"


def test_entry_point_inferred_from_the_tests():
    assert infer_entry_point(TESTS) == "similar_elements"  # set() is a builtin, not the entry point
    assert infer_entry_point("def helper(x):\n    return x\nassert f(helper(1)) == 1\n") == "f"
    assert infer_entry_point([{"kind": "call", "expr": "add(1, 2)", "expected": "3"}]) == "add"
    assert infer_entry_point("assert len([1]) == 1") == ""
    reward = UnitTestReward(tests_column="test_list")
    assert reward.entry_points({"test_list": [TESTS]}, 1) == ["similar_elements"]
    assert reward.entry_points({"test_list": [TESTS], "entry_point": ["given"]}, 1) == ["given"]  # the column wins


def test_raw_mbpp_solution_scores_and_empty_batches_warn():
    reward = UnitTestReward(tests_column="test_list", num_workers=1)
    try:
        junk = SOLUTION + "print(similar_elements((1,), (1,)))\n"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a correct batch does not warn
            assert reward([PROMPT] * 2, [SOLUTION, junk], test_list=[TESTS] * 2) == [1.0, 1.0]
        with pytest.warns(UserWarning, match="4 of 4 completions add no code"):
            reward([PROMPT] * 4, ["", "# nothing\n", "", ""], test_list=[TESTS] * 4)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per reward
            reward([PROMPT] * 4, [""] * 4, test_list=[TESTS] * 4)
    finally:
        reward.close()
