"""Trust pages built from the operator's configured name and address: privacy, terms, refunds, contact."""
