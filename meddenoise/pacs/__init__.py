"""PACS-adjacent operation: selection rules, the job manifest, the DICOM node and DICOMweb.

Nothing is imported here, so ``meddenoise.pacs.rules`` stays cheap and the optional network
libraries (pynetdicom, dicomweb-client) load only in the modules that need them.
Import direction: ``cli → pacs → pipeline``; pipeline never imports pacs.
"""
