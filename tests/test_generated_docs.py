"""Generated sections of the docs: a job refuses a page it cannot write before doing its work."""

import pytest

from core.errors import UserError
from core.generated_docs import check_section, replace_section

BEGIN, END = "<!-- t:begin -->", "<!-- t:end -->"


def test_a_section_is_replaced_between_its_markers_and_the_rest_is_kept(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(f"head\n{BEGIN}\nold\n{END}\ntail\n")
    replace_section(page, BEGIN, END, "new")
    assert page.read_text() == f"head\n{BEGIN}\nnew\n{END}\ntail\n"


@pytest.mark.parametrize("text, message", [(None, "does not exist"), ("no markers here\n", "no generated section")])
def test_a_missing_page_or_one_without_markers_is_refused_with_a_clear_message(tmp_path, text, message):
    page = tmp_path / "quality.md"
    if text is not None:
        page.write_text(text)
    with pytest.raises(UserError, match=message):
        check_section(page, BEGIN, END)
    assert text is None or page.read_text() == text  # nothing written
