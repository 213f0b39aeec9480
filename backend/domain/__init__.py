"""The service's domain types: project settings, round parameters and job payloads.

Pydantic models that validate once at the edge (API bodies, the JSON columns that hold them)
and travel typed through services and jobs. They import nothing of the database, the API or
the services, and of ml only its light enums and name tables.
"""
