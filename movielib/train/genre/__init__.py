"""Trailer genres from collaborative experts, then fine-grained clustering (mmx_trailer20_genre.txt)."""
