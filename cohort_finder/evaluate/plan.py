"""Which of a trial's rules each fact can matter to, so that a rule with nothing to read is
answered once per run instead of once per patient.

Every rule that reads facts (condition, lab, coded observation, class, procedure, medication
days) starts by keeping the facts of its own value set and ignores all others (its `needs`
states which). So for a patient none of whose facts can matter to a rule, that rule's outcome
is its "nothing recorded" outcome, the same for every such patient: it is computed once and
shared. At hospital scale most rules of most patients are in that state (20,000 patients x 32
criteria, of which a few per patient have data), which is why this is the evaluation's main
speed-up. The rules themselves are unchanged and still run whenever a fact can matter.

The plan also asks the kinds that read facts for a whole batch at once (`answers`): one SQL
statement per kind over the facts that can matter to its rules (rules/table.py).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ..criteria import Criterion, Trial
from ..model import CriterionResult, Fact, Outcome
from ..rules import Rule, leaves
from ..rules.medication_days import names_medication
from ..rules.table import FactTable
from ..terminology import CodeSet, MedicationSet


@dataclass(frozen=True, slots=True)
class _Reader:
    """What one rule reads: resource types, and the codes (or medications) it keeps."""

    types: frozenset[str]
    codes: CodeSet | None = None
    medications: MedicationSet | None = None

    def reads(self, fact: Fact) -> bool:
        if fact.resource_type not in self.types:
            return False
        if self.medications is not None:
            return names_medication(fact, self.medications)
        assert self.codes is not None
        return self.codes.first_match(fact.codings) is not None or (
            self.codes.first_match(fact.value_codings) is not None
        )


def _reader(leaf: Rule) -> _Reader | None:
    """None for rules that read no facts (age, sex) or whose reading is not stated."""
    stated = leaf.needs()
    if not stated:
        return None
    medications = next((n.medications for n in stated if n.medications is not None), None)
    if medications is not None:  # a rule reads one medication set
        return _Reader(leaf.reads(), medications=medications)
    codes = CodeSet("reads", "reads")
    for need in stated:
        codes = codes.union(need.codes, "reads")
    return _Reader(leaf.reads(), codes)


@dataclass(slots=True)
class Plan:
    """Built once per trial and as-of; holds the per-run caches."""

    trial: Trial
    as_of: date
    _readers: dict[int, tuple[int, _Reader]] = field(default_factory=dict)  # id(leaf) -> (bit, reader)
    _criterion_bits: dict[str, int] = field(default_factory=dict)  # criterion id -> bits of its leaves
    _by_signature: dict[tuple[Any, ...], int] = field(default_factory=dict)  # fact codes -> bits
    _empty: dict[int, Outcome] = field(default_factory=dict)  # id(leaf) -> outcome with no facts
    shared: dict[str, CriterionResult] = field(default_factory=dict)  # criterion id -> shared result
    # the rules of the kinds decided by query, by kind: (bit, rule) each
    queried: dict[type[Rule], list[tuple[int, Rule]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for criterion in self.trial.criteria:
            if criterion.rule is None:
                continue
            bits, skippable = 0, True
            for leaf in leaves(criterion.rule):
                reader = _reader(leaf)
                if reader is None:
                    skippable = False  # reads the patient itself: age, sex
                    continue
                bit = 1 << len(self._readers)
                self._readers[id(leaf)] = (bit, reader)
                bits |= bit
                if leaf.by_query:
                    self.queried.setdefault(type(leaf), []).append((bit, leaf))
            if skippable:
                self._criterion_bits[criterion.id] = bits

    def bits_of(self, fact: Fact) -> int:
        """The rules this fact can matter to, as bits (cached: codes repeat across patients)."""
        key = (fact.resource_type, fact.codings, fact.value_codings, fact.text)
        found = self._by_signature.get(key)
        if found is None:
            found = 0
            for bit, reader in self._readers.values():
                if reader.reads(fact):
                    found |= bit
            self._by_signature[key] = found
        return found

    def relevant(self, facts: Iterable[Fact]) -> tuple[list[Fact], dict[int, int]]:
        """The facts some rule can use, and the rules each matters to (as bits, by id(fact):
        the facts outlive the patient's evaluation)."""
        kept, each = [], {}
        for fact in facts:
            bits = self.bits_of(fact)
            if bits:
                kept.append(fact)
                each[id(fact)] = bits
        return kept, each

    def bit(self, leaf: Rule) -> int:
        """The rule's bit; 0 for a rule that reads no facts (or whose reading is not stated)."""
        entry = self._readers.get(id(leaf))
        return entry[0] if entry is not None else 0

    def empty_outcome(self, leaf: Rule) -> Outcome:
        """The rule's outcome for a patient with no facts it reads (only a rule that reads facts
        has a bit, and those are decided by query), computed once."""
        found = self._empty.get(id(leaf))
        if found is None:
            found = self._empty[id(leaf)] = leaf.decide(())
        return found

    def answers(self, batch: Iterable[tuple[str, list[Fact], dict[int, int]]]) -> dict[int, dict[str, Outcome]]:
        """The outcomes of the rules decided by query, for every patient of the batch ((id,
        facts, plan.relevant's bits) each): one statement per kind over the facts that can
        matter to its rules, deciding all of them. By id(rule), then patient id; a patient
        missing under a rule has nothing it reads."""
        mask = functools.reduce(operator.or_, (bit for rules in self.queried.values() for bit, _ in rules), 0)
        pairs, present = [], 0
        for pid, facts, bits in batch:
            for fact in facts:
                if mine := bits.get(id(fact), 0) & mask:
                    pairs.append((pid, fact))
                    present |= mine
        asked = {  # a rule with nothing of the batch's to read is left out: its no-data outcome
            kind: [rule for bit, rule in rules if bit & present] for kind, rules in self.queried.items()
        }
        found: dict[int, dict[str, Outcome]] = {id(rule): {} for rules in self.queried.values() for _, rule in rules}
        if pairs:
            terms = self.trial.terminology
            table = FactTable(pairs, self.as_of, terms.converter, terms.known_medication_codes)
            try:
                found.update(decide_by_query(table, asked))
            finally:
                table.close()
        return found

    def shareable(self, criterion: Criterion, relevant: int) -> bool:
        """Does none of the criterion's rules have anything of this patient's to read (and
        none reads the patient itself)? Then its result is the one in `shared`."""
        bits = self._criterion_bits.get(criterion.id)
        return bits is not None and not bits & relevant


def decide_by_query(table: FactTable, rules: dict[type[Rule], list[Rule]]) -> dict[int, dict[str, Outcome]]:
    """Every rule given (by kind) decided for every patient of the table: one statement per
    kind. By id(rule), then patient id; a patient missing under a rule has nothing it reads."""
    found: dict[int, dict[str, Outcome]] = {}
    for kind, theirs in rules.items():
        if not theirs:
            continue
        rows: dict[tuple[int, str], list[tuple[Any, ...]]] = {}
        for row in table.rows(kind.query(theirs, table)):
            rows.setdefault((row[0], row[1]), []).append(row[2:])
        found.update((id(rule), {}) for rule in theirs)
        for (n, pid), patient_rows in rows.items():
            found[id(theirs[n])][pid] = theirs[n].decide(patient_rows)
    return found


_PLANS: dict[tuple[int, date], Plan] = {}
_KEEP = 4  # plans kept per process: a run needs one; a long-lived caller (tests) makes many


def plan_for(trial: Trial, as_of: date) -> Plan:
    """One plan per trial object and as-of in this process (a Spark executor builds its own:
    the plan is keyed by rule identity, which does not survive pickling)."""
    key = (id(trial), as_of)
    plan = _PLANS.get(key)
    if plan is None or plan.trial is not trial:
        while len(_PLANS) >= _KEEP:
            del _PLANS[next(iter(_PLANS))]  # the oldest
        plan = _PLANS[key] = Plan(trial, as_of)
    return plan
