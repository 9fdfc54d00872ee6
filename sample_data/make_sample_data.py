"""Generate the sample audience (customers.csv) and opt-out list (opt_out.csv), reproducibly.

Run from anywhere: ``python sample_data/make_sample_data.py`` rewrites both CSVs next to this script.
The same seed gives byte-identical files. The data is fictitious but shaped like a real Cambodian
retail export: Khmer and Latin names, phone numbers in every spelling a spreadsheet collects (with a
few invalid, landline and shared numbers), cities, loyalty segments, coupons and gaps.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
from pathlib import Path

import phonenumbers
from phonenumbers import PhoneNumberType

HERE = Path(__file__).resolve().parent
SEED = 855
CUSTOMERS = 2400
OPT_OUTS = 50
COLUMNS = [
    "customer_id",
    "first_name",
    "last_name",
    "phone",
    "city",
    "segment",
    "language",
    "coupon",
    "last_purchase",
    "points",
    "opt_in",
]

# (Khmer script, Latin transliteration)
GIVEN_NAMES = [
    ("សុខា", "Sokha"),
    ("ដារា", "Dara"),
    ("វណ្ណៈ", "Vannak"),
    ("ស្រីនាង", "Srey Neang"),
    ("សុភា", "Sophea"),
    ("រតនា", "Ratana"),
    ("បុប្ផា", "Bopha"),
    ("ពិសិដ្ឋ", "Piseth"),
    ("វិចិត្រ", "Vichet"),
    ("សំណាង", "Samnang"),
    ("ចាន់ថា", "Chantha"),
    ("ម៉ាលី", "Maly"),
    ("ស្រីពៅ", "Srey Pov"),
    ("ណារី", "Nary"),
    ("ពិសី", "Pisey"),
    ("សុផល", "Sophal"),
    ("ធីតា", "Thida"),
    ("រក្សា", "Raksa"),
    ("សុជាតិ", "Socheat"),
    ("បូរ៉ា", "Bora"),
    ("វីរៈ", "Vireak"),
    ("ចិន្តា", "Chenda"),
    ("លីដា", "Lida"),
    ("ផល្លា", "Phalla"),
    ("ដាវី", "Davy"),
    ("មករា", "Makara"),
    ("កុសល", "Kosal"),
    ("ស៊ីថា", "Sitha"),
    ("សុវណ្ណ", "Sovann"),
    ("ធារី", "Theary"),
]
FAMILY_NAMES = [
    ("ចាន់", "Chan"),
    ("សុខ", "Sok"),
    ("ហេង", "Heng"),
    ("លី", "Ly"),
    ("គឹម", "Kim"),
    ("ស៊ុន", "Sun"),
    ("ឈឹម", "Chhim"),
    ("ម៉ៅ", "Mao"),
    ("ព្រាប", "Preap"),
    ("សៀង", "Seang"),
    ("ខៀវ", "Khiev"),
    ("ទេព", "Tep"),
    ("អ៊ុក", "Ouk"),
    ("ញឹម", "Nhem"),
    ("ប៉ុល", "Pol"),
    ("មាស", "Meas"),
    ("សេង", "Seng"),
    ("ឡុង", "Long"),
    ("យិន", "Yin"),
    ("វង្ស", "Vong"),
    ("នួន", "Nuon"),
    ("ពេជ្រ", "Pich"),
    ("សោម", "Som"),
    ("អ៊ឹង", "Ung"),
]
# A few expatriate customers with Latin names only.
FOREIGN_NAMES = [
    ("Emma", "Laurent"),
    ("Wei", "Zhang"),
    ("Minh", "Nguyen"),
    ("Somchai", "Srisuk"),
    ("James", "Walker"),
    ("Yuki", "Tanaka"),
    ("Ji-woo", "Park"),
    ("Anna", "Schmidt"),
]
CITIES = [
    ("Phnom Penh", 40),
    ("Siem Reap", 12),
    ("Battambang", 10),
    ("Sihanoukville", 8),
    ("Kampong Cham", 7),
    ("Kampot", 5),
    ("Takeo", 4),
    ("Kandal", 4),
    ("Prey Veng", 3),
    ("Kep", 2),
    ("Koh Kong", 2),
    ("Pursat", 3),
]
LANDLINE_AREAS = {
    "Phnom Penh": "23",
    "Siem Reap": "63",
    "Battambang": "53",
    "Sihanoukville": "34",
    "Kampong Cham": "42",
    "Kampot": "33",
    "Takeo": "32",
    "Kandal": "24",
    "Prey Veng": "43",
    "Kep": "36",
    "Koh Kong": "35",
    "Pursat": "52",
}
# Mobile prefixes (national, without the trunk 0) with market-share-like weights and subscriber lengths.
MOBILE_PREFIXES = [
    ("10", 6, 6),
    ("15", 4, 6),
    ("16", 4, 6),
    ("69", 4, 6),
    ("70", 6, 6),
    ("81", 3, 6),
    ("86", 4, 6),
    ("93", 4, 6),
    ("96", 6, 7),
    ("98", 4, 6),  # Smart
    ("11", 3, 6),
    ("12", 8, 6),
    ("12", 2, 7),
    ("14", 2, 6),
    ("17", 6, 6),
    ("61", 3, 6),
    ("76", 3, 7),
    ("77", 5, 6),
    ("78", 3, 6),
    ("85", 3, 6),
    ("89", 3, 6),
    ("92", 4, 6),
    ("95", 3, 6),
    ("99", 4, 6),  # Cellcard
    ("31", 4, 7),
    ("60", 3, 6),
    ("66", 3, 6),
    ("67", 3, 6),
    ("68", 3, 6),
    ("71", 5, 7),
    ("88", 6, 7),
    ("90", 4, 6),
    ("97", 4, 6),
    ("97", 4, 7),  # Metfone
    ("18", 2, 6),
    ("18", 1, 7),  # Seatel
]
SEGMENTS = [("bronze", 55), ("silver", 30), ("gold", 15)]
COUPON_CAMPAIGNS = [("SPRING", 6), ("NEWYEAR", 3), ("WELCOME", 1)]
COUPON_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O or 1/I/L
KHMER_DIGITS = str.maketrans("0123456789", "០១២៣៤៥៦៧៨៩")


def _weighted(rng: random.Random, pairs: list[tuple[str, int]]) -> str:
    """Pick a value from (value, weight) pairs."""
    return rng.choices([v for v, _ in pairs], weights=[w for _, w in pairs])[0]


def _kind(nsn: str) -> int:
    """The phonenumbers type of a Cambodian national number (UNKNOWN when invalid)."""
    number = phonenumbers.parse("+855" + nsn)
    return phonenumbers.number_type(number) if phonenumbers.is_valid_number(number) else PhoneNumberType.UNKNOWN


def _mobile(rng: random.Random, taken: set[str]) -> str:
    """A fresh, valid Cambodian mobile national number."""
    weights = [w for _, w, _ in MOBILE_PREFIXES]
    while True:
        prefix, _, length = rng.choices(MOBILE_PREFIXES, weights=weights)[0]
        nsn = prefix + str(rng.randint(2, 9)) + "".join(rng.choices("0123456789", k=length - 1))
        if nsn not in taken and _kind(nsn) in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE):
            taken.add(nsn)
            return nsn


def _landline(rng: random.Random, city: str, taken: set[str]) -> str:
    """A fresh, valid landline national number in the city's area code."""
    while True:
        nsn = LANDLINE_AREAS[city] + str(rng.randint(2, 9)) + "".join(rng.choices("0123456789", k=5))
        if nsn not in taken and _kind(nsn) == PhoneNumberType.FIXED_LINE:
            taken.add(nsn)
            return nsn


def spell(rng: random.Random, nsn: str) -> str:
    """Write a national number the way some spreadsheet would."""
    head, mid, tail = nsn[:2], nsn[2:5], nsn[5:]
    forms = [
        (f"0{head} {mid} {tail}", 35),
        (f"0{nsn}", 15),
        (f"+855 {head} {mid} {tail}", 12),
        (f"855{nsn}", 10),
        (f"8550{nsn}", 4),
        (f"(0{head}) {mid}-{tail}", 5),
        (f"0{head}-{mid}-{tail}", 5),
        (f"0{head}.{mid}.{tail}", 3),
        (f"855{nsn}.0", 6),
        (f"+855{nsn}", 3),
        (f"0{head} {mid} {tail}".translate(KHMER_DIGITS), 2),
    ]
    return _weighted(rng, forms)


def _invalid(rng: random.Random, taken: set[str]) -> str:
    """A number that cannot be sent: too short, too long, a letter O for a zero, unallocated, two in one."""
    nsn = _mobile(rng, taken)
    choice = rng.randrange(6)
    if choice == 0:
        return f"0{nsn[:-2]}"
    if choice == 1:
        return f"0{nsn}{rng.randint(10, 99)}"
    if choice == 2:
        return f"0{nsn[:2]} {nsn[2:5]} {nsn[5:]}".replace("0", "O", 2)
    if choice == 3:
        return f"020 {nsn[2:5]} {nsn[5:]}"
    if choice == 4:
        return f"0{nsn} / 0{_mobile(rng, taken)}"
    return f"8.55{nsn[:4]}E+10"


def _person(rng: random.Random) -> tuple[str, str, str]:
    """A customer's first name, last name and preferred language (correlated with the script)."""
    if rng.random() < 0.03:
        first, last = rng.choice(FOREIGN_NAMES)
        return first, last, "en"
    (km_first, latin_first), (km_last, latin_last) = rng.choice(GIVEN_NAMES), rng.choice(FAMILY_NAMES)
    if rng.random() < 0.5:
        return km_first, km_last, "km" if rng.random() < 0.9 else "en"
    return latin_first, latin_last, "en" if rng.random() < 0.8 else "km"


def _coupon(rng: random.Random, used: set[str]) -> str:
    """A fresh coupon code such as SPRING-7F3K."""
    while True:
        code = f"{_weighted(rng, COUPON_CAMPAIGNS)}-{''.join(rng.choices(COUPON_ALPHABET, k=4))}"
        if code not in used:
            used.add(code)
            return code


def customers(rng: random.Random, n: int = CUSTOMERS) -> list[dict[str, str]]:
    """Build the customer rows (all values as CSV text)."""
    taken: set[str] = set()
    coupons: set[str] = set()
    numbers: list[str] = []  # national numbers of earlier valid mobile rows, for shared phones
    start = dt.date(2024, 1, 1)
    rows = []
    for i in range(1, n + 1):
        first, last, language = _person(rng)
        city = _weighted(rng, CITIES)
        segment = _weighted(rng, SEGMENTS)
        roll = rng.random()
        if roll < 0.03:
            phone = _invalid(rng, taken)
        elif roll < 0.05:
            phone = spell(rng, _landline(rng, city, taken))
        elif roll < 0.07 and numbers:
            phone = spell(rng, rng.choice(numbers))  # a family sharing one phone, written differently
        elif roll < 0.075:
            phone = ""
        else:
            nsn = _mobile(rng, taken)
            numbers.append(nsn)
            phone = spell(rng, nsn)
        base = {"gold": 3000, "silver": 1200, "bronze": 300}[segment]
        points = "" if rng.random() < 0.04 else str(max(0, int(rng.gauss(base, base / 3))))
        last_purchase = "" if rng.random() < 0.02 else (start + dt.timedelta(days=rng.randrange(455))).isoformat()
        rows.append(
            {
                "customer_id": f"C{i:05d}",
                "first_name": first,
                "last_name": last,
                "phone": phone,
                "city": city,
                "segment": segment,
                "language": language,
                "coupon": _coupon(rng, coupons),
                "last_purchase": last_purchase,
                "points": points,
                "opt_in": "true" if rng.random() < 0.92 else "false",
            }
        )
    return rows


def opt_outs(rng: random.Random, rows: list[dict[str, str]], n: int = OPT_OUTS) -> list[dict[str, str]]:
    """About 50 opt-out numbers: most belong to customers (re-spelled), some to strangers."""
    customer_numbers = []
    for row in rows:
        nsn = _national(row["phone"])
        if nsn is not None:
            customer_numbers.append(nsn)
    mine = rng.sample(sorted(set(customer_numbers)), k=n * 7 // 10)
    taken = set(customer_numbers)
    strangers = [_mobile(rng, taken) for _ in range(n - len(mine))]
    numbers = mine + strangers
    rng.shuffle(numbers)
    return [{"phone": spell(rng, nsn)} for nsn in numbers]


def _national(phone: str) -> str | None:
    """The national number of a valid customer phone cell, or None."""
    text = phone[:-2] if phone.endswith(".0") else phone
    try:
        number = phonenumbers.parse(text, "KH")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number) or any(ch.isalpha() for ch in text):
        return None
    return str(number.national_number)


def write(path: Path, rows: list[dict[str, str]], columns: list[str]) -> None:
    """Write rows as UTF-8 CSV with Unix line endings."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    """Generate customers.csv and opt_out.csv (into --out, default: this folder)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write the CSVs into")
    parser.add_argument("--seed", type=int, default=SEED, help="random seed (default: %(default)s)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    rows = customers(rng)
    write(args.out / "customers.csv", rows, COLUMNS)
    write(args.out / "opt_out.csv", opt_outs(rng, rows), ["phone"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
