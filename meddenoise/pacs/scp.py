"""The Storage SCP: C-ECHO and C-STORE of CT Image and Enhanced CT Image, written to disk first.

An instance is answered with success (0x0000) only after its file is fsync'ed and renamed into
the durable queue. Calling AE titles not on the allowed list are rejected at association.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meddenoise.batch.ledger import Ledger
from meddenoise.errors import OutputError, require_extra
from meddenoise.pacs.queue import (
    incoming_folder,
    instance_path,
    note_instance,
    note_released,
    uid_tag,
    write_durably,
)

if TYPE_CHECKING:
    from pynetdicom.transport import ThreadedAssociationServer

logger = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


class StoreHandler:
    """Handles the SCP's events; remembers which series each open association touched."""

    def __init__(self, *, storage: Path, manifest: Ledger) -> None:
        self.storage = storage
        self.manifest = manifest
        self._touched: dict[int, set[str]] = defaultdict(set)
        self._lock = threading.Lock()

    def on_store(self, event: Any) -> int:
        """Write the instance durably, then answer; an error status when it cannot be kept."""
        try:
            ds = event.dataset
            study, series, sop = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
            path = instance_path(incoming_folder(self.storage, study_uid=study, series_uid=series), sop)
        except (AttributeError, ValueError, KeyError) as err:
            logger.warning("refused an instance from %s: %s", event.assoc.requestor.ae_title, err)
            return CANNOT_UNDERSTAND
        origin = (str(event.assoc.requestor.ae_title).strip(), str(event.assoc.requestor.address))
        try:
            note_instance(
                self.manifest, series_uid=series, study_uid=study, origin=origin, new=not path.exists()
            )
            write_durably(path, event.encoded_dataset())
        except OutputError as err:
            logger.error("cannot keep instance %s of series %s: %s", uid_tag(sop), uid_tag(series), err)
            return OUT_OF_RESOURCES
        with self._lock:
            self._touched[id(event.assoc)].add(series)
        return SUCCESS

    def on_released(self, event: Any) -> None:
        """A normal release: the series it delivered may complete once idle."""
        with self._lock:
            series = self._touched.pop(id(event.assoc), set())
        if series:
            note_released(self.manifest, series)

    def on_aborted(self, event: Any) -> None:
        """An abort: its series stay incomplete until the sender resends them."""
        with self._lock:
            series = self._touched.pop(id(event.assoc), set())
        if series:
            logger.warning(
                "association from %s aborted; %d series wait for a resend",
                event.assoc.requestor.ae_title,
                len(series),
            )


def start_scp(
    *,
    handler: StoreHandler,
    ae_title: str,
    address: tuple[str, int],
    allowed_aes: Sequence[str],
    max_associations: int,
    max_pdu: int,
) -> ThreadedAssociationServer:
    """Start a non-blocking Storage SCP; ``shutdown()`` the returned server to stop it."""
    require_extra("pynetdicom", extra="pacs", feature="the DICOM node (serve)")
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        CTImageStorage,
        EnhancedCTImageStorage,
        Verification,
    )

    ae = AE(ae_title=ae_title)
    ae.maximum_associations = max_associations
    ae.maximum_pdu_size = max_pdu
    ae.require_calling_aet = list(allowed_aes)
    ae.add_supported_context(Verification)
    for sop_class in (CTImageStorage, EnhancedCTImageStorage):
        ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
    handlers: list[Any] = [
        (evt.EVT_C_STORE, handler.on_store),
        (evt.EVT_RELEASED, handler.on_released),
        (evt.EVT_ABORTED, handler.on_aborted),
        (evt.EVT_CONN_CLOSE, handler.on_aborted),
    ]
    try:
        server = ae.start_server(address, block=False, evt_handlers=handlers)
    except OSError as err:
        raise OutputError(f"cannot listen on {address[0]}:{address[1]} ({err.strerror or err})") from err
    assert server is not None  # non-blocking start_server returns the server
    return server
