import pytest

from trl_unittest import cli
from trl_unittest.data.loaders import default_mbpp_path


@pytest.mark.skipif(default_mbpp_path() is None, reason="no shared/data/mbpp copy beside the checkout")
def test_demo_scores_references_above_broken_solutions(capsys):
    assert cli.main(["demo", "--tasks", "3", "--test-timeout", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "3 MBPP tasks x 5 solutions" in out and "3/3" in out and "0/3" in out


def test_unknown_command_is_refused(capsys):
    with pytest.raises(SystemExit):
        cli.main(["fly"])
    assert "invalid choice" in capsys.readouterr().err
