"""One module per page of the Streamlit app, UI only; data access lives in auditor.workspace."""
