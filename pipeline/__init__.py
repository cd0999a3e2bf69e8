"""The wiring of the layers below it: images from files or the archive (pacs/) through the
model (model/) and back. The prediction CLI lives here."""
