"""Reading what runs wrote, beside the papers: published tables (`published`), statistics (`stats`), table
cells and their rendering (`tables`), figures (`figures`), the report page (`report`), model counts
(`model_stats`), the reproduction plan (`reproduce`) and the committed records (`reproduced/`)."""
