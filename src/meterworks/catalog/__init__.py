"""The catalog: meters (what is measured) and plans (price lists)."""
