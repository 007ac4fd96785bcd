"""Arrow schemas of every output table and the Parquet store that commits them."""
