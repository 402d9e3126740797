"""Sandbox: running untrusted programs in isolation (languages, limits, local and Docker backends).

Imports only the standard library, and the Docker SDK inside its Docker backend (DESIGN.md section 2).
Not built yet: see the sandbox issue.
"""
