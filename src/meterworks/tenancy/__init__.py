"""Organizations (tenants), their API keys and partner keys, and authentication."""
