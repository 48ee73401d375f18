"""Seeded, realistic FHIR R4 Bulk Data NDJSON for the benchmark (PyPI `carebundle`).

    python bench/generate.py --patients 20000 --seed 42 [--out DIR] [--workers 2]

What it writes: one `<ResourceType>.ndjson` per type (FHIR Bulk Data shape, `ResourceType/id`
references), the same cohort `carebundle generate --profile mixed --sex mixed --age-range 18-85
--format ndjson` writes for the same count and seed (byte for byte with `--plain`), plus a
small seeded addition that gives the NCT07183761 criteria real work. carebundle never emits
diabetic polyneuropathy, DPN drugs with a supply duration, neutrophils, creatine kinase,
reference ranges or a lab dated before its one visit, so about a third of the patients who
have a type 2 diabetes code (~5-6 % of all) also get:

- Condition E11.42 (type 2 diabetes with diabetic polyneuropathy), onset 1-8 years back;
- a MedicationRequest for pregabalin 100 MG Oral Capsule (RxNorm 483438), or now and then
  duloxetine 60 MG (596934) or gabapentin 300 MG (310431), with dispenseRequest
  expectedSupplyDuration 30 d and numberOfRepeatsAllowed (mostly 3, sometimes 0-1);
- lab Observations within the year before the reference date: HbA1c 4548-4 (two), platelets
  777-3, ALT 1742-6, AST 1920-8, neutrophils 751-8, creatine kinase 2157-6, the enzymes
  with a referenceRange; a few values are abnormal so that exclusions fire.

The output depends only on (patients, seed): every patient is drawn from its own seeded
stream (carebundle's own scheme, plus `random.Random("<seed>:<index>:...")` for the
additions), work is split into fixed chunks that worker processes return in order, so the
number of workers never changes a byte.

Without `--out` the data goes to bench/.data/<N>-<seed>/ (gitignored) and is reused when
its manifest (`.bench-manifest`, which no reader treats as FHIR: dot-file, no .json suffix)
says it is complete and made by this generator version.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

GENERATOR_VERSION = 1
BENCH_DIR = Path(__file__).resolve().parent
DATA_ROOT = BENCH_DIR / ".data"
MANIFEST = ".bench-manifest"

REFERENCE_DATE = date(2026, 1, 1)  # carebundle's default; run cohort-finder --as-of 2026-01-01
AGE_RANGE = (18, 85)
SEX = "mixed"
CHUNK = 200  # patients per work unit; fixed, so output never depends on --workers
DPN_SHARE_OF_T2DM = 0.33  # of patients with an E11.* condition


# ---------------------------------------------------------------------------- carebundle


def _cohort_profiles(count: int, seed: int) -> list[str]:
    """The profile of every patient, exactly as `carebundle.generate_cohort` draws them."""
    import numpy as np
    from carebundle.core.ids import stable_digest
    from carebundle.generate import DEFAULT_COHORT_PREVALENCE

    weights = dict(DEFAULT_COHORT_PREVALENCE)
    keys = sorted(weights)
    total = sum(weights.values())
    chooser = np.random.default_rng([seed, stable_digest("cohort")])
    chosen = chooser.choice(len(keys), size=count, p=[weights[k] / total for k in keys])
    return [keys[int(i)] for i in chosen]


def _bundle_resources(bundle: Any) -> list[dict[str, Any]]:
    """carebundle.bulk.to_ndjson for one bundle, minus its slow indented intermediate JSON:
    ids minted from fullUrl, `urn:uuid:` references rewritten to `ResourceType/id`."""
    from carebundle.bulk import _resource_id, _rewrite_references
    from carebundle.core.bundle import to_json

    payload = json.loads(to_json(bundle, indent=None))
    entries = payload.get("entry", [])
    targets = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{_resource_id(e['fullUrl'])}"
        for e in entries
        if "fullUrl" in e and "resource" in e
    }
    out = []
    for entry in entries:
        resource = entry.get("resource")
        if resource is None:
            continue
        converted = _rewrite_references(resource, targets)
        if "fullUrl" in entry:
            converted = {
                "resourceType": converted["resourceType"],
                "id": _resource_id(entry["fullUrl"]),
                **{k: v for k, v in converted.items() if k != "resourceType"},
            }
        out.append(converted)
    return out


def _line(resource: dict[str, Any]) -> str:
    # carebundle.bulk.to_ndjson's exact encoding
    return json.dumps(resource, separators=(",", ":"), sort_keys=True)


# ---------------------------------------------------------------------------- additions


def _model_json(model: Any) -> dict[str, Any]:
    from carebundle.core.bundle import to_json

    return json.loads(to_json(model, indent=None))


def _lab_specs(sex: str) -> list[tuple[Any, tuple[str, str], tuple[float, float, int], tuple[float, float], Any]]:
    """(code, unit, normal (mean, sd, decimals), abnormal (low, high), reference range (low, high) or None)."""
    from carebundle.terminology import codes, systems

    loinc = systems.LOINC
    neut = codes.Code(loinc, "751-8", "Neutrophils [#/volume] in Blood by Automated count")
    ck = codes.Code(loinc, "2157-6", "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma")
    ck_range = (39.0, 308.0) if sex == "male" else (26.0, 192.0)
    return [
        (codes.HBA1C, codes.UNIT_PERCENT, (8.1, 1.2, 1), (12.3, 14.5), None),
        (codes.PLATELETS, codes.UNIT_K_PER_UL, (245.0, 55.0, 0), (55.0, 88.0), None),
        (codes.ALT, codes.UNIT_IU_L, (28.0, 10.0, 0), (140.0, 260.0), (7.0, 56.0)),
        (codes.AST, codes.UNIT_IU_L, (26.0, 8.0, 0), (130.0, 240.0), (10.0, 40.0)),
        (neut, codes.UNIT_K_PER_UL, (4.2, 1.3, 1), (0.7, 1.4), None),
        (ck, codes.UNIT_IU_L, (120.0, 45.0, 0), (450.0, 900.0), ck_range),
    ]


def _dpn_additions(seed: int, index: int, resources: list[dict[str, Any]], dense: bool = False) -> list[dict[str, Any]]:
    """The extra resources one patient gets (none for most), seeded by (seed, index). `dense`:
    every patient gets them (made diabetic first where not), so every patient has facts every
    lab, condition and medication rule reads: the worst case for evaluation."""
    from carebundle.builders.clinical import build_condition, build_lab_observation
    from carebundle.builders.orders import build_medication_request
    from carebundle.core.ids import deterministic_uuid
    from carebundle.models.r4 import Dosage, Duration, MedicationRequestDispenseRequest, ObservationReferenceRange
    from carebundle.models.r4 import Quantity as Q
    from carebundle.terminology import codes, systems

    diabetic = any(
        r["resourceType"] == "Condition"
        and any(c.get("code", "").startswith("E11") for c in r.get("code", {}).get("coding", []))
        for r in resources
    )
    if not diabetic and not dense:
        return []
    rng = random.Random(f"{seed}:{index}:cohort-finder-bench-dpn")
    if rng.random() >= DPN_SHARE_OF_T2DM and not dense:
        return []
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    practitioner = next((r for r in resources if r["resourceType"] == "Practitioner"), None)
    subject = f"Patient/{patient['id']}"
    sex = patient.get("gender", "female")

    def rid(role: str) -> str:
        return deterministic_uuid(seed, f"cf-bench-{role}", index)

    def day(days_back: int) -> date:
        return REFERENCE_DATE - timedelta(days=days_back)

    out = []
    if not diabetic:
        t2dm = codes.Code(systems.ICD10CM, "E11.9", "Type 2 diabetes mellitus without complications")
        since = day(rng.randint(3000, 6000)).isoformat()
        cond = build_condition(resource_id=rid("t2dm"), code=t2dm, subject_urn=subject, onset_date=since)
        out.append({**_model_json(cond), "recordedDate": since})
    onset = day(rng.randint(400, 2900)).isoformat()
    dpn = codes.Code(systems.ICD10CM, "E11.42", "Type 2 diabetes mellitus with diabetic polyneuropathy")
    cond = build_condition(resource_id=rid("dpn"), code=dpn, subject_urn=subject, onset_date=onset)
    out.append({**_model_json(cond), "recordedDate": onset})

    pick = rng.random()
    if pick < 0.75:
        drug, qty, sig = codes.Code(systems.RXNORM, "483438", "pregabalin 100 MG Oral Capsule"), 60, "twice daily"
    elif pick < 0.9:
        drug, qty, sig = (
            codes.Code(systems.RXNORM, "596934", "duloxetine 60 MG Delayed Release Oral Capsule"),
            30,
            "once daily",
        )
    else:
        drug, qty, sig = codes.GABAPENTIN_300, 90, "three times daily"
    repeats = rng.choices([3, 1, 0, 5], weights=[70, 15, 10, 5])[0]
    authored = day(rng.randint(100, 330)).isoformat()
    requester = f"Practitioner/{practitioner['id']}" if practitioner else subject
    med = build_medication_request(
        resource_id=rid("dpn-drug"), medication=drug, subject_urn=subject, requester_urn=requester, authored_on=authored
    ).model_copy(
        update={
            "dosageInstruction": [Dosage(text=f"1 capsule by mouth {sig}")],
            "dispenseRequest": MedicationRequestDispenseRequest(
                numberOfRepeatsAllowed=repeats,
                quantity=Q(value=Decimal(qty), unit="capsule"),
                expectedSupplyDuration=Duration(
                    value=Decimal(30), unit="days", system="http://unitsofmeasure.org", code="d"
                ),
            ),
        }
    )
    out.append(_model_json(med))

    abnormal_lab = rng.randrange(6) if rng.random() < 0.25 else -1  # one lab out of range, for a quarter
    for position, (code, unit, (mean, sd, decimals), (lo, hi), ref_range) in enumerate(_lab_specs(sex)):
        draws = [rng.randint(200, 330), rng.randint(20, 150)] if position == 0 else [rng.randint(20, 330)]
        for n, days_back in enumerate(draws):
            if position == abnormal_lab and n == len(draws) - 1:
                value = rng.uniform(lo, hi)
            else:
                value = max(rng.gauss(mean, sd), mean * 0.35)
            amount = Decimal(str(round(value, decimals))) if decimals else Decimal(round(value))
            when = f"{day(days_back).isoformat()}T{rng.randint(7, 11):02d}:{rng.choice(['05', '20', '35', '50'])}:00Z"
            obs = build_lab_observation(
                resource_id=rid(f"lab-{code.code}-{n}"),
                code=code,
                subject_urn=subject,
                effective=when,
                value=amount,
                unit=unit,
                performer_urn=f"Practitioner/{practitioner['id']}" if practitioner else None,
            )
            if ref_range:
                rr = ObservationReferenceRange(
                    low=Q(value=Decimal(str(ref_range[0])), unit=unit[0], system=systems.UCUM, code=unit[1]),
                    high=Q(value=Decimal(str(ref_range[1])), unit=unit[0], system=systems.UCUM, code=unit[1]),
                )
                obs = obs.model_copy(update={"referenceRange": [rr]})
            out.append({**_model_json(obs), "issued": when})
    return out


# ---------------------------------------------------------------------------- generation


def _chunk(task: tuple[int, int, list[str], bool, bool]) -> dict[str, list[str]]:
    """NDJSON lines per resource type for patients start..start+len(profiles)-1."""
    from carebundle.generate import generate_bundle

    seed, start, profiles, plain, dense = task
    streams: dict[str, list[str]] = {}
    for offset, profile in enumerate(profiles):
        index = start + offset
        bundle = generate_bundle(
            profile=profile,
            seed=seed,
            sex=("F", "M")[index % 2],
            age_range=AGE_RANGE,
            reference_date=REFERENCE_DATE,
            index=index,
        )
        resources = _bundle_resources(bundle)
        if not plain:
            resources += _dpn_additions(seed, index, resources, dense)
        for resource in resources:
            streams.setdefault(resource["resourceType"], []).append(_line(resource))
    return streams


def _tasks(patients: int, seed: int, plain: bool, dense: bool) -> Iterator[tuple[int, int, list[str], bool, bool]]:
    profiles = _cohort_profiles(patients, seed)
    for start in range(0, patients, CHUNK):
        yield seed, start, profiles[start : start + CHUNK], plain, dense


def generate(
    patients: int,
    seed: int,
    out: Path,
    *,
    workers: int | None = None,
    plain: bool = False,
    dense: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Write the data set into `out` (replaced if present) and return its manifest."""
    import carebundle

    if patients < 1:
        raise ValueError("patients must be at least 1")
    started = time.monotonic()
    workers = max(1, workers or os.cpu_count() or 1)
    out = out.resolve()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    handles: dict[str, Any] = {}
    counts: dict[str, int] = {}
    try:
        tasks = _tasks(patients, seed, plain, dense)
        if workers == 1 or patients <= CHUNK:
            results: Iterator[dict[str, list[str]]] = map(_chunk, tasks)
            pool = None
        else:
            pool = ProcessPoolExecutor(max_workers=workers)
            results = pool.map(_chunk, tasks)
        done = 0
        for streams in results:
            for rtype, lines in streams.items():
                if rtype not in handles:
                    handles[rtype] = open(tmp / f"{rtype}.ndjson", "w", encoding="utf-8", newline="\n")  # noqa: SIM115
                    counts[rtype] = 0
                handles[rtype].write("\n".join(lines) + "\n")
                counts[rtype] += len(lines)
            done = min(patients, done + CHUNK)
            if not quiet:
                print(f"\rgenerated {done}/{patients} patients", end="", file=sys.stderr, flush=True)
        if pool is not None:
            pool.shutdown()
        if not quiet:
            print(file=sys.stderr)
    finally:
        for handle in handles.values():
            handle.close()
    files = {
        f"{rtype}.ndjson": {"resources": counts[rtype], "bytes": (tmp / f"{rtype}.ndjson").stat().st_size}
        for rtype in sorted(counts)
    }
    additions = "" if plain else " + bench DPN additions" + (" for every patient" if dense else "")
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "carebundle_version": carebundle.__version__,
        "patients": patients,
        "seed": seed,
        "plain": plain,
        "dense": dense,
        "reference_date": REFERENCE_DATE.isoformat(),
        "command": f"carebundle generate --profile mixed --count {patients} --seed {seed} --sex {SEX} "
        f"--age-range {AGE_RANGE[0]}-{AGE_RANGE[1]} --format ndjson" + additions,
        "files": files,
        "resources": sum(f["resources"] for f in files.values()),
        "bytes": sum(f["bytes"] for f in files.values()),
        "generate_seconds": round(time.monotonic() - started, 2),
        "workers": workers,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return manifest


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        manifest: dict[str, Any] = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest


def ensure_data(
    patients: int,
    seed: int,
    out: Path | None = None,
    *,
    workers: int | None = None,
    plain: bool = False,
    dense: bool = False,
    quiet: bool = False,
) -> tuple[Path, dict[str, Any], bool]:
    """(folder, manifest, reused): generate unless a complete matching copy is there."""
    out = out or data_folder(patients, seed, plain, dense)
    manifest = read_manifest(out)
    if (
        manifest
        and manifest.get("generator_version") == GENERATOR_VERSION
        and manifest.get("patients") == patients
        and manifest.get("seed") == seed
        and manifest.get("plain") == plain
        and manifest.get("dense", False) == dense
        and all(
            (out / name).is_file() and (out / name).stat().st_size == f["bytes"]
            for name, f in manifest["files"].items()
        )
    ):
        return out, manifest, True
    return out, generate(patients, seed, out, workers=workers, plain=plain, dense=dense, quiet=quiet), False


def data_folder(patients: int, seed: int, plain: bool = False, dense: bool = False) -> Path:
    return DATA_ROOT / (f"{patients}-{seed}" + ("-plain" if plain else "") + ("-dense" if dense else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=None, help="default: bench/.data/<N>-<seed>/ (cached)")
    parser.add_argument(
        "--workers", type=int, default=None, help="processes (default: all cores); never changes output"
    )
    parser.add_argument("--plain", action="store_true", help="carebundle's output only, without the DPN additions")
    parser.add_argument("--dense", action="store_true", help="every patient diabetic, with the labs and medication")
    parser.add_argument("--force", action="store_true", help="regenerate even when a cached copy exists")
    args = parser.parse_args(argv)
    if args.patients < 1:
        parser.error("--patients must be at least 1")
    if args.force:
        out = args.out or data_folder(args.patients, args.seed, args.plain, args.dense)
        manifest = generate(args.patients, args.seed, out, workers=args.workers, plain=args.plain, dense=args.dense)
        reused = False
    else:
        out, manifest, reused = ensure_data(
            args.patients, args.seed, args.out, workers=args.workers, plain=args.plain, dense=args.dense
        )
    mb = manifest["bytes"] / 1e6
    print(
        f"{'reused' if reused else 'wrote'} {out}: {manifest['patients']} patients, {manifest['resources']} resources "
        f"({manifest['resources'] / manifest['patients']:.1f}/patient), {mb:.1f} MB "
        f"({manifest['bytes'] / manifest['patients'] / 1000:.1f} kB/patient)"
        + ("" if reused else f" in {manifest['generate_seconds']:.1f} s")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
