"""DICOMweb: pull a study or series with WADO-RS, push a derived series with STOW-RS.

Pulled instances are written like received ones: ``OUT/<study>/<series>/<sop>.dcm``, named from
validated UIDs only, each file fsync'ed and renamed into place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread

from meddenoise.errors import MeddenoiseError, require_extra
from meddenoise.pacs.queue import instance_path, series_folder, uid_tag, write_durably

logger = logging.getLogger(__name__)


class DicomWebError(MeddenoiseError):
    """A DICOMweb server refused a request or could not be reached."""


@contextmanager
def _client(url: str) -> Iterator[Any]:
    """A DICOMweb client whose HTTP session (and its sockets) is closed when the block ends."""
    require_extra("dicomweb_client", extra="pacs", feature="DICOMweb (pull, push)")
    import requests
    from dicomweb_client.api import DICOMwebClient

    with requests.Session() as session:
        yield DICOMwebClient(url=url.rstrip("/"), session=session)


def pull(
    *, url: str, out_dir: Path, study_uid: str | None = None, series_uid: str | None = None
) -> list[Path]:
    """Retrieve a study or a series into ``out_dir/<study>/<series>/``; returns the series folders.

    Raises
    ------
    DicomWebError
        When the server fails, or finds nothing.
    """
    require_extra("dicomweb_client", extra="pacs", feature="DICOMweb (pull, push)")
    if (study_uid is None) == (series_uid is None):
        raise ValueError("give exactly one of study_uid and series_uid")
    import requests

    try:
        with _client(url) as client:
            filters = {"SeriesInstanceUID": series_uid} if series_uid else None
            found = client.search_for_series(study_instance_uid=study_uid, search_filters=filters)
            pairs = [
                (str(Dataset.from_json(s).StudyInstanceUID), str(Dataset.from_json(s).SeriesInstanceUID))
                for s in found
            ]
            if not pairs:
                raise DicomWebError(f"{url}: no series {uid_tag(series_uid or study_uid or '')} found")
            folders = []
            for study, series in pairs:
                folder = series_folder(out_dir, study_uid=study, series_uid=series)
                for ds in client.retrieve_series(study, series):
                    buffer = BytesIO()
                    ds.save_as(buffer, enforce_file_format=True)
                    write_durably(instance_path(folder, str(ds.SOPInstanceUID)), buffer.getvalue())
                logger.info("pulled series %s", uid_tag(series))
                folders.append(folder)
    except requests.RequestException as err:
        raise DicomWebError(f"{url}: {type(err).__name__}: {err}") from err
    return folders


def push(*, url: str, folder: Path) -> int:
    """STOW-RS every ``*.dcm`` under ``folder`` to ``url``; returns the number of instances stored.

    Raises
    ------
    DicomWebError
        When the server refuses any instance or cannot be reached.
    """
    require_extra("dicomweb_client", extra="pacs", feature="DICOMweb (pull, push)")
    import requests

    files = sorted(Path(folder).rglob("*.dcm"))
    if not files:
        raise DicomWebError(f"{folder}: no .dcm files to push")
    try:
        with _client(url) as client:
            response = client.store_instances([dcmread(path) for path in files])
    except requests.RequestException as err:
        raise DicomWebError(f"{url}: {type(err).__name__}: {err}") from err
    failed = response.get("00081198", {}).get("Value", [])
    if failed:
        raise DicomWebError(f"{url}: refused {len(failed)} of {len(files)} instances from {folder}")
    return len(files)
