"""What the Streamlit pages use: Diagnose logic, charts, report readers, page resources, the
Worklist. The records they keep live in records/."""
