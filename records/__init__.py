"""The records layer: settings, database, audit trail, accounts, feedback, image store,
monitoring. No Streamlit here: the pages, the CLIs, training's feedback export and the
benchmarks all use it."""
