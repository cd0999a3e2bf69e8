"""The wiring of the layers below it: images from files or the archive (pacs/) through the
model (model/) and back, and a site's adaptation run as a background job (adapt_jobs.py:
``python -m training.adapt`` started, never imported). The prediction CLI lives here."""
