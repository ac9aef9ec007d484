"""Fake but realistic identities for virtual patients: names, IDs, addresses, dates, sites.

Every value here is invented. They exist so that a phantom DICOM file carries the same kinds of
identifying header fields a hospital export does, and so every synthmed run exercises the
de-identifier. A patient's identity is drawn once from that patient's own random stream, so it is
the same in all of their studies and does not depend on how work is split across processes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

MALE_GIVEN = (
    "James", "Mohammed", "Liam", "Oliver", "Lucas", "Mateo", "Noah", "Arjun", "Wei", "Kenji",
    "Tomasz", "Jörg", "José", "Pierre", "Kwame", "Dmitri", "Samuel", "Ahmed", "Hiroshi", "Erik",
    "Giovanni", "Rafael", "Daniel", "Thomas", "Malik", "Sven", "Ravi", "Omar", "Patrick", "Felix",
)
FEMALE_GIVEN = (
    "Olivia", "Amelia", "Sofia", "Aisha", "Mei", "Yuki", "Priya", "Fatima", "Emma", "Chloé",
    "Ingrid", "Zofia", "María", "Amara", "Hannah", "Leila", "Grace", "Nadia", "Elena", "Chiara",
    "Sarah", "Anna", "Ayesha", "Margaret", "Lucía", "Freya", "Keiko", "Ngozi", "Isabel", "Ruth",
)
SURNAMES = (
    "Smith", "Jones", "Müller", "García", "Nguyen", "Kowalski", "Okafor", "Patel", "Rossi",
    "Dubois", "Johansson", "Tanaka", "Kim", "Hernández", "O'Brien", "Schmidt", "Novak", "Ali",
    "Cohen", "Silva", "Ivanova", "Murphy", "Chen", "Andersen", "Fischer", "Mensah", "Khan",
    "Brown", "Martin", "Lefèvre", "Yilmaz", "Nakamura", "Costa", "Walsh", "Singh", "Larsen",
    "Moreau", "Hoffmann", "Petrov", "Taylor", "Wilson", "Romano", "Sato", "Abebe", "Jensen",
)
STREETS = (
    "Elm Street", "Station Road", "Mill Lane", "Church Street", "Victoria Avenue", "Park Road",
    "Hauptstrasse 2", "Rue des Lilas", "Calle Mayor", "Oak Crescent", "Harbour View",
    "King's Road", "Linden Allee", "Meadow Close", "High Street", "Riverside Drive",
)
CITIES = (
    ("Northbridge", "NB4 7QT"), ("Lakeside", "LK2 9HD"), ("Eastfield", "EF11 3PA"),
    ("Westmoor", "WM6 1RR"), ("Ashford Vale", "AV3 8LN"), ("Kingsport", "KP9 2XW"),
    ("Millbrook", "MB1 5JS"), ("Southgate", "SG7 4EE"),
)
DESCRIPTIONS_CXR = ("XR CHEST PA", "CHEST 1 VIEW FRONTAL", "Thorax PA", "CXR PA ERECT")
DESCRIPTIONS_CT = ("CT CHEST WITHOUT CONTRAST", "CT THORAX", "CT Chest low dose",
                   "CT CHEST/UPPER ABDOMEN")
REASONS = ("cough 3 weeks", "pre-op assessment", "follow-up", "shortness of breath",
           "chest pain", "fever, rule out pneumonia", "routine screening", "weight loss")


@dataclass(frozen=True)
class Site:
    """A (fictional) hospital with its scanner."""

    name: str
    address: str
    department: str
    station: str
    serial: str
    manufacturer: str
    model: str
    cxr_modality: str  # "CR" or "DX": sites differ, as real ones do


SITES = (
    Site("St. Aldhelm General Hospital", "14 Infirmary Road, Northbridge NB1 2AA",
         "Radiology", "ALDH-XR01", "SN48213977", "Acme Imaging", "Radiant 5000", "DX"),
    Site("Lakeside University Medical Centre", "1 College Way, Lakeside LK1 0AB",
         "Diagnostic Imaging", "LUMC-RAD-3", "CR-0093-4471", "Orion Medical", "CR-Plate 12",
         "CR"),
    Site("Eastfield Community Clinic", "77 Market Street, Eastfield EF2 5CD",
         "X-Ray", "EFCC_XR", "EF9920117", "Helix Systems", "Helix DR-2", "DX"),
    Site("Westmoor Children's and Adults' Hospital", "3 Moor Lane, Westmoor WM6 9ZZ",
         "Imaging Dept", "WMH-CT-A", "WM55-1183-Q", "Acme Imaging", "Spectra 64", "CR"),
    Site("Kingsport Royal Infirmary", "200 Harbour Road, Kingsport KP9 1KR",
         "Radiology North", "KRI-RAD-12", "KRI00457731", "Orion Medical", "Orion CT 128", "DX"),
)


@dataclass(frozen=True)
class Identity:
    """A virtual patient's identifying header values (all fake)."""

    family: str
    given: str
    middle: str
    sex: str  # "M" or "F"
    birth_date: dt.date
    patient_id: str
    other_ids: str
    address: str
    phone: str
    internal_id: str
    site: int  # index into SITES: where this patient is usually imaged

    @property
    def dicom_name(self) -> str:
        return f"{self.family}^{self.given}^{self.middle}"

    @property
    def display_name(self) -> str:
        return f"{self.given} {self.family}"


def _permute(index: int, salt: int, digits: int) -> int:
    """A bijection of [0, 10**digits) so IDs are unique per index yet look random."""
    modulus = 10**digits
    multiplier = 7_919_123 if digits <= 8 else 9_876_543_211  # coprime with 10**digits
    return (index * multiplier + salt) % modulus


def make_identity(rng: np.random.Generator, index: int, seed: int, sex: str,
                  birth_date: dt.date) -> Identity:
    given_pool = MALE_GIVEN if sex == "M" else FEMALE_GIVEN
    family = str(rng.choice(SURNAMES))
    given = str(rng.choice(given_pool))
    middle = str(rng.choice(given_pool))[0]
    salt = (seed * 104_729 + 12_345) % 10**8
    mrn = f"{_permute(index, salt, 8):08d}"
    other = f"{rng.integers(100, 999)} {rng.integers(100, 999)} {rng.integers(1000, 9999)}"
    street_no = int(rng.integers(1, 240))
    city, postcode = CITIES[int(rng.integers(len(CITIES)))]
    address = f"{street_no} {rng.choice(STREETS)}, {city} {postcode}"
    phone = f"+44 7{rng.integers(100, 999)} {rng.integers(100000, 999999)}"
    internal = f"INT-{seed % 1000:03d}-{index:06d}-{rng.integers(1000, 9999)}"
    return Identity(family=family, given=given, middle=middle, sex=sex, birth_date=birth_date,
                    patient_id=mrn, other_ids=f"NHS {other}", address=address, phone=phone,
                    internal_id=internal, site=int(rng.integers(len(SITES))))


def physician(rng: np.random.Generator) -> str:
    pool = MALE_GIVEN if rng.random() < 0.5 else FEMALE_GIVEN
    return f"{rng.choice(SURNAMES)}^{rng.choice(pool)}^^Dr"


def accession_number(index: int, study: int, seed: int) -> str:
    salt = (seed * 7_654_321 + 98_765) % 10**10
    return f"A{_permute(index * 64 + study, salt, 10):010d}"


def age_on(birth: dt.date, day: dt.date) -> int:
    """Whole years between birth and day, as PatientAge counts them."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def study_dates(rng: np.random.Generator, n: int, first: dt.date) -> list[dt.date]:
    """First study on `first`, the rest weeks to years later (longitudinal follow-up)."""
    dates = [first]
    for _ in range(n - 1):
        dates.append(dates[-1] + dt.timedelta(days=int(rng.integers(21, 900))))
    return dates


def clock(rng: np.random.Generator) -> dt.time:
    """A plausible working-hours time, drawn (never the wall clock, so outputs reproduce)."""
    seconds = int(rng.integers(7 * 3600, 19 * 3600))
    return dt.time(seconds // 3600, (seconds // 60) % 60, seconds % 60)
