"""The bundled workflows' tools, run from the repository root as modules:
`python -m workflows.validate`, `python -m workflows.convert`, `python -m workflows.refresh_schemas`."""
