"""Keep patient identity out of reports: UIDs are shown as short hashes unless PHI is allowed.

A hashed UID still lets two reports of the same series be matched (the hash is stable), but does
not reveal the UID, which a PACS could resolve to a patient. Patient names and IDs are written only
when the caller passes ``show_phi=True`` (the CLI's ``--show-phi``).
"""

from __future__ import annotations

import hashlib

HASH_PREFIX = "sha256:"
HASH_HEX_DIGITS = 16


def hash_uid(uid: str) -> str:
    """A stable, non-reversible stand-in for a DICOM UID.

    Examples
    --------
    >>> hash_uid("1.2.3")
    'sha256:c47f5b18b8a430e6'
    """
    digest = hashlib.sha256(uid.encode("ascii", errors="replace")).hexdigest()
    return HASH_PREFIX + digest[:HASH_HEX_DIGITS]


def shown_uid(uid: str, *, show_phi: bool) -> str:
    """``uid`` itself with ``show_phi``, else its hash."""
    return uid if show_phi else hash_uid(uid)
