"""The two rules every election relies on: who may win a vote, and when to try."""
from __future__ import annotations

import random


def candidate_log_is_up_to_date(candidate_last_term: int, candidate_last_index: int,
                                my_last_term: int, my_last_index: int) -> bool:
    """§5.4.1: compare the last terms first; only on equal terms does the longer log win.

    CKite required both ``term >=`` and ``index >=``, which rejects a candidate whose log
    ends in a newer term but is shorter — a candidate that may well be the only one able
    to win. This is the paper's rule.
    """
    if candidate_last_term != my_last_term:
        return candidate_last_term > my_last_term
    return candidate_last_index >= my_last_index


def random_election_timeout(rng: random.Random, minimum: float, maximum: float) -> float:
    """A timeout drawn uniformly from [minimum, maximum) so that split votes resolve (§5.2)."""
    return minimum + rng.random() * (maximum - minimum)
