"""The hospital's DICOM archive (PACS) over DICOMweb: settings, client, results sent back.

Used by the CLI (``model.predict --pacs``) and the web app's worklist; it never imports webapp/.
"""
