"""The fixture itself: a mock that cannot start says why, in its own words."""

import os
import tempfile

import pytest

from conftest import find_binary, start


def test_a_bad_flag_is_reported_with_what_the_mock_said():
    with pytest.raises(pytest.fail.Exception) as failure:
        start(find_binary(), "--max-runs", "0")
    message = str(failure.value)
    assert "did not start (exit 2)" in message
    assert "--max-runs" in message  # clap's own error, from stderr


def test_a_data_dir_it_cannot_use_is_named():
    with tempfile.NamedTemporaryFile() as not_a_directory:
        with pytest.raises(pytest.fail.Exception) as failure:
            start(find_binary(), "--data-dir", not_a_directory.name)
    message = str(failure.value)
    assert "did not start (exit 1)" in message
    assert os.path.basename(not_a_directory.name) in message
