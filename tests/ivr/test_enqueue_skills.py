"""The path's skills as the contact carries them (``app.ivr.advance.required_skills``)."""

from __future__ import annotations

import pytest

from app.ivr.advance import required_skills, subject
from app.ivr.vocabulary import SkillNeed
from app.routing.scoring import SkillReq


class TestRequiredSkills:
    @pytest.mark.parametrize(
        ("needs", "carried"),
        [
            pytest.param((), (), id="none"),
            pytest.param((SkillNeed("cards", 3),), (SkillReq("cards", 3),), id="one"),
            pytest.param(
                (SkillNeed("cards", 3), SkillNeed("loans")),
                (SkillReq("cards", 3), SkillReq("loans", 1)),
                id="in_order_with_the_default_level",
            ),
            pytest.param(
                (SkillNeed("cards", 3), SkillNeed("loans", 2), SkillNeed("cards", 5)),
                (SkillReq("cards", 5), SkillReq("loans", 2)),
                id="a_skill_twice_needs_the_higher_level_at_its_first_place",
            ),
            pytest.param(
                (SkillNeed("cards", 5), SkillNeed("cards", 3)),
                (SkillReq("cards", 5),),
                id="a_lower_level_later_changes_nothing",
            ),
        ],
    )
    def test_each_skill_once_at_the_highest_level_asked(
        self, needs: tuple[SkillNeed, ...], carried: tuple[SkillReq, ...]
    ) -> None:
        assert required_skills(needs) == carried


class TestSubject:
    def test_the_subject_names_the_flow(self) -> None:
        assert subject("consumer_line") == "IVR consumer_line"
