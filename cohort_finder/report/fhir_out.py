"""Write-back (contract §8): the trial's ResearchStudy, a Group of its candidates and possible
patients, and one ResearchSubject each, written to the FHIR server the run read.

Every resource is built as the contract says and validated with the `fhir.resources` models
(R4B, whose ResearchStudy, Group and ResearchSubject are R4's) before it is sent. Publishing is
idempotent: a conditional update on the identifier where the server's CapabilityStatement
lists `identifier` search for the type, else a PUT to an id derived from the identifier. A
patient published before who is no longer candidate or possible keeps their ResearchSubject,
as `ineligible` unless a reviewer decided otherwise. What is open, what was and the decisions
come from the run store.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from fhir.resources.R4B.group import Group
from fhir.resources.R4B.researchstudy import ResearchStudy
from fhir.resources.R4B.researchsubject import ResearchSubject

from ..errors import FetchError, PublishError

if TYPE_CHECKING:
    from ..sources.capability import Capability
from ..sources.http import FhirHttp
from ..store import decisions

log = logging.getLogger(__name__)

STUDY_SYSTEM = "https://clinicaltrials.gov"
GROUP_SYSTEM = "urn:cohort-finder:group"
SUBJECT_SYSTEM = "urn:cohort-finder:subject"
STUDY_STATUS = "active-but-not-recruiting"
# a reviewer's decision -> ResearchSubject.status (contract §8)
SUBJECT_STATUS = {
    "to_review": "candidate",
    "contacted": "candidate",
    "eligible": "eligible",
    "ineligible": "ineligible",
    "declined": "not-registered",
    "enrolled": "on-study",
    "withdrawn": "withdrawn",
}


def _id(*parts: str) -> str:
    """A FHIR id from an identifier: readable when it fits [A-Za-z0-9-.]{1,64}, else hashed."""
    text = "-".join(parts)
    if re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", text):
        return text
    return "cf-" + hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Cohort:
    trial: str
    title: str
    open: Mapping[str, str]  # patient -> candidate | possible (the latest complete run)
    before: frozenset[str]  # patients open in some earlier run
    decisions: Mapping[str, str]  # patient -> decision


def cohort_from_store(con: sqlite3.Connection, trial: str, title: str) -> Cohort:
    rows = con.execute("SELECT patient, status FROM worklist WHERE trial_id = ?", (trial,)).fetchall()
    earlier = con.execute(
        "SELECT DISTINCT patient FROM results WHERE trial_id = ? AND status IN ('c', 'p')", (trial,)
    ).fetchall()
    current = {p: d.decision for p, d in decisions.latest(con, trial).items()}
    return Cohort(trial, title, dict(rows), frozenset(p for (p,) in earlier), current)


def resources(cohort: Cohort) -> list[dict[str, Any]]:
    """The ResearchStudy, the Group and the ResearchSubjects, validated, as JSON objects."""
    study_id = _id("study", cohort.trial)
    study = ResearchStudy.model_validate(
        {
            "resourceType": "ResearchStudy",
            "id": study_id,
            "identifier": [{"system": STUDY_SYSTEM, "value": cohort.trial}],
            "title": cohort.title,
            "status": STUDY_STATUS,
        }
    )
    group = Group.model_validate(
        {
            "resourceType": "Group",
            "id": _id("group", cohort.trial),
            "identifier": [{"system": GROUP_SYSTEM, "value": cohort.trial}],
            "type": "person",
            "actual": True,
            "name": f"{cohort.trial} candidates and possible patients",
            "quantity": len(cohort.open),
            "member": [{"entity": {"reference": f"Patient/{pid}"}} for pid in sorted(cohort.open)],
        }
    )
    out = [study.model_dump(mode="json", exclude_none=True), group.model_dump(mode="json", exclude_none=True)]
    for pid in sorted(set(cohort.open) | cohort.before):
        status = _subject_status(cohort, pid)
        subject = ResearchSubject.model_validate(
            {
                "resourceType": "ResearchSubject",
                "id": _id("subject", cohort.trial, pid),
                "identifier": [{"system": SUBJECT_SYSTEM, "value": f"{cohort.trial}/{pid}"}],
                "status": status,
                "study": {"reference": f"ResearchStudy/{study_id}"},
                "individual": {"reference": f"Patient/{pid}"},
            }
        )
        out.append(subject.model_dump(mode="json", exclude_none=True))
    return out


def _subject_status(cohort: Cohort, pid: str) -> str:
    """The reviewer's decision, else candidate while open, else ineligible (contract §8)."""
    decided = cohort.decisions.get(pid)
    if decided is not None:
        return SUBJECT_STATUS[decided]
    return "candidate" if pid in cohort.open else "ineligible"


def publish(http: FhirHttp, cohort: Cohort, capability: Capability) -> int:
    """Write every resource; the number written. PublishError when the server refuses one."""
    written = 0
    for resource in resources(cohort):
        rtype, ident = resource["resourceType"], resource["identifier"][0]
        if capability.searchable(rtype, "identifier"):
            token = quote(f"{ident['system']}|{ident['value']}", safe="")
            url = http.url(f"{rtype}?identifier={token}")
            body = {k: v for k, v in resource.items() if k != "id"}  # the server finds or makes it
        else:
            url, body = http.url(f"{rtype}/{resource['id']}"), resource
        try:
            http.request(
                "PUT",
                url,
                data=orjson.dumps(body),
                headers={"Content-Type": "application/fhir+json"},
                expect=(200, 201),
            )
        except FetchError as exc:
            raise PublishError(f"write-back of {rtype} {ident['value']} refused: {exc}") from None
        written += 1
    log.info("published %d resources (%d subjects) for %s", written, written - 2, cohort.trial)
    return written
