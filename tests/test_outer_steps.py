"""How level k >= 2 picks its next step from its own history: stale screens and wasted repeats.

The histories here are built by hand (plain records, as the trace stores them) so that each rule is tested on
the exact sequence that motivated it; tests/test_protocol.py checks the same rules on real runs."""
from __future__ import annotations

from recur.core.records import OK, Candidate, Decision, Outcome, Trial
from recur.levels.outer import (EXPLORE_PER_SLOT, INACTIVE, SCREENED, SHORTLISTED, idle_streak, pick_shortlisted,
                                since_last_move)


def step(n: int, status: str, mechanism: str = "", screen: float | None = None, trials: int = 0,
         **payload: object) -> Trial:
    raced = status == OK and trials and not payload.get("incumbent")
    info = {"trials": trials} | ({"race": {"decision": "drop"}} if raced else {})
    return Trial(Candidate(f"L2/{n}", 2, mechanism.split("-")[0] or "incumbent", {"mechanism": mechanism, **payload}, n),
                 Outcome(status, metric=screen, info=info), Decision(False))


def test_a_candidate_screened_against_the_present_lineage_outranks_an_older_screen() -> None:
    """E-r7-i5 at seed 100: a candidate shortlisted before a 60-trial race outranked, by its old screen, the one
    just screened against the new best, and lost its race. A screen from before the lineage last moved ranks
    only when no fresher one waits."""
    history = [step(0, SHORTLISTED, "freeze_guidance-a", screen=0.002),
               step(1, SHORTLISTED, "gp_ei-b", screen=0.007),
               step(2, OK, "gp_ei-b", trials=60, shortlisted_from="L2/1"),
               step(3, SCREENED, "tpe-c", screen=0.0002),
               step(4, SHORTLISTED, "gp_ei-d", screen=0.0017)]
    assert [t.candidate.id for t in since_last_move(history)] == ["L2/3", "L2/4"]
    history += [step(n, SCREENED, f"m{n}-x", screen=0.0) for n in range(5, 5 + 4 * EXPLORE_PER_SLOT)]
    picked = pick_shortlisted(history, shortlist=4)
    assert picked is not None and picked.candidate.id == "L2/4"  # not L2/0 with its higher, older screen
    history.append(step(99, OK, "gp_ei-d", trials=12, shortlisted_from="L2/4"))
    history += [step(n, SCREENED, f"m{n}-x", screen=0.0) for n in range(100, 100 + 4 * EXPLORE_PER_SLOT)]
    picked = pick_shortlisted(history, shortlist=4)
    assert picked is not None and picked.candidate.id == "L2/0"  # none fresher waits: the old entry races


def test_the_shortlist_races_its_best_entry_once_full_and_not_before() -> None:
    history = [step(n, SHORTLISTED, f"m{n}-x", screen=s) for n, s in enumerate([0.001, 0.003, 0.002])]
    assert pick_shortlisted(history, shortlist=4) is None  # part full, few proposals yet
    history.append(step(3, SHORTLISTED, "m3-x", screen=0.0005))
    picked = pick_shortlisted(history, shortlist=4)
    assert picked is not None and picked.candidate.id == "L2/1"
    history.append(step(4, OK, "m1-x", trials=12, shortlisted_from="L2/1"))
    assert pick_shortlisted(history, shortlist=4) is None  # three wait: the list is no longer full


def test_a_mechanism_proposed_again_before_the_lineage_moves_is_a_wasted_step() -> None:
    """README's first command: inside a level-3 arm, level 2 proposed the same two tabu mechanisms for 24 steps
    (three model calls each) before an incumbent window. A repeat since the last move counts as wasted, so
    three in a row bring the incumbent window, as unsafe or inactive candidates do."""
    history = [step(0, OK, "gp_ei-b", trials=12),
               step(1, SCREENED, "tabu-f0", screen=0.0),
               step(2, SCREENED, "tabu-de", screen=0.0)]
    assert idle_streak(history) == (2, 0)
    history += [step(3, SCREENED, "tabu-f0", screen=0.0), step(4, SHORTLISTED, "tabu-de", screen=0.001)]
    assert idle_streak(history) == (4, 2)
    history.append(step(5, INACTIVE, "line-9"))
    assert idle_streak(history) == (5, 3)
    history.append(step(6, OK, "", trials=3, incumbent=True))
    history.append(step(7, SCREENED, "tabu-f0", screen=0.0))
    assert idle_streak(history) == (1, 0)  # judged again against the moved lineage: not a repeat
