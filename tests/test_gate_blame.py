"""Whom the gate blames for a lost answer: the change of the answer's memory first, then what now ranks above
it; an answer that no change touched, pushed down by memories that no change wrote, blocks nothing (a
person's probe always does)."""

from __future__ import annotations

from somna.sleep import exam, gate
from somna.sleep.actions import Action


def regression(hits: list[str], below: list[str], source: str = "store") -> exam.Regression:
    probe = exam.Probe(
        "which port does the api use", ("5433",), source, "answer" if source == "store" else ""
    )
    before = exam.Outcome(probe, True, "answer", 3, ["a", "b", "answer", "c", "d"])
    return exam.Regression(before, exam.Outcome(probe, False, hits=hits, below=below))


def merge(*targets: str) -> Action:
    return Action("merge", "duplicates", dict.fromkeys(targets, "v1"), {}, {"merged_id": f"m-{targets[0]}"})


def test_the_change_of_the_answers_memory_is_blamed_first() -> None:
    touching, above = merge("answer", "x"), merge("y", "z")
    lost = [regression(["m-y", "a", "b", "c", "d"], ["e"])]
    culprits, shifted = gate._culprits(lost, [(touching, {"m-answer"}), (above, {"m-y"})])
    assert [a for a, _ in culprits] == [touching] and shifted == []


def test_a_new_memory_ranked_above_a_pushed_down_answer_is_blamed_even_below_the_hits() -> None:
    above, after = merge("y", "z"), merge("p", "q")
    lost = [regression(["a", "b", "c", "d", "e"], ["m-y", "answer", "m-p"])]
    culprits, shifted = gate._culprits(lost, [(above, {"m-y"}), (after, {"m-p"})])
    assert [a for a, _ in culprits] == [above] and shifted == []


def test_an_answer_moved_by_no_change_blocks_nothing_however_far() -> None:
    elsewhere = merge("y", "z")
    for below in (["answer", "m-y"], [f"o{i}" for i in range(20)] + ["answer", "m-y"], ["m-y"]):
        lost = [regression(["a", "b", "c", "d", "e"], below)]
        culprits, shifted = gate._culprits(lost, [(elsewhere, {"m-y"})])
        assert culprits == [] and shifted == lost


def test_a_persons_probe_is_never_a_shift() -> None:
    elsewhere = merge("y", "z")
    lost = [regression(["a", "b", "c", "d", "e"], ["answer"], source="person")]
    culprits, shifted = gate._culprits(lost, [(elsewhere, {"m-y"})])
    assert shifted == [] and [a for a, _ in culprits] == [elsewhere]  # every change that wrote a memory
