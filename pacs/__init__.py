"""The hospital's DICOM archive (PACS) over DICOMweb: settings, client, results sent back.

Used by the CLI (``python -m model.predict --pacs``, i.e. pipeline/predict.py) and the web
app's worklist; it never imports webapp/.
"""
