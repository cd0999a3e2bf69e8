"""What only the Streamlit pages use: Diagnose logic, charts, report readers, page resources."""
