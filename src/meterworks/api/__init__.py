"""The native REST API (`/v1`): routers by domain, authentication, error mapping."""
